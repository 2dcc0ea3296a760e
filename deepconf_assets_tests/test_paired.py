"""Paired model comparison (core.paired) and the sentences that read it (core.interpret), by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core.interpret import comparison_sentences
from deepconf_assets.core.paired import (
    NO_EVIDENCE, PAIR_COLUMNS, headline_correctness, mcnemar_exact_p, newcombe_paired_ci, paired_comparison,
)


def rows(right: set[int], prompts=range(20), unknown: set[int] = frozenset()) -> pd.DataFrame:
    """instance_id p0..p19 with correct = prompt in `right` (None for `unknown`)."""
    return pd.DataFrame({"instance_id": [f"p{i}" for i in prompts],
                         "correct": pd.array([None if i in unknown else i in right for i in prompts], dtype="boolean")})


def test_mcnemar_exact_p_by_hand():
    # b = 1, c = 9: two-sided exact p = 2 * P(X <= 1 | Bin(10, 1/2)) = 2 * (1 + 10) / 1024
    assert mcnemar_exact_p([[5, 1], [9, 7]]) == pytest.approx(2 * 11 / 1024, abs=1e-15)
    assert mcnemar_exact_p([[5, 9], [1, 7]]) == pytest.approx(0.021484375, abs=1e-15)  # symmetric in b, c
    assert mcnemar_exact_p([[5, 3], [3, 7]]) == 1.0  # b = c: no evidence at all
    assert mcnemar_exact_p([[12, 0], [0, 3]]) == 1.0  # no discordant prompt
    assert math.isnan(mcnemar_exact_p([[0, 0], [0, 0]]))


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def test_newcombe_paired_ci_published_example():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8 (Cavo et al. 2012):
    # [[59, 6], [16, 80]], difference -0.0621, Newcombe square-and-add 95% CI -0.1186 to -0.0046
    low, high = newcombe_paired_ci(59, 6, 16, 80)
    assert (6 - 16) / 161 == pytest.approx(-0.0621, abs=5e-5)
    assert low == pytest.approx(-0.1186, abs=5e-5) and high == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_paired_ci_by_hand():
    # [[5, 1], [9, 7]]: n = 22, p_A = 6/22, p_B = 14/22, ad - bc = 35 - 9 = 26 > n/2 = 11, so
    # phi = (26 - 11) / sqrt(6 * 16 * 14 * 8) = 15 / sqrt(10752)
    p1, p2 = 6 / 22, 14 / 22
    (l1, u1), (l2, u2) = wilson_by_hand(6, 22), wilson_by_hand(14, 22)
    phi = 15 / math.sqrt(10752)
    low = (p1 - p2) - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = (p1 - p2) + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    assert newcombe_paired_ci(5, 1, 9, 7) == pytest.approx((low, high), abs=1e-12)
    assert low < p1 - p2 < high < 0
    # a negative ad - bc enters unshrunk; 0 <= ad - bc <= n/2 gives phi = 0 (independent-sample width)
    l1, u1 = wilson_by_hand(3, 10)
    l2, u2 = wilson_by_hand(3, 10)
    assert newcombe_paired_ci(1, 2, 2, 5) == pytest.approx(  # ad - bc = 1 <= 5
        (-math.sqrt((0.3 - l1) ** 2 + (u2 - 0.3) ** 2), math.sqrt((0.3 - l2) ** 2 + (u1 - 0.3) ** 2)), abs=1e-12)
    assert all(math.isnan(x) for x in newcombe_paired_ci(0, 0, 0, 0))


def test_holm_across_three_pairs():
    # 20 prompts. A right on {0}; B on {1..9}; C on {0..14}
    #   A vs B: b = 1 ({0}), c = 9 ({1..9}):  p = 2 * 11 / 1024 = 0.021484375
    #   A vs C: b = 0, c = 14 ({1..14}):      p = 2 / 2**14
    #   B vs C: b = 0, c = 6 ({0, 10..14}):   p = 2 / 2**6 = 0.03125
    # Holm: sorted 2/2**14 * 3, then max(that, 0.021484375 * 2) = 0.04296875, then max(0.04296875, 0.03125)
    pairs = paired_comparison({"A": rows({0}), "B": rows(set(range(1, 10))), "C": rows(set(range(15)))})
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    by = pairs.set_index(["model_a", "model_b"])
    assert list(by.index) == [("A", "B"), ("A", "C"), ("B", "C")]  # the mapping's order, A before B
    assert by[["a_right_b_wrong", "a_wrong_b_right"]].to_numpy().tolist() == [[1, 9], [0, 14], [0, 6]]
    assert by["mcnemar_p"].tolist() == pytest.approx([0.021484375, 2 / 2**14, 0.03125], abs=1e-15)
    assert by["p_holm"].tolist() == pytest.approx([0.04296875, 3 * 2 / 2**14, 0.04296875], abs=1e-15)
    assert (by["holm_m"] == 3).all() and (by["n"] == 20).all()
    assert by.loc[("A", "B"), "difference"] == pytest.approx(0.05 - 0.45)
    assert by.loc[("A", "B"), ["accuracy_a", "accuracy_b"]].tolist() == pytest.approx([0.05, 0.45])
    assert by["verdict"].tolist() == ["B more accurate than A", "C more accurate than A", "C more accurate than B"]
    assert (by["difference_ci_high"] < 0).all()


def test_pairs_only_shared_known_prompts():
    a = rows({0, 1, 2}, prompts=range(10), unknown={9})  # 9 known prompts
    b = rows({0, 1, 5}, prompts=range(5, 20))  # 15 prompts, 5..19
    empty = rows(set(), prompts=range(3), unknown={0, 1, 2})  # no known correctness at all
    pairs = paired_comparison({"a": a, "b": b, "none": empty}).set_index(["model_a", "model_b"])
    ab = pairs.loc[("a", "b")]
    assert (ab["n_a"], ab["n_b"], ab["n"]) == (9, 15, 4)  # shared and known: p5..p8
    assert (ab["both_right"], ab["a_right_b_wrong"], ab["a_wrong_b_right"], ab["both_wrong"]) == (0, 0, 1, 3)
    assert ab["mcnemar_p"] == 1.0 and ab["verdict"] == NO_EVIDENCE
    assert pairs.loc[("a", "none"), "verdict"] == "not compared: none has no rows with known correctness"
    assert pairs.loc[("a", "none"), "n"] == 0 and math.isnan(pairs.loc[("a", "none"), "mcnemar_p"])
    assert (pairs["holm_m"] == 1).all()  # untested pairs are no part of the Holm family
    with pytest.raises(ValueError, match="appears more than once"):
        paired_comparison({"a": pd.concat([a, a]), "b": b})
    assert paired_comparison({"a": a}).empty


def test_headline_correctness_keeps_one_labeler_policy_with_traces():
    predictions = pd.DataFrame({
        "instance_id": ["x", "x", "y", "y", "z"], "labeler": ["heuristic", "other", "heuristic", "heuristic", "heuristic"],
        "policy": ["decided", "decided", "decided", "fixed_n=1", "decided"], "has_traces": [True, True, True, True, False],
        "correct": pd.array([True, False, None, True, None], dtype="boolean")})
    out = headline_correctness(predictions, "heuristic", "decided")
    assert out["instance_id"].tolist() == ["x", "y"] and list(out.columns) == ["instance_id", "correct"]


def headline_rows_of(models, n=20, auroc=(0.7, 0.6, 0.8)):
    """model_comparison's headline rows: confusion counts (n prompts, 12 right) and the AUROC with its CI."""
    return pd.DataFrame({"model": models, "tp": 6, "fn": n - 14, "fp": 2, "tn": 6, "auroc": auroc[0],
                         "auroc_ci_low": auroc[1], "auroc_ci_high": auroc[2]})


def test_comparison_sentences_read_the_paired_tests():
    pairs = paired_comparison({"A": rows({0}), "B": rows(set(range(1, 10))), "C": rows(set(range(15)))})
    models = headline_rows_of(["A", "B", "C"])
    models.loc[1, ["auroc", "auroc_ci_low", "auroc_ci_high"]] = [0.431, 0.379, 0.485]
    models.loc[2, ["auroc", "auroc_ci_low", "auroc_ci_high"]] = [0.487, 0.41, 0.56]
    text = " ".join(comparison_sentences(models, pairs))
    assert "overlap" not in text
    # differences in percentage points, from A minus B, with the direction in words
    assert ("B minus C accuracy on the same 20 prompts (45.0% against 75.0%; 0 only B got right, 6 only C; McNemar "
            "exact p = 0.0312), a difference of -30.0 pp (95% CI ") in text
    assert "Holm p = 0.043, n = " not in text and "Holm p = 0.043; the CI excludes 0): C is more accurate than B" in text
    assert "A is more accurate than B" not in text and "B is more accurate than A" in text
    # every model's AUROC: above 0.5, below it (the CI excludes it), and one whose CI includes it
    assert ("A: AUROC of confidence for being right 0.700 (95% CI 0.600–0.800, n = 20; the CI excludes 0.5): the more "
            "confident decisions are more often right") in text
    assert ("B: AUROC of confidence for being right 0.431 (95% CI 0.379–0.485, n = 20; the CI excludes 0.5): the more "
            "confident decisions are more often wrong") in text
    assert "C: AUROC of confidence for being right 0.487 (95% CI 0.410–0.560, n = 20): no evidence either way" in text
    assert "Small samples (n < 100): A, B, C." in text


def test_comparison_sentences_no_evidence_skipped_and_different_prompts():
    pairs = paired_comparison({"A": rows({0, 1}), "B": rows({0, 2}, prompts=range(5, 25)),
                               "X": rows(set(), unknown=set(range(20)))})
    sentences = comparison_sentences(headline_rows_of(["A", "B"]), pairs)
    assert "X has no headline rows with known correctness; it is left out of the paired comparison." in sentences
    assert ("A (20 prompts) and B (20) answered different prompts: they are paired on the 15 prompts both "
            "answered.") in sentences
    unclear = next(s for s in sentences if s.startswith("Accuracy differences"))
    assert "A minus B" in unclear and "McNemar exact p = " in unclear and "no evidence either way" in unclear
    assert "Holm across" not in unclear  # one pair: nothing to correct across
    assert not any("more accurate" in s for s in sentences)
    one = comparison_sentences(headline_rows_of(["demo"]), paired_comparison({"demo": rows({0})}))
    assert one[0] == "Only 1 model partition is materialized; materialize more to compare."
    assert np.isfinite(pairs["difference"].dropna()).all()
