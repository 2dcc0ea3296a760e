"""Faults: interrupts stop a run, settings are checked before any work, what cannot heal is never retried,
and a prompt is sent exactly as the benchmark holds it or quarantined with a reason."""

import errno
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterInvalidConfigError, DagsterRunStatus, materialize
from dagster._core.instance.ref import InstanceRef

from deepconf_assets.definitions import ASSET_CHECKS, ASSETS, RESOURCES
from deepconf_assets.retries import is_transient
from deepconf_assets_tests.cli_runs import (
    COMMAND, REPO, TOTAL, environment, failure_text, latest_traces_metadata, shard_rows,
)
from deepconf_assets_tests.xstest_files import GOOD, xstest_file
from resources.analysis_settings import AnalysisSettingsResource
from resources.generation import GenerationResource


def _run(config=None, resources=None, partition="xstest|demo", selection=("benchmark_prompts", "traces")):
    started = time.monotonic()
    result = materialize([*ASSETS, *ASSET_CHECKS], partition_key=partition, resources={**RESOURCES, **(resources or {})},
                         selection=list(selection), run_config=config or {}, raise_on_error=False)
    return result, time.monotonic() - started


def _retries(result) -> int:
    return sum(e.event_type == DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


@pytest.mark.parametrize("settings, message", [
    ({"traces_per_prompt": 0}, "traces_per_prompt: Input should be greater than or equal to 1 (got 0)"),
    ({"traces_per_prompt": 10**7}, "traces_per_prompt: Input should be less than or equal to 4096"),
    ({"top_p": 2}, "top_p: Input should be less than or equal to 1 (got 2)"),
    ({"group_window": 0}, "group_window: Input should be greater than or equal to 1 (got 0)"),
    ({"temperature": -1}, "temperature: Input should be greater than or equal to 0 (got -1)"),
    ({"max_new_tokens": 0}, "max_new_tokens: Input should be greater than or equal to 1 (got 0)"),
    # values an engine would silently change
    ({"temperature": 1e-7}, "temperature: Value error, must be 0 (greedy) or at least 1e-05"),
    ({"logprobs_k": 50}, "logprobs_k: Input should be less than or equal to 20 (got 50)"),
    # settings that make the method degenerate, or cannot fit
    ({"temperature": 0}, "temperature 0 (greedy) makes the 10 traces of a prompt identical"),
    ({"max_new_tokens": 5000}, "max_new_tokens (5000) leaves no room for a prompt within the context limit of "
                               "'demo-small' (1024 tokens"),
    ({"max_new_tokens": 1024}, "max_new_tokens (1024) leaves no room for a prompt within the context limit of "
                               "'demo-small' (1024 tokens"),
], ids=lambda v: "-".join(f"{k}={w}" for k, w in v.items()) if isinstance(v, dict) else None)
@pytest.mark.slow
def test_out_of_range_generation_settings_fail_before_any_work(demo_model_dir, isolated_storage, settings, message):
    written = isolated_storage / "assets" / "benchmark_prompts" / "synthetic" / "demo-small.parquet"
    written.unlink(missing_ok=True)
    result, seconds = _run({"ops": {"traces": {"config": settings}}}, partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0
    failed = next(e for e in result.all_events if e.is_step_failure)
    assert failed.step_key == "benchmark_prompts"  # the first step: nothing upstream was written
    assert not written.exists()
    text = failure_text(result)
    assert f"invalid traces config: " in text and message in text, text
    assert seconds < 30


@pytest.mark.slow
def test_live_generation_without_a_stopping_policy_fails_at_the_first_step(isolated_storage):
    config = {"ops": {"traces": {"config": {"generation_mode": "live"}}},
              "resources": {"analysis_settings": {"config": {"headline_rule": "fixed_n_all"}}}}
    result, seconds = _run(config, partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0 and seconds < 30
    assert next(e for e in result.all_events if e.is_step_failure).step_key == "benchmark_prompts"
    assert "generation_mode live: live generation runs the headline policy" in failure_text(result)


@pytest.mark.slow
def test_impossible_generator_settings_fail_before_any_work(isolated_storage):
    # a value outside the choices is refused at launch (an enum in Dagster's config schema)
    for config, field in [({"resources": {"generator": {"config": {"backend": "tpu"}}}}, "backend"),
                          ({"resources": {"generator": {"config": {"dtype": "float8"}}}}, "dtype"),
                          ({"ops": {"traces": {"config": {"generation_mode": "streaming"}}}}, "generation_mode")]:
        with pytest.raises(DagsterInvalidConfigError, match=f"{field} not in enum type"):
            _run(config=config, partition="synthetic|demo-small")
    # a malformed device fails resource initialisation, before any step
    result, _ = _run(config={"resources": {"generator": {"config": {"device": "gpu0"}}}}, partition="synthetic|demo-small")
    assert not result.success and not any(e.event_type == DagsterEventType.STEP_START for e in result.all_events)
    # a device or backend this machine does not have fails the first step in seconds, once
    import torch

    impossible = [{"device": f"cuda:{torch.cuda.device_count()}"}]
    if importlib.util.find_spec("vllm") is None:
        impossible.append({"backend": "vllm"})
    for settings in impossible:
        result, seconds = _run(config={"resources": {"generator": {"config": settings}}}, partition="synthetic|demo-small")
        assert not result.success and _retries(result) == 0 and seconds < 30
        assert next(e for e in result.all_events if e.is_step_failure).step_key == "benchmark_prompts"
        assert f"generator.{next(iter(settings))} is" in failure_text(result)


@pytest.mark.slow
def test_on_kubernetes_the_gpu_step_checks_its_own_device(isolated_storage, monkeypatch):
    # there the first step runs on a CPU node: only `traces`, on its GPU node, can tell whether the device exists
    import torch

    monkeypatch.setenv("DEEPCONF_EXECUTOR", "k8s")
    settings = {"resources": {"generator": {"config": {"device": f"cuda:{torch.cuda.device_count()}"}}}}
    result, seconds = _run(config=settings, partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0 and seconds < 30
    failed = next(e for e in result.all_events if e.is_step_failure)
    assert failed.step_key == "traces" and "CUDA device(s)" in failure_text(result)


@pytest.mark.slow
def test_settings_the_engine_would_change_are_refused_or_recorded(demo_model_dir, isolated_storage):
    tiny = {"max_prompts": 4, "traces_per_prompt": 1, "max_new_tokens": 8}
    result, _ = _run({"ops": {"traces": {"config": {**tiny, "top_k": 5000}}}}, partition="synthetic|demo-small")
    assert not result.success and _retries(result) == 0
    assert "top_k (5000) exceeds the vocabulary of 'demo-small' (1026 tokens)" in failure_text(result)
    assert not list((isolated_storage / "shards" / "synthetic" / "demo-small").glob("*.parquet"))  # nothing generated
    # a context limit above the model's positions is capped by the engine: recorded as the limit used
    result, _ = _run({"ops": {"traces": {"config": tiny}}, "resources": {"generator": {"config": {"max_model_len": 4096}}}},
                     resources={"generator": GenerationResource.configure_at_launch()}, partition="synthetic|demo-small")
    assert result.success
    meta = next(e for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "traces").materialization.metadata
    assert meta["context_limit"].value == 1024
    # by default the limit is the model's own
    assert GenerationResource().max_model_len is None


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_file_with_no_sendable_prompt_fails_once_naming_the_file(demo_model_dir, tmp_path, monkeypatch):
    path = xstest_file(tmp_path, ['1,"",homonyms,safe,x,', '2,"   ",homonyms,safe,x,', '3,"\x07",homonyms,safe,x,'])
    monkeypatch.setenv("DEEPCONF_DATA_DIR", str(tmp_path))
    result, seconds = _run()
    assert not result.success and _retries(result) == 0
    text = failure_text(result)
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


class FlakyGenerator(GenerationResource):
    """The real generator, whose first `generate` call fails with `fault` (a fault injected, as a flaky
    GPU or a bug would raise it)."""

    fault: str = "CUDA error: unspecified launch failure"

    def generate(self, *args, **kwargs):
        if not FAULTS_RAISED:
            FAULTS_RAISED.append(self.fault)
            raise RuntimeError(self.fault)
        return super().generate(*args, **kwargs)


FAULTS_RAISED: list[str] = []


@pytest.mark.parametrize("fault, retried", [("CUDA error: unspecified launch failure", True),
                                            ("index 7 is out of bounds", False)], ids=["transient", "permanent"])
@pytest.mark.slow
def test_a_transient_fault_is_retried_and_a_permanent_one_is_not(demo_model_dir, isolated_storage, monkeypatch,
                                                                 fault, retried):
    from deepconf_assets import retries

    monkeypatch.setattr(retries, "RETRY_WAIT_SECONDS", 1)
    FAULTS_RAISED.clear()
    config = {"ops": {"traces": {"config": {"max_prompts": 4, "traces_per_prompt": 2, "max_new_tokens": 8, "seed": 7}}}}
    result, _ = _run(config, {"generator": FlakyGenerator(fault=fault)}, partition="synthetic|demo-small")
    assert FAULTS_RAISED == [fault]
    assert result.success is retried and _retries(result) == int(retried)
    if not retried:
        assert fault in failure_text(result)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT],
                         ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"])
@pytest.mark.slow
def test_an_interrupt_stops_the_run_and_the_next_run_resumes(demo_model_dir, tmp_path, sig):
    env = environment(tmp_path, demo_model_dir)
    command = COMMAND  # test_resume's `dagster asset materialize` of benchmark_prompts and traces
    def default_signals():  # as from a terminal, whatever started pytest (under `nohup` SIGHUP is ignored)
        for hangup in (signal.SIGHUP, signal.SIGQUIT):
            signal.signal(hangup, signal.SIG_DFL)

    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=default_signals)
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
    run = DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])).get_runs(limit=1)[0]
    assert run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED), run.status  # never left "started"
    kept = shard_rows(env)
    assert 0 < kept < TOTAL
    if sig != signal.SIGINT:
        return  # resuming is the same for every signal: once is enough
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert latest_traces_metadata(env)["traces_reused_from_shards"] >= kept


def _damage_shard(shard: Path, damage: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if damage == "truncated":  # a bad copy, or a disk that filled up
        shard.write_bytes(shard.read_bytes()[:40])
    elif damage == "not parquet":
        shard.write_text("generation_key,seed\n")
    else:  # readable, but its rows cannot be trusted
        rows = pq.read_table(shard).to_pandas()
        if damage == "token lists disagree":
            rows.at[0, "token_confidence"] = rows.at[0, "token_confidence"][:-1]
        else:
            rows.at[0, "finish_reason"] = "stopped"
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), shard)


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "token lists disagree", "unknown finish reason"])
@pytest.mark.slow
def test_a_damaged_shard_is_moved_aside_and_its_traces_generated_again(demo_model_dir, isolated_storage, damage):
    config = {"ops": {"traces": {"config": {"max_prompts": 8, "traces_per_prompt": 2, "max_new_tokens": 16}}}}
    resources = {"generator": GenerationResource(batch_sequences=4)}  # 4 shards of 4 traces
    folder = isolated_storage / "shards" / "synthetic" / "demo-small"
    shutil.rmtree(folder, ignore_errors=True)
    first, _ = _run(config, resources, partition="synthetic|demo-small")
    assert first.success
    shard = sorted(folder.glob("*.parquet"))[0]
    _damage_shard(shard, damage)
    second, _ = _run(config, resources, partition="synthetic|demo-small")
    assert second.success and _retries(second) == 0
    assert (folder / "corrupt" / shard.name).exists() and not shard.exists()
    meta = next(e for e in second.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "traces").materialization.metadata
    assert meta["traces_generated"].value == 4 and meta["traces_reused_from_shards"].value == 12


@pytest.mark.parametrize("damage", ["truncated weights", "edited tokenizer", "missing config"])
@pytest.mark.slow
def test_a_damaged_built_in_model_is_rebuilt(tmp_path, monkeypatch, damage):
    from resources import demo_model

    monkeypatch.setitem(demo_model.TRAINING, "steps", 2)
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 100)
    target = demo_model.ensure_demo_model(tmp_path / "demo")
    good = {f.name: f.read_bytes() for f in target.iterdir()}
    if damage == "truncated weights":  # a bad copy
        (target / "model.safetensors").write_bytes(good["model.safetensors"][: len(good["model.safetensors"]) // 2])
    elif damage == "edited tokenizer":  # still valid JSON, different meaning
        (target / "tokenizer.json").write_text(good["tokenizer.json"].decode().replace('"<think>"', '"<thinx>"', 1))
    else:
        (target / "config.json").unlink()
    assert not demo_model.is_built(target)
    demo_model.ensure_demo_model(target)
    assert demo_model.is_built(target)
    assert {f.name: f.read_bytes() for f in target.iterdir()} == good  # a deterministic rebuild


def test_a_repeated_key_in_the_backfill_run_config_is_ambiguous(monkeypatch):
    from deepconf_assets.schedules import backfill_run_config

    monkeypatch.setenv("DEEPCONF_BACKFILL_RUN_CONFIG", '{"ops": {"traces": {"config": {"seed": 1, "seed": 2}}}}')
    with pytest.raises(ValueError, match=r"repeats the key\(s\) \['seed'\]"):
        backfill_run_config()
    monkeypatch.setenv("DEEPCONF_BACKFILL_RUN_CONFIG", '{"ops": {"traces": {"config": {"seed": 2}}}}')
    assert backfill_run_config() == {"ops": {"traces": {"config": {"seed": 2}}}}


@pytest.mark.slow
def test_traces_of_other_numerics_or_weights_are_never_reused(demo_model_dir, isolated_storage, tmp_path, monkeypatch):
    """The generation key holds the engine's numerics (dtype, device, attention) and the weights' fingerprint:
    a bfloat16 run regenerates what a float32 run made, an unchanged re-run generates nothing, and a built-in
    model whose files differ (another build) has another fingerprint."""
    from resources import demo_model
    from resources.model_registry import resolve_model_dir, weights_fingerprint

    config = {"ops": {"traces": {"config": {"max_prompts": 4, "traces_per_prompt": 2, "max_new_tokens": 8}}}}
    shutil.rmtree(isolated_storage / "shards" / "synthetic" / "demo-small", ignore_errors=True)

    def generated(dtype: str) -> tuple[int, int]:
        result, _ = _run(config, {"generator": GenerationResource(dtype=dtype)}, partition="synthetic|demo-small")
        assert result.success
        meta = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == "traces").materialization.metadata
        assert meta["generation_settings"].value["numerics"]["dtype"] == dtype
        return meta["traces_generated"].value, meta["traces_reused_from_shards"].value

    assert generated("float32") == (8, 0)
    assert generated("float32") == (0, 8)
    assert generated("bfloat16") == (8, 0)
    assert generated("float32") == (0, 8)

    built = resolve_model_dir("demo-small")
    # another build's weights under the same key and recipe version
    monkeypatch.setitem(demo_model.VARIANTS["demo-small"], "training", {**demo_model.VARIANTS["demo-small"]["training"],
                                                                      "steps": 2, "n_pairs": 100})
    other = demo_model.ensure_demo_model(tmp_path / "demo-small", variant="demo-small")
    assert weights_fingerprint("demo-small", built) != weights_fingerprint("demo-small", other)
    assert weights_fingerprint("demo-small", built) != weights_fingerprint("demo", resolve_model_dir("demo"))
