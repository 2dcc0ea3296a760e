"""A `dagster asset materialize` killed mid-generation (SIGKILL) resumes from its shards."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from deepconf_assets_tests.cli_runs import COMMAND, REPO, TOTAL, environment, latest_traces_metadata, shard_rows
from deepconf_assets_tests.trace_equality import assert_same_traces

pytestmark = pytest.mark.slow  # runs `dagster asset materialize` in a subprocess and kills it


def read_traces(env) -> pd.DataFrame:
    return pd.read_parquet(Path(env["DEEPCONF_STORAGE_DIR"]) / "assets" / "traces" / "xstest" / "demo.parquet")


def test_killed_run_resumes_without_losing_or_redoing_work(demo_model_dir, tmp_path):
    killed = environment(tmp_path / "killed", demo_model_dir)
    process = subprocess.Popen(COMMAND, cwd=REPO, env=killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    shard_dir = Path(killed["DEEPCONF_STORAGE_DIR"]) / "shards" / "xstest" / "demo"
    deadline = time.monotonic() + 300
    while len(list(shard_dir.glob("*.parquet"))) < 3:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = shard_rows(killed)
    assert 0 < kept < TOTAL and kept % 64 == 0  # whole shards only

    resumed = subprocess.run(COMMAND, cwd=REPO, env=killed, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    meta = latest_traces_metadata(killed)
    assert meta["traces_reused_from_shards"] == kept
    assert meta["traces_generated"] == TOTAL - kept

    clean = environment(tmp_path / "clean", demo_model_dir)
    uninterrupted = subprocess.run(COMMAND, cwd=REPO, env=clean, capture_output=True, text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    a, b = read_traces(killed), read_traces(clean)
    assert len(a) == len(b) == TOTAL
    assert_same_traces(a, b)  # same tokens; log-probs within float noise between processes
