"""Paired comparison of models that answered the same prompts.

Two models run on one benchmark answer the same prompts, so their correctness is paired: prompt by
prompt, both right, only A right, only B right, or both wrong. Whether A is more accurate than B is a
question about the discordant prompts alone (b = A right and B wrong, c = A wrong and B right), which
McNemar's test answers. Two accuracies with overlapping confidence intervals can still differ clearly
on paired data; overlapping intervals are never a test, and nothing here compares intervals.

Per pair of models:
  * McNemar's exact test (two-sided binomial test of b against Bin(b + c, 1/2); statsmodels
    `contingency_tables.mcnemar(table, exact=True)`);
  * Holm's step-down correction across every pair of the benchmark (statsmodels `multipletests`);
  * the accuracy difference A - B = (b - c) / n with Newcombe's hybrid score interval for paired
    proportions (Newcombe 1998, "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Stat Med 17:2635-2650, method 10: the two marginal Wilson score
    intervals combined with the estimated correlation phi of the paired table, phi shrunk by n/2 when
    positive, as published). statsmodels 0.15 has no paired-difference interval, so it is written out here.

Pure pandas/statsmodels; no dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from deepconf_assets.core.analysis import holm
from deepconf_assets.core.hypothesis import ALPHA

NO_EVIDENCE = "no evidence of a difference"
PAIR_COLUMNS = {
    "model_a": "object", "model_b": "object",
    "n_a": "int64", "n_b": "int64", "n": "int64",  # known correctness: A's prompts, B's, both (the pairing)
    "both_right": "int64", "a_right_b_wrong": "int64", "a_wrong_b_right": "int64", "both_wrong": "int64",
    "accuracy_a": "float64", "accuracy_b": "float64",  # on the n shared prompts
    "difference": "float64", "difference_ci_low": "float64", "difference_ci_high": "float64",  # A - B
    "mcnemar_p": "float64", "p_holm": "float64", "holm_m": "int64", "verdict": "object",
}


def headline_correctness(predictions: pd.DataFrame, labeler: str, policy: str) -> pd.DataFrame:
    """`instance_id` and `correct` of one model's predictions rows with traces, for one labeler and
    policy (the headline ones)."""
    rows = predictions[predictions["has_traces"].astype(bool) & (predictions["labeler"] == labeler)
                       & (predictions["policy"] == policy)]
    return rows[["instance_id", "correct"]].reset_index(drop=True)


def paired_table(right_a, right_b) -> list[list[int]]:
    """The paired 2x2 table [[both right, A only], [B only, both wrong]] of two boolean arrays of the same prompts."""
    right_a, right_b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    return [[int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
            [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))]]


def mcnemar_exact_p(table) -> float:
    """Two-sided exact McNemar p of a paired 2x2 table [[both right, A only], [B only, both wrong]]: the
    binomial test of A-only against B-only prompts at 1/2 (1.0 when no prompt is discordant, NaN when the
    table is empty)."""
    table = np.asarray(table, dtype=np.int64)
    if table.sum() == 0:
        return float("nan")
    return float(mcnemar(table, exact=True).pvalue)


def newcombe_paired_ci(both_right: int, a_only: int, b_only: int, both_wrong: int,
                       alpha: float = ALPHA) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval (method 10) for the difference of paired proportions
    p_A - p_B, p_A = (both_right + a_only) / n and p_B = (both_right + b_only) / n; (NaN, NaN) when n = 0.

    With Wilson score intervals (l1, u1) of p_A and (l2, u2) of p_B and the correlation estimate
    phi = (ad - bc - n/2) / sqrt(product of the four margins) when ad - bc > n/2, 0 when 0 <= ad - bc <= n/2,
    (ad - bc) / sqrt(...) when negative, and 0 when a margin is empty:
        low  = D - sqrt((p_A - l1)^2 - 2 phi (p_A - l1)(u2 - p_B) + (u2 - p_B)^2)
        high = D + sqrt((p_B - l2)^2 - 2 phi (p_B - l2)(u1 - p_A) + (u1 - p_A)^2)
    """
    a, b, c, d = (int(x) for x in (both_right, a_only, b_only, both_wrong))
    n = a + b + c + d
    if n == 0:
        return float("nan"), float("nan")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = (float(x) for x in proportion_confint(a + b, n, alpha=alpha, method="wilson"))
    l2, u2 = (float(x) for x in proportion_confint(a + c, n, alpha=alpha, method="wilson"))
    margins = (a + b, c + d, a + c, b + d)
    cross = a * d - b * c
    if 0 in margins or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(float(np.prod(margins, dtype=np.float64)))
    difference = p1 - p2
    low = difference - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = difference + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def _known(correctness: pd.DataFrame, model: str) -> pd.Series:
    """correct (bool) indexed by instance_id, for the prompts with known correctness."""
    rows = correctness[["instance_id", "correct"]]
    duplicated = rows["instance_id"].duplicated()
    if duplicated.any():
        raise ValueError(f"model '{model}': instance_id {rows.loc[duplicated, 'instance_id'].iloc[0]!r} appears more "
                         f"than once among its rows; pass one labeler and one policy per model")
    correct = rows.set_index("instance_id")["correct"].astype("boolean").dropna()
    return correct.astype(bool)


def _verdict(model_a: str, model_b: str, n: int, n_a: int, n_b: int, difference: float, p_holm: float,
             alpha: float) -> str:
    if n == 0:
        missing = [m for m, k in ((model_a, n_a), (model_b, n_b)) if k == 0]
        return (f"not compared: {' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no rows with known "
                f"correctness" if missing else "not compared: no prompt answered by both")
    if p_holm < alpha and difference > 0:
        return f"{model_a} more accurate than {model_b}"
    if p_holm < alpha and difference < 0:
        return f"{model_b} more accurate than {model_a}"
    return NO_EVIDENCE


def paired_comparison(correctness: Mapping[str, pd.DataFrame], alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of models, paired on the prompts both answered with known correctness.

    `correctness`: model -> its rows (columns `instance_id`, `correct`: nullable boolean), e.g. from
    `headline_correctness`; pairs follow the mapping's order (A before B; pass models smallest first).
    Rows whose `correct` is missing are left out; a model with no known row is kept in the table, each of
    its pairs with n = 0, no p and the verdict "not compared: ...". Prompts only one model answered are
    left out of that pair (n_a and n_b count each model's own prompts, n the shared ones).

    One row per pair (columns PAIR_COLUMNS): the 2x2 counts, each model's accuracy on the shared prompts,
    the difference A - B with its Newcombe 95% interval, McNemar's exact p, Holm's p across the pairs with
    a test (`holm_m` of them), and the verdict: "A more accurate than B", "B more accurate than A" (Holm
    p < alpha), or "no evidence of a difference".
    """
    known = {model: _known(rows, model) for model, rows in correctness.items()}
    models = list(known)
    rows = []
    for i, model_a in enumerate(models):
        for model_b in models[i + 1:]:
            a_known, b_known = known[model_a], known[model_b]
            shared = a_known.index.intersection(b_known.index, sort=False)
            right_a = a_known.loc[shared].to_numpy(dtype=bool)
            right_b = b_known.loc[shared].to_numpy(dtype=bool)
            table = paired_table(right_a, right_b)
            n = len(shared)
            low, high = newcombe_paired_ci(table[0][0], table[0][1], table[1][0], table[1][1], alpha)
            rows.append({
                "model_a": model_a, "model_b": model_b, "n_a": len(a_known), "n_b": len(b_known), "n": n,
                "both_right": table[0][0], "a_right_b_wrong": table[0][1], "a_wrong_b_right": table[1][0],
                "both_wrong": table[1][1],
                "accuracy_a": float(right_a.mean()) if n else float("nan"),
                "accuracy_b": float(right_b.mean()) if n else float("nan"),
                "difference": (table[0][1] - table[1][0]) / n if n else float("nan"),
                "difference_ci_low": low, "difference_ci_high": high,
                "mcnemar_p": mcnemar_exact_p(table) if n else float("nan"),
            })
    pairs = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in ("p_holm", "holm_m", "verdict")])
    pairs["p_holm"] = holm(pairs["mcnemar_p"])
    pairs["holm_m"] = int(pairs["mcnemar_p"].notna().sum())
    pairs["verdict"] = [_verdict(r.model_a, r.model_b, r.n, r.n_a, r.n_b, r.difference, r.p_holm, alpha)
                        for r in pairs.itertuples(index=False)]
    return pairs.astype(PAIR_COLUMNS)[list(PAIR_COLUMNS)]
