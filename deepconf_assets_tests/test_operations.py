"""Operations: Kubernetes pod specs, object-store asset storage, faults survived (killed writer,
concurrent runs of one partition, full disk), the HF token kept out of every log and file, the
webserver on loopback, no pickles."""

import dataclasses
import errno
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from dagster._core.instance.ref import InstanceRef
from upath import UPath

from deepconf_assets.definitions import ASSETS, RESOURCES, defs
from deepconf_assets.deployment import GPU_RESOURCE, gpu_op_tags, gpu_step, partition_run_config
from resources import io_managers, model_registry, shard_store
from resources.io_managers import ParquetIOManagerFactory, StorageFullError
from deepconf_assets_tests.services import service_environment
from deepconf_assets_tests.trace_equality import assert_same_traces

REPO = Path(__file__).resolve().parents[1]


def render_step_job(step: str, tags: dict | None = None, per_step: dict | None = None):
    """The Kubernetes Job that dagster-k8s's k8s_job_executor builds for one step of experiment_job:
    the step's `dagster-k8s/config` tag, then the executor's `per_step_k8s_config` for it merged on
    top, as K8sStepHandler does."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_user_defined_k8s_config,
    )

    if tags is None:
        tags = defs.resolve_job_def("experiment_job").graph.node_named(step).tags
    user_config = get_user_defined_k8s_config(tags)
    if per_step is not None:
        user_config = K8sContainerContext(run_k8s_config=user_config).merge(
            K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(per_step))).run_k8s_config
    config = DagsterK8sJobConfig(job_image="deepconf-assets:test", dagster_home="/opt/dagster/dagster_home",
                                 instance_config_map="dagster-instance")
    return construct_dagster_k8s_job(config, ["dagster", "api", "execute_step"], f"dagster-step-{step}",
                                     user_defined_k8s_config=user_config, pod_name=f"dagster-step-{step}")


def gpu_limits(job) -> dict | None:
    resources = job.spec.template.spec.containers[0].resources
    return resources.limits if resources else None


def test_gpu_steps_request_the_registrys_gpus_in_their_pod_spec(monkeypatch):
    """GPU counts come from the model registry: WildGuard's steps request its `gpus`; `traces`, whose
    model varies by partition, requests the most any generator needs, and exactly its model's count
    through partition_run_config (the k8s executor's per_step_k8s_config)."""
    from dagster import job, op, validate_run_config
    from dagster_k8s import k8s_job_executor

    models = model_registry.MODELS
    most = max(spec.gpus for spec in models.values() if spec.role == "generator")
    for step, gpus in (("traces", most), ("labels_wildguard", models["wildguard"].gpus),
                       ("labeler_validation", models["wildguard"].gpus)):
        rendered = render_step_job(step)
        assert gpu_limits(rendered) == {GPU_RESOURCE: str(gpus)}, step
        assert any(t.key == GPU_RESOURCE for t in rendered.spec.template.spec.tolerations)
    assert not gpu_limits(render_step_job("predictions"))

    # qwen3-8b over 2 GPUs (tensor parallelism on smaller cards) is one registry edit
    monkeypatch.setitem(models, "qwen3-8b", dataclasses.replace(models["qwen3-8b"], gpus=2))
    assert gpu_step()["op_tags"] == gpu_step("qwen3-8b")["op_tags"] == gpu_op_tags(2)
    assert gpu_step("wildguard") == {"pool": "gpu", "op_tags": gpu_op_tags(models["wildguard"].gpus)}
    monkeypatch.setenv("DEEPCONF_EXECUTOR", "k8s")
    two_gpu_tag = {k: json.dumps(v) for k, v in gpu_step()["op_tags"].items()}
    for model, gpus in (("qwen3-8b", "2"), ("qwen3-0.6b", "1")):  # per partition, raised or lowered
        run_config = partition_run_config(model)
        per_step = run_config["execution"]["config"]["per_step_k8s_config"]["traces"]
        assert gpu_limits(render_step_job("traces", two_gpu_tag, per_step)) == {GPU_RESOURCE: gpus}, model

    @op(name="traces")
    def traces_step():
        pass

    @job(executor_def=k8s_job_executor)
    def on_kubernetes():
        traces_step()

    assert validate_run_config(on_kubernetes, partition_run_config("qwen3-8b"))  # the executor accepts it
    monkeypatch.setenv("DEEPCONF_EXECUTOR", "in_process")
    assert partition_run_config("qwen3-8b") == {}  # the in-process executor has no per-step config


def test_helm_values_use_the_k8s_run_launcher_and_postgres():
    import yaml

    values = yaml.safe_load((REPO / "deploy" / "k8s" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["enabled"] and values["postgresql"]["enabled"] is False
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e for e in deployment["env"]}
    assert env["DEEPCONF_EXECUTOR"]["value"] == "k8s"
    assert "valueFrom" in env["HF_TOKEN"] and "value" not in env["HF_TOKEN"]  # from a Secret only
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] >= 1


@pytest.mark.slow
def test_io_manager_writes_to_an_object_store_through_the_same_code_path():
    bucket = f"memory://deepconf-{uuid.uuid4().hex[:8]}/assets"
    resources = {**RESOURCES, "parquet_io_manager": ParquetIOManagerFactory(base_path=bucket)}
    result = materialize(ASSETS, partition_key="xstest|demo", resources=resources, selection=["benchmark_prompts"])
    assert result.success
    memory = fsspec.filesystem("memory")
    path = bucket.removeprefix("memory://") + "/benchmark_prompts/xstest/demo.parquet"
    with memory.open(path, "rb") as handle:
        prompts = pd.read_parquet(handle)
    assert len(prompts) == 450 and prompts["instance_id"].is_unique
    assert not [p for p in memory.find(bucket.removeprefix("memory://")) if p.endswith(".tmp")]


KILLED_WRITER = """
import os, signal, sys
from upath import UPath
from resources import io_managers
target = UPath(sys.argv[1])
def half_then_killed(self, data):
    with open(self, "wb") as handle:
        handle.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
type(target).write_bytes = half_then_killed
io_managers._atomic_write(target, b"x" * 1_000_000)
"""


@pytest.mark.slow
def test_worker_killed_mid_write_leaves_the_previous_complete_file(tmp_path):
    target = tmp_path / "calibration" / "xstest" / "demo.parquet"
    previous = pd.DataFrame({"policy": ["fixed_n=all"], "auroc": [0.61]})
    io_managers._atomic_write(UPath(target), previous.to_parquet())
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO, capture_output=True)
    assert killed.returncode == -9, killed.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(target), previous)  # readers never see half a file


def test_full_disk_names_the_file_and_the_setting(tmp_path, monkeypatch):
    """A real ENOSPC from /dev/full, where the staging file would be."""
    target = tmp_path / "traces" / "xstest" / "demo.parquet"
    target.parent.mkdir(parents=True)
    (target.parent / f".{target.name}.{os.getpid()}.tmp").symlink_to("/dev/full")
    with pytest.raises(StorageFullError, match=r"no space left writing .*demo\.parquet.*DEEPCONF_STORAGE_DIR"):
        io_managers._atomic_write(UPath(target), b"x" * 100_000)
    assert not target.exists()

    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(shard_store.uuid, "uuid4", lambda: fixed)
    store = shard_store.ShardStore(tmp_path / "shards")
    store.folder.mkdir()
    (store.folder / f".{fixed.hex}.parquet.tmp").symlink_to("/dev/full")
    rows = shard_store.SHARD_SCHEMA.empty_table().to_pandas()
    with pytest.raises(OSError, match="disk full") as caught:
        store.write(rows)
    assert caught.value.errno == errno.ENOSPC and str(store.folder) in str(caught.value)


def _cli_env(tmp: Path, demo_model_dir: Path, **extra) -> dict:
    return service_environment(tmp, {"demo": demo_model_dir}, (REPO / "storage" / "dagster.yaml").read_text(), **extra)


def _materialize_cli(env: dict, select: str, config: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "deepconf_assets.definitions",
               "--select", select, "--partition", "xstest|demo", "--config-json", json.dumps(config)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SMALL = {"ops": {"traces": {"config": {"max_prompts": 30, "traces_per_prompt": 2}}},
         "resources": {"generator": {"config": {"batch_sequences": 16}}}}


@pytest.mark.slow
def test_two_instances_on_one_storage_generate_each_trace_once(demo_model_dir, tmp_path):
    # two Dagster instances (so no shared gpu pool) whose runs write to the same storage at once
    shared = _cli_env(tmp_path / "shared", demo_model_dir)
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    (other_home / "dagster.yaml").write_text((REPO / "storage" / "dagster.yaml").read_text())
    runs = [_materialize_cli(env, "benchmark_prompts,traces", SMALL) for env in (shared, dict(shared, DAGSTER_HOME=str(other_home)))]
    outputs = [r.communicate(timeout=600)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs[0][-3000:] + outputs[1][-3000:]
    assert sum("another run is writing generation shards" in output for output in outputs) == 1  # one waited
    solo = _cli_env(tmp_path / "solo", demo_model_dir)
    alone = _materialize_cli(solo, "benchmark_prompts,traces", SMALL)
    assert alone.wait(timeout=600) == 0

    folder = Path(shared["DEEPCONF_STORAGE_DIR"]) / "shards" / "xstest" / "demo"
    shards = sorted(folder.glob("*.parquet"))
    assert shards and {s.name for s in folder.iterdir()} - {s.name for s in shards} == {".lock"}  # no staging file left
    assert sum(len(pd.read_parquet(s)) for s in shards) == 30 * 2  # the waiting run generated nothing again

    def traces(env):
        table = pd.read_parquet(Path(env["DEEPCONF_STORAGE_DIR"]) / "assets" / "traces" / "xstest" / "demo.parquet")
        return table.sort_values(["instance_id", "seed"]).reset_index(drop=True)

    assert_same_traces(traces(shared), traces(solo))


@pytest.mark.slow
def test_hf_token_appears_in_no_log_event_metadata_or_file(demo_model_dir, tmp_path):
    sentinel = f"hf_SENTINEL{uuid.uuid4().hex}"
    env = _cli_env(tmp_path, demo_model_dir, HF_TOKEN=sentinel, HUGGING_FACE_HUB_TOKEN=sentinel)
    config = {"ops": {"traces": {"config": {"max_prompts": 20, "traces_per_prompt": 2}}}}
    run = _materialize_cli(env, "benchmark_prompts,traces,labels_heuristic,labels_wildguard", config)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    assert sentinel not in output
    scanned = 0
    for root in (Path(env["DEEPCONF_STORAGE_DIR"]), Path(env["DAGSTER_HOME"])):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and "models" not in path.relative_to(root).parts[:1]:
                data = path.read_bytes()
                assert sentinel.encode() not in data, path
                assert not data.startswith((b"\x80\x04", b"\x80\x05")), f"{path} is a pickle"
                scanned += 1
    assert scanned > 5  # the run's event log (SQLite), asset files and shards were all read


def test_no_asset_uses_a_pickling_io_manager():
    nodes = [n for n in defs.resolve_asset_graph().asset_nodes if n.is_materializable]
    assert len(nodes) > 15
    assert {n.io_manager_key for n in nodes} == {"parquet_io_manager", "png_io_manager", "png_folder_io_manager",
                                                 "html_io_manager"}
