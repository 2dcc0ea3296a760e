import pandas as pd
from dagster import (
    AssetExecutionContext, AssetIn, MaterializeResult, MultiToSingleDimensionPartitionMapping, asset,
)

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import analysis, calibration, plots
from deepconf_assets.partitions import benchmark_and_model, benchmark_partitions
from resources.model_registry import MODEL_KEYS

COLUMNS = ["model", "labeler", "policy", "n", "accuracy", "sensitivity", "specificity", "f1", "unsafe_compliance_rate",
           "over_refusal_rate", "avg_traces", "token_savings_pct", "auroc", "ece", "aurc"]
CALIBRATION = ("auroc", "ece", "aurc")


def _calibration(predictions: pd.DataFrame) -> pd.DataFrame:
    """AUROC / ECE / AURC of instance confidence against correctness, per labeler x policy."""
    rows = []
    for (labeler, policy), group in predictions.groupby(["labeler", "policy"], sort=False):
        report = calibration.calibration_report(group["confidence"], group["correct"], group["prompt_harmful"])
        rows.append({"labeler": labeler, "policy": policy, **{k: report[k] for k in CALIBRATION}})
    return pd.DataFrame(rows, columns=["labeler", "policy", *CALIBRATION])


@asset(
    partitions_def=benchmark_partitions,
    group_name="comparisons",
    io_manager_key="parquet_io_manager",
    ins={
        "instance_predictions": AssetIn(
            partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="benchmark"),
            metadata={"allow_missing_partitions": True},
        )
    },
    description=(
        "Headline metrics of every model partition of one benchmark side by side (whichever model "
        "partitions have been materialized), for the headline adaptive policy and for all traces: safety "
        "metrics, token savings, and calibration of instance confidence (AUROC, ECE, AURC)."
    ),
)
def model_comparison(
    context: AssetExecutionContext, config: AnalysisConfig, instance_predictions: dict[str, pd.DataFrame]
) -> MaterializeResult:
    by_model = {benchmark_and_model(key)[1]: predictions for key, predictions in instance_predictions.items()}
    rows = []
    for model in [m for m in MODEL_KEYS if m in by_model]:  # the registry lists models smallest to largest
        predictions = by_model[model]
        # fixed_n=all is also the token-savings baseline of summarize_predictions
        predictions = predictions[predictions["policy"].isin([config.headline_policy(), "fixed_n=all"])]
        summary = analysis.summarize_predictions(predictions).merge(_calibration(predictions), on=["labeler", "policy"])
        summary.insert(0, "model", model)
        rows.append(summary)
    if not rows:
        raise ValueError(
            f"no model partition of benchmark '{context.partition_key}' has instance_predictions yet; "
            f"materialize the experiment group for '{context.partition_key}|<model>' first"
        )
    table = pd.concat(rows, ignore_index=True)[COLUMNS]
    return MaterializeResult(
        value=table,
        metadata={"models": ", ".join(table["model"].unique()), "comparison": metadata.table(table)},
    )


@asset(
    partitions_def=benchmark_partitions,
    group_name="comparisons",
    io_manager_key="png_io_manager",
    description="Safety metrics and confidence calibration against model size for one benchmark "
                "(heuristic labels, headline policy).",
)
def model_comparison_figure(context: AssetExecutionContext, config: AnalysisConfig,
                            model_comparison: pd.DataFrame) -> MaterializeResult:
    rows = model_comparison[(model_comparison["policy"] == config.headline_policy())
                            & (model_comparison["labeler"] == "heuristic")]  # already ordered by model size
    png = plots.model_comparison_png(rows, f"{context.partition_key}: models compared ({config.headline_policy()})")
    return MaterializeResult(value=png, metadata={"figure": metadata.image(png, "Model comparison")})
