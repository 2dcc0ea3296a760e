"""Gold (human-labelled) refusal responses: where a benchmark's come from, as a frame of
`GOLD_COLUMNS` (prompt, response, gold_refusal) that `labeler_validation` scores labelers against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepconf_assets.core.benchmarks.contract import BenchmarkFileError, as_text, map_labels, require_columns
from deepconf_assets.core.benchmarks.reader import read_raw_file


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
        require_columns(raw, [self.prompt_field, self.response_field, self.label_field], str(path))
        mapping = {**{v.strip().lower(): False for v in self.compliance},
                   **{v.strip().lower(): True for v in self.refusal}}
        refused = map_labels(raw[self.label_field], mapping, str(path), self.label_field, nullable=False)
        return _gold_frame(as_text(raw[self.prompt_field]), as_text(raw[self.response_field]), refused)


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
