"""Runs whose process died are marked failed and give back their `gpu` pool slot, with and without the
daemon; a run waiting on the pool stops on SIGTERM, SIGINT and SIGHUP (deepconf_assets/run_health.py)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from deepconf_assets import run_health
from deepconf_assets_tests.cli_runs import REPO, environment, latest_traces_metadata, shard_rows


def _missing_pid() -> int:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_a_worker_is_alive_only_while_its_own_process_runs():
    mine = run_health.worker_tags()
    assert mine[run_health.HOST_TAG] == socket.gethostname() and mine[run_health.PID_TAG] == str(os.getpid())
    assert run_health.worker_alive(mine) is True
    assert run_health.worker_alive({**mine, run_health.PID_TAG: str(_missing_pid())}) is False
    # the pid was reused by another process: not the run's worker
    assert run_health.worker_alive({**mine, run_health.START_TAG: str(int(mine[run_health.START_TAG]) + 1)}) is False
    # nothing recorded yet, or a worker on another machine: not judged from here
    assert run_health.worker_alive({}) is None
    assert run_health.worker_alive({**mine, run_health.HOST_TAG: "another-host"}) is None


def _instance_home(tmp_path: Path, demo_model_dir: Path) -> dict:
    """A local instance configured as the project ships it (storage/dagster.yaml: the `gpu` pool of 1,
    run monitoring, the launcher's health check)."""
    env = environment(tmp_path, demo_model_dir)
    shutil.copy(REPO / "storage" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    return env


def _instance(env) -> DagsterInstance:
    return DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))


def _materialize(env, partition="xstest|demo", traces_per_prompt=4, **popen):
    config = {"ops": {"traces": {"config": {"max_prompts": 60, "traces_per_prompt": traces_per_prompt}}},
              "resources": {"generator": {"config": {"batch_sequences": 16}}}}
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "deepconf_assets.definitions",
               "--select", "benchmark_prompts,traces", "--partition", partition, "--config-json", json.dumps(config)]

    def default_signals():  # as from a terminal, whatever started pytest
        for hangup in (signal.SIGHUP, signal.SIGQUIT):
            signal.signal(hangup, signal.SIG_DFL)

    return subprocess.Popen(command, cwd=REPO, env=env, text=True, preexec_fn=default_signals, **popen)


def _wait(condition, seconds: float, what: str, process=None):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process is None or process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.2)


def _gpu_slot_holders(instance) -> set[str]:
    return set(instance.event_log_storage.get_concurrency_run_ids())


@pytest.mark.parametrize("daemon", [False, True], ids=["without daemon", "with daemon"])
@pytest.mark.slow
def test_a_killed_run_is_marked_failed_its_slot_freed_and_the_next_run_resumes(demo_model_dir, tmp_path, daemon):
    env = _instance_home(tmp_path, demo_model_dir)
    killed = _materialize(env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(lambda: shard_rows(env) > 0, 300, "finished shard", killed)
    killed.send_signal(signal.SIGKILL)  # what an OOM kill or a lost node does: no handler runs
    killed.wait(timeout=30)
    instance = _instance(env)
    run = instance.get_runs(limit=1)[0]
    assert run.status == DagsterRunStatus.STARTED and run.run_id in _gpu_slot_holders(instance)  # what it believed
    kept = shard_rows(env)

    if daemon:
        watcher = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            # RUNBOOK: FAILURE within poll_interval_seconds (10), the slot freed 5 s later; the daemon's own start
            # (loading the code location) comes on top
            _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
                  and not _gpu_slot_holders(instance), 90, "failed run with its slot freed")
            seconds = time.monotonic() - started
        finally:
            watcher.terminate()
            watcher.wait(timeout=60)
        print(f"daemon start -> run FAILURE and slot freed: {seconds:.1f} s")
        assert seconds < 90
    resumed = _materialize(env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    dead = instance.get_run_by_id(run.run_id)
    assert dead.status == DagsterRunStatus.FAILURE
    failure = next(e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_run_failure)
    assert "no longer exists" in failure.message
    if not daemon:
        said = [line for line in output.splitlines() if "no longer exists" in line]
        assert said and "WARNING" in said[0] and run.run_id in said[0], output[-5000:]  # the next run did it, and said so
    assert latest_traces_metadata(env)["traces_reused_from_shards"] >= kept
    assert not _gpu_slot_holders(instance)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.slow
def test_a_run_waiting_on_the_pool_stops_on_a_signal_within_seconds(demo_model_dir, tmp_path, sig):
    env = _instance_home(tmp_path, demo_model_dir)
    instance = _instance(env)
    instance.event_log_storage.set_concurrency_slots("gpu", 0)  # the pool is full: `traces` waits for a slot
    waiting = _materialize(env, partition="xstest|demo-small", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait(lambda: any("blocked by limit for pool gpu" in (e.message or "") for run in instance.get_runs(limit=1)
                      for e in instance.all_logs(run.run_id)), 120, "pool wait", waiting)
    sent = time.monotonic()
    waiting.send_signal(sig)
    output, _ = waiting.communicate(timeout=60)
    seconds = time.monotonic() - sent
    assert waiting.returncode != 0 and seconds < 15, (seconds, output[-3000:])
    run = instance.get_runs(limit=1)[0]
    assert run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED), run.status
    assert run.run_id not in _gpu_slot_holders(instance)  # nothing left claimed or pending


@pytest.mark.slow
def test_a_run_without_dagster_home_says_its_instance_is_thrown_away(demo_model_dir, tmp_path):
    env = {k: v for k, v in environment(tmp_path, demo_model_dir).items() if k != "DAGSTER_HOME"}
    done = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "deepconf_assets.definitions",
                           "--select", "benchmark_prompts", "--partition", "xstest|demo-small"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DAGSTER_HOME is not set: this run uses a throw-away instance, so the `gpu` pool does not apply" in done.stderr
