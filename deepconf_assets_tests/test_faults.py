"""Faults: interrupts stop a run, settings are checked before any work, what cannot heal is never retried,
and a prompt is sent exactly as the benchmark holds it or quarantined with a reason."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, materialize

from deepconf_assets.definitions import ASSET_CHECKS, ASSETS, RESOURCES
from deepconf_assets_tests.test_bad_input import GOOD, xstest_file
from deepconf_assets_tests.test_resume import REPO, environment, latest_traces_metadata, shard_rows
from resources.analysis_settings import AnalysisSettingsResource
from resources.generation import GenerationResource, is_transient


def _run(config=None, resources=None, partition="xstest|demo", selection=("benchmark_prompts", "traces")):
    started = time.monotonic()
    result = materialize([*ASSETS, *ASSET_CHECKS], partition_key=partition, resources={**RESOURCES, **(resources or {})},
                         selection=list(selection), run_config=config or {}, raise_on_error=False)
    return result, time.monotonic() - started


def _failure_text(result) -> str:
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")


def _retries(result) -> int:
    return sum(e.event_type == DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


@pytest.mark.parametrize("field, value, message", [
    ("traces_per_prompt", 0, "traces_per_prompt"), ("top_p", 2, "top_p"), ("group_window", 0, "group_window"),
    ("temperature", -1, "temperature"), ("max_new_tokens", 0, "max_new_tokens"),
])
def test_out_of_range_generation_settings_fail_before_any_work(demo_model_dir, isolated_storage, field, value, message):
    written = isolated_storage / "assets" / "benchmark_prompts" / "synthetic" / "demo-small.parquet"
    written.unlink(missing_ok=True)
    result, seconds = _run({"ops": {"traces": {"config": {field: value}}}}, partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0
    failed = next(e for e in result.all_events if e.is_step_failure)
    assert failed.step_key == "benchmark_prompts"  # the first step: nothing upstream was written
    assert not written.exists()
    assert f"invalid traces config: {message}" in _failure_text(result) and str(value) in _failure_text(result)
    assert seconds < 30


def test_out_of_range_analysis_settings_fail_at_the_first_step(demo_model_dir):
    with pytest.raises(Exception, match="category_percentile"):
        AnalysisSettingsResource(category_percentile=150)  # pydantic, at launch for the CLI and the launchpad
    result, _ = _run(resources={"analysis_settings": AnalysisSettingsResource.configure_at_launch()},
                     config={"resources": {"analysis_settings": {"config": {"category_percentile": 150}}}},
                     partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0
    # the resource fails to initialise at the start of the run, before any step
    assert not any(e.event_type == DagsterEventType.STEP_START for e in result.all_events)
    assert "category_percentile" in " ".join(str(e.event_specific_data) for e in result.all_events)


def test_a_nul_byte_is_quarantined_never_cut(demo_model_dir, tmp_path, monkeypatch):
    xstest_file(tmp_path, GOOD + ['3,"How do I\x00 bake bread?",homonyms,safe,bake,', '4,"Tab\tand new\nline",homonyms,safe,x,'])
    monkeypatch.setenv("DEEPCONF_DATA_DIR", str(tmp_path))
    result, _ = _run({"ops": {"traces": {"config": {"traces_per_prompt": 1, "max_new_tokens": 8}}}})
    assert result.success
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "prompts_quarantined")
    assert not check.passed and check.metadata["quarantined"].value == 1
    assert "control character" in check.metadata["by_reason"].value
    prompts = result.output_for_node("benchmark_prompts")
    nul = prompts.loc[prompts["prompt"].str.contains("\x00", regex=False), "instance_id"]
    assert len(nul) == 1 and prompts["prompt"].str.contains("bake bread", regex=False).any()  # read whole
    traces = result.output_for_node("traces")
    assert traces["instance_id"].nunique() == 3 and nul.iloc[0] not in set(traces["instance_id"])  # tab, newline: text


def test_a_file_with_no_sendable_prompt_fails_once_naming_the_file(demo_model_dir, tmp_path, monkeypatch):
    path = xstest_file(tmp_path, ['1,"",homonyms,safe,x,', '2,"   ",homonyms,safe,x,', '3,"\x07",homonyms,safe,x,'])
    monkeypatch.setenv("DEEPCONF_DATA_DIR", str(tmp_path))
    result, seconds = _run()
    assert not result.success and _retries(result) == 0
    text = _failure_text(result)
    assert str(path) in text and "all quarantined" in text and "empty prompt" in text and "control character" in text
    assert seconds < 60


def test_only_transient_errors_are_retried():
    assert is_transient(TimeoutError("read timed out"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))
    assert is_transient(RuntimeError("CUDA error: unspecified launch failure"))
    wrapped = RuntimeError("engine failed")
    wrapped.__cause__ = ConnectionError("connection reset by peer")
    assert is_transient(wrapped)
    for permanent in (ValueError("top_p must be in (0, 1]"), FileNotFoundError(errno.ENOENT, "no weights"),
                      RuntimeError("Error(s) in loading state_dict"), KeyError("qwen3-9b"),
                      RuntimeError("prompt 1503 is too long")):
        assert not is_transient(permanent), permanent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_the_run_and_the_next_run_resumes(demo_model_dir, tmp_path, sig):
    env = environment(tmp_path, demo_model_dir)
    config = {"ops": {"traces": {"config": {"traces_per_prompt": 4}}},
              "resources": {"generator": {"config": {"batch_sequences": 64}}}}
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "deepconf_assets.definitions",
               "--select", "benchmark_prompts,traces", "--partition", "xstest|demo", "--config-json", json.dumps(config)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shard_dir = Path(env["DEEPCONF_STORAGE_DIR"]) / "shards" / "xstest" / "demo"
    deadline = time.monotonic() + 300
    while len(list(shard_dir.glob("*.parquet"))) < 2:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sent = time.monotonic()
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    seconds = time.monotonic() - sent
    assert process.returncode != 0, output[-3000:]
    assert seconds < 15, seconds  # stops within seconds, not after a retry
    assert "RUN_SUCCESS" not in output and "STEP_UP_FOR_RETRY" not in output
    kept = shard_rows(env)
    assert 0 < kept < 450 * 4
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert latest_traces_metadata(env)["traces_reused_from_shards"] >= kept


def test_a_truncated_shard_is_moved_aside_and_its_traces_generated_again(demo_model_dir, isolated_storage):
    config = {"ops": {"traces": {"config": {"max_prompts": 8, "traces_per_prompt": 2, "max_new_tokens": 16}}}}
    resources = {"generator": GenerationResource(batch_sequences=4)}  # 4 shards of 4 traces
    first, _ = _run(config, resources, partition="synthetic|demo-small")
    assert first.success
    folder = isolated_storage / "shards" / "synthetic" / "demo-small"
    shard = sorted(folder.glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:40])  # a bad copy, or a disk that filled up
    second, _ = _run(config, resources, partition="synthetic|demo-small")
    assert second.success and _retries(second) == 0
    assert (folder / "corrupt" / shard.name).exists() and not shard.exists()
    meta = next(e for e in second.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "traces").materialization.metadata
    assert meta["traces_generated"].value == 4 and meta["traces_reused_from_shards"].value == 12


def test_a_damaged_built_in_model_is_rebuilt(tmp_path, monkeypatch):
    from resources import demo_model

    monkeypatch.setitem(demo_model.TRAINING, "steps", 2)
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 100)
    target = demo_model.ensure_demo_model(tmp_path / "demo")
    weights = target / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated by a bad copy
    assert not demo_model.is_built(target)
    demo_model.ensure_demo_model(target)
    assert demo_model.is_built(target) and weights.read_bytes() == good  # deterministic rebuild
