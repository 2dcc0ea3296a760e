"""HarmBench (Mazeika et al. 2024): the text behaviours, every one harmful."""

from __future__ import annotations

import pandas as pd

from deepconf_assets.core.benchmarks.contract import as_text, require_columns, to_contract, unique_ids
from deepconf_assets.core.benchmarks.spec import BenchmarkSpec, Licence


def normalize_harmbench(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """HarmBench text behaviours; every behaviour is harmful.

    Contextual behaviours are posed as HarmBench does: the context, a `---` separator, the request.
    `split` carries HarmBench's functional category (standard | copyright | contextual).
    """
    require_columns(
        raw, ["Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID"], source
    )
    unique_ids(raw, "BehaviorID", source)
    context = raw["ContextString"].fillna("").astype(str).str.strip()
    behavior = as_text(raw["Behavior"])
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


SPEC = BenchmarkSpec(
    "harmbench", normalize_harmbench,
    Licence("MIT", "https://github.com/centerforaisafety/HarmBench/blob/main/LICENSE; "
                    "see data/harmbench/SOURCE.md"),
    local_file="harmbench_behaviors_text_all.csv",
    order=20,
)
