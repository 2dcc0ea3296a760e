"""Runs whose process died (SIGKILL, an OOM kill, a lost node) are marked failed and give back their
`gpu` pool slot; a run waiting on the pool stops on SIGTERM, SIGINT and SIGHUP as a working run does.

Every run records its worker process (host, pid and the process's start time, so a reused pid is
not mistaken for it) in run tags when its executor starts. A run is dead when that process no longer
exists on this host. Three things act on that, each within a documented bound:
  * the daemon's run monitoring, through `LocalRunLauncher.check_run_worker_health` (`run_launcher`
    in dagster.yaml), marks it FAILURE within `poll_interval_seconds`, and frees its slots
    `free_slots_after_run_end_seconds` later;
  * without a daemon, every run does it before it waits on a pool and every WATCH_SECONDS while it
    runs (`watched_in_process_executor`), so the next run on the instance is never blocked by a dead one;
  * by hand: `python -m deepconf_assets.run_health` (with DAGSTER_HOME set).
A run whose worker is on another host is never judged from here. On Kubernetes the K8sRunLauncher
checks the run's Job instead (deploy/RUNBOOK.md).
"""

import ctypes
import os
import socket
import threading
import time
from pathlib import Path

from dagster import (DagsterExecutionInterruptedError, DagsterInstance, DagsterRunStatus, DefaultRunLauncher, Executor,
                     Failure, RunsFilter, executor, in_process_executor)
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus  # the launcher health API has no public alias
from dagster._utils.interrupts import check_captured_interrupt  # whether Dagster holds an unread interrupt

from deepconf_assets.partitions import run_partition_problem

HOST_TAG, PID_TAG, START_TAG = "deepconf/worker_host", "deepconf/worker_pid", "deepconf/worker_started"
WATCH_SECONDS = 10.0
INTERRUPT_GRACE_SECONDS = 1.0  # between steps Dagster reads a captured interrupt within milliseconds
_WATCHED = (DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, from /proc), "" where /proc is absent but the
    process exists, None when no such process exists."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def worker_tags() -> dict[str, str]:
    """The tags that identify this process as a run's worker."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), START_TAG: _process_start(pid) or ""}


def worker_alive(tags: dict) -> bool | None:
    """Whether the worker recorded in a run's `tags` still runs; None when it cannot be told from here
    (no worker recorded yet, or one on another host)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return None
    started = _process_start(int(tags[PID_TAG]))
    return started is not None and (started == "" or not tags.get(START_TAG) or started == tags[START_TAG])


def free_slots_of_dead_runs(instance: DagsterInstance, log=None, current_run_id: str | None = None) -> list[str]:
    """Marks runs of this instance whose worker died as failed (canceled, if they were being canceled)
    and frees every pool slot they hold; returns their run ids."""
    storage = instance.event_log_storage
    holders = set(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else set()
    runs = {run.run_id: run for run in instance.get_runs(RunsFilter(statuses=list(_WATCHED)))}
    finished_holders = list(holders - runs.keys())  # ended runs still holding a slot (killed while canceling)
    if finished_holders:
        runs.update((run.run_id, run) for run in instance.get_runs(RunsFilter(run_ids=finished_holders)))
    dead = []
    for run_id, run in runs.items():
        if run_id == current_run_id or worker_alive(run.tags) is not False:
            continue
        message = (f"The process of run {run_id} (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) no longer exists: "
                   "it was killed (SIGKILL, out of memory) or its machine went down. Marked failed; its pool slots "
                   "are freed and a new run resumes from its finished shards.")
        if run.status == DagsterRunStatus.STARTED:
            instance.report_run_failed(run, message)
        elif run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        if run_id in holders:
            storage.free_concurrency_slots_for_run(run_id)
        if log is not None:
            log.warning(message)
        dead.append(run_id)
    return dead


class LocalRunLauncher(DefaultRunLauncher):
    """The default launcher (a run worker process beside the code server) with a health check, so the
    daemon's run monitoring can tell a dead run from a long one."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        if worker_alive(run.tags) is False:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"process {run.tags[PID_TAG]} no longer exists")
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def _raise_in(thread_id: int, error: type[BaseException]) -> None:
    """Raise `error` in another thread of this process at its next Python instruction (CPython's
    PyThreadState_SetAsyncExc: the one way to stop a thread that polls without ever checking)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))


class _WatchedExecutor(Executor):
    """The in-process executor, watched: this run's worker recorded in its tags, dead runs' slots freed
    before and every WATCH_SECONDS while it runs, and an interrupt honoured while it waits on a pool.

    Dagster captures SIGINT (and SIGTERM, and SIGHUP/SIGQUIT through signals.py) during a run and raises
    it only inside a step; a step blocked on a pool polls in Dagster's own loop, where nothing reads it,
    so the run would wait on. An interrupt still unread after INTERRUPT_GRACE_SECONDS is raised in the
    run's thread as Dagster's DagsterExecutionInterruptedError: the run ends failed, as if a step had
    been interrupted."""

    def __init__(self, inner: Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        instance, run_id, log = plan_context.instance, plan_context.run_id, plan_context.log
        problem = run_partition_problem(plan_context.dagster_run.tags)
        if problem:  # a UI or GraphQL launch is not checked by Dagster; its first step would fail with less to go on
            log.error(f"{problem}. Nothing was run.")
            raise Failure(description=f"{problem}. Nothing was run.", allow_retries=False)
        if not os.environ.get("DAGSTER_HOME"):
            log.warning("DAGSTER_HOME is not set: this run uses a throw-away instance, so the `gpu` pool does not "
                        "apply and the run is not recorded. Set DAGSTER_HOME=$PWD/storage (README, Quick start).")
        instance.add_run_tags(run_id, worker_tags())
        free_slots_of_dead_runs(instance, log, run_id)
        done = threading.Event()
        run_thread = threading.get_ident()

        def watch():
            unread_since, next_check = None, time.monotonic() + WATCH_SECONDS
            while not done.wait(0.25):
                if check_captured_interrupt():
                    unread_since = unread_since or time.monotonic()
                    if time.monotonic() - unread_since >= INTERRUPT_GRACE_SECONDS:
                        log.warning("interrupted while waiting on a pool: stopping the run")
                        _raise_in(run_thread, DagsterExecutionInterruptedError)
                        return
                else:
                    unread_since = None
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + WATCH_SECONDS
                    try:
                        free_slots_of_dead_runs(instance, log, run_id)
                    except Exception as error:  # a watcher must never fail the run it watches
                        log.debug(f"dead-run check skipped: {error}")

        threading.Thread(target=watch, name="run-watch", daemon=True).start()
        try:
            yield from self._inner.execute(plan_context, execution_plan)
        finally:
            done.set()


@executor(name="in_process", config_schema=in_process_executor.config_schema)
def watched_in_process_executor(init_context) -> Executor:
    """Dagster's in-process executor (every step in one process, the model loaded once), watched."""
    return _WatchedExecutor(in_process_executor.executor_creation_fn(init_context))


def main() -> None:
    freed = free_slots_of_dead_runs(DagsterInstance.get())
    print(f"{len(freed)} dead run(s) marked and their slots freed" + (f": {', '.join(freed)}" if freed else ""))


if __name__ == "__main__":
    main()
