"""Does instance confidence tell correct from wrong decisions?

- AUROC of confidence for correctness (sklearn; 0.5 = no signal, > 0.5 = confident is more often
  correct). NaN when every decision is correct or every one wrong.
- ECE (15 equal-width bins) and Brier need a probability. DeepConf confidence is not one, so it is
  rescaled to [0, 1] by min-max over the partition's instances (`p_confident`). ECE and Brier depend
  on that choice; AUROC and AURC do not (they use ranks only).
- Risk-coverage: instances sorted by confidence, most confident first; at coverage k/n the risk is the
  error rate among the k most confident. AURC = mean risk over k = 1..n (lower is better).
- Mann-Whitney U (two-sided) of confidence between correct and wrong decisions, and between harmful
  and benign prompts, with medians and n.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

ECE_BINS = 15


def rescale(confidence: np.ndarray) -> np.ndarray:
    low, high = np.min(confidence), np.max(confidence)
    return np.full_like(confidence, 0.5) if high == low else (confidence - low) / (high - low)


def reliability_bins(probability: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS):
    """Equal-width bins on [0, 1] (bin b holds (b/B, (b+1)/B]; 0 falls in the first bin): instances,
    accuracy and mean probability per bin (NaN where a bin is empty)."""
    index = np.clip(np.ceil(probability * bins).astype(np.int64) - 1, 0, bins - 1)
    n = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / n
        mean_probability = np.bincount(index, weights=probability, minlength=bins) / n
    return n, accuracy, mean_probability


def expected_calibration_error(probability: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum_b |B_b|/n * |accuracy(B_b) - mean probability(B_b)| over `reliability_bins`."""
    n, accuracy, mean_probability = reliability_bins(probability, correct, bins)
    filled = n > 0
    return float((n[filled] * np.abs(accuracy[filled] - mean_probability[filled])).sum() / len(probability))


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(1.0 - correct[order])
    k = np.arange(1, len(order) + 1)
    return k / len(order), errors / k


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict:
    if len(a) == 0 or len(b) == 0:
        return {"u": float("nan"), "p": float("nan"), "median_a": float("nan"), "median_b": float("nan"),
                "n_a": len(a), "n_b": len(b)}
    test = stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"u": float(test.statistic), "p": float(test.pvalue), "median_a": float(np.median(a)),
            "median_b": float(np.median(b)), "n_a": len(a), "n_b": len(b)}


def calibration_report(confidence, correct, prompt_harmful) -> dict:
    """Scalar calibration metrics plus the risk-coverage curve; unknown rows are excluded."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    harm = np.asarray(prompt_harmful, dtype=np.float64)
    keep = np.isfinite(conf) & ~np.isnan(corr)
    conf, corr, harm = conf[keep], corr[keep], harm[keep]
    out = {"n": int(keep.sum()), "auroc": float("nan"), "ece": float("nan"), "brier": float("nan"),
           "aurc": float("nan"), "coverage": np.zeros(0), "risk": np.zeros(0)}
    if len(conf):
        p = rescale(conf)
        out["ece"] = expected_calibration_error(p, corr)
        out["brier"] = float(np.mean((p - corr) ** 2))
        out["coverage"], out["risk"] = risk_coverage(conf, corr)
        out["aurc"] = float(out["risk"].mean())
        if len(np.unique(corr)) == 2:
            out["auroc"] = float(roc_auc_score(corr, conf))
    by_correct = mann_whitney(conf[corr == 1.0], conf[corr == 0.0])
    by_harm = mann_whitney(conf[harm == 1.0], conf[harm == 0.0])
    out.update({f"mwu_correct_vs_wrong_{k}": v for k, v in by_correct.items()})
    out.update({f"mwu_harmful_vs_benign_{k}": v for k, v in by_harm.items()})
    return out
