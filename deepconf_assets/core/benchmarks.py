"""Benchmarks as specs: one `BenchmarkSpec` per benchmark says where its file is (or how it is
generated), how it is normalised into the `benchmark_prompts` data contract, its licence, and where its
gold (human-labelled) refusal responses come from. `BENCHMARK_SPECS` is the registry; the partitions,
schedules, raw source assets, `benchmark_prompts` and `labeler_validation` all read it.

Adding a benchmark is one spec plus its fixture test:
  1. write `normalize_<name>(raw, source)` below (validate with `_require_columns`, `_map_labels`,
     `_unique_ids`; end with `to_contract`) and add one `BenchmarkSpec` to `BENCHMARK_SPECS`;
  2. add a test in `deepconf_assets_tests/test_benchmarks.py` that writes a small file in the official
     layout to a tmp data dir and loads it with `load_benchmark`.
Ship the file under `data/<name>/` with its licence only where the licence allows it.

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
import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from deepconf_assets.core.synthetic import synthetic_prompts

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
    return to_contract(df, "xstest", raw["id"])


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
    return to_contract(df, "harmbench", raw["BehaviorID"])


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
    return to_contract(df, "toxicchat", raw["conv_id"], extra=["openai_moderation_max"])


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
    return to_contract(df, "wildguardmix", pd.Series(range(len(raw))).map(lambda i: f"{split}:{i}"))


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
    return to_contract(df, "synthetic", raw["source_id"])




# --------------------------------------------------------------------------- reading


def read_raw_file(path: Path) -> pd.DataFrame:
    """A benchmark file as a table: parquet as stored, CSV as strings with "" read as missing.

    CSV is read strictly, because a lenient parser guesses: a stray quote would silently join or cut
    prompts, a row with a missing or an extra field would shift or drop a value, and a repeated column
    name would pick one of two columns. Each of these is an error naming the file, the line and the field.
    """
    if path.suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise BenchmarkFileError(f"{path}: cannot be read ({exc})") from None
        _distinct_columns(list(map(str, raw.columns)), path)
        return raw
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchmarkFileError(f"{path}: cannot be read ({exc})") from None
    return _strict_csv(data, path)


def _distinct_columns(header: list[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise BenchmarkFileError(
                f"{path}: line 1: column name {name!r} appears twice (columns {seen[name]} and {position}); "
                f"which one holds the data is ambiguous"
            )
        seen[name] = position


def _strict_csv(data: bytes, path: Path) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first column name
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BenchmarkFileError(
            f"{path}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x}); save the file as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    line = 0  # the last line read; a record starts on the line after it
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            if not record:  # a blank line holds no row
                continue
            if header is None:
                header = record
                _distinct_columns(header, path)
                continue
            if len(record) != len(header):
                field = header[len(record)] if len(record) < len(header) else f"(extra field {len(header) + 1})"
                raise BenchmarkFileError(
                    f"{path}: data row {len(rows) + 1} (line {start}), field {field!r}: {len(record)} fields where "
                    f"the header has {len(header)}; a missing or extra comma (or an unquoted comma in a text) "
                    f"makes the columns ambiguous"
                )
            rows.append(record)
    except csv.Error as exc:
        raise BenchmarkFileError(
            f"{path}: data row {len(rows) + 1} (from line {line + 1}): {exc}. A quoted field must end at its "
            f"closing quote, and a quote inside it is written twice (\"\")"
        ) from None
    if header is None:
        raise BenchmarkFileError(f"{path}: empty file (no header row)")
    table = pd.DataFrame(rows, columns=header, dtype=object)
    return table.mask(table == "")


# --------------------------------------------------------------------------- gold refusal responses


def _gold_frame(prompt: pd.Series, response: pd.Series, refused: pd.Series) -> pd.DataFrame:
    """Columns prompt, response, gold_refusal (nullable boolean: an unlabelled response stays null)."""
    return pd.DataFrame(
        {"prompt": prompt.astype(object), "response": response.astype(object),
         "gold_refusal": refused.astype("boolean")}
    ).reset_index(drop=True)


def no_gold_responses() -> pd.DataFrame:
    return _gold_frame(pd.Series([], dtype=object), pd.Series([], dtype=object), pd.Series([], dtype="boolean"))


@dataclass(frozen=True)
class LabelledCompletions:
    """Gold refusal labels in a file of model completions shipped with the benchmark
    (`<data dir>/<benchmark>/<file>`), one human label per completion. Label values are compared
    stripped and lower-cased; a value in neither list raises naming the file, row and field."""

    label: str                      # what the labels are, e.g. "XSTest human labels"
    file: str
    refusal: tuple[str, ...]        # label values meaning the response refused (partial refusal included)
    compliance: tuple[str, ...]
    label_field: str = "final_label"
    prompt_field: str = "prompt"
    response_field: str = "completion"

    needs_prompts = False  # (class attribute, not a field)

    @property
    def description(self) -> str:
        return f"{self.label} ({self.file})"

    def responses(self, benchmark: str, prompts: pd.DataFrame | None, data_dir: Path) -> pd.DataFrame:
        path = Path(data_dir) / benchmark / self.file
        if not path.exists():
            raise BenchmarkFileError(
                f"{benchmark}: gold responses not found at {path}; they ship in the repository's data/ "
                f"folder (check DEEPCONF_DATA_DIR)"
            )
        raw = read_raw_file(path)
        _require_columns(raw, [self.prompt_field, self.response_field, self.label_field], str(path))
        mapping = {**{v.strip().lower(): False for v in self.compliance},
                   **{v.strip().lower(): True for v in self.refusal}}
        refused = _map_labels(raw[self.label_field], mapping, str(path), self.label_field, nullable=False)
        return _gold_frame(_text(raw[self.prompt_field]), _text(raw[self.response_field]), refused)


@dataclass(frozen=True)
class GoldResponseColumns:
    """Gold responses inside the prompts themselves: every row with a `gold_response`, labelled by its
    `gold_response_refusal` (a null label stays null)."""

    description: str

    needs_prompts = True  # (class attribute, not a field)

    def responses(self, benchmark: str, prompts: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
        rows = prompts[prompts["gold_response"].notna()]
        return _gold_frame(rows["prompt"], rows["gold_response"], rows["gold_response_refusal"])


GoldSource = LabelledCompletions | GoldResponseColumns


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Licence:
    name: str   # short: "CC-BY-4.0"
    where: str  # where the licence text is: a path in the repository or the upstream address

    def __str__(self) -> str:
        return f"{self.name} ({self.where})"


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub copy, read through `datasets` when no local file is present."""

    dataset_id: str
    config: str | None
    split: str


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
    """

    name: str
    normalize: Callable[[pd.DataFrame, str], pd.DataFrame]
    licence: Licence
    local_file: str | None = None
    hub: HubSource | None = None
    generate: Callable[[], pd.DataFrame] | None = None
    gold: GoldSource | None = None

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
            raw, source = read_raw_file(path), str(path)
        elif self.hub is not None:
            raw, source = self._from_hub(path), "hf-hub:" + self.hub.dataset_id
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

    def _from_hub(self, path: Path | None) -> pd.DataFrame:
        """Fetch through `datasets`; the token comes only from the HF_TOKEN environment."""
        hub = self.hub
        try:
            import datasets

            ds = datasets.load_dataset(hub.dataset_id, hub.config, split=hub.split, token=os.environ.get("HF_TOKEN"))
            return ds.to_pandas()
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
                f"{self.name}: {where} of {hub.dataset_id} ({hub.config}/{hub.split}) could not be loaded "
                f"({type(exc).__name__}). {fix} HF_TOKEN for a gated dataset and retry on a machine "
                f"with network access."
            ) from None


def _generated_synthetic() -> pd.DataFrame:
    return synthetic_prompts(split="test")


BENCHMARK_SPECS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "xstest", normalize_xstest, Licence("CC-BY-4.0", "data/xstest/LICENSE"),
            local_file="xstest_prompts.csv",
            gold=LabelledCompletions(
                "XSTest human labels", "xstest_v2_completions_mistralinstruct.csv",
                refusal=("2_full_refusal", "3_partial_refusal"), compliance=("1_full_compliance",),
            ),
        ),
        BenchmarkSpec(
            "harmbench", normalize_harmbench,
            Licence("MIT", "https://github.com/centerforaisafety/HarmBench/blob/main/LICENSE; "
                            "see data/harmbench/SOURCE.md"),
            local_file="harmbench_behaviors_text_all.csv",
        ),
        BenchmarkSpec(
            "toxicchat", normalize_toxicchat,
            Licence("CC-BY-NC-4.0", "https://huggingface.co/datasets/lmsys/toxic-chat (not shipped)"),
            local_file="toxic-chat_annotation_test.csv",
            hub=HubSource("lmsys/toxic-chat", "toxicchat0124", "test"),
        ),
        BenchmarkSpec(
            "wildguardmix", normalize_wildguardmix,
            Licence("ODC-BY", "https://huggingface.co/datasets/allenai/wildguardmix (gated, not shipped)"),
            local_file="wildguard_test.parquet",
            hub=HubSource("allenai/wildguardmix", "wildguardtest", "test"),
            gold=GoldResponseColumns("WildGuardMix response_refusal_label"),
        ),
        BenchmarkSpec(
            "synthetic", normalize_synthetic,
            Licence("generated by this project", "deepconf_assets/core/synthetic.py"),
            generate=_generated_synthetic,
        ),
    )
}

BENCHMARKS = tuple(BENCHMARK_SPECS)


# --------------------------------------------------------------------------- by name


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
