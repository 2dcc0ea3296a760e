"""Shared by the tests that run Dagster: the `dagster asset materialize` command a killed-run test starts (100
XSTest prompts x 4 traces on the demo model, in shards of 64), the storage and instance it runs in, what it
wrote, and what a failed in-process run said."""

import json
import os
import sys
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance
from dagster._core.instance.ref import InstanceRef

REPO = Path(__file__).resolve().parents[1]
PROMPTS = 100  # of xstest's 450: seven shards of 64, enough to kill a run between them
CONFIG = {
    "ops": {"traces": {"config": {"traces_per_prompt": 4, "max_prompts": PROMPTS}}},
    "resources": {"generator": {"config": {"batch_sequences": 64}}},
}
COMMAND = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "deepconf_assets.definitions",
           "--select", "benchmark_prompts,traces", "--partition", "xstest|demo", "--config-json", json.dumps(CONFIG)]
TOTAL = PROMPTS * 4


def environment(tmp: Path, demo_model_dir: Path) -> dict:
    storage, home = tmp / "storage", tmp / "home"
    (storage / "models").mkdir(parents=True)
    (storage / "models" / "demo").symlink_to(demo_model_dir)
    home.mkdir()
    return dict(os.environ, DEEPCONF_STORAGE_DIR=str(storage), DAGSTER_HOME=str(home))


def shard_rows(env) -> int:
    folder = Path(env["DEEPCONF_STORAGE_DIR"]) / "shards" / "xstest" / "demo"
    return sum(len(pd.read_parquet(f)) for f in folder.glob("*.parquet"))


def latest_traces_metadata(env) -> dict:
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
    record = instance.fetch_materializations(AssetKey("traces"), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def failure_text(result) -> str:
    """The message (and its cause's) of a failed `materialize` result's first failed step."""
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")
