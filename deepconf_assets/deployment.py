"""Where steps run. Locally: every step of a run in one process (a model is loaded once per run).
On Kubernetes (deploy/k8s/, DEEPCONF_EXECUTOR=k8s): one pod per step through dagster-k8s's
`k8s_job_executor`, and the steps that load a model onto a GPU carry a `dagster-k8s/config` tag that
requests GPUs, so only they are scheduled on GPU nodes.

How many GPUs a step requests comes from the model registry (`gpus`, resources/model_registry.py),
the same number the generator gives vLLM as its tensor-parallel size:
  * a step that always loads one model (WildGuard) requests that model's `gpus`: `gpu_step("wildguard")`;
  * `traces` loads the partition's model, which a static op tag cannot know: its tag requests the
    largest `gpus` of any generator (`gpu_step()`), and `partition_run_config(model)` gives the run
    config (the k8s executor's `per_step_k8s_config`) that sets the exact count for one model.

Environment (read when the code location loads):
  DEEPCONF_EXECUTOR            in_process (default) | k8s
"""

import os

from resources.model_registry import MODELS, model_spec

GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL = "gpu"


def executor_kind() -> str:
    kind = os.environ.get("DEEPCONF_EXECUTOR", "in_process")
    if kind not in ("in_process", "k8s"):
        raise ValueError(f"DEEPCONF_EXECUTOR must be in_process or k8s, got {kind!r}")
    return kind


def gpus_needed(model_key: str | None = None) -> int:
    """GPUs a step needs: the registry's `gpus` of `model_key`, or the most any generator needs."""
    if model_key is not None:
        return model_spec(model_key).gpus
    return max(spec.gpus for spec in MODELS.values() if spec.role == "generator")


def gpu_k8s_config(gpus: int) -> dict:
    """The `dagster-k8s/config` body of a step that needs `gpus` GPUs: the request and the GPU-node toleration."""
    if gpus < 1:
        raise ValueError(f"a GPU step needs at least 1 GPU, got {gpus}")
    resources = {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {GPU_RESOURCE: str(gpus)}}
    return {
        "container_config": {"resources": resources},
        "pod_spec_config": {"tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]},
    }


def gpu_op_tags(gpus: int) -> dict:
    """Op tags of a step that needs `gpus` GPUs (ignored by local executors)."""
    return {"dagster-k8s/config": gpu_k8s_config(gpus)}


def gpu_step(model_key: str | None = None) -> dict:
    """Asset arguments for a step that loads a model onto a GPU: the `gpu` concurrency pool (one
    at a time per instance by default) and the Kubernetes GPU request for `model_key` (None: a step
    whose model varies by partition, requesting the most any generator needs)."""
    return {"pool": GPU_POOL, "op_tags": gpu_op_tags(gpus_needed(model_key))}


def partition_run_config(model_key: str, step: str = "traces") -> dict:
    """Run config that makes `step` (an op name) request exactly the GPUs `model_key` needs, through
    dagster-k8s's `per_step_k8s_config` (deep-merged over the step's op tag, so it can raise or lower
    the count). Empty unless DEEPCONF_EXECUTOR=k8s: the in-process executor has no such config."""
    if executor_kind() != "k8s":
        return {}
    return {"execution": {"config": {"per_step_k8s_config": {step: gpu_k8s_config(gpus_needed(model_key))}}}}


def executor():
    if executor_kind() == "k8s":
        from dagster_k8s import k8s_job_executor  # the `k8s` extra

        return k8s_job_executor
    from deepconf_assets.run_health import watched_in_process_executor

    return watched_in_process_executor
