"""Benchmark loaders: official file layouts -> the `benchmark_prompts` data contract.

Pure pandas (no dagster). Every loader validates what it reads and raises `BenchmarkFileError`
naming the file, the data row (1-based, header excluded) and the field when input is bad; no row is
dropped and no missing gold label is turned into "safe".

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
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path
from typing import Callable

import pandas as pd

from deepconf_assets.core.synthetic import synthetic_prompts

BENCHMARKS = ("xstest", "harmbench", "toxicchat", "wildguardmix", "synthetic")

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

# Official file names, relative to `<data dir>/<benchmark>/`.
LOCAL_FILES = {
    "xstest": "xstest_prompts.csv",
    "harmbench": "harmbench_behaviors_text_all.csv",
    "toxicchat": "toxic-chat_annotation_test.csv",
    "wildguardmix": "wildguard_test.parquet",
}

# Hub fallbacks for the benchmarks we may not redistribute: (dataset id, config, split).
HUB_SOURCES = {
    "toxicchat": ("lmsys/toxic-chat", "toxicchat0124", "test"),
    "wildguardmix": ("allenai/wildguardmix", "wildguardtest", "test"),
}


class BenchmarkFileError(ValueError):
    """Bad or missing benchmark input; the message names the file, row and field."""


def instance_id(benchmark: str, source_id: object) -> str:
    """Stable 16-hex id from the benchmark name and the benchmark's own row id."""
    return hashlib.sha256(f"{benchmark}:{source_id}".encode()).hexdigest()[:16]


def local_path(benchmark: str, data_dir: Path) -> Path:
    return Path(data_dir) / benchmark / LOCAL_FILES[benchmark]


# --------------------------------------------------------------------------- validation helpers


def _require_columns(df: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BenchmarkFileError(
            f"{source}: missing column(s) {missing}; found {list(df.columns)}"
        )


def _text(series: pd.Series) -> pd.Series:
    """Prompt text; an empty or missing prompt stays in the table as "" (counted by the
    `benchmark_prompts` checks and kept away from the engine), never silently dropped."""
    return series.fillna("").astype(str)


def _map_labels(
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


def _unique_ids(df: pd.DataFrame, column: str, source: str) -> None:
    dup = df[column].duplicated(keep=False)
    if dup.any():
        rows = (dup.to_numpy().nonzero()[0][:5] + 1).tolist()
        raise BenchmarkFileError(
            f"{source}: field '{column}' has duplicate ids (data rows {rows}, value "
            f"{df[column][dup].iloc[0]!r}); ids must be unique"
        )


def _finish(df: pd.DataFrame, benchmark: str, source_ids: pd.Series, extra: list[str] = ()) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- per-benchmark normalisers


def normalize_xstest(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """XSTest: `id,prompt,type,label,focus,note`; label safe|unsafe; contrast_* types are unsafe."""
    _require_columns(raw, ["id", "prompt", "type", "label"], source)
    _unique_ids(raw, "id", source)
    harmful = _map_labels(raw["label"], {"safe": False, "unsafe": True}, source, "label", nullable=False)
    by_type = raw["type"].astype(str).str.startswith("contrast_")
    mismatch = harmful.to_numpy(dtype=bool) != by_type.to_numpy()
    if mismatch.any():
        row = int(mismatch.nonzero()[0][0])
        raise BenchmarkFileError(
            f"{source}: data row {row + 1}, field 'label': {raw['label'].iloc[row]!r} contradicts "
            f"type {raw['type'].iloc[row]!r} (contrast_* types are the unsafe ones)"
        )
    df = pd.DataFrame(
        {
            "split": "test",
            "prompt": _text(raw["prompt"]),
            "prompt_harmful": harmful,
            "category": raw["type"].astype(str),
            "adversarial": False,
        }
    )
    return _finish(df, "xstest", raw["id"])


def normalize_harmbench(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """HarmBench text behaviours; every behaviour is harmful.

    Contextual behaviours are posed as HarmBench does: the context, a `---` separator, the request.
    `split` carries HarmBench's functional category (standard | copyright | contextual).
    """
    _require_columns(
        raw, ["Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID"], source
    )
    _unique_ids(raw, "BehaviorID", source)
    context = raw["ContextString"].fillna("").astype(str).str.strip()
    behavior = _text(raw["Behavior"])
    prompt = behavior.where(context == "", context + "\n\n---\n\n" + behavior)
    df = pd.DataFrame(
        {
            "split": raw["FunctionalCategory"].astype(str),
            "prompt": prompt,
            "prompt_harmful": True,
            "category": raw["SemanticCategory"].astype(str),
            "adversarial": False,
        }
    )
    return _finish(df, "harmbench", raw["BehaviorID"])


def _max_moderation_score(value: object) -> float:
    """`openai_moderation` is a Python-literal list of [category, score] pairs (not JSON).

    It is a non-gold reference, so a value that does not parse becomes NaN (counted in the asset's
    metadata) instead of failing the whole benchmark.
    """
    if not isinstance(value, (str, list, tuple)):
        return float("nan")
    try:
        pairs = ast.literal_eval(value) if isinstance(value, str) else value
        scores = [float(score) for _, score in pairs]
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return float("nan")
    return max(scores) if scores else float("nan")


def normalize_toxicchat(raw: pd.DataFrame, source: str, split: str = "test") -> pd.DataFrame:
    """ToxicChat (toxicchat0124): toxicity 0|1 is the gold label, jailbreaking 0|1 -> adversarial.

    The extra column `openai_moderation_max` keeps the highest OpenAI moderation score as a
    non-gold reference (NaN when absent or unparseable).
    """
    _require_columns(
        raw, ["conv_id", "user_input", "toxicity", "jailbreaking", "openai_moderation"], source
    )
    _unique_ids(raw, "conv_id", source)
    flag = {0: False, 1: True, "0": False, "1": True}
    toxic = _map_labels(raw["toxicity"], flag, source, "toxicity", nullable=False)
    jailbreak = _map_labels(raw["jailbreaking"], flag, source, "jailbreaking", nullable=False)
    moderation = [_max_moderation_score(v) for v in raw["openai_moderation"]]
    category = pd.Series("non-toxic", index=raw.index)
    category[toxic.to_numpy(dtype=bool)] = "toxic"
    category[jailbreak.to_numpy(dtype=bool)] = "jailbreaking"
    df = pd.DataFrame(
        {
            "split": split,
            "prompt": _text(raw["user_input"]),
            "prompt_harmful": toxic,
            "category": category,
            "adversarial": jailbreak,
            "openai_moderation_max": pd.Series(moderation, index=raw.index, dtype="float64"),
        }
    )
    return _finish(df, "toxicchat", raw["conv_id"], extra=["openai_moderation_max"])


def normalize_wildguardmix(raw: pd.DataFrame, source: str, split: str = "test") -> pd.DataFrame:
    """WildGuardMix: labels harmful|unharmful and refusal|compliance; every label column has nulls.

    Null labels stay null (never "safe"); downstream analyses exclude and count them. The source id
    is the row position in the official file, which has no id column.
    """
    _require_columns(
        raw,
        ["prompt", "response", "adversarial", "prompt_harm_label", "response_refusal_label",
         "response_harm_label", "subcategory"],
        source,
    )
    harm = {"harmful": True, "unharmful": False}
    df = pd.DataFrame(
        {
            "split": split,
            "prompt": _text(raw["prompt"]),
            "prompt_harmful": _map_labels(raw["prompt_harm_label"], harm, source, "prompt_harm_label", True),
            "category": raw["subcategory"].fillna("unlabelled").astype(str),
            "adversarial": _map_labels(
                raw["adversarial"], {True: True, False: False, "true": True, "false": False},
                source, "adversarial", True,
            ),
            "gold_response": raw["response"].where(raw["response"].notna(), None),
            "gold_response_refusal": _map_labels(
                raw["response_refusal_label"], {"refusal": True, "compliance": False},
                source, "response_refusal_label", True,
            ),
            "gold_response_harmful": _map_labels(
                raw["response_harm_label"], harm, source, "response_harm_label", True
            ),
        }
    )
    return _finish(df, "wildguardmix", pd.Series(range(len(raw))).map(lambda i: f"{split}:{i}"))


def normalize_synthetic(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "split": "test",
            "prompt": raw["prompt"],
            "prompt_harmful": raw["harmful"].astype(bool),
            "category": raw["category"],
            "adversarial": False,
        }
    )
    return _finish(df, "synthetic", raw["source_id"])


# --------------------------------------------------------------------------- reading


def read_raw_file(path: Path) -> pd.DataFrame:
    """Read a CSV (real parser: multi-line quoted fields) or parquet file, as strings where CSV."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BenchmarkFileError(f"{path}: not valid UTF-8 ({exc})") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise BenchmarkFileError(f"{path}: cannot be read ({exc})") from None


def _from_hub(benchmark: str, path: Path) -> pd.DataFrame:
    """Fetch a benchmark through `datasets`; the token comes only from the HF_TOKEN environment."""
    dataset_id, config, split = HUB_SOURCES[benchmark]
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config, split=split, token=os.environ.get("HF_TOKEN"))
        return ds.to_pandas()
    except Exception as exc:  # offline, gated without token, hub down: all end the same way
        raise BenchmarkFileError(
            f"{benchmark}: no local file at {path} and the Hugging Face hub copy of {dataset_id} "
            f"({config}/{split}) could not be loaded ({type(exc).__name__}). Put the official file "
            f"'{LOCAL_FILES[benchmark]}' at {path} (or point DEEPCONF_DATA_DIR at a folder holding "
            f"{benchmark}/{LOCAL_FILES[benchmark]}), or set HF_TOKEN for a gated dataset and retry "
            f"on a machine with network access."
        ) from None


NORMALIZERS: dict[str, Callable[[pd.DataFrame, str], pd.DataFrame]] = {
    "xstest": normalize_xstest,
    "harmbench": normalize_harmbench,
    "toxicchat": normalize_toxicchat,
    "wildguardmix": normalize_wildguardmix,
    "synthetic": normalize_synthetic,
}


def load_benchmark(benchmark: str, data_dir: Path) -> tuple[pd.DataFrame, str]:
    """Load one benchmark into the contract; returns (prompts, where it came from)."""
    if benchmark not in NORMALIZERS:
        raise BenchmarkFileError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    if benchmark == "synthetic":
        return normalize_synthetic(synthetic_prompts(split="test"), "synthetic"), "generated"
    path = local_path(benchmark, data_dir)
    if path.exists():
        raw, source = read_raw_file(path), str(path)
    elif benchmark in HUB_SOURCES:
        raw, source = _from_hub(benchmark, path), "hf-hub:" + HUB_SOURCES[benchmark][0]
    else:
        raise BenchmarkFileError(
            f"{benchmark}: file not found at {path}; it ships in the repository's data/ folder "
            f"(check DEEPCONF_DATA_DIR)"
        )
    return NORMALIZERS[benchmark](raw, source), source
