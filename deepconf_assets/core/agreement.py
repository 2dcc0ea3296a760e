"""How far can a refusal labeler be trusted? Agreement with gold labels or with another labeler.

Positive class here = REFUSAL (the labeler says the response refused). Rows where either side is
unknown (null) are excluded and counted; kappa is Cohen's kappa (sklearn).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score

from deepconf_assets.core.metrics import as_float


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
