"""Weekly backfills across model partitions, one schedule per benchmark, off until turned on.

A tick launches one Dagster *backfill* (shown under Overview > Backfills) holding the `experiment`
group for `<benchmark>|<model>` of every selected model and the `comparisons` group for the
benchmark, so the backfill daemon orders model_comparison after every model and the `gpu` pool
still allows one generation step at a time. Dagster schedules cannot return a backfill request
(only sensors can), so the tick submits the backfill to the instance itself; the backfill id is
derived from the tick time, which makes a re-evaluated tick a no-op.

Environment (read when the code location loads):
  DEEPCONF_BACKFILL_CRON    cron string, default "0 3 * * 1" (Mondays 03:00, DEEPCONF_BACKFILL_TIMEZONE or UTC)
  DEEPCONF_BACKFILL_MODELS  comma-separated model keys; default: every model whose weights are here
"""

import os

from dagster import (
    AssetSelection, DefaultScheduleStatus, ScheduleEvaluationContext, SkipReason, define_asset_job, schedule,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset  # noqa: PLC2701
from dagster._core.definitions.events import AssetKeyPartitionKey  # noqa: PLC2701
from dagster._core.execution.backfill import PartitionBackfill  # noqa: PLC2701

from deepconf_assets.core.benchmarks import BENCHMARKS
from deepconf_assets.partitions import benchmark_partitions, experiment_partitions
from resources.model_registry import MODEL_KEYS, weights_available

BACKFILL_CRON = os.environ.get("DEEPCONF_BACKFILL_CRON", "0 3 * * 1")
BACKFILL_TIMEZONE = os.environ.get("DEEPCONF_BACKFILL_TIMEZONE", "UTC")

# Named jobs, so the UI's Jobs page and `dagster job backfill` can target partitions directly.
experiment_job = define_asset_job(
    "experiment_job", AssetSelection.groups("experiment"), partitions_def=experiment_partitions,
    description="Everything for one benchmark|model partition: prompts, traces, labels, analyses, figures, report.",
)
comparisons_job = define_asset_job(
    "comparisons_job", AssetSelection.groups("comparisons"), partitions_def=benchmark_partitions,
    description="model_comparison and its figure for one benchmark, over the model partitions materialized so far.",
)


def backfill_models() -> tuple[list[str], list[str]]:
    """(models to backfill, models left out because their weights are not on this machine)."""
    requested = os.environ.get("DEEPCONF_BACKFILL_MODELS", "")
    keys = [k.strip() for k in requested.split(",") if k.strip()] or list(MODEL_KEYS)
    unknown = sorted(set(keys) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"DEEPCONF_BACKFILL_MODELS names unknown models {unknown}; expected some of {MODEL_KEYS}")
    available = [k for k in keys if weights_available(k)]
    return available, [k for k in keys if k not in available]


def backfill_subset(asset_graph, benchmark: str, models: list[str]) -> AssetGraphSubset:
    experiment = AssetSelection.groups("experiment").resolve(asset_graph)
    comparisons = AssetSelection.groups("comparisons").resolve(asset_graph)
    targets = {AssetKeyPartitionKey(key, f"{benchmark}|{model}") for key in experiment for model in models}
    targets |= {AssetKeyPartitionKey(key, benchmark) for key in comparisons}
    return AssetGraphSubset.from_asset_partition_set(targets, asset_graph)


def _weekly_backfill(benchmark: str):
    @schedule(
        name=f"weekly_backfill_{benchmark}",
        cron_schedule=BACKFILL_CRON,
        execution_timezone=BACKFILL_TIMEZONE,
        job=experiment_job,  # a schedule needs a target; the backfill it submits also covers comparisons
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Backfills the experiment group for every available model partition of '{benchmark}', then "
            f"model_comparison. Off by default; models from DEEPCONF_BACKFILL_MODELS or all with weights here."
        ),
    )
    def weekly_backfill(context: ScheduleEvaluationContext):
        scheduled = context.scheduled_execution_time
        backfill_id = f"weekly-{benchmark}-{scheduled:%Y%m%d-%H%M}"
        if context.instance.get_backfill(backfill_id) is not None:
            return SkipReason(f"backfill {backfill_id} was already launched for this tick")
        models, missing = backfill_models()
        if not models:
            return SkipReason(f"no model partition of '{benchmark}' has weights on this machine (missing: {missing})")
        backfill = PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=scheduled.timestamp(),
            tags={"deepconf/schedule": f"weekly_backfill_{benchmark}", "deepconf/benchmark": benchmark,
                  "deepconf/models": ",".join(models), "deepconf/models_without_weights": ",".join(missing)},
            dynamic_partitions_store=context.instance,
            asset_graph_subset=backfill_subset(context.repository_def.asset_graph, benchmark, models),
            title=f"weekly {benchmark}: {', '.join(models)}",
            description=f"Model partitions left out (no weights on this machine): {missing or 'none'}",
            run_config=None,
        )
        context.instance.add_backfill(backfill)
        context.log.info(f"launched backfill {backfill_id} for {benchmark} x {models}")
        return SkipReason(f"launched backfill {backfill_id}: {benchmark} x {', '.join(models)}"
                          + (f"; no weights for {', '.join(missing)}" if missing else ""))

    return weekly_backfill


JOBS = [experiment_job, comparisons_job]
SCHEDULES = [_weekly_backfill(b) for b in BENCHMARKS]
