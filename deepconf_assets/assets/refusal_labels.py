"""`labels_<name>`: one asset per registered refusal labeler (deepconf_assets.labelers), made
by one factory. One row per trace: instance_id, trace_idx, refused (nullable), p_refusal, the
labeler's own columns, and unavailable_reason (null when the labeler ran; every label null and the
reason given when it could not run here, e.g. WildGuard without its weights)."""

import pandas as pd
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetsDefinition,
    MaterializeResult, asset,
)

from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets import metadata
from deepconf_assets.deployment import gpu_step
from deepconf_assets.retries import retry_if_transient
from deepconf_assets.labelers import LABELERS, LabelerContext, LabelerUnavailable, RefusalLabeler
from deepconf_assets.partitions import experiment_partitions

CHECK = "unlabelled_traces"


def label_traces(labeler: RefusalLabeler, context: AssetExecutionContext, prompts: pd.DataFrame,
                 traces: pd.DataFrame) -> tuple[pd.DataFrame, str | None, dict]:
    """The labels of every trace, why the labeler could not run (None when it did), and the labeler's
    own statistics (e.g. WildGuard's answers reused from its cache)."""
    prompt_of = prompts.set_index("instance_id")["prompt"]
    labeler_context = LabelerContext(generator=getattr(context.resources, "generator", None), log=context.log.info)
    try:
        with retry_if_transient(context.log.warning, f"the {labeler.name} labeler"):
            labels, reason = labeler.run(traces["instance_id"].map(prompt_of).tolist(),
                                         traces["answer_text"].tolist(), labeler_context), None
    except LabelerUnavailable as exc:
        context.log.warning(str(exc))
        labels, reason = labeler.empty_labels(len(traces)), str(exc)
    stats = labels.attrs.get("stats")
    table = pd.concat([traces[["instance_id", "trace_idx"]].reset_index(drop=True), labels], axis=1)
    table["unavailable_reason"] = pd.Series([reason] * len(table), dtype=object)
    return table, reason, (stats.as_dict() if hasattr(stats, "as_dict") else {})


def _labels_asset(labeler: RefusalLabeler) -> AssetsDefinition:
    @asset(
        name=labeler.asset_name,
        **ANALYSIS,
        required_resource_keys={"generator"} if labeler.needs_gpu else set(),
        **(gpu_step(labeler.model_key) if labeler.needs_gpu else {}),
        check_specs=[AssetCheckSpec(
            CHECK, asset=labeler.asset_name, partitions_def=experiment_partitions,
            description=f"At most {labeler.max_unlabelled_share:.0%} of traces have no label (a parse error, N/A); "
                        f"fails as a warning when the labeler could not run here.")],
        description=f"Refusal label per trace from the '{labeler.name}' labeler. {labeler.description}",
    )
    def refusal_labels(context: AssetExecutionContext, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame):
        # no return annotation: with check_specs Dagster would read MaterializeResult as "no value"
        table, reason, stats = label_traces(labeler, context, benchmark_prompts, traces)
        unlabelled = int(table["refused"].isna().sum())
        share = unlabelled / len(table) if len(table) else 0.0
        known = table["refused"].dropna()
        check = AssetCheckResult(
            check_name=CHECK, passed=reason is None and share <= labeler.max_unlabelled_share,
            severity=AssetCheckSeverity.WARN,
            metadata={"status": reason or "labelled", "unlabelled": unlabelled,
                      "unlabelled_share": metadata.number(share), "bound": labeler.max_unlabelled_share})
        meta = {"dagster/row_count": len(table), "status": reason or "labelled",
                "refusal_share": metadata.number(float(known.mean()) if len(known) else None),
                "unlabelled": unlabelled, **stats}
        if "matched_pattern" in table:
            top = table["matched_pattern"].value_counts().rename_axis("pattern").reset_index(name="traces").head(15)
            meta["top_patterns"] = metadata.table(top)
        return MaterializeResult(value=table, metadata=meta, check_results=[check])

    return refusal_labels


refusal_label_assets = [_labels_asset(labeler) for labeler in LABELERS.values()]
