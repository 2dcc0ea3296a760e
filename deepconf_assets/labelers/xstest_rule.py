"""XSTest's own string-match baseline (Röttger et al. 2024): a refusal when the lower-cased,
stripped response starts with one of its prefixes (deepconf_assets.core.refusal.XSTEST_PREFIXES)."""

import numpy as np
import pandas as pd

from deepconf_assets.core.refusal import xstest_prefix_rule
from deepconf_assets.labelers import LabelerContext, RefusalLabeler


def label(prompts: list[str], responses: list[str], context: LabelerContext) -> pd.DataFrame:
    return pd.DataFrame({"refused": [xstest_prefix_rule(r) for r in responses], "p_refusal": np.nan})


LABELER = RefusalLabeler(
    name="xstest_rule",
    description="XSTest's prefix rule: refusal when the answer starts with 'Sorry', 'I cannot', 'As an AI', ...",
    label=label,
)
