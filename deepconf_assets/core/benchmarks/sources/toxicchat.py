"""ToxicChat (Lin et al. 2023): real user prompts with human toxicity and jailbreaking labels."""

from __future__ import annotations

import ast

import pandas as pd

from deepconf_assets.core.benchmarks.contract import as_text, map_labels, require_columns, to_contract, unique_ids
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec, HubSource, Licence


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
    require_columns(
        raw, ["conv_id", "user_input", "toxicity", "jailbreaking", "openai_moderation"], source
    )
    unique_ids(raw, "conv_id", source)
    flag = {0: False, 1: True, "0": False, "1": True}
    toxic = map_labels(raw["toxicity"], flag, source, "toxicity", nullable=False)
    jailbreak = map_labels(raw["jailbreaking"], flag, source, "jailbreaking", nullable=False)
    moderation = [_max_moderation_score(v) for v in raw["openai_moderation"]]
    category = pd.Series("non-toxic", index=raw.index)
    category[toxic.to_numpy(dtype=bool)] = "toxic"
    category[jailbreak.to_numpy(dtype=bool)] = "jailbreaking"
    df = pd.DataFrame(
        {
            "split": split,
            "prompt": as_text(raw["user_input"]),
            "prompt_harmful": toxic,
            "category": category,
            "adversarial": jailbreak,
            "openai_moderation_max": pd.Series(moderation, index=raw.index, dtype="float64"),
        }
    )
    return to_contract(df, "toxicchat", raw["conv_id"], extra=["openai_moderation_max"])


SPEC = BenchmarkSpec(
    "toxicchat", normalize_toxicchat,
    Licence("CC-BY-NC-4.0", "https://huggingface.co/datasets/lmsys/toxic-chat (not shipped)"),
    local_file="toxic-chat_annotation_test.csv",
    hub=HubSource("lmsys/toxic-chat", "data/0124/toxic-chat_annotation_test.csv"),
    order=30,
)
