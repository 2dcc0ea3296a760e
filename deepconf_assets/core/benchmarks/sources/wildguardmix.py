"""WildGuardMix (Han et al. 2024), its test split: prompts with gold responses, partly unlabelled."""

from __future__ import annotations

import pandas as pd

from deepconf_assets.core.benchmarks.contract import as_text, map_labels, require_columns, to_contract
from deepconf_assets.core.benchmarks.gold import GoldResponseColumns
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec, HubSource, Licence


def normalize_wildguardmix(raw: pd.DataFrame, source: str, split: str = "test") -> pd.DataFrame:
    """WildGuardMix: labels harmful|unharmful and refusal|compliance; every label column has nulls.

    Null labels stay null (never "safe"); downstream analyses exclude and count them. The source id
    is the row position in the official file, which has no id column.
    """
    require_columns(
        raw,
        ["prompt", "response", "adversarial", "prompt_harm_label", "response_refusal_label",
         "response_harm_label", "subcategory"],
        source,
    )
    harm = {"harmful": True, "unharmful": False}
    df = pd.DataFrame(
        {
            "split": split,
            "prompt": as_text(raw["prompt"]),
            "prompt_harmful": map_labels(raw["prompt_harm_label"], harm, source, "prompt_harm_label", True),
            "category": raw["subcategory"].fillna("unlabelled").astype(str),
            "adversarial": map_labels(
                raw["adversarial"], {True: True, False: False, "true": True, "false": False},
                source, "adversarial", True,
            ),
            "gold_response": raw["response"].where(raw["response"].notna(), None),
            "gold_response_refusal": map_labels(
                raw["response_refusal_label"], {"refusal": True, "compliance": False},
                source, "response_refusal_label", True,
            ),
            "gold_response_harmful": map_labels(
                raw["response_harm_label"], harm, source, "response_harm_label", True
            ),
        }
    )
    return to_contract(df, "wildguardmix", pd.Series(range(len(raw))).map(lambda i: f"{split}:{i}"))


SPEC = BenchmarkSpec(
    "wildguardmix", normalize_wildguardmix,
    Licence("ODC-BY", "https://huggingface.co/datasets/allenai/wildguardmix (gated, not shipped)"),
    local_file="wildguard_test.parquet",
    hub=HubSource("allenai/wildguardmix", "test/wildguard_test.parquet"),
    gold=GoldResponseColumns("WildGuardMix response_refusal_label"),
    order=40,
)
