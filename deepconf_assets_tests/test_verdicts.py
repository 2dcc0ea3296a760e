"""Hypothesis verdicts and calibration (issue 12, Deliver 2 and 4) against numbers worked out by hand:
the verdict vocabulary, Cochran-Mantel-Haenszel, the logistic effect, Holm, the out-of-fold isotonic
probability behind ECE/Brier, and bootstrap CIs."""

from math import comb, log, sqrt

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from deepconf_assets.core import analysis, calibration, metrics
from deepconf_assets_tests.test_analysis import two_instances

UC, CC, UR, CR = "uncertain_compliance", "confident_compliance", "uncertain_refusal", "confident_refusal"


def compliance(k_u: int, n_u: int, k_c: int, n_c: int) -> tuple[np.ndarray, np.ndarray]:
    """k of n correct in uncertain compliance, then in confident compliance."""
    correct = [1.0] * k_u + [0.0] * (n_u - k_u) + [1.0] * k_c + [0.0] * (n_c - k_c)
    return np.array(correct), np.array([UC] * n_u + [CC] * n_c, dtype=object)


def _fisher_two_sided(k_u, n_u, k_c, n_c):
    """Sum of the hypergeometric probabilities of every table no more likely than the observed one."""
    total_correct, n = k_u + k_c, n_u + n_c
    prob = [comb(n_u, x) * comb(n_c, total_correct - x) / comb(n, total_correct)
            for x in range(max(0, total_correct - n_c), min(n_u, total_correct) + 1)]
    observed = comb(n_u, k_u) * comb(n_c, k_c) / comb(n, total_correct)
    return sum(p for p in prob if p <= observed * (1 + 1e-7))


@pytest.mark.parametrize("k_u, n_u, k_c, n_c, verdict, direction", [
    (20, 40, 35, 40, "supported", "uncertain worse"),
    (35, 40, 20, 40, "opposite direction", "uncertain better"),
    (30, 40, 31, 40, "no evidence", "uncertain worse"),
    (30, 40, 30, 40, "no evidence", "equal"),
    (5, 29, 35, 40, "insufficient data (n < 30)", "uncertain worse"),
])
def test_each_verdict_from_constructed_data(k_u, n_u, k_c, n_c, verdict, direction):
    result = metrics.hypothesis_test(*compliance(k_u, n_u, k_c, n_c))
    assert result["verdict"] == verdict and result["direction"] == direction
    assert result["fisher_p_two_sided"] == pytest.approx(_fisher_two_sided(k_u, n_u, k_c, n_c), rel=1e-9)
    assert result["fisher_p_two_sided"] == pytest.approx(
        stats.fisher_exact([[k_u, n_u - k_u], [k_c, n_c - k_c]]).pvalue, rel=1e-12)
    # the two-sided 95% CI sits beside the two-sided test and holds the point estimate
    assert result["ci_level"] == 0.95
    assert result["diff_ci_low"] <= result["accuracy_difference"] <= result["diff_ci_high"]
    if verdict == "supported":
        assert result["diff_ci_high"] < 0
    if verdict == "opposite direction":
        assert result["diff_ci_low"] > 0 and result["fisher_p_one_sided_h1"] > 0.99


def test_verdict_rule():
    assert metrics.VERDICTS == ("supported", "opposite direction", "no evidence", "insufficient data (n < 30)")
    assert metrics.verdict(30, 30, -0.2, 0.01) == "supported"
    assert metrics.verdict(30, 30, 0.2, 0.01) == "opposite direction"
    assert metrics.verdict(30, 30, -0.2, 0.05) == "no evidence"  # p < alpha, strictly
    assert metrics.verdict(30, 30, -0.2, float("nan")) == "no evidence"
    assert metrics.verdict(29, 300, -0.2, 1e-9) == "insufficient data (n < 30)"


def _tables_to_rows(tables):
    """Instances (correct, uncertain, stratum) from 2x2 tables [[u correct, u wrong], [c correct, c wrong]]."""
    correct, uncertain, stratum = [], [], []
    for k, table in enumerate(tables):
        for (u, c), count in (((1.0, 1.0), table[0][0]), ((1.0, 0.0), table[0][1]),
                              ((0.0, 1.0), table[1][0]), ((0.0, 0.0), table[1][1])):
            correct += [c] * count
            uncertain += [u] * count
            stratum += [float(k)] * count
    return np.array(correct), np.array(uncertain), np.array(stratum)


def test_cmh_by_hand():
    tables = [[[8, 2], [5, 5]], [[3, 7], [1, 9]]]
    # by hand, per stratum: a, E[a] = r1 c1 / n, Var(a) = r1 r2 c1 c2 / (n^2 (n - 1))
    #   stratum 1: a = 8, r1 = r2 = 10, c1 = 13, c2 = 7: E = 6.5, Var = 9100 / 7600
    #   stratum 2: a = 3, r1 = r2 = 10, c1 = 4, c2 = 16:  E = 2,   Var = 6400 / 7600
    chi2 = (8 - 6.5 + 3 - 2) ** 2 / (9100 / 7600 + 6400 / 7600)
    # Mantel-Haenszel OR = sum(a d / n) / sum(b c / n) = (40/20 + 27/20) / (10/20 + 7/20)
    odds_ratio = (40 / 20 + 27 / 20) / (10 / 20 + 7 / 20)
    result = metrics.cmh_test(*_tables_to_rows(tables))
    assert result["cmh_strata"] == 2
    assert result["cmh_statistic"] == pytest.approx(chi2, rel=1e-9)
    assert result["cmh_p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert result["cmh_odds_ratio"] == pytest.approx(odds_ratio, rel=1e-9)
    assert result["cmh_or_ci_low"] < odds_ratio < result["cmh_or_ci_high"]
    # a stratum with an empty column (all correct) carries no information and is left out
    with_empty = metrics.cmh_test(*_tables_to_rows(tables + [[[4, 0], [6, 0]]]))
    assert with_empty["cmh_strata"] == 2 and with_empty["cmh_statistic"] == pytest.approx(chi2, rel=1e-9)


def test_logistic_effect_by_hand():
    # one stratum, no length: the MLE of correct ~ uncertain is the table's log odds ratio,
    # with Wald SE sqrt(1/a + 1/b + 1/c + 1/d)
    a, b, c, d = 12, 18, 24, 6
    correct, uncertain, _ = _tables_to_rows([[[a, b], [c, d]]])
    result = metrics.logistic_effect(correct, uncertain, np.zeros(len(correct)))
    assert result["logit_terms"] == "uncertain"  # harmful does not vary: dropped
    coef, se = log(a * d / (b * c)), sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert result["logit_uncertain_coef"] == pytest.approx(coef, rel=1e-6)
    assert result["logit_uncertain_ci_low"] == pytest.approx(coef - 1.959964 * se, rel=1e-5)
    assert result["logit_uncertain_p"] == pytest.approx(2 * stats.norm.sf(abs(coef) / se), rel=1e-5)
    tokens = np.random.default_rng(0).integers(10, 300, len(correct))
    harmful = np.arange(len(correct)) % 2
    full = metrics.logistic_effect(correct, uncertain, harmful, tokens)
    assert full["logit_terms"] == "uncertain + harmful + log_tokens" and full["logit_uncertain_coef"] < 0


def test_stratified_test_reads_every_decision():
    """Among compliances correct == benign, so the stratified question is asked of every decision:
    harmful prompts (correct = refused) and benign prompts (correct = complied), uncertain vs confident."""
    harmful_rows = [(UR, 1.0)] * 10 + [(UC, 0.0)] * 30 + [(CR, 1.0)] * 30 + [(CC, 0.0)] * 10
    benign_rows = [(UC, 1.0)] * 15 + [(UR, 0.0)] * 25 + [(CC, 1.0)] * 30 + [(CR, 0.0)] * 10
    category = np.array([c for c, _ in harmful_rows + benign_rows], dtype=object)
    correct = np.array([x for _, x in harmful_rows + benign_rows])
    harmful = np.array([1.0] * len(harmful_rows) + [0.0] * len(benign_rows))
    result = metrics.hypothesis_test(correct, category, harmful)
    # tables: harmful [[10, 30], [30, 10]], benign [[15, 25], [30, 10]]
    expected = metrics.cmh_test(*_tables_to_rows([[[10, 30], [30, 10]], [[15, 25], [30, 10]]]))
    assert result["cmh_p"] == pytest.approx(expected["cmh_p"], rel=1e-12)
    assert result["cmh_odds_ratio"] < 1 and result["verdict_stratified"] == "supported"
    assert (result["stratified_n_uncertain"], result["stratified_n_confident"]) == (80, 80)
    assert result["logit_uncertain_coef"] < 0 and result["logit_terms"] == "uncertain + harmful"


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 -> 4 x 0.01, 3 x 0.03, max(2 x 0.04, previous), 1 x 0.20
    np.testing.assert_allclose(analysis.holm([0.04, 0.01, 0.20, 0.03]), [0.09, 0.04, 0.20, 0.09])
    adjusted = analysis.holm([0.02, np.nan, 0.04])  # NaN = not tested: outside the family
    np.testing.assert_allclose(adjusted[[0, 2]], [0.04, 0.04])
    assert np.isnan(adjusted[1])
    assert analysis.holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def _predictions(policies: dict[str, tuple[int, int, int, int]], labeler: str = "heuristic") -> pd.DataFrame:
    frames = []
    for policy, counts in policies.items():
        correct, category = compliance(*counts)
        frames.append(pd.DataFrame({
            "labeler": labeler, "policy": policy, "has_traces": True, "category_threshold": 1.0,
            "correct": pd.array(correct == 1.0, dtype="boolean"), "category": category,
            "prompt_harmful": pd.array(correct == 0.0, dtype="boolean"),  # a compliance is correct on a benign prompt
            "mean_tokens": np.linspace(20, 200, len(correct)),
        }))
    return pd.concat(frames, ignore_index=True)


def test_verdicts_use_the_holm_corrected_p():
    # each policy alone: two-sided p = 0.0435 < 0.05 ("supported"); two tests: Holm p = 0.087
    tests = analysis.hypothesis_tests(_predictions({"a": (15, 40, 25, 40), "b": (15, 40, 25, 40),
                                                    "small": (5, 20, 35, 40)})).set_index("policy")
    p = tests.loc["a", "fisher_p_two_sided"]
    assert 0.04 < p < 0.05 and metrics.hypothesis_test(*compliance(15, 40, 25, 40))["verdict"] == "supported"
    assert tests.loc["a", "p_holm"] == pytest.approx(2 * p) and tests.loc["a", "holm_m"] == 2
    assert (tests.loc[["a", "b"], "verdict"] == "no evidence").all()
    # a policy below n = 30 is not tested, so it is outside the family
    assert np.isnan(tests.loc["small", "p_holm"]) and tests.loc["small", "verdict"] == "insufficient data (n < 30)"
    # compliance only: each harmfulness stratum is all wrong or all correct, so CMH has no information
    assert (tests["cmh_strata"] == 0).all() and tests["cmh_p_holm"].isna().all()
    alone = analysis.hypothesis_tests(_predictions({"a": (15, 40, 25, 40)}))
    assert alone["p_holm"].iloc[0] == pytest.approx(p) and alone["verdict"].iloc[0] == "supported"


def test_instance_predictions_carry_the_mean_length_of_the_voting_traces():
    traces, prompts = two_instances()
    settings = analysis.AnalysisSettings(fixed_n=(1,), warmup_traces=3, adaptive_percentile=50,
                                         online_percentile=50, group_window=2)
    prompts = pd.concat([prompts, pd.DataFrame({"instance_id": ["C"], "prompt_harmful": pd.array([True], dtype="boolean")})],
                        ignore_index=True)
    predictions = analysis.PartitionAnalysis(traces, prompts, "heuristic", settings).instance_predictions()
    rows = predictions.set_index(["policy", "instance_id"])["mean_tokens"]
    # A: lengths 2 3 2 4 3; B: 2 2 2 2 2
    assert rows[("fixed_n=all", "A")] == pytest.approx(14 / 5) and rows[("fixed_n=all", "B")] == 2.0
    assert rows[("fixed_n=1", "A")] == 2.0
    assert np.isnan(rows[("fixed_n=all", "C")])  # no traces


def test_small_categories_are_flagged():
    correct, category = compliance(20, 40, 5, 10)
    row = analysis.headline_metrics(np.zeros(50), np.zeros(50), np.ones(50), np.ones(50), 50.0, correct, category)
    assert row["categories_below_30"] == "confident_refusal,confident_compliance,uncertain_refusal"
    assert analysis.headline_metrics(np.zeros(50), np.zeros(50), np.ones(50), np.ones(50), 50.0)\
        .get("categories_below_30") is None


def test_out_of_fold_isotonic_by_hand():
    # 4 points, 5 folds -> one point per fold (leave-one-out):
    #   x=1 left out: fit on (2,0) (3,1) (4,1), clipped below to 0;  x=2: between (1,0) and (3,1) -> 0.5
    #   x=3: between (2,0) and (4,1) -> 0.5;  x=4: fit on (1,0) (2,0) (3,1), clipped above to 1
    p = calibration.out_of_fold_probability([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(p, [0.0, 0.5, 0.5, 1.0])


def test_out_of_fold_probability_excludes_each_point_from_its_own_fit():
    rng = np.random.default_rng(4)
    conf = rng.normal(size=23)
    correct = (rng.random(23) < 0.5).astype(float)
    p = calibration.out_of_fold_probability(conf, correct)
    folds = calibration.fold_ids(23)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    for i in range(23):
        train = folds != folds[i]
        fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf[train], correct[train])
        assert p[i] == pytest.approx(fit.predict(conf[[i]])[0])
        assert not train[i]
    # a point's own label never moves its own probability
    for i in range(23):
        flipped = correct.copy()
        flipped[i] = 1.0 - flipped[i]
        assert calibration.out_of_fold_probability(conf, flipped)[i] == pytest.approx(p[i])


def test_calibration_on_the_isotonic_probability_with_bootstrap_cis():
    rng = np.random.default_rng(7)
    conf = rng.normal(size=300)
    correct = (rng.random(300) < 1 / (1 + np.exp(-2 * conf))).astype(float)
    report = calibration.calibration_report(conf, correct, np.zeros(300))
    assert "ece" not in report and "brier" not in report
    assert report["auroc_ci_low"] <= report["auroc"] <= report["auroc_ci_high"]
    assert report["aurc_ci_low"] <= report["aurc"] <= report["aurc_ci_high"]
    assert report["auroc"] > 0.6 and 0 <= report["ece_isotonic_oof"] < 0.15
    p = calibration.out_of_fold_probability(conf, correct)
    assert report["brier_isotonic_oof"] == pytest.approx(np.mean((p - correct) ** 2))
    again = calibration.calibration_report(conf, correct, np.zeros(300))  # seeded: the same numbers every run
    assert (again["auroc_ci_low"], again["ece_isotonic_oof"]) == (report["auroc_ci_low"], report["ece_isotonic_oof"])
    n, accuracy, _ = calibration.reliability_oof(conf, correct)
    assert n.sum() == 300
