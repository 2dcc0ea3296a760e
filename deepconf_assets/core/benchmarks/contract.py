"""The `benchmark_prompts` data contract and the helpers every normaliser validates with.

Contract columns (one row per prompt):
    instance_id            stable hash of benchmark + source id
    benchmark, split
    prompt                 the text sent to the model
    prompt_harmful         gold label, nullable boolean (WildGuardMix has unlabelled prompts)
    category
    adversarial            nullable boolean
    gold_response          nullable: a reference response shipped with the benchmark
    gold_response_refusal  nullable boolean
    gold_response_harmful  nullable boolean

The helpers raise `BenchmarkFileError` naming the file, the data row (1-based, header excluded) and the
field; no row is dropped and no missing gold label is turned into "safe".
"""

from __future__ import annotations

import hashlib

import pandas as pd

CONTRACT_COLUMNS = [
    "instance_id",
    "benchmark",
    "split",
    "prompt",
    "prompt_harmful",
    "category",
    "adversarial",
    "gold_response",
    "gold_response_refusal",
    "gold_response_harmful",
]

GOLD_COLUMNS = ["prompt", "response", "gold_refusal"]


class BenchmarkFileError(ValueError):
    """Bad or missing benchmark input; the message names the file, row and field."""


def instance_id(benchmark: str, source_id: object) -> str:
    """Stable 16-hex id from the benchmark name and the benchmark's own row id."""
    return hashlib.sha256(f"{benchmark}:{source_id}".encode()).hexdigest()[:16]


def require_columns(df: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        near = {str(f).strip().casefold(): f for f in df.columns}
        hints = [f"{near[c.casefold()]!r} differs from {c!r} only in case or spaces: rename it"
                 for c in missing if c.casefold() in near]
        raise BenchmarkFileError(
            f"{source}: missing column(s) {missing}; found {list(df.columns)}" + (f" ({'; '.join(hints)})" if hints else "")
        )


def as_text(series: pd.Series) -> pd.Series:
    """Prompt text; an empty or missing prompt stays in the table as "" (counted by the
    `benchmark_prompts` checks and kept away from the engine), never silently dropped."""
    return series.fillna("").astype(str)


def map_labels(
    series: pd.Series, mapping: dict, source: str, field: str, nullable: bool
) -> pd.Series:
    """Map label values to a nullable boolean; unknown values raise, nulls stay null."""
    normalized = series.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    nulls = normalized.isna()
    known = normalized.isin(list(mapping))
    bad = ~known & ~nulls
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BenchmarkFileError(
            f"{source}: data row {row + 1}, field '{field}': unexpected value "
            f"{series.iloc[row]!r}; expected one of {sorted(map(str, mapping))}"
        )
    if nulls.any() and not nullable:
        row = int(nulls.to_numpy().nonzero()[0][0])
        raise BenchmarkFileError(f"{source}: data row {row + 1}, field '{field}': missing label")
    return normalized.map(mapping).astype("boolean")


def unique_ids(df: pd.DataFrame, column: str, source: str) -> None:
    """Ids name instances: a missing or repeated id would merge or invent one, so both raise."""
    missing = df[column].isna() | (df[column].astype(str).str.strip() == "")
    if missing.any():
        row = int(missing.to_numpy().nonzero()[0][0])
        raise BenchmarkFileError(f"{source}: data row {row + 1}, field '{column}': missing id")
    dup = df[column].duplicated(keep=False)
    if dup.any():
        rows = (dup.to_numpy().nonzero()[0][:5] + 1).tolist()
        raise BenchmarkFileError(
            f"{source}: field '{column}' has duplicate ids (data rows {rows}, value "
            f"{df[column][dup].iloc[0]!r}); ids must be unique"
        )


def to_contract(df: pd.DataFrame, benchmark: str, source_ids: pd.Series, extra: list[str] = ()) -> pd.DataFrame:
    """Finish a normaliser: add instance_id and benchmark, fill absent optional columns with nulls, cast
    the nullable booleans and order the columns as the contract (then `extra`)."""
    out = df.copy()
    out["instance_id"] = [instance_id(benchmark, s) for s in source_ids]
    out["benchmark"] = benchmark
    for col in ("gold_response",):
        if col not in out:
            out[col] = pd.Series([None] * len(out), dtype="object")
    for col in ("adversarial", "gold_response_refusal", "gold_response_harmful"):
        if col not in out:
            out[col] = pd.Series([pd.NA] * len(out), dtype="boolean")
        out[col] = out[col].astype("boolean")
    out["prompt_harmful"] = out["prompt_harmful"].astype("boolean")
    out["category"] = out["category"].astype(str)
    return out[CONTRACT_COLUMNS + list(extra)].reset_index(drop=True)
