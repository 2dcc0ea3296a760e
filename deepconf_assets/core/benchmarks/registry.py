"""The benchmark registry: every `SPEC` in a module of `sources/` (plus modules named in
DEEPCONF_BENCHMARK_MODULES, comma-separated and importable), read when the package is imported.

`BENCHMARK_SPECS` is ordered by (spec.order, name); `BENCHMARKS` (its names) is the order of the
`benchmark` partition keys. The partitions, schedules, raw source assets, `benchmark_prompts` and
`labeler_validation` all read it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from deepconf_assets.core.benchmarks import sources
from deepconf_assets.core.benchmarks.contract import BenchmarkFileError
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec

MODULES_ENV = "DEEPCONF_BENCHMARK_MODULES"

SOURCE_MODULES = tuple(f"{sources.__name__}.{m.name}" for m in pkgutil.iter_modules(sources.__path__))


def discover_specs(module_names: Iterable[str] = SOURCE_MODULES, named: Iterable[str] = ()) -> dict[str, BenchmarkSpec]:
    """The `SPEC` of each module, ordered by (order, name). A module of `module_names` without a SPEC is
    skipped (a helper); one in `named` (asked for by name) without a SPEC, or two specs with one name, raise."""
    found: dict[str, BenchmarkSpec] = {}
    for module_name, required in [*((m, False) for m in module_names), *((m, True) for m in named)]:
        spec = getattr(importlib.import_module(module_name), "SPEC", None)
        if spec is None:
            if required:
                raise ValueError(f"{MODULES_ENV} names module '{module_name}', which defines no SPEC")
            continue
        if spec.name in found:
            raise ValueError(f"two benchmarks are named '{spec.name}' ({module_name})")
        found[spec.name] = spec
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def _named_modules() -> list[str]:
    return [n.strip() for n in os.environ.get(MODULES_ENV, "").split(",") if n.strip()]


BENCHMARK_SPECS: dict[str, BenchmarkSpec] = discover_specs(SOURCE_MODULES, _named_modules())

BENCHMARKS = tuple(BENCHMARK_SPECS)


def spec_for(benchmark: str, specs: Mapping[str, BenchmarkSpec] | None = None) -> BenchmarkSpec:
    """The spec of `benchmark` in `specs` (default: `BENCHMARK_SPECS`); unknown names raise."""
    specs = BENCHMARK_SPECS if specs is None else specs
    if benchmark not in specs:
        raise BenchmarkFileError(f"unknown benchmark {benchmark!r}; expected one of {tuple(specs)}")
    return specs[benchmark]


def local_path(benchmark: str, data_dir: Path, *, specs: Mapping[str, BenchmarkSpec] | None = None) -> Path | None:
    """`<data dir>/<benchmark>/<official file>`; None for a generated benchmark (`synthetic`)."""
    return spec_for(benchmark, specs).local_path(data_dir)


def load_benchmark(
    benchmark: str, data_dir: Path, *, specs: Mapping[str, BenchmarkSpec] | None = None
) -> tuple[pd.DataFrame, str]:
    """Load one benchmark into the contract; returns (prompts, where it came from)."""
    return spec_for(benchmark, specs).load(data_dir)


def gold_responses(
    benchmark: str, prompts: pd.DataFrame | None, data_dir: Path, *,
    specs: Mapping[str, BenchmarkSpec] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Gold (human-labelled) refusal responses: columns prompt, response, gold_refusal (nullable
    boolean), and a description of where they come from; an empty frame and "" when the benchmark has
    none. `prompts` is the benchmark's contract (needed for WildGuardMix; loaded from `data_dir` when None)."""
    return spec_for(benchmark, specs).gold_responses(prompts, data_dir)
