"""Model registry: partition key -> where the weights are.

Qwen3 weights come from DEEPCONF_MODEL_DIR (a folder holding `Qwen3-0.6B/` or `Qwen/Qwen3-0.6B/`)
or the local Hugging Face cache; nothing is downloaded at run time. `trust_remote_code` is never
used. The built-in `demo` and `demo-small` models are built into `<storage>/models/<key>` on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepconf_assets import paths
from resources import demo_model


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hf_id: str | None  # None for the built-in demo model
    revision: str  # pin a commit hash here for exact reproducibility; "main" follows the hub


MODELS: dict[str, ModelSpec] = {
    "qwen3-0.6b": ModelSpec("qwen3-0.6b", "Qwen/Qwen3-0.6B", "main"),
    "qwen3-1.7b": ModelSpec("qwen3-1.7b", "Qwen/Qwen3-1.7B", "main"),
    "qwen3-4b": ModelSpec("qwen3-4b", "Qwen/Qwen3-4B", "main"),
    "qwen3-8b": ModelSpec("qwen3-8b", "Qwen/Qwen3-8B", "main"),
    "demo-small": ModelSpec("demo-small", None, demo_model.RECIPE_VERSION),
    "demo": ModelSpec("demo", None, demo_model.RECIPE_VERSION),
}
MODEL_KEYS = tuple(MODELS)


class ModelWeightsNotFound(FileNotFoundError):
    """Weights for a model partition are not on this machine."""


def _fetch_hint(spec: ModelSpec) -> str:
    name = spec.hf_id.split("/")[-1]
    return (
        f"Weights for '{spec.key}' ({spec.hf_id}) are not on this machine. Fetch them on a machine "
        f"with network access: `hf download {spec.hf_id} --revision {spec.revision}` (fills the Hugging "
        f"Face cache; copy ~/.cache/huggingface/hub or set HF_HOME), or download into a folder and set "
        f"DEEPCONF_MODEL_DIR so that $DEEPCONF_MODEL_DIR/{name}/config.json exists."
    )


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def _check_model_dir(folder: Path, spec: ModelSpec) -> Path:
    if not (folder / "config.json").exists() or not _has_weights(folder):
        raise ModelWeightsNotFound(
            f"{folder} holds no complete model for '{spec.key}' (needs config.json and *.safetensors). "
            + _fetch_hint(spec)
        )
    return folder


def resolve_model_dir(key: str, log=None) -> Path:
    """Local folder with config, tokenizer and weights for a model partition key."""
    if key not in MODELS:
        raise KeyError(f"unknown model {key!r}; expected one of {MODEL_KEYS}")
    spec = MODELS[key]
    if spec.hf_id is None:
        return demo_model.ensure_demo_model(paths.models_dir() / key, log, variant=key)

    override = os.environ.get("DEEPCONF_MODEL_DIR")
    if override:
        for candidate in (Path(override) / spec.hf_id.split("/")[-1], Path(override) / spec.hf_id):
            if candidate.exists():
                return _check_model_dir(candidate, spec)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(spec.hf_id, revision=spec.revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelWeightsNotFound(_fetch_hint(spec)) from None
    return _check_model_dir(Path(folder), spec)


def weights_available(key: str) -> bool:
    """Whether a model partition can run here without downloading: built-in models always can
    (they are built on first use); Qwen3 sizes when their weights are on disk."""
    if MODELS[key].hf_id is None:
        return True
    try:
        resolve_model_dir(key)
    except ModelWeightsNotFound:
        return False
    return True
