"""A schedule tick launches a backfill across model partitions, run by the real daemon: on the
Postgres-backed instance (deploy/postgres/dagster.yaml) when DEEPCONF_TEST_PG_URL names a server
(.ci/run starts one), otherwise on the default SQLite instance. The `gpu` pool keeps the two
generation steps from overlapping."""

import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.instance.ref import InstanceRef

from deepconf_assets_tests.services import REPO, DagsterDev, service_environment, wait_for

pytestmark = pytest.mark.slow

MODELS = ["demo-small", "demo"]
GPU_STEPS = {"traces", "refusal_labels_wildguard"}  # the assets in pool "gpu"
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


def test_weekly_schedule_tick_backfills_model_partitions(demo_model_dir, tmp_path, instance_settings):
    from resources.model_registry import resolve_model_dir

    instance_yaml, pg_env, pg = instance_settings
    models = {"demo": demo_model_dir, "demo-small": resolve_model_dir("demo-small")}
    env = service_environment(tmp_path, models, instance_yaml, DEEPCONF_BACKFILL_CRON="* * * * *",
                              DEEPCONF_BACKFILL_MODELS=",".join(MODELS), **pg_env)
    with DagsterDev(env, f"dagster-dev-backfill-{'postgres' if pg else 'sqlite'}") as dev:
        selector = {"repositoryLocationName": "deepconf_assets", "repositoryName": "__repository__",
                    "scheduleName": "weekly_backfill_xstest"}
        started = dev.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
        assert started["__typename"] == "ScheduleStateResult" and started["scheduleState"]["status"] == "RUNNING"

        instance = DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
        backfill = wait_for(lambda: next(iter(instance.get_backfills()), None), 150, "the schedule's tick")
        assert backfill.backfill_id.startswith("weekly-xstest-")
        assert backfill.tags["deepconf/models"] == "demo-small,demo"
        # the cron fires every minute here: turn the schedule off so this stays the only backfill
        stopped = dev.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})["stopRunningSchedule"]
        assert stopped["scheduleState"]["status"] == "STOPPED"
        done = wait_for(lambda: (b := instance.get_backfill(backfill.backfill_id)).status != BulkActionStatus.REQUESTED
                        and b, 900, "the backfill", interval=5)
        assert done.status == BulkActionStatus.COMPLETED_SUCCESS, dev.log_path.read_text()[-4000:]

    assert len(instance.get_backfills()) == 1
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert {r.tags["dagster/partition"] for r in runs} == {"xstest|demo-small", "xstest|demo", "xstest"}
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)

    intervals = gpu_step_intervals(instance, [r.run_id for r in runs])
    assert len(intervals) == 2 * len(GPU_STEPS), intervals
    for (_, end, first), (start, _, second) in zip(intervals, intervals[1:]):
        assert start >= end, f"{second} started before {first} ended: the gpu pool was not respected"

    comparison = pd.read_parquet(Path(env["DEEPCONF_STORAGE_DIR"]) / "assets" / "model_comparison" / "xstest.parquet")
    assert set(comparison["model"]) == set(MODELS)
    if pg is not None:  # the runs live in Postgres, not in files under DAGSTER_HOME
        with pg.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == len(runs) == 3
        assert not (Path(env["DAGSTER_HOME"]) / "history" / "runs.db").exists()
