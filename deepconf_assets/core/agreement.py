"""How far can a refusal labeler be trusted? Agreement with gold labels or with another labeler.

Positive class here = REFUSAL (the labeler says the response refused). Rows where either side is
unknown (null) are excluded and counted; kappa is Cohen's kappa (sklearn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from deepconf_assets.core.metrics import as_float

XSTEST_COMPLETIONS = "xstest_v2_completions_mistralinstruct.csv"
XSTEST_REFUSAL_LABELS = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": True}


def refusal_agreement(reference, labels) -> dict:
    ref, lab = as_float(reference), as_float(labels)
    known = ~np.isnan(ref) & ~np.isnan(lab)
    r, p = ref[known] == 1.0, lab[known] == 1.0
    tp, fp, fn, tn = int((r & p).sum()), int((~r & p).sum()), int((r & ~p).sum()), int((~r & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    both_classes = len(set(r)) > 1 or len(set(p)) > 1
    return {
        "n": int(known.sum()), "n_excluded_unknown": int((~known).sum()),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "agreement": float((r == p).mean()) if known.any() else float("nan"),
        "precision": precision, "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "kappa": float(cohen_kappa_score(r, p)) if known.any() and both_classes else float("nan"),
    }


def xstest_gold_responses(data_dir: Path) -> pd.DataFrame:
    """XSTest's human-labelled completions of one model: prompt, response, gold_refusal (partial
    refusal counts as refusal)."""
    path = Path(data_dir) / "xstest" / XSTEST_COMPLETIONS
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    unknown = ~raw["final_label"].isin(list(XSTEST_REFUSAL_LABELS))
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}: data row {row + 1}, field 'final_label': unexpected value "
                         f"{raw['final_label'].iloc[row]!r}; expected one of {sorted(XSTEST_REFUSAL_LABELS)}")
    return pd.DataFrame({"prompt": raw["prompt"], "response": raw["completion"],
                         "gold_refusal": raw["final_label"].map(XSTEST_REFUSAL_LABELS).astype("boolean")})
