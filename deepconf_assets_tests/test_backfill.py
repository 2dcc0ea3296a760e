"""The weekly schedule across model partitions.

The slow test runs the real daemon (`dagster dev`): on the Postgres-backed instance
(deploy/postgres/dagster.yaml) when DEEPCONF_TEST_PG_URL names a server (.ci/run starts one),
otherwise on the default SQLite instance. One tick launches one run per model partition; the `gpu`
pool keeps their generation steps from overlapping; model_comparison follows by its automation
condition, evaluated by a sensor that runs without anyone turning it on. The fast test evaluates the
schedule function directly."""

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
from dagster import (
    AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus, RunRequest, SkipReason, build_schedule_context,
)

from deepconf_assets.core.benchmarks import BENCHMARKS
from deepconf_assets.labelers import LABELERS
from deepconf_assets_tests.services import REPO, DagsterDev, service_environment, wait_for

MODELS = ["demo-small", "demo"]
TINY = {"ops": {"traces": {"config": {"max_prompts": 20, "traces_per_prompt": 3}}}}
GPU_STEPS = {"traces", *(labeler.asset_name for labeler in LABELERS.values() if labeler.needs_gpu)}  # pool "gpu"
LOCATION = {"repositoryLocationName": "deepconf_assets", "repositoryName": "__repository__"}
SCHEDULE = "weekly_backfill_xstest"
SENSOR = "comparisons_automation_sensor"
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
  }
}"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) { __typename ... on ScheduleStateResult { scheduleState { status } } }
}"""
TICKS = """
query Ticks($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { ticks(limit: 10) { status runIds runKeys skipReason timestamp } } }
  }
}"""
SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { sensorState { status } } }
}"""


def _schedule(name: str):
    from deepconf_assets.schedules import SCHEDULES

    return next(s for s in SCHEDULES if s.name == name)


def test_tick_requests_one_run_per_model_partition(monkeypatch):
    """A tick's RunRequests: partition keys, run keys stable within a tick, run config, and the models
    without weights named in the log and the tags. No daemon, no model."""
    import logging

    from deepconf_assets import schedules
    from deepconf_assets.partitions import experiment_partitions

    monkeypatch.delenv("DEEPCONF_BACKFILL_MODELS", raising=False)  # every model of the registry
    monkeypatch.setenv("DEEPCONF_BACKFILL_RUN_CONFIG", json.dumps(TINY))
    monkeypatch.setattr(schedules, "weights_available", lambda key: key in MODELS)
    missing = [k for k in schedules.MODEL_KEYS if k not in MODELS]
    assert missing, "the registry should hold models beyond the built-in ones"
    tick = datetime(2025, 1, 6, 3, 0, tzinfo=timezone.utc)

    def evaluate(when: datetime):
        with build_schedule_context(scheduled_execution_time=when) as context:
            records = []
            handler = logging.Handler()
            handler.emit = records.append
            context.log.addHandler(handler)
            return _schedule(SCHEDULE)(context), [r.getMessage() for r in records]

    requests, log = evaluate(tick)
    assert all(isinstance(r, RunRequest) for r in requests)
    in_registry_order = [m for m in schedules.MODEL_KEYS if m in MODELS]
    assert [r.partition_key for r in requests] == [f"xstest|{m}" for m in in_registry_order]
    assert all(r.partition_key in experiment_partitions.get_partition_keys() for r in requests)
    assert [r.run_key for r in requests] == [f"xstest|{m}@2025-01-06T03:00Z" for m in in_registry_order]
    for request, model in zip(requests, in_registry_order):
        assert request.run_config == TINY
        assert request.tags["deepconf/schedule"] == SCHEDULE and request.tags["deepconf/benchmark"] == "xstest"
        assert request.tags["deepconf/model"] == model
        assert request.tags["deepconf/models_without_weights"] == ",".join(missing)
    assert any(all(m in line for m in missing) and "no weights" in line for line in log), log

    # the same tick evaluated again asks for the same run keys (the scheduler launches them once);
    # the next tick for new ones
    assert [r.run_key for r in evaluate(tick)[0]] == [r.run_key for r in requests]
    next_keys = {r.run_key for r in evaluate(datetime(2025, 1, 13, 3, 0, tzinfo=timezone.utc))[0]}
    assert not next_keys & {r.run_key for r in requests}

    # every model has weights: no tag, no warning
    monkeypatch.setenv("DEEPCONF_BACKFILL_MODELS", ",".join(MODELS))
    requests, log = evaluate(tick)
    assert len(requests) == 2 and not any("deepconf/models_without_weights" in r.tags for r in requests)
    assert not any("no weights" in line for line in log)

    # a skip only when no model is left, naming those left out
    monkeypatch.setattr(schedules, "weights_available", lambda key: False)
    skip, _ = evaluate(tick)
    assert isinstance(skip, SkipReason) and "demo-small" in skip.skip_message and "demo" in skip.skip_message


@pytest.fixture
def instance_settings(monkeypatch):
    """(instance yaml, extra environment, psycopg2 connection or None) for a fresh instance."""
    url = os.environ.get("DEEPCONF_TEST_PG_URL")
    if not url:
        yield (REPO / "storage" / "dagster.yaml").read_text(), {}, None
        return
    import psycopg2

    server = urlparse(url)
    database = f"deepconf_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    env = {"DAGSTER_PG_HOST": server.hostname, "DAGSTER_PG_PORT": str(server.port or 5432),
           "DAGSTER_PG_USERNAME": server.username, "DAGSTER_PG_PASSWORD": server.password or "",
           "DAGSTER_PG_DB": database}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # this process reads the same instance
    connection = psycopg2.connect(url.rsplit("/", 1)[0] + f"/{database}")
    yield (REPO / "deploy" / "postgres" / "dagster.yaml").read_text(), env, connection
    connection.close()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.close()


def gpu_step_intervals(instance: DagsterInstance, run_ids: list[str]) -> list[tuple[float, float, str]]:
    intervals = []
    for run_id in run_ids:
        starts = {}
        for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}):
            step = record.step_key
            if step in GPU_STEPS and record.dagster_event_type == DagsterEventType.STEP_START:
                starts[step] = record.timestamp
            elif step in GPU_STEPS:
                intervals.append((starts[step], record.timestamp, f"{run_id[:8]}:{step}"))
    return sorted(intervals)


def finished(instance: DagsterInstance, run_ids: list[str]):
    runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
    return all(r is not None and r.is_finished for r in runs) and runs


@pytest.mark.slow
def test_weekly_schedule_tick_runs_model_partitions_then_comparison(
        demo_model_dir, tmp_path, instance_settings, monkeypatch):
    from resources.model_registry import resolve_model_dir

    instance_yaml, pg_env, pg = instance_settings
    models = {"demo": demo_model_dir, "demo-small": resolve_model_dir("demo-small")}
    env = service_environment(tmp_path, models, instance_yaml, DEEPCONF_BACKFILL_CRON="* * * * *",
                              DEEPCONF_BACKFILL_MODELS=",".join(MODELS),
                              DEEPCONF_BACKFILL_RUN_CONFIG=json.dumps(TINY), **pg_env)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # this process reads the same instance
    with DagsterDev(env, f"dagster-dev-backfill-{'postgres' if pg else 'sqlite'}") as dev:
        # the automation sensor runs in a fresh deployment without anyone turning it on
        sensor = dev.graphql(SENSOR_STATE, {"selector": {**LOCATION, "sensorName": SENSOR}})["sensorOrError"]
        assert sensor["__typename"] == "Sensor" and sensor["sensorState"]["status"] == "RUNNING", sensor

        selector = {**LOCATION, "scheduleName": SCHEDULE}
        started = dev.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
        assert started["__typename"] == "ScheduleStateResult" and started["scheduleState"]["status"] == "RUNNING"

        def ticks():
            return dev.graphql(TICKS, {"selector": selector})["scheduleOrError"]["scheduleState"]["ticks"]

        def first_tick():
            done = [t for t in ticks() if t["status"] != "STARTED"]
            return min(done, key=lambda t: t["timestamp"]) if done else None

        tick = wait_for(first_tick, 150, "the schedule's first tick", interval=1)
        # the cron fires every minute here: turn the schedule off after its first tick. A loaded machine may
        # still let a second minute's tick start before the stop lands; its runs are counted, not failed.
        stopped = dev.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})["stopRunningSchedule"]
        assert stopped["scheduleState"]["status"] == "STOPPED"
        assert tick["status"] == "SUCCESS", tick  # launched, not skipped
        def settled_ticks():
            every = ticks()
            return all(t["status"] != "STARTED" for t in every) and every

        all_ticks = wait_for(settled_ticks, 60, "the ticks under way when the schedule stopped")
        assert len(all_ticks) <= 2 and all(t["status"] == "SUCCESS" for t in all_ticks), all_ticks
        for each in all_ticks:  # one run per model partition, its run key from the tick's time
            scheduled = datetime.fromtimestamp(each["timestamp"], timezone.utc).replace(second=0, microsecond=0)
            assert sorted(each["runKeys"]) == sorted(f"xstest|{m}@{scheduled:%Y-%m-%dT%H:%MZ}" for m in MODELS), each
            assert len(each["runIds"]) == len(MODELS)

        instance = DagsterInstance.get()
        tick_run_ids = [run_id for each in all_ticks for run_id in each["runIds"]]
        tick_runs = wait_for(lambda: finished(instance, tick_run_ids), 420, "the ticks' runs", interval=2)
        runs = [r for r in tick_runs if r.run_id in tick["runIds"]]
        assert all(r.status == DagsterRunStatus.SUCCESS for r in tick_runs), dev.log_path.read_text()[-4000:]
        assert {r.tags["dagster/partition"] for r in runs} == {f"xstest|{m}" for m in MODELS}
        assert {r.tags["dagster/run_key"] for r in runs} == set(tick["runKeys"])
        assert all(r.tags["deepconf/schedule"] == SCHEDULE for r in runs)

        # model_comparison follows by its automation condition. The runs of one tick may overlap (only
        # their GPU steps queue on the pool), so the sensor may compare a model whose run is still making
        # figures, or the first model alone; what must hold is a comparison made after every model
        # partition's predictions.
        predictions_done = [
            instance.fetch_materializations(AssetRecordsFilter(
                asset_key=AssetKey("predictions"), asset_partitions=[f"xstest|{m}"]), limit=1).records[0].timestamp
            for m in MODELS]

        def comparison_after_every_model():
            event = instance.get_latest_materialization_event(AssetKey("fig_model_comparison"))
            created = instance.get_run_record_by_id(event.run_id).create_timestamp.timestamp() if event else 0
            return event if created >= max(predictions_done) else None

        comparison_event = wait_for(comparison_after_every_model, 240,
                                    "model_comparison from the automation sensor", interval=2)
        # its run goes on to the comparison report: let it end before the deployment stops
        wait_for(lambda: finished(instance, [comparison_event.run_id]), 120, "the comparison run", interval=1)

    comparison_run = instance.get_run_by_id(comparison_event.run_id)
    assert comparison_run.status == DagsterRunStatus.SUCCESS
    assert comparison_run.tags["dagster/partition"] == "xstest"
    assert comparison_run.tags["deepconf/trigger"] == SENSOR
    assert comparison_run.job_name != "experiment_job" and "dagster/schedule_name" not in comparison_run.tags
    latest = instance.get_latest_materialization_event(AssetKey("model_comparison"))
    assert latest.run_id == comparison_event.run_id
    comparison = pd.read_parquet(Path(env["DEEPCONF_STORAGE_DIR"]) / "assets" / "model_comparison" / "xstest.parquet")
    assert set(comparison["model"]) == set(MODELS)

    intervals = gpu_step_intervals(instance, tick_run_ids)
    assert len(intervals) == len(tick_run_ids) * len(GPU_STEPS), intervals
    for (_, end, first), (start, _, second) in zip(intervals, intervals[1:]):
        assert start >= end, f"{second} started before {first} ended: the gpu pool was not respected"

    all_runs = instance.get_runs()
    comparison_runs = [r for r in all_runs if r.tags.get("deepconf/trigger") == SENSOR]
    # a fresh instance's raw files are observed once each (raw_benchmark_files_sensor), quickly and successfully
    observations = [r for r in all_runs if r.job_name == "observe_raw_benchmarks"]
    assert len(observations) <= len(BENCHMARKS) and all(r.status == DagsterRunStatus.SUCCESS for r in observations)
    # the ticks' model runs, and one or two comparison runs per tick (two when its runs overlapped), nothing else.
    # A tick the daemon began as the schedule was being stopped may have launched runs the deployment's shutdown
    # then interrupted: they are the schedule's, with its run keys, and counted as such.
    scheduled = [r for r in all_runs if r.tags.get("dagster/schedule_name") == SCHEDULE]
    assert set(tick_run_ids) <= {r.run_id for r in scheduled}
    assert all(r.tags["dagster/run_key"].split("@")[0] in {f"xstest|{m}" for m in MODELS} for r in scheduled)
    assert len(all_runs) == len(scheduled) + len(comparison_runs) + len(observations), \
        [(r.job_name, r.tags.get("dagster/partition")) for r in all_runs]
    assert 1 <= len(comparison_runs) <= len(scheduled)
    if pg is not None:  # the runs live in Postgres, not in files under DAGSTER_HOME
        with pg.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == len(all_runs)
        assert not (Path(env["DAGSTER_HOME"]) / "history" / "runs.db").exists()
