"""Benchmarks as specs: one `BenchmarkSpec` per benchmark says where its file is (or how it is
generated), how it is normalised into the `benchmark_prompts` data contract, its licence, and where its
gold (human-labelled) refusal responses come from.

    contract   the contract columns, `BenchmarkFileError`, and the helpers normalisers validate with
    reader     the strict file reader (parquet, strict CSV)
    gold       gold refusal response sources
    spec       `BenchmarkSpec`, `Licence`, `HubSource`: loading (local file, else hub, else an error)
    registry   `BENCHMARK_SPECS` / `BENCHMARKS`, discovered from `sources/`; look-ups by name
    sources/   one module per benchmark: its normaliser and its `SPEC`

Adding a benchmark is one module plus its files and test:
  1. write `sources/<name>.py` with `normalize_<name>(raw, source)` (validate with `require_columns`,
     `map_labels`, `unique_ids`; end with `to_contract`) and `SPEC = BenchmarkSpec(...)`;
  2. add a test in `deepconf_assets_tests/test_benchmarks.py` that writes a small file in the official
     layout to a tmp data dir and loads it with `load_benchmark`.
Ship the file under `data/<name>/` with its licence only where the licence allows it.

Pure pandas (no dagster). Every loader validates what it reads and raises `BenchmarkFileError`
naming the file, the data row (1-based, header excluded) and the field when input is bad; no row is
dropped and no missing gold label is turned into "safe".
"""

# The registry comes last: the benchmark modules it imports may use the names above.
from deepconf_assets.core.benchmarks.contract import (
    CONTRACT_COLUMNS, GOLD_COLUMNS, BenchmarkFileError, as_text, instance_id, map_labels, require_columns,
    to_contract, unique_ids,
)
from deepconf_assets.core.benchmarks.reader import read_raw_file
from deepconf_assets.core.benchmarks.gold import GoldResponseColumns, GoldSource, LabelledCompletions, no_gold_responses
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec, HubSource, Licence
from deepconf_assets.core.benchmarks.registry import (
    BENCHMARK_SPECS, BENCHMARKS, discover_specs, gold_responses, load_benchmark, local_path, spec_for,
)

__all__ = [
    "BENCHMARKS", "BENCHMARK_SPECS", "CONTRACT_COLUMNS", "GOLD_COLUMNS", "BenchmarkFileError", "BenchmarkSpec",
    "GoldResponseColumns", "GoldSource", "HubSource", "LabelledCompletions", "Licence", "as_text",
    "discover_specs", "gold_responses", "instance_id", "load_benchmark", "local_path", "map_labels",
    "no_gold_responses", "read_raw_file", "require_columns", "spec_for", "to_contract", "unique_ids",
]
