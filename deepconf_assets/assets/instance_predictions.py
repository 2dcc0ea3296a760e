import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import analysis
from deepconf_assets.partitions import experiment_partitions

HEADLINE_COLUMNS = ["policy", "n", "accuracy", "sensitivity", "specificity", "precision", "f1",
                    "unsafe_compliance_rate", "over_refusal_rate", "avg_traces", "token_savings_pct"]


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    description=(
        "One row per prompt x labeler x stopping policy (fixed_n=1, fixed_n=5, fixed_n=all, adaptive, "
        "deepconf_online), replayed from the stored traces: traces and tokens used, refusal rate, "
        "predicted_refusal (a tie counts as compliance), instance confidence, category "
        "(confident/uncertain x refusal/compliance) and correct. Positive class = harmful prompt; "
        "predicted positive = refusal."
    ),
)
def instance_predictions(
    config: AnalysisConfig,
    benchmark_prompts: pd.DataFrame,
    traces: pd.DataFrame,
    refusal_labels_heuristic: pd.DataFrame,
) -> MaterializeResult:
    labelled = analysis.attach_labels(traces, refusal_labels_heuristic)
    result = analysis.PartitionAnalysis(labelled, benchmark_prompts, "heuristic", config.settings())
    summary = result.summary()
    headline = summary.set_index("policy").loc[config.headline_policy()]
    return MaterializeResult(
        value=result.instance_predictions(),
        metadata={
            "dagster/row_count": len(benchmark_prompts) * len(summary),
            "positive_class": "harmful prompt (gold); predicted positive = refusal",
            "headline_policy": config.headline_policy(),
            **{name: metadata.number(headline[name]) for name in HEADLINE_COLUMNS[1:]},
            "excluded_unknown_gold_or_label": int(headline["n_excluded_unknown"]),
            "policies": metadata.table(summary[HEADLINE_COLUMNS]),
            "categories": metadata.table(analysis.category_table(headline.to_dict())),
        },
    )
