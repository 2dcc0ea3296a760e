import pandas as pd
from dagster import (
    AssetExecutionContext, AssetIn, MaterializeResult, MultiToSingleDimensionPartitionMapping, asset,
)

from deepconf_assets.assets.analysis_inputs import OWNERS
from deepconf_assets import metadata
from deepconf_assets.automation import COMPARISON_CONDITION
from deepconf_assets.core import analysis, plots
from deepconf_assets.partitions import benchmark_and_model, benchmark_partitions
from resources.analysis_settings import AnalysisSettingsResource
from resources.model_registry import models_by_size

CALIBRATION = ("auroc", "ece_isotonic_oof", "aurc")
COLUMNS = ["model", "labeler", "policy", *analysis.HEADLINE_METRICS, *CALIBRATION]


@asset(
    partitions_def=benchmark_partitions,
    group_name="comparisons",
    automation_condition=COMPARISON_CONDITION,
    io_manager_key="parquet_io_manager",
    kinds={"pandas", "parquet"},
    owners=OWNERS,
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
    context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
    instance_predictions: dict[str, pd.DataFrame],
) -> MaterializeResult:
    by_model = {benchmark_and_model(key)[1]: predictions for key, predictions in instance_predictions.items()}
    rows = []
    for model in models_by_size(by_model):
        # fixed_n=all is also the token-savings baseline of summarize_predictions
        predictions = by_model[model]
        predictions = predictions[predictions["policy"].isin([analysis_settings.headline_policy, analysis.ALL_TRACES])]
        calibration = analysis.calibration_table(predictions)[["labeler", "policy", *CALIBRATION]]
        summary = analysis.summarize_predictions(predictions).merge(calibration, on=["labeler", "policy"])
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
        metadata={"models": ", ".join(table["model"].unique()), "comparison": metadata.table(table),
                  **analysis_settings.metadata()},
    )


@asset(
    partitions_def=benchmark_partitions,
    group_name="comparisons",
    automation_condition=COMPARISON_CONDITION,
    io_manager_key="png_io_manager",
    kinds={"matplotlib", "png"},
    owners=OWNERS,
    description="Safety metrics and confidence calibration against model size for one benchmark "
                "(headline labeler and policy).",
)
def model_comparison_figure(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                            model_comparison: pd.DataFrame) -> MaterializeResult:
    rows = model_comparison[(model_comparison["policy"] == analysis_settings.headline_policy)
                            & (model_comparison["labeler"] == analysis_settings.labeler)]  # ordered by model size
    title = f"{context.partition_key}: models compared ({analysis_settings.headline_policy}, {analysis_settings.labeler} labels)"
    png = plots.model_comparison_png(rows, title)
    return MaterializeResult(value=png, metadata={"figure": metadata.image(png, "Model comparison")})
