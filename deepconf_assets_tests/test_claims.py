"""Sentences made from claims: every sentence checked against its own numbers, on adversarial rows; and the
stratified test on the untouched integer tables."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import StratifiedTable

from deepconf_assets.core import claims
from deepconf_assets.core.claims import Claim
from deepconf_assets.core.hypothesis import haldane_anscombe, stratified_test
from deepconf_assets.core.interpret import (
    calibration_claims, comparison_sentences, compliance_claims, hypothesis_sentence, stratified_claims,
)

NAN = float("nan")
ABOVE, BELOW = "it goes up", "it goes down"


def check_sentence(claim: Claim, text: str) -> None:
    """What a sentence may say, read from the claim's numbers (not from claims.status)."""
    finite = not (claim.value is None or math.isnan(claim.value) or math.isinf(claim.value))
    side = (0 if claim.null is None or not finite or claim.value == claim.null
            else 1 if claim.value > claim.null else -1)
    ci_known = claim.ci is not None and all(math.isfinite(x) for x in claim.ci)
    excludes = ci_known and claim.null is not None and not (claim.ci[0] <= claim.null <= claim.ci[1])
    small = claim.smaller_class is not None and claim.smaller_class[0] < claims.MIN_CLASS
    if claim.by_construction:
        assert "identical by construction" in text and " p " not in text and "95% CI" not in text
        return
    if claim.pooled_strata is not None and claim.pooled_strata < 2:
        assert "nothing pooled" in text and "odds ratio" not in text.split(":")[-1]
        return
    if not finite or small:
        assert "not estimable" in text and "95% CI" not in text
        assert not any(d and d in text for d in (claim.above, claim.below))
        return
    # a direction is said only on its own side of the null, and only when a test or the CI supports it
    significant = claim.p is not None and math.isfinite(claim.p) and claim.p < claim.alpha
    supported = side != 0 and claim.null is not None and not claim.not_tested and (
        significant or excludes)
    if claim.above and claim.below:
        assert (claim.above in text) == (supported and side > 0), text
        assert (claim.below in text) == (supported and side < 0), text
    assert ("excludes" in text) == (excludes and supported), text
    if supported and not (significant or claim.p is None):
        assert "not established" in text
    if claim.null is not None and not claim.not_tested and not supported:
        assert "no evidence either way" in text
    if claim.not_tested:
        assert "not tested" in text and " p " not in text
    if not claim.primary:
        assert "secondary, uncorrected" in text
    assert claims._number(claim.value, claim.unit) in text


values = st.one_of(st.floats(-1.0, 3.0), st.just(NAN), st.sampled_from([0.0, 0.5, 1.0]))
cis = st.one_of(st.none(),
                st.tuples(values, values).map(lambda t: tuple(sorted(t)) if not any(map(math.isnan, t)) else t))


@st.composite
def adversarial_claims(draw):
    return Claim(
        "the quantity", draw(values), draw(st.sampled_from(["pp", "pct", "or2", "number"])),
        null=draw(st.sampled_from([None, 0.0, 0.5, 1.0])), ci=draw(cis), test="Holm p",
        p=draw(st.one_of(st.none(), st.just(NAN), st.floats(0.0, 1.0))), n=draw(st.sampled_from([None, 0, 1, 4, 200])),
        smaller_class=draw(st.one_of(st.none(), st.tuples(st.sampled_from([0, 1, 4, 5, 60]), st.just("wrong")))),
        above=ABOVE, below=BELOW, primary=draw(st.booleans()), family="the 6 policies",
        by_construction=draw(st.sampled_from([None, None, None, "by definition"])),
        pooled_strata=draw(st.sampled_from([None, None, 0, 1, 2])),
        not_tested=draw(st.sampled_from([None, None, None, "n < 30"])))


@settings(max_examples=400, deadline=None)
@given(adversarial_claims())
def test_every_sentence_agrees_with_its_numbers(claim):
    check_sentence(claim, claims.say(claim))


@st.composite
def hypothesis_rows(draw):
    """A hypothesis_test row with AUROCs and odds ratios on either side of their nulls, CIs on either side, groups
    of 0, 1, 4 or 40, one or two informative strata, and NaN."""
    def interval(null):
        value = draw(st.one_of(st.floats(0.01, 0.99 if null == 0.5 else 5.0), st.just(NAN)))
        low, high = sorted(draw(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0))))
        return value, *(draw(st.sampled_from([(low, high), (NAN, NAN)])))

    n = st.sampled_from([0, 1, 4, 40, 120])
    row = {"verdict": draw(st.sampled_from(["supported", "no evidence", "opposite direction",
                                            "insufficient data (n < 30)"])),
           "n_uncertain_compliance": draw(n), "n_confident_compliance": draw(n),
           "accuracy_uncertain_compliance": draw(st.one_of(st.floats(0, 1), st.just(NAN))),
           "accuracy_confident_compliance": draw(st.one_of(st.floats(0, 1), st.just(NAN))),
           "p_holm": draw(st.one_of(st.floats(0, 1), st.just(NAN))),
           "compliance_n_harmful": draw(n), "compliance_n_benign": draw(n),
           "cmh_strata": draw(st.sampled_from([0, 1, 2])),
           "verdict_why": "why", "stratified_n_uncertain": draw(n), "stratified_n_confident": draw(n)}
    row["accuracy_difference"] = row["accuracy_uncertain_compliance"] - row["accuracy_confident_compliance"]
    low, high = sorted(draw(st.tuples(st.floats(-1, 1), st.floats(-1, 1))))
    row["diff_ci_low"], row["diff_ci_high"] = low, high
    row["compliance_auroc"], row["compliance_auroc_ci_low"], row["compliance_auroc_ci_high"] = interval(0.5)
    for prefix in ("benign", "harmful", "cmh"):
        row[f"{prefix}_odds_ratio"], row[f"{prefix}_or_ci_low"], row[f"{prefix}_or_ci_high"] = interval(1.0)
        row[f"{prefix}_p_holm"] = draw(st.one_of(st.floats(0, 1), st.just(NAN)))
    for name in ("benign", "harmful"):
        row[f"{name}_n_uncertain"], row[f"{name}_n_confident"] = draw(n), draw(n)
    return pd.Series(row)


@settings(max_examples=300, deadline=None)
@given(hypothesis_rows())
def test_the_hypothesis_sentence_cannot_contradict_its_row(row):
    text = hypothesis_sentence(row, 6)
    made = compliance_claims(row, 6) + stratified_claims(row)
    for claim in made:
        check_sentence(claim, claims.say(claim))
        assert claims.say(claim) in text
    # the claims carry the row's own numbers
    difference, auroc = made[2], made[3]
    assert difference.value is row["accuracy_difference"] and auroc.value is row["compliance_auroc"]
    assert not auroc.primary and auroc.family == "the 6 policies"
    if min(row["compliance_n_harmful"], row["compliance_n_benign"]) < claims.MIN_CLASS:
        assert "benign against harmful: not estimable" in text
    assert "ranks benign above" not in text
    if row["cmh_strata"] < 2:
        assert "pooled" not in text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_calibration_aurocs_need_five_of_each_class(right, wrong, auroc, a, b):
    row = pd.Series({"auroc": auroc, "auroc_ci_low": min(a, b), "auroc_ci_high": max(a, b), "n_right": right,
                     "n_wrong": wrong, "auroc_harmful": NAN, "n_right_harmful": 0, "n_wrong_harmful": 0,
                     "auroc_benign": auroc, "auroc_benign_ci_low": min(a, b), "auroc_benign_ci_high": max(a, b),
                     "n_right_benign": right, "n_wrong_benign": wrong})
    for claim in calibration_claims(row):
        text = claims.say(claim)
        check_sentence(claim, text)
        if min(right, wrong) < claims.MIN_CLASS:
            assert "excludes" not in text and "not estimable" in text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=3))
def test_comparison_sentences_state_the_more_accurate_model_only_on_its_side(draws):
    pairs = pd.DataFrame([{"model_a": f"a{i}", "model_b": f"b{i}", "n_a": 50, "n_b": 50, "n": 50,
                           "accuracy_a": 0.5 + d / 2, "accuracy_b": 0.5, "a_right_b_wrong": 3, "a_wrong_b_right": 2,
                           "difference": d / 2, "difference_ci_low": d / 2 - lo, "difference_ci_high": d / 2 + hi,
                           "mcnemar_p": p, "p_holm": p, "holm_m": len(draws)}
                          for i, (d, lo, hi, p) in enumerate(draws)])
    models = pd.DataFrame({"model": [f"a{i}" for i in range(len(draws))], "tp": 20, "fn": 5, "fp": 5, "tn": 20,
                           "auroc": 0.45, "auroc_ci_low": 0.40, "auroc_ci_high": 0.49})
    text = " ".join(comparison_sentences(models, pairs))
    for pair in pairs.itertuples(index=False):
        a_better = f"{pair.model_a} is more accurate than {pair.model_b}"
        b_better = f"{pair.model_b} is more accurate than {pair.model_a}"
        assert not (a_better in text and pair.difference <= 0) and not (b_better in text and pair.difference >= 0)
        if pair.p_holm < 0.05 and pair.difference != 0:
            assert (a_better if pair.difference > 0 else b_better) in text
    # an AUROC whose CI excludes 0.5 is always said, with its direction
    assert text.count("the more confident decisions are more often wrong") == len(draws)


def _arrays(tables: dict[float, list[list[int]]]):
    """correct, uncertain, stratum arrays that make these [[uncertain right, wrong], [confident right, wrong]]."""
    correct, uncertain, stratum = [], [], []
    for value, t in tables.items():
        for (u, c), k in {(1, 1): t[0][0], (1, 0): t[0][1], (0, 1): t[1][0], (0, 0): t[1][1]}.items():
            correct += [c] * k
            uncertain += [u] * k
            stratum += [value] * k
    return np.array(correct, float), np.array(uncertain, float), np.array(stratum, float)


def test_a_zero_cell_leaves_breslow_day_and_cmh_on_the_integer_tables():
    # benign: every uncertain decision right (a zero cell); harmful: no zero cell
    tables = {0.0: [[20, 0], [30, 4]], 1.0: [[10, 6], [12, 8]]}
    out = stratified_test(*_arrays(tables))
    untouched = StratifiedTable(np.dstack([np.array(t) for t in tables.values()]))
    assert math.isclose(out["breslow_day_p"], untouched.test_equal_odds(adjust=True).pvalue, rel_tol=1e-12)
    assert math.isclose(out["cmh_odds_ratio"], untouched.oddsratio_pooled, rel_tol=1e-12)  # 1.852, not a shifted one
    assert math.isclose(out["cmh_p"], untouched.test_null_odds(correction=False).pvalue, rel_tol=1e-12)
    # the benign odds ratio: Haldane-Anscombe on every cell, (20.5 * 4.5) / (0.5 * 30.5); the harmful one as it is
    assert math.isclose(out["benign_odds_ratio"], 20.5 * 4.5 / (0.5 * 30.5))
    assert math.isclose(out["harmful_odds_ratio"], 10 * 8 / (6 * 12))
    table = np.array([[3, 0], [2, 5]])
    assert haldane_anscombe(table).tolist() == [[3.5, 0.5], [2.5, 5.5]] and table.tolist() == [[3, 0], [2, 5]]


def test_one_informative_stratum_is_never_pooled():
    out = stratified_test(*_arrays({1.0: [[10, 6], [12, 8]]}))
    assert out["cmh_strata"] == 1 and math.isnan(out["cmh_odds_ratio"]) and math.isnan(out["cmh_p"])
    assert out["pooled_withheld"] == "one informative harmfulness stratum: nothing to pool"


def test_the_statistics_leave_their_inputs_alone():
    from deepconf_assets.core.hypothesis import compliance_test
    from deepconf_assets.core.paired import mcnemar_exact_p

    correct, uncertain, stratum = _arrays({0.0: [[20, 0], [30, 4]], 1.0: [[10, 6], [12, 8]]})
    before = [x.copy() for x in (correct, uncertain, stratum)]
    stratified_test(correct, uncertain, stratum)
    category = np.where(uncertain == 1.0, "uncertain_compliance", "confident_compliance")
    compliance_test(correct, category, confidence=np.linspace(0, 1, len(correct)))
    assert all((a == b).all() for a, b in zip(before, (correct, uncertain, stratum)))
    paired = np.array([[3, 1], [4, 2]])
    mcnemar_exact_p(paired)
    assert paired.tolist() == [[3, 1], [4, 2]]
