"""`BenchmarkSpec`: everything the product knows about one benchmark, and how it loads (local file,
else the Hugging Face hub copy, else a clear error)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from deepconf_assets.core.benchmarks.contract import BenchmarkFileError
from deepconf_assets.core.benchmarks.gold import GoldSource, no_gold_responses
from deepconf_assets.core.benchmarks.reader import read_raw_file

# A spec without an `order` goes after the shipped benchmarks (which use 10..50).
LAST = 1000


def real_source(path: Path) -> str:
    """Where a file's bytes really are: a link (the file or a folder above it) is followed, and the
    provenance names its target, so a report never credits data to a path that only points elsewhere."""
    real = Path(path).resolve()
    return str(path) if real == Path(path).absolute() else f"{real} (linked from {path})"


@dataclass(frozen=True)
class Licence:
    name: str   # short: "CC-BY-4.0"
    where: str  # where the licence text is: a path in the repository or the upstream address

    def __str__(self) -> str:
        return f"{self.name} ({self.where})"


@dataclass(frozen=True)
class HubSource:
    """The official file in a Hugging Face dataset repository, fetched when no local file is present and
    read by the same strict reader as a local one (never re-typed or guessed at by `datasets`)."""

    dataset_id: str
    filename: str  # its path in the dataset repository


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the product knows about one benchmark.

    name        the partition key and the folder `<data dir>/<name>/`
    normalize   (raw DataFrame, source) -> the contract (end it with `to_contract(df, name, ids)`)
    licence     short licence name and where its text is
    local_file  the official file name inside `<data dir>/<name>/`; None for a generated benchmark
    hub         the hub fallback when the local file is absent, or None
    generate    () -> raw DataFrame, for a benchmark built in code (then no local_file and no hub)
    gold        where gold (human-labelled) refusal responses come from, or None
    order       its place among the partition keys: the registry sorts by (order, name), so a new
                benchmark is appended and the existing keys keep their order
    """

    name: str
    normalize: Callable[[pd.DataFrame, str], pd.DataFrame]
    licence: Licence
    local_file: str | None = None
    hub: HubSource | None = None
    generate: Callable[[], pd.DataFrame] | None = None
    gold: GoldSource | None = None
    order: int = LAST

    def __post_init__(self) -> None:
        if self.generate is None and self.local_file is None and self.hub is None:
            raise ValueError(f"benchmark spec {self.name!r}: give a local_file, a hub source or a generator")
        if self.generate is not None and (self.local_file is not None or self.hub is not None):
            raise ValueError(f"benchmark spec {self.name!r}: a generated benchmark has no local_file or hub")

    def local_path(self, data_dir: Path) -> Path | None:
        """`<data dir>/<name>/<local_file>`; None for a benchmark without a file."""
        return None if self.local_file is None else Path(data_dir) / self.name / self.local_file

    def load(self, data_dir: Path) -> tuple[pd.DataFrame, str]:
        """The contract and where it came from: the local file, else the hub, else a clear error."""
        if self.generate is not None:
            return self.normalize(self.generate(), self.name), "generated"
        path = self.local_path(data_dir)
        if path is not None and path.exists():
            raw, source = read_raw_file(path), real_source(path)
        elif self.hub is not None:
            raw, source = self._from_hub(path)
        else:
            raise BenchmarkFileError(
                f"{self.name}: file not found at {path}; it ships in the repository's data/ folder "
                f"(check DEEPCONF_DATA_DIR)"
            )
        return self.normalize(raw, source), source

    def gold_responses(self, prompts: pd.DataFrame | None, data_dir: Path) -> tuple[pd.DataFrame, str]:
        """(prompt, response, gold_refusal) and a description of the gold source; an empty frame and ""
        when the benchmark has none. `prompts` (this benchmark's contract) is loaded when None and needed."""
        if self.gold is None:
            return no_gold_responses(), ""
        if prompts is None and self.gold.needs_prompts:
            prompts = self.load(data_dir)[0]
        return self.gold.responses(self.name, prompts, data_dir), self.gold.description

    def _from_hub(self, path: Path | None) -> tuple[pd.DataFrame, str]:
        """Fetch the official file with `huggingface_hub` (the token only from the HF_TOKEN environment) and
        read it strictly; the source names the repository, the file and the revision fetched."""
        hub = self.hub
        try:
            from huggingface_hub import hf_hub_download

            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")  # read now, not at import
            fetched = Path(hf_hub_download(hub.dataset_id, hub.filename, repo_type="dataset", local_files_only=offline,
                                           token=os.environ.get("HF_TOKEN") or None))
        except Exception as exc:  # offline, gated without token, hub down: all end the same way
            where = (
                f"no local file at {path} and the Hugging Face hub copy"
                if path is not None else "the Hugging Face hub copy"
            )
            fix = (
                f"Put the official file '{self.local_file}' at {path} (or point DEEPCONF_DATA_DIR at a "
                f"folder holding {self.name}/{self.local_file}), or set"
                if path is not None else "Set"
            )
            raise BenchmarkFileError(
                f"{self.name}: {where} ({hub.dataset_id}, file {hub.filename}) could not be fetched "
                f"({type(exc).__name__}). {fix} HF_TOKEN for a gated dataset and retry on a machine "
                f"with network access."
            ) from None
        revision = fetched.parent.name if fetched.parent.parent.name == "snapshots" else "unknown revision"
        return read_raw_file(fetched), f"hf-hub:{hub.dataset_id}/{hub.filename}@{revision}"
