"""Weekly runs across model partitions, one schedule per benchmark, off until turned on.

A tick of `weekly_backfill_<benchmark>` returns one `RunRequest` of `experiment_job` per selected
`<benchmark>|<model>` partition; the `gpu` pool still lets one generation step run at a time, and
the shard store makes a re-run of an unchanged partition cheap (no generation). Each request's
run_key is derived from the tick time, so a re-evaluated tick launches nothing twice. When those
runs have ended, `model_comparison` and its figure for the benchmark follow through their
automation condition (deepconf_assets/automation.py), not through the schedule.

Models whose weights are not on this machine are named in the tick's log and in every run's
`deepconf/models_without_weights` tag; a tick is skipped only when no model is left.

Environment (the first two read when the code location loads, the others at every tick):
  DEEPCONF_BACKFILL_CRON        cron string, default "0 3 * * 1" (Mondays 03:00)
  DEEPCONF_BACKFILL_TIMEZONE    timezone of the cron, default UTC
  DEEPCONF_BACKFILL_MODELS      comma-separated model keys; default: every model whose weights are here
  DEEPCONF_BACKFILL_RUN_CONFIG  JSON run config for every run a tick launches, e.g.
                                '{"ops": {"traces": {"config": {"max_prompts": 20}}}}'; default: the assets' defaults
"""

import json
import os
from datetime import datetime, timezone

from dagster import (
    AssetSelection, DefaultScheduleStatus, PartitionedConfig, RunRequest, ScheduleEvaluationContext, SkipReason,
    define_asset_job,
    schedule,
)

from deepconf_assets.core.benchmarks import BENCHMARKS
from deepconf_assets import deployment
from deepconf_assets.partitions import benchmark_and_model, benchmark_partitions, experiment_partitions
from resources.model_registry import MODEL_KEYS, weights_available

BACKFILL_CRON = os.environ.get("DEEPCONF_BACKFILL_CRON", "0 3 * * 1")
BACKFILL_TIMEZONE = os.environ.get("DEEPCONF_BACKFILL_TIMEZONE", "UTC")

# Named jobs, so the UI's Jobs page and `dagster job backfill` can target partitions directly.
experiment_job = define_asset_job(
    "experiment_job", AssetSelection.groups("experiment"), partitions_def=experiment_partitions,
    # on Kubernetes, the generation step requests the GPUs the partition's model needs (model registry)
    config=PartitionedConfig(
        partitions_def=experiment_partitions,
        run_config_for_partition_key_fn=lambda key: deployment.partition_run_config(benchmark_and_model(key)[1])),
    description="Everything for one benchmark|model partition: prompts, traces, labels, analyses, figures, report.",
)
comparisons_job = define_asset_job(
    "comparisons_job", AssetSelection.groups("comparisons"), partitions_def=benchmark_partitions,
    description="model_comparison, its figure, the paired tests (model_pairs) and comparison_report for one benchmark, over the model partitions materialized so far.",
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


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """json keeps the last of two equal keys; which one was meant is ambiguous, so it is an error."""
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"DEEPCONF_BACKFILL_RUN_CONFIG repeats the key(s) {repeated}; which value is meant is ambiguous")
    return dict(pairs)


def backfill_run_config() -> dict:
    raw = os.environ.get("DEEPCONF_BACKFILL_RUN_CONFIG", "").strip()
    if not raw:
        return {}
    config = json.loads(raw, object_pairs_hook=_no_repeated_keys)
    if not isinstance(config, dict):
        raise ValueError(f"DEEPCONF_BACKFILL_RUN_CONFIG must be a JSON object, got {raw!r}")
    return config


def tick_run_key(benchmark: str, model: str, scheduled: datetime) -> str:
    """The same for every evaluation of one tick, so the scheduler launches each partition once per tick."""
    return f"{benchmark}|{model}@{scheduled.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"


def _weekly_backfill(benchmark: str):
    name = f"weekly_backfill_{benchmark}"

    @schedule(
        name=name,
        cron_schedule=BACKFILL_CRON,
        execution_timezone=BACKFILL_TIMEZONE,
        job=experiment_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"One experiment_job run per available model partition of '{benchmark}'; model_comparison follows "
            f"by its automation condition. Off by default; models from DEEPCONF_BACKFILL_MODELS or all with "
            f"weights here."
        ),
    )
    def weekly_backfill(context: ScheduleEvaluationContext):
        scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
        models, missing = backfill_models()
        if missing:
            context.log.warning(f"{name}: no weights on this machine for {', '.join(missing)}; "
                                f"those model partitions of '{benchmark}' are left out of this tick")
        if not models:
            return SkipReason(f"no model partition of '{benchmark}' has weights on this machine "
                              f"(left out: {', '.join(missing)})")
        run_config = backfill_run_config()
        tags = {"deepconf/schedule": name, "deepconf/benchmark": benchmark, "deepconf/models": ",".join(models)}
        if missing:
            tags["deepconf/models_without_weights"] = ",".join(missing)
        requests = [
            RunRequest(run_key=tick_run_key(benchmark, model, scheduled), partition_key=f"{benchmark}|{model}",
                       run_config=run_config, tags={**tags, "deepconf/model": model})
            for model in models
        ]
        context.log.info(f"{name}: launching {len(requests)} run(s): {', '.join(r.run_key for r in requests)}")
        return requests

    return weekly_backfill


JOBS = [experiment_job, comparisons_job]
SCHEDULES = [_weekly_backfill(b) for b in BENCHMARKS]
