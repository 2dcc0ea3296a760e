
import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.core.refusal import match_refusal
from deepconf_assets.partitions import experiment_partitions


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    description=(
        "Refusal label per trace from the pattern heuristic (deepconf_assets.core.refusal): "
        "refused = an opening refusal phrase or an explicit refusal anywhere, after removing known "
        "false positives such as \"I'm sorry to hear\". matched_pattern says which rule fired."
    ),
)
def refusal_labels_heuristic(traces: pd.DataFrame) -> MaterializeResult:
    matched = traces["answer_text"].map(match_refusal)
    labels = pd.DataFrame(
        {
            "instance_id": traces["instance_id"],
            "trace_idx": traces["trace_idx"],
            "refused": pd.array(matched.notna().to_numpy(), dtype="boolean"),
            "matched_pattern": matched.astype("object"),
        }
    )
    top = matched.value_counts().rename_axis("pattern").reset_index(name="traces").head(15)
    return MaterializeResult(
        value=labels,
        metadata={
            "dagster/row_count": len(labels),
            "refusal_share": metadata.number(float(labels["refused"].mean())) if len(labels) else metadata.number(None),
            "top_patterns": metadata.table(top),
        },
    )
