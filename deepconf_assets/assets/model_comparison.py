import pandas as pd
from dagster import (
    AssetExecutionContext, AssetIn, MaterializeResult, MultiToSingleDimensionPartitionMapping, asset,
)

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import analysis
from deepconf_assets.partitions import benchmark_and_model, benchmark_partitions

COLUMNS = ["model", "policy", "n", "accuracy", "sensitivity", "specificity", "f1", "unsafe_compliance_rate",
           "over_refusal_rate", "avg_traces", "token_savings_pct"]


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
        "partitions have been materialized), for the headline adaptive policy and for all traces."
    ),
)
def model_comparison(
    context: AssetExecutionContext, config: AnalysisConfig, instance_predictions: dict[str, pd.DataFrame]
) -> MaterializeResult:
    rows = []
    for key, predictions in sorted(instance_predictions.items()):
        _, model = benchmark_and_model(key)
        summary = analysis.summarize_predictions(predictions)
        summary = summary[summary["policy"].isin([config.headline_policy(), "fixed_n=all"])]
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
