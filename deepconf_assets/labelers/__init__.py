"""The refusal labeler registry.

A labeler reads (prompt, response) pairs and says, per pair, whether the response refused: `refused`
is a nullable boolean (null = the labeler could not tell, never a silent "no"), `p_refusal` an
optional probability (NaN when the labeler has none), plus any columns of its own.

Every module in this package that defines `LABELER = RefusalLabeler(...)` is registered, and each
registered labeler becomes a `labels_<name>` asset, a row of `labeler_validation`, a
labeler of every analysis and a column of `labeler_comparison`. Adding a labeler is one module here
plus its test; a name of at most 11 characters keeps `labels_<name>` whole in the lineage (Dagster cuts
names past 18 characters when zoomed out). Labelers from other packages are registered by naming their modules in
DEEPCONF_LABELER_MODULES (comma-separated, importable), read when the code location loads.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

ASSET_PREFIX = "labels_"


class LabelerUnavailable(RuntimeError):
    """The labeler cannot run here (e.g. its weights are missing); the message says why and how to fix it."""


@dataclass(frozen=True)
class LabelerContext:
    """What a labeler may use besides its input: the generation resource (for model-based labelers)
    and a log function."""

    generator: object = None
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class RefusalLabeler:
    name: str
    description: str
    # (prompts, responses, context) -> one row per pair, in input order, with `refused` (boolean) and
    # optionally `p_refusal` (float) and the labeler's own columns; raises LabelerUnavailable.
    label: Callable[[list[str], list[str], LabelerContext], pd.DataFrame]
    # the labeler's own output columns and their pandas dtypes (besides refused and p_refusal)
    extra_columns: dict[str, str] = field(default_factory=dict)
    needs_gpu: bool = False  # loads a model: a step on the `gpu` pool
    model_key: str | None = None  # its model in the model registry, when it has one
    max_unlabelled_share: float = 0.05  # the labels check fails above this share of null labels

    @property
    def asset_name(self) -> str:
        return ASSET_PREFIX + self.name

    def columns(self) -> dict[str, str]:
        return {"refused": "boolean", "p_refusal": "float64", **self.extra_columns}

    def empty_labels(self, n: int) -> pd.DataFrame:
        """`n` rows of unknown labels, in this labeler's columns."""
        return pd.DataFrame({c: pd.Series([None] * n, dtype=t) for c, t in self.columns().items()})

    def run(self, prompts: list[str], responses: list[str], context: LabelerContext) -> pd.DataFrame:
        """`label`, checked: one row per pair, every column present with its dtype."""
        table = self.label(list(prompts), list(responses), context) if len(prompts) else self.empty_labels(0)
        if len(table) != len(prompts):
            raise ValueError(f"labeler '{self.name}' returned {len(table)} rows for {len(prompts)} responses")
        if "refused" not in table:
            raise ValueError(f"labeler '{self.name}' returned no 'refused' column")
        table = table.reset_index(drop=True).reindex(columns=list(self.columns()))
        return table.astype(self.columns())


def _discover() -> dict[str, RefusalLabeler]:
    names = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)]
    names += [n.strip() for n in os.environ.get("DEEPCONF_LABELER_MODULES", "").split(",") if n.strip()]
    found: dict[str, RefusalLabeler] = {}
    for module_name in names:
        labeler = getattr(importlib.import_module(module_name), "LABELER", None)
        if labeler is None:
            continue
        if labeler.name in found:
            raise ValueError(f"two labelers are named '{labeler.name}' ({module_name})")
        found[labeler.name] = labeler
    return dict(sorted(found.items()))


LABELERS: dict[str, RefusalLabeler] = _discover()


def labeler_of_asset(asset_name: str) -> RefusalLabeler:
    return LABELERS[asset_name.removeprefix(ASSET_PREFIX)]
