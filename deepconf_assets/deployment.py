"""Where steps run. Locally: every step of a run in one process (a model is loaded once per run).
On Kubernetes (deploy/k8s/, DEEPCONF_EXECUTOR=k8s): one pod per step through dagster-k8s's
`k8s_job_executor`, and the steps that load a model onto a GPU carry a `dagster-k8s/config` tag that
requests GPUs, so only they are scheduled on GPU nodes.

Environment (read when the code location loads):
  DEEPCONF_EXECUTOR            in_process (default) | k8s
  DEEPCONF_K8S_GPUS_PER_STEP   GPUs requested by a GPU step (default 1); set it to the vLLM
                               tensor_parallel_size you give the generator (e.g. 2 for qwen3-8b on 24 GB GPUs)
"""

import os

from dagster import in_process_executor

GPU_RESOURCE = "nvidia.com/gpu"


def gpu_op_tags(gpus: int | None = None) -> dict:
    """`dagster-k8s/config` for a step that needs `gpus` GPUs (ignored by local executors)."""
    gpus = int(os.environ.get("DEEPCONF_K8S_GPUS_PER_STEP", "1")) if gpus is None else gpus
    if gpus < 1:
        raise ValueError(f"DEEPCONF_K8S_GPUS_PER_STEP must be >= 1, got {gpus}")
    resources = {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {GPU_RESOURCE: str(gpus)}}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": resources},
            "pod_spec_config": {"tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]},
        }
    }


def gpu_step() -> dict:
    """Asset arguments for a step that loads a model onto a GPU: the `gpu` concurrency pool (one
    at a time per instance by default) and the Kubernetes GPU request."""
    return {"pool": "gpu", "op_tags": gpu_op_tags()}


def executor():
    kind = os.environ.get("DEEPCONF_EXECUTOR", "in_process")
    if kind == "in_process":
        return in_process_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor  # the `k8s` extra

        return k8s_job_executor
    raise ValueError(f"DEEPCONF_EXECUTOR must be in_process or k8s, got {kind!r}")
