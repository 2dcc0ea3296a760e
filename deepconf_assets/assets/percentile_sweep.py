
import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import analysis
from deepconf_assets.partitions import experiment_partitions


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    description=(
        "The adaptive stopping policy replayed at threshold percentiles 10..90 (x majority and "
        "confidence-weighted votes) from the stored traces: safety metrics, traces and tokens used, "
        "token savings against generating every trace, and confident/uncertain category counts "
        "and accuracies at the same percentile. No generation is repeated."
    ),
)
def percentile_sweep(
    config: AnalysisConfig,
    benchmark_prompts: pd.DataFrame,
    traces: pd.DataFrame,
    refusal_labels_heuristic: pd.DataFrame,
) -> MaterializeResult:
    labelled = analysis.attach_labels(traces, refusal_labels_heuristic)
    sweep = analysis.percentile_sweep(labelled, benchmark_prompts, "heuristic", config.settings())
    shown = sweep[sweep["vote_rule"] == config.vote_rule][
        ["percentile", "accuracy", "sensitivity", "specificity", "f1", "avg_traces", "token_savings_pct",
         "n_uncertain_compliance", "accuracy_uncertain_compliance", "n_confident_compliance",
         "accuracy_confident_compliance"]
    ]
    return MaterializeResult(
        value=sweep,
        metadata={"dagster/row_count": len(sweep), "sweep": metadata.table(shown)},
    )
