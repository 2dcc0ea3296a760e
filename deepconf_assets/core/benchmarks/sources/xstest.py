"""XSTest (Röttger et al. 2024): 250 safe prompts that look unsafe and 200 unsafe contrasts."""

from __future__ import annotations

import pandas as pd

from deepconf_assets.core.benchmarks.contract import (
    BenchmarkFileError, as_text, map_labels, require_columns, to_contract, unique_ids,
)
from deepconf_assets.core.benchmarks.gold import LabelledCompletions
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec, Licence


def normalize_xstest(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """XSTest: `id,prompt,type,label,focus,note`; label safe|unsafe; contrast_* types are unsafe."""
    require_columns(raw, ["id", "prompt", "type", "label"], source)
    unique_ids(raw, "id", source)
    harmful = map_labels(raw["label"], {"safe": False, "unsafe": True}, source, "label", nullable=False)
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
            "prompt": as_text(raw["prompt"]),
            "prompt_harmful": harmful,
            "category": raw["type"].astype(str),
            "adversarial": False,
        }
    )
    return to_contract(df, "xstest", raw["id"])


SPEC = BenchmarkSpec(
    "xstest", normalize_xstest, Licence("CC-BY-4.0", "data/xstest/LICENSE"),
    local_file="xstest_prompts.csv",
    gold=LabelledCompletions(
        "XSTest human labels", "xstest_v2_completions_mistralinstruct.csv",
        refusal=("2_full_refusal", "3_partial_refusal"), compliance=("1_full_compliance",),
    ),
    order=10,
)
