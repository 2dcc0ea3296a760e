"""Does instance confidence tell correct from wrong decisions?

Primary, scale-free measures (ranks only, so any monotone map of confidence gives the same numbers):
- AUROC of confidence for correctness (sklearn; 0.5 = no signal, > 0.5 = confident is more often
  correct). NaN when every decision is correct or every one wrong.
- Risk-coverage: instances sorted by confidence, most confident first; at coverage k/n the risk is the
  error rate among the k most confident. AURC = mean risk over k = 1..n (lower is better).
Both come with a seeded percentile bootstrap 95% CI (instances resampled with replacement). The rows are
put in instance-id order first (`calibration_report`), so neither the resamples nor the order of tied
confidences depends on the order the rows arrive in.

Both are also reported within harmful and within benign prompts (`*_harmful`, `*_benign`): pooled
over both, opposite effects can cancel (on refusals, confidence may track being right on harmful
prompts and being wrong on benign ones).

ECE and Brier need a probability, and DeepConf confidence is not one. They are computed only on
P(correct | confidence) estimated by cross-fitted isotonic regression (`out_of_fold_probability`:
k-fold; each instance's probability comes from a monotone fit on the other folds), and named
so: `ece_isotonic_oof` (15 equal-width bins), `brier_isotonic_oof`. An instance's fold comes from a
seeded hash of its instance id, not from its row (`fold_ids`: blake2b of "{seed}:{instance_id}", the
instances in hash order dealt into near-equal folds), and the isotonic fits and sums run in an order
fixed by the ids, so any row order of the same instances gives the same ECE and Brier. Which instances
share a fold moves them, so each is the mean over FOLD_SEEDS fold assignments (hash seeds 0..19), with
the 5th and 95th percentile (`*_p5`, `*_p95`). Brier stands beside `brier_base_rate`, the Brier of
always predicting the share of correct decisions (p(1 - p)): a Brier no lower than it means confidence
adds nothing calibrated. The reliability diagram uses the probability of seed 0. No min-max rescaled
ECE/Brier is reported: those measure the rescaling.

Mann-Whitney U (two-sided) of confidence between correct and wrong decisions, and between harmful
and benign prompts, with medians and n.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from deepconf_assets.core.claims import MIN_CLASS

ECE_BINS = 15
OOF_FOLDS = 5
N_BOOT = 1000
SEED = 0
FOLD_SEEDS = 20  # fold assignments behind the ECE and Brier mean and range


def _instance_keys(instance_ids, n: int | None = None) -> np.ndarray:
    """The instance ids as strings (the key folds and orders are made from); every row must have its own id,
    and there must be n of them when n is given."""
    ids = pd.Series(np.asarray(instance_ids, dtype=object).reshape(-1))
    if n is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} instance ids for {n} rows: calibration needs one instance id per row")
    if ids.isna().any():
        raise ValueError("calibration needs an instance id on every row; some are missing")
    keys = ids.astype(str).to_numpy(dtype=str)
    if len(np.unique(keys)) != len(keys):
        raise ValueError("calibration needs one row per instance id; some ids repeat")
    return keys


def _in_instance_order(instance_ids, *columns) -> list[np.ndarray]:
    """The ids (as strings) and each column (as float), the rows put in instance-id order (ids compared as
    strings), so the same instances in any row order come out the same; one id per row required."""
    columns = [np.asarray(column, dtype=np.float64) for column in columns]
    keys = _instance_keys(instance_ids, len(columns[0]))
    if any(len(column) != len(keys) for column in columns):
        raise ValueError("calibration needs one instance id per row; the columns differ in length")
    order = np.argsort(keys, kind="stable")
    return [keys[order], *(column[order] for column in columns)]


def fold_hash(instance_ids, seed: int = SEED) -> np.ndarray:
    """A seeded 64-bit hash of each instance id: blake2b of "{seed}:{instance_id}" (the same in every process,
    unlike Python's hash())."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")
                     for key in _instance_keys(instance_ids)], dtype=np.uint64)


def _folds(keys: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fold, hash) of each id in keys (`fold_ids`, `fold_hash`)."""
    hashes = fold_hash(keys, seed)
    order = np.lexsort((keys, hashes))  # by hash; a 64-bit tie, all but impossible, by id
    k = max(1, min(folds, len(keys)))
    fold = np.empty(len(keys), dtype=np.int64)
    fold[order] = np.arange(len(keys)) % k
    return fold, hashes


def fold_ids(instance_ids, folds: int = OOF_FOLDS, seed: int = SEED) -> np.ndarray:
    """The fold of each instance: the instances ordered by `fold_hash` (seeded) and dealt into min(folds, n)
    near-equal folds (position in that order mod k). A function of the set of ids and the seed only, not of
    the rows' order."""
    return _folds(_instance_keys(instance_ids), folds, seed)[0]


def out_of_fold_probability(confidence, correct, instance_ids, folds: int = OOF_FOLDS, seed: int = SEED) -> np.ndarray:
    """P(correct | confidence), cross-fitted: for each fold (`fold_ids` of the usable rows' instance ids), an
    isotonic regression (increasing, clipped to [0, 1] and, outside the training range, to its end values)
    fitted on the other folds predicts the fold. No instance's own label enters its probability. The
    training rows reach the fit sorted by (confidence, `fold_hash`), so tied confidences come in an order
    fixed by the ids whatever the row order (sklearn 1.9 sorts ties by label itself; this does not rely on
    it). Rows with a non-finite confidence or unknown correctness get NaN; fewer than 2 usable rows give NaN."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    keys = _instance_keys(instance_ids, len(conf))
    out = np.full(len(conf), np.nan)
    usable = np.flatnonzero(np.isfinite(conf) & ~np.isnan(corr))
    if len(usable) < 2:
        return out
    fold, hashes = _folds(keys[usable], folds, seed)
    by_confidence = np.lexsort((keys[usable], hashes, conf[usable]))
    usable, fold = usable[by_confidence], fold[by_confidence]
    for f in np.unique(fold):
        test, train = usable[fold == f], usable[fold != f]
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        out[test] = model.fit(conf[train], corr[train]).predict(conf[test])
    return out


def _auroc_rows(conf: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """AUROC of each row (Mann-Whitney U with average ranks for ties); NaN where a row has one class."""
    ranks = stats.rankdata(conf, axis=1)
    n_pos = corr.sum(axis=1)
    n_neg = corr.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * corr).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _aurc_rows(conf: np.ndarray, corr: np.ndarray) -> np.ndarray:
    order = np.argsort(-conf, axis=1, kind="stable")
    errors = np.cumsum(1.0 - np.take_along_axis(corr, order, axis=1), axis=1)
    return (errors / np.arange(1, conf.shape[1] + 1)).mean(axis=1)


def bootstrap_ci(confidence, correct, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95) -> dict:
    """Percentile bootstrap CIs of AUROC and AURC (instances resampled with replacement, seeded; resamples
    with one class only are left out of the AUROC interval)."""
    conf, corr = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    out = {k: float("nan") for k in ("auroc_ci_low", "auroc_ci_high", "aurc_ci_low", "aurc_ci_high")}
    if len(conf) < 2:
        return out
    index = np.random.default_rng(seed).integers(0, len(conf), size=(n_boot, len(conf)))
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    auroc = _auroc_rows(conf[index], corr[index])
    auroc = auroc[np.isfinite(auroc)]
    if len(auroc):
        out["auroc_ci_low"], out["auroc_ci_high"] = (float(x) for x in np.percentile(auroc, tails))
    out["aurc_ci_low"], out["aurc_ci_high"] = (float(x) for x in np.percentile(_aurc_rows(conf[index], corr[index]), tails))
    return out


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


def _separation(conf: np.ndarray, corr: np.ndarray, suffix: str = "") -> dict:
    """AUROC (NaN with one class) and AURC with their bootstrap CIs, and the right and wrong decisions behind
    them (`n_right`, `n_wrong`), the keys ending in `suffix`. With fewer than MIN_CLASS of either, the AUROC's
    CI is NaN: a bootstrap over one or two wrong decisions means nothing (the report says "not estimable")."""
    out = {"auroc": float("nan"), "aurc": float("nan"), **bootstrap_ci(conf, corr),
           "n_right": int((corr == 1.0).sum()), "n_wrong": int((corr == 0.0).sum())}
    if min(out["n_right"], out["n_wrong"]) < MIN_CLASS:
        out["auroc_ci_low"] = out["auroc_ci_high"] = float("nan")
    if len(conf):
        out["aurc"] = float(risk_coverage(conf, corr)[1].mean())
        if len(np.unique(corr)) == 2:
            out["auroc"] = float(roc_auc_score(corr, conf))
    return {f"{key.replace('_ci', suffix + '_ci') if '_ci' in key else key + suffix}": v for key, v in out.items()}


def probability_scores(conf: np.ndarray, corr: np.ndarray, instance_ids, seeds: int = FOLD_SEEDS) -> dict:
    """ECE and Brier of the out-of-fold isotonic probability: mean, 5th and 95th percentile over `seeds`
    fold assignments (`fold_ids` with seeds 0..seeds-1); and the base-rate Brier. Computed in instance-id
    order, so any row order gives the same numbers to the last bit."""
    ids, conf, corr = _in_instance_order(instance_ids, conf, corr)
    out = {}
    scores = {"ece_isotonic_oof": [], "brier_isotonic_oof": []}
    if len(conf) >= 2:
        for seed in range(seeds):
            p = out_of_fold_probability(conf, corr, ids, seed=seed)
            scores["ece_isotonic_oof"].append(expected_calibration_error(p, corr))
            scores["brier_isotonic_oof"].append(float(np.mean((p - corr) ** 2)))
    for name, values in scores.items():
        values = np.asarray(values)
        out[name] = float(values.mean()) if len(values) else float("nan")
        out[f"{name}_p5"], out[f"{name}_p95"] = ((float(v) for v in np.percentile(values, [5, 95])) if len(values)
                                                 else (float("nan"), float("nan")))
    base = float(corr.mean()) if len(corr) else float("nan")
    out["brier_base_rate"] = base * (1 - base)
    return out


def calibration_report(confidence, correct, prompt_harmful, instance_ids) -> dict:
    """Scalar calibration metrics plus the risk-coverage curve; unknown rows are excluded. The rows are put
    in instance-id order first: the bootstrap resamples, the order of tied confidences on the risk-coverage
    curve and the out-of-fold folds then depend on the instances, not on the rows' order."""
    ids, conf, corr, harm = _in_instance_order(instance_ids, confidence, correct, prompt_harmful)
    keep = np.isfinite(conf) & ~np.isnan(corr)
    conf, corr, harm, ids = conf[keep], corr[keep], harm[keep], ids[keep]
    out = {"n": int(keep.sum()), **_separation(conf, corr)}
    for name, value in (("harmful", 1.0), ("benign", 0.0)):
        out[f"n_{name}"] = int((harm == value).sum())
        out.update(_separation(conf[harm == value], corr[harm == value], f"_{name}"))
    out.update(probability_scores(conf, corr, ids))
    out["coverage"], out["risk"] = risk_coverage(conf, corr) if len(conf) else (np.zeros(0), np.zeros(0))
    by_correct = mann_whitney(conf[corr == 1.0], conf[corr == 0.0])
    by_harm = mann_whitney(conf[harm == 1.0], conf[harm == 0.0])
    out.update({f"mwu_correct_vs_wrong_{k}": v for k, v in by_correct.items()})
    out.update({f"mwu_harmful_vs_benign_{k}": v for k, v in by_harm.items()})
    return out


def reliability_oof(confidence, correct, instance_ids, bins: int = ECE_BINS):
    """The reliability diagram's bins (`reliability_bins`) on the out-of-fold isotonic P(correct) (fold seed
    0) of the instances with a finite confidence and known correctness: the probability ECE is computed on.
    Computed in instance-id order, so any row order gives the same bins."""
    ids, conf, corr = _in_instance_order(instance_ids, confidence, correct)
    keep = np.isfinite(conf) & ~np.isnan(corr)
    conf, corr, ids = conf[keep], corr[keep], ids[keep]
    probability = out_of_fold_probability(conf, corr, ids) if len(conf) >= 2 else np.full(len(conf), np.nan)
    usable = ~np.isnan(probability)
    return reliability_bins(probability[usable], corr[usable], bins)
