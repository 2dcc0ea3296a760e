"""The pattern heuristic (deepconf_assets.core.refusal): opening refusals, soft refusals and explicit
refusals anywhere, after removing known false positives; `matched_pattern` says which rule fired."""

import numpy as np
import pandas as pd

from deepconf_assets.core.refusal import match_refusal
from deepconf_assets.labelers import LabelerContext, RefusalLabeler


def label(prompts: list[str], responses: list[str], context: LabelerContext) -> pd.DataFrame:
    matched = pd.Series(responses, dtype=object).map(match_refusal)
    return pd.DataFrame({"refused": matched.notna(), "p_refusal": np.nan, "matched_pattern": matched})


LABELER = RefusalLabeler(
    name="heuristic",
    description="Pattern heuristic: an opening or soft refusal in the first sentence, an explicit refusal "
                "anywhere, after removing known false positives such as \"I'm sorry to hear\".",
    label=label,
    extra_columns={"matched_pattern": "object"},
)
