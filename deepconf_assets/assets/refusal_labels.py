
import pandas as pd
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config, MaterializeResult, asset,
)
from pydantic import Field

from deepconf_assets import metadata
from deepconf_assets.core.refusal import match_refusal
from deepconf_assets.deployment import gpu_step
from deepconf_assets.partitions import experiment_partitions
from resources.wildguard import LABEL_DTYPES, WildGuardResource


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


class WildGuardConfig(Config):
    max_parse_error_rate: float = Field(0.05, ge=0, le=1,
                                        description="The parse-error check fails above this share of traces.")


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    **gpu_step(),
    check_specs=[AssetCheckSpec("wildguard_parse_errors", asset="refusal_labels_wildguard",
                                description="Share of WildGuard answers that did not parse is within the bound "
                                            "(fails, as a warning, when WildGuard is unavailable).")],
    description=(
        "Refusal and harm labels per trace from the WildGuard 7B classifier (official prompt and answer "
        "format, greedy), with p_refusal and p_harmful_response read from its yes/no log-probs. An answer "
        "that does not parse is parse_error with every label null. Without WildGuard weights (as on the "
        "embedded default) the table is empty and the metadata says so; downstream assets then report "
        "'WildGuard unavailable'."
    ),
)
def refusal_labels_wildguard(
    context: AssetExecutionContext, config: WildGuardConfig, benchmark_prompts: pd.DataFrame,
    traces: pd.DataFrame, wildguard: WildGuardResource,
):  # no return annotation: with check_specs Dagster would read MaterializeResult as "no value"
    folder, reason = wildguard.locate()
    if folder is None:
        context.log.warning(f"WildGuard unavailable: {reason}")
        empty = pd.DataFrame({"instance_id": pd.Series(dtype=str), "trace_idx": pd.Series(dtype="int64"),
                              **{c: pd.Series(dtype=t) for c, t in LABEL_DTYPES.items()}})
        return MaterializeResult(
            value=empty,
            metadata={"status": f"WildGuard unavailable: {reason}", "dagster/row_count": 0},
            check_results=[AssetCheckResult(check_name="wildguard_parse_errors", passed=False,
                                            severity=AssetCheckSeverity.WARN,
                                            metadata={"status": "WildGuard unavailable: nothing was classified"})],
        )
    prompt_of = benchmark_prompts.set_index("instance_id")["prompt"]
    labels = wildguard.classify(folder, traces["instance_id"].map(prompt_of).tolist(),
                                traces["answer_text"].tolist(), log=context.log.info)
    table = pd.concat([traces[["instance_id", "trace_idx"]].reset_index(drop=True), labels], axis=1)
    rate = float(table["parse_error"].mean()) if len(table) else 0.0
    return MaterializeResult(
        value=table,
        metadata={"status": f"classified with {folder}", "dagster/row_count": len(table),
                  "parse_error_rate": metadata.number(rate),
                  "refusal_share": metadata.number(float(table["refused"].mean())) if table["refused"].notna().any()
                  else metadata.number(None)},
        check_results=[AssetCheckResult(
            check_name="wildguard_parse_errors", passed=rate <= config.max_parse_error_rate,
            metadata={"parse_error_rate": rate, "bound": config.max_parse_error_rate,
                      "parse_errors": int(table["parse_error"].sum())})],
    )
