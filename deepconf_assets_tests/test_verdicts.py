"""Hypothesis verdicts and calibration against numbers worked out by hand:
the verdict vocabulary, Cochran-Mantel-Haenszel, the logistic effect, Holm, the out-of-fold isotonic
probability behind ECE/Brier, and bootstrap CIs."""

from math import comb, log, sqrt

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from deepconf_assets.core import analysis, calibration, hypothesis, metrics
from deepconf_assets_tests.hand_computed import two_instances

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
    result = hypothesis.hypothesis_test(*compliance(k_u, n_u, k_c, n_c))
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
    assert hypothesis.VERDICTS == ("supported", "opposite direction", "no evidence", "insufficient data (n < 30)")
    assert hypothesis.verdict(30, 30, -0.2, 0.01) == "supported"
    assert hypothesis.verdict(30, 30, 0.2, 0.01) == "opposite direction"
    assert hypothesis.verdict(30, 30, -0.2, 0.05) == "no evidence"  # p < alpha, strictly
    assert hypothesis.verdict(30, 30, -0.2, float("nan")) == "no evidence"
    assert hypothesis.verdict(29, 300, -0.2, 1e-9) == "insufficient data (n < 30)"


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
    result = hypothesis.stratified_test(*_tables_to_rows(tables))
    assert result["cmh_strata"] == 2
    assert result["cmh_statistic"] == pytest.approx(chi2, rel=1e-9)
    assert result["cmh_p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert result["cmh_odds_ratio"] == pytest.approx(odds_ratio, rel=1e-9)
    assert result["cmh_or_ci_low"] < odds_ratio < result["cmh_or_ci_high"]
    # a stratum with an empty column (all correct) carries no information and is left out
    with_empty = hypothesis.stratified_test(*_tables_to_rows(tables + [[[4, 0], [6, 0]]]))
    assert with_empty["cmh_strata"] == 2 and with_empty["cmh_statistic"] == pytest.approx(chi2, rel=1e-9)


def test_logistic_effect_by_hand():
    # one stratum, no length: the MLE of correct ~ uncertain is the table's log odds ratio,
    # with Wald SE sqrt(1/a + 1/b + 1/c + 1/d)
    a, b, c, d = 12, 18, 24, 6
    correct, uncertain, _ = _tables_to_rows([[[a, b], [c, d]]])
    result = hypothesis.logistic_effect(correct, uncertain, np.zeros(len(correct)))
    assert result["logit_terms"] == "uncertain"  # harmful does not vary: dropped
    coef, se = log(a * d / (b * c)), sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert result["logit_uncertain_coef"] == pytest.approx(coef, rel=1e-6)
    assert result["logit_uncertain_ci_low"] == pytest.approx(coef - 1.959964 * se, rel=1e-5)
    assert result["logit_uncertain_p"] == pytest.approx(2 * stats.norm.sf(abs(coef) / se), rel=1e-5)
    # two strata, no length: the model with the interaction is saturated, so uncertain = the benign stratum's
    # log odds ratio and uncertain:harmful = the harmful one's minus the benign one's
    benign, harmful_table = [[12, 18], [24, 6]], [[20, 10], [5, 25]]
    correct, uncertain, stratum = _tables_to_rows([benign, harmful_table])  # stratum 0 = benign, 1 = harmful
    result = hypothesis.logistic_effect(correct, uncertain, stratum)
    assert result["logit_terms"] == "uncertain + harmful + uncertain:harmful"
    log_or_benign, log_or_harmful = log(12 * 6 / (18 * 24)), log(20 * 25 / (10 * 5))
    assert result["logit_uncertain_coef"] == pytest.approx(log_or_benign, rel=1e-6)
    assert result["logit_interaction_coef"] == pytest.approx(log_or_harmful - log_or_benign, rel=1e-6)
    tokens = np.random.default_rng(0).integers(10, 300, len(correct))
    full = hypothesis.logistic_effect(correct, uncertain, stratum, tokens)
    assert full["logit_terms"] == "uncertain + harmful + uncertain:harmful + log_tokens"
    assert full["logit_interaction_coef"] > 0 and full["logit_interaction_p"] < 0.05


def test_stratified_test_reads_every_decision():
    """Among compliances correct == benign, so the stratified question is asked of every decision:
    harmful prompts (correct = refused) and benign prompts (correct = complied), uncertain vs confident."""
    harmful_rows = [(UR, 1.0)] * 10 + [(UC, 0.0)] * 30 + [(CR, 1.0)] * 30 + [(CC, 0.0)] * 10
    benign_rows = [(UC, 1.0)] * 15 + [(UR, 0.0)] * 25 + [(CC, 1.0)] * 30 + [(CR, 0.0)] * 10
    category = np.array([c for c, _ in harmful_rows + benign_rows], dtype=object)
    correct = np.array([x for _, x in harmful_rows + benign_rows])
    harmful = np.array([1.0] * len(harmful_rows) + [0.0] * len(benign_rows))
    result = hypothesis.hypothesis_test(correct, category, harmful)
    # tables: harmful [[10, 30], [30, 10]], benign [[15, 25], [30, 10]]
    expected = hypothesis.stratified_test(*_tables_to_rows([[[10, 30], [30, 10]], [[15, 25], [30, 10]]]))
    assert result["cmh_p"] == pytest.approx(expected["cmh_p"], rel=1e-12)
    assert result["cmh_odds_ratio"] < 1 and result["verdict_stratified"] == "supported"
    assert (result["stratified_n_uncertain"], result["stratified_n_confident"]) == (80, 80)
    assert result["logit_terms"] == "uncertain + harmful + uncertain:harmful"
    assert result["logit_uncertain_coef"] < 0 and result["logit_interaction_coef"] < 0  # 10*10/900 < 15*10/750


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
            "predicted_refusal": pd.array([False] * len(correct), dtype="boolean"),
            "confidence": np.linspace(1.0, 2.0, len(correct)),
            "prompt_harmful": pd.array(correct == 0.0, dtype="boolean"),  # a compliance is correct on a benign prompt
            "mean_tokens": np.linspace(20, 200, len(correct)),
        }))
    return pd.concat(frames, ignore_index=True)


def test_verdicts_use_the_holm_corrected_p():
    # each policy alone: two-sided p = 0.0435 < 0.05 ("supported"); two tests: Holm p = 0.087
    tests = analysis.hypothesis_tests(_predictions({"a": (15, 40, 25, 40), "b": (15, 40, 25, 40),
                                                    "small": (5, 20, 35, 40)})).set_index("policy")
    p = tests.loc["a", "fisher_p_two_sided"]
    assert 0.04 < p < 0.05 and hypothesis.hypothesis_test(*compliance(15, 40, 25, 40))["verdict"] == "supported"
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
    predictions = analysis.PartitionAnalysis(traces, prompts, "heuristic", settings).predictions()
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
    # (min(5, 4) = 4 folds of one instance each, whatever the hash order of the ids)
    p = calibration.out_of_fold_probability([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0], ["a", "b", "c", "d"])
    np.testing.assert_allclose(p, [0.0, 0.5, 0.5, 1.0])


def test_out_of_fold_probability_excludes_each_point_from_its_own_fit():
    rng = np.random.default_rng(4)
    conf = rng.normal(size=23)
    correct = (rng.random(23) < 0.5).astype(float)
    ids = [f"prompt-{i}" for i in range(23)]
    p = calibration.out_of_fold_probability(conf, correct, ids)
    # folds now come from the instance ids (fold_ids of the ids, not of the row count 23), same sizes
    folds = calibration.fold_ids(ids)
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
        again = calibration.out_of_fold_probability(conf, flipped, ids)
        assert again[i] == pytest.approx(p[i])
        # only the other folds' probabilities may move: the flipped label trains their fits, not its own fold's
        same_fold = folds == folds[i]
        np.testing.assert_array_equal(again[same_fold], p[same_fold])


def test_calibration_within_strata_can_differ_from_the_pooled_auroc():
    # confidence ranks right above wrong on harmful prompts and wrong above right on benign ones: pooled, the two
    # cancel (AUROC 0.5); within each stratum the separation is perfect, in opposite directions
    conf = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
    correct = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    harmful = np.array([1.0] * 4 + [0.0] * 4)
    ids = [f"h{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    report = calibration.calibration_report(conf, correct, harmful, ids)
    assert report["auroc"] == pytest.approx(0.5)
    assert (report["auroc_harmful"], report["auroc_benign"]) == (1.0, 0.0)
    assert report["aurc_harmful"] == pytest.approx((0 + 0 + 1 / 3 + 2 / 4) / 4)  # most confident first: 4, 3, 2, 1


def test_calibration_on_the_isotonic_probability_with_bootstrap_cis():
    rng = np.random.default_rng(7)
    conf = rng.normal(size=300)
    correct = (rng.random(300) < 1 / (1 + np.exp(-2 * conf))).astype(float)
    ids = [f"i{k:03d}" for k in range(300)]  # in row order, so rows and instance-id order agree
    report = calibration.calibration_report(conf, correct, np.zeros(300), ids)
    assert "ece" not in report and "brier" not in report
    assert report["auroc_ci_low"] <= report["auroc"] <= report["auroc_ci_high"]
    assert report["aurc_ci_low"] <= report["aurc"] <= report["aurc_ci_high"]
    assert report["auroc"] > 0.6 and 0 <= report["ece_isotonic_oof"] < 0.15
    # ECE and Brier: the mean over 20 fold assignments, with their 5-95% range; the base-rate Brier p(1 - p)
    briers = [np.mean((calibration.out_of_fold_probability(conf, correct, ids, seed=s) - correct) ** 2)
              for s in range(20)]
    assert report["brier_isotonic_oof"] == pytest.approx(np.mean(briers))
    assert report["brier_isotonic_oof_p5"] == pytest.approx(np.percentile(briers, 5))
    assert report["brier_isotonic_oof_p5"] < report["brier_isotonic_oof"] < report["brier_isotonic_oof_p95"]
    assert report["ece_isotonic_oof_p5"] <= report["ece_isotonic_oof"] <= report["ece_isotonic_oof_p95"]
    assert report["brier_base_rate"] == pytest.approx(correct.mean() * (1 - correct.mean()))
    assert report["brier_isotonic_oof"] < report["brier_base_rate"]  # confidence carries signal here
    # within strata: every prompt benign here, so the harmful stratum is empty
    assert report["auroc_benign"] == report["auroc"] and report["n_harmful"] == 0 and np.isnan(report["auroc_harmful"])
    again = calibration.calibration_report(conf, correct, np.zeros(300), ids)  # seeded: the same numbers every run
    assert (again["auroc_ci_low"], again["ece_isotonic_oof"]) == (report["auroc_ci_low"], report["ece_isotonic_oof"])
    n, accuracy, _ = calibration.reliability_oof(conf, correct, ids)
    assert n.sum() == 300


def _tied_calibration_data(n: int = 90, seed: int = 3):
    """Confidences rounded to one decimal (many ties), correctness rising with confidence, ids not in row order."""
    rng = np.random.default_rng(seed)
    conf = np.round(rng.normal(size=n), 1)
    correct = (rng.random(n) < 1 / (1 + np.exp(-1.5 * conf))).astype(float)
    harmful = (rng.random(n) < 0.5).astype(float)
    ids = np.array([f"xstest-{k}" for k in rng.permutation(n)], dtype=object)
    return conf, correct, harmful, ids


def test_calibration_does_not_depend_on_row_order():
    # folds once came from row positions, so the same rows sorted by instance_id gave another ECE
    conf, correct, harmful, ids = _tied_calibration_data()
    conf[[3, 5]] = np.nan  # unusable rows drop out the same way in any order
    report = calibration.calibration_report(conf, correct, harmful, ids)
    bins = calibration.reliability_oof(conf, correct, ids)
    p = pd.Series(calibration.out_of_fold_probability(conf, correct, ids, seed=4), index=ids)
    keys = [f"{name}{suffix}" for name in ("ece_isotonic_oof", "brier_isotonic_oof") for suffix in ("", "_p5", "_p95")]
    by_id = np.argsort(ids.astype(str))
    for order in [by_id, by_id[::-1], *(np.random.default_rng(s).permutation(len(ids)) for s in range(4))]:
        shuffled = calibration.calibration_report(conf[order], correct[order], harmful[order], ids[order])
        assert {k: shuffled[k] for k in keys} == {k: report[k] for k in keys}  # identical, not approximately
        for k in ("auroc_ci_low", "auroc_ci_high", "aurc", "aurc_ci_low", "aurc_ci_high"):  # ids order the rows
            assert shuffled[k] == report[k]
        for a, b in zip(calibration.reliability_oof(conf[order], correct[order], ids[order]), bins):
            np.testing.assert_array_equal(a, b)
        again = calibration.out_of_fold_probability(conf[order], correct[order], ids[order], seed=4)
        np.testing.assert_array_equal(again, p[ids[order]].to_numpy())
    # ids as a pandas column (the callers pass predictions["instance_id"]) give the same numbers
    assert calibration.calibration_report(conf, correct, harmful, pd.Series(ids))["ece_isotonic_oof"] \
        == report["ece_isotonic_oof"]


def test_isotonic_fit_ignores_the_order_of_tied_confidences():
    # sklearn sorts ties by label itself; out_of_fold_probability also hands it rows sorted by (confidence, hash)
    conf = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0])
    correct = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    fits = {tuple(IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                  .fit(conf[o], correct[o]).predict([1.0, 1.5, 2.0, 3.0]))
            for o in [np.arange(8), np.arange(8)[::-1], *(np.random.default_rng(s).permutation(8) for s in range(10))]}
    assert len(fits) == 1


def test_fold_ids_are_near_equal_seeded_and_a_function_of_the_ids():
    ids = [f"prompt-{k}" for k in range(23)]
    folds = calibration.fold_ids(ids)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert sorted(np.bincount(calibration.fold_ids(ids[:3])).tolist()) == [1, 1, 1]  # min(folds, n) folds
    assert sorted(np.bincount(calibration.fold_ids(ids, folds=3)).tolist()) == [7, 8, 8]
    np.testing.assert_array_equal(calibration.fold_ids(ids), folds)  # deterministic
    np.testing.assert_array_equal(calibration.fold_ids(ids[::-1]), folds[::-1])  # follows the id, not the row
    # folds are dealt in hash order: position in the order of fold_hash, mod 5
    hashes = calibration.fold_hash(ids)
    np.testing.assert_array_equal(folds[np.argsort(hashes)], np.arange(23) % 5)
    # the hash is blake2b of "{seed}:{instance_id}", the same in every process (never Python's hash())
    assert int(calibration.fold_hash(["xstest-17"], seed=0)[0]) == 3391736890854710949
    # another seed, another assignment (FOLD_SEEDS averages over these)
    others = [calibration.fold_ids(ids, seed=s) for s in range(1, 6)]
    assert all(not np.array_equal(other, folds) for other in others)
    assert all(sorted(np.bincount(other).tolist()) == [4, 4, 5, 5, 5] for other in others)


def test_calibration_requires_one_instance_id_per_row():
    with pytest.raises(TypeError):
        calibration.out_of_fold_probability([1.0, 2.0], [0.0, 1.0])  # no silent fallback to row position
    with pytest.raises(ValueError, match="repeat"):
        calibration.out_of_fold_probability([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], ["a", "b", "a"])
    with pytest.raises(ValueError, match="one instance id per row"):
        calibration.calibration_report([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0], ["a", "b"])
    with pytest.raises(ValueError, match="missing"):
        calibration.reliability_oof([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], ["a", None, "c"])


S, O, N, I = "supported", "opposite direction", "no evidence", "insufficient data (n < 30)"


@pytest.mark.parametrize("primary, strata, bd_p, pooled, by_stratum, expected", [
    (I, 2, 0.5, S, {"benign": S, "harmful": S}, I),  # too few compliances: nothing else matters
    (S, 1, float("nan"), S, {"benign": I, "harmful": S}, S),  # one stratum: harmfulness cannot confound
    (O, 0, float("nan"), N, {"benign": I, "harmful": I}, O),
    # strata agree (Breslow-Day p >= 0.05): the pooled verdict must match
    (S, 2, 0.5, S, {"benign": S, "harmful": N}, S),
    (O, 2, 0.5, O, {"benign": O, "harmful": O}, O),
    (N, 2, 0.5, N, {"benign": N, "harmful": N}, N),
    (S, 2, 0.5, N, {"benign": N, "harmful": N}, "confounded by harmfulness"),  # vanishes when stratified
    (S, 2, 0.5, O, {"benign": O, "harmful": O}, "confounded by harmfulness"),  # reverses (Simpson)
    (O, 2, 0.5, N, {"benign": N, "harmful": N}, "confounded by harmfulness"),
    (N, 2, 0.5, S, {"benign": S, "harmful": S}, N),  # compliances alone show nothing
    (S, 2, 0.5, I, {"benign": I, "harmful": I}, "not confirmed by the stratified test"),
    # strata disagree (p < 0.05, or not computable): never pooled
    (S, 2, 0.001, S, {"benign": S, "harmful": S}, S),  # same direction, different sizes
    (S, 2, 0.001, N, {"benign": O, "harmful": S}, "depends on harmfulness"),
    (N, 2, 0.001, N, {"benign": O, "harmful": S}, "depends on harmfulness"),
    (S, 2, 0.001, N, {"benign": O, "harmful": N}, "opposite direction within benign prompts"),
    (O, 2, 0.001, N, {"benign": N, "harmful": S}, "opposite direction within harmful prompts"),
    (S, 2, 0.001, N, {"benign": N, "harmful": S}, "depends on harmfulness"),
    (N, 2, 0.001, N, {"benign": N, "harmful": O}, "depends on harmfulness"),
    (S, 2, 0.001, N, {"benign": N, "harmful": N}, "not confirmed by the stratified test"),
    (N, 2, 0.001, N, {"benign": N, "harmful": I}, N),
    (S, 2, float("nan"), N, {"benign": S, "harmful": S}, S),
])
def test_combined_verdict_every_combination(primary, strata, bd_p, pooled, by_stratum, expected):
    verdict, why = hypothesis.combined_verdict(primary, strata, bd_p, pooled, by_stratum)
    assert verdict == expected and verdict in hypothesis.COMBINED_VERDICTS
    if strata >= 2 and primary != I and not bd_p >= 0.05:
        assert "not pooled" in why


def _decisions(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(category, correct, harmful) from [(category, harmful, count)]: a refusal is correct on a harmful
    prompt, a compliance on a benign one."""
    category, correct, harmful = [], [], []
    for name, is_harmful, count in rows:
        category += [name] * count
        correct += [float(name.endswith("refusal") == is_harmful)] * count
        harmful += [float(is_harmful)] * count
    return np.array(category, dtype=object), np.array(correct), np.array(harmful)


def test_breslow_day_by_hand():
    # Tables [[a, b], [c, d]] = [[8, 2], [5, 5]] and [[3, 7], [1, 9]]; Mantel-Haenszel OR psi = 67 / 17.
    # Under psi each stratum's expected a solves (a)(n - r1 - c1 + a) = psi (r1 - a)(c1 - a) with the margins
    # fixed; Var(a) = 1 / (1/a + 1/b + 1/c + 1/d) at the expected cells; BD = sum (a - E)^2 / Var, and Tarone's
    # correction subtracts (sum a - sum E)^2 / sum Var.
    psi = (8 * 5 / 20 + 3 * 9 / 20) / (2 * 5 / 20 + 7 * 1 / 20)
    stat, total_diff, total_var = 0.0, 0.0, 0.0
    for (a, b), (c, d) in ([[8, 2], [5, 5]], [[3, 7], [1, 9]]):
        r1, c1, n = a + b, a + c, a + b + c + d
        # (psi - 1) e^2 - (psi (r1 + c1) + n - r1 - c1) e + psi r1 c1 = 0, the root inside the margins
        qa, qb, qc = psi - 1, -(psi * (r1 + c1) + n - r1 - c1), psi * r1 * c1
        e = (-qb - sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
        var = 1 / (1 / e + 1 / (r1 - e) + 1 / (c1 - e) + 1 / (n - r1 - c1 + e))
        stat += (a - e) ** 2 / var
        total_diff, total_var = total_diff + a - e, total_var + var
    tarone = stat - total_diff ** 2 / total_var
    result = hypothesis.stratified_test(*_tables_to_rows([[[8, 2], [5, 5]], [[3, 7], [1, 9]]]))
    assert result["breslow_day_statistic"] == pytest.approx(tarone, rel=1e-6)
    assert result["breslow_day_p"] == pytest.approx(stats.chi2.sf(tarone, 1), rel=1e-6)
    assert result["breslow_day_p"] >= 0.05 and np.isfinite(result["cmh_odds_ratio"])  # agree: pooled
    # per stratum: the table's own odds ratio with a Woolf CI, and Fisher's p
    assert result["benign_odds_ratio"] == pytest.approx(8 * 5 / (2 * 5))  # stratum 0.0 = benign
    se = sqrt(1 / 8 + 1 / 2 + 1 / 5 + 1 / 5)
    assert result["benign_or_ci_low"] == pytest.approx(4.0 * np.exp(-1.959964 * se), rel=1e-5)
    assert result["harmful_p"] == pytest.approx(stats.fisher_exact([[3, 7], [1, 9]]).pvalue)


def test_strata_that_disagree_are_not_pooled():
    # the review's xstest|demo case: uncertain decisions better on benign prompts (OR 445), worse on harmful
    # ones (OR 0.0056)
    category, correct, harmful = _decisions([
        (UC, False, 150), (UR, False, 6), (CC, False, 40), (CR, False, 89),
        (UR, True, 4), (UC, True, 65), (CR, True, 120), (CC, True, 11)])
    result = hypothesis.hypothesis_test(correct, category, harmful, confidence=np.linspace(1, 2, len(correct)))
    assert result["breslow_day_p"] < 1e-10
    assert np.isnan(result["cmh_odds_ratio"]) and np.isnan(result["cmh_p"])
    assert result["verdict_stratified"].startswith("withheld: strata disagree")
    assert (result["verdict_benign"], result["verdict_harmful"]) == (O, S)
    assert result["benign_odds_ratio"] > 1 > result["harmful_odds_ratio"]
    assert result["verdict"] == "depends on harmfulness"


def test_an_effect_that_vanishes_within_strata_is_confounded():
    # compliances: uncertain 10 of 50 benign (0.2), confident 40 of 50 (0.8): supported on its own; but within
    # each harmfulness stratum uncertain and confident decisions are equally often right (OR 1)
    category, correct, harmful = _decisions([
        (UC, True, 40), (UR, True, 40), (CC, True, 10), (CR, True, 10),
        (UC, False, 10), (UR, False, 10), (CC, False, 40), (CR, False, 40)])
    result = hypothesis.hypothesis_test(correct, category, harmful, confidence=np.linspace(1, 2, len(correct)))
    assert result["verdict_compliances"] == S and result["verdict_stratified"] == N
    assert result["cmh_odds_ratio"] == pytest.approx(1.0) and result["breslow_day_p"] == pytest.approx(1.0)
    assert result["verdict"] == "confounded by harmfulness"


def test_an_effect_that_holds_within_strata_is_supported():
    category, correct, harmful = _decisions([
        (UC, True, 40), (UR, True, 20), (CC, True, 10), (CR, True, 50),
        (UC, False, 20), (UR, False, 20), (CC, False, 50), (CR, False, 10)])
    result = hypothesis.hypothesis_test(correct, category, harmful, confidence=np.linspace(1, 2, len(correct)))
    assert result["breslow_day_p"] >= 0.05 and result["cmh_odds_ratio"] < 1
    assert (result["verdict_compliances"], result["verdict_stratified"], result["verdict"]) == (S, S, S)


def test_compliance_auroc_and_length_adjusted_logistic_by_hand():
    # 4 compliances: benign ones at confidence 3 and 4, harmful ones at 1 and 3.5:
    # pairs (benign > harmful) = (3>1) + (3<3.5) + (4>1) + (4>3.5) = 3 of 4 -> AUROC 0.75
    category = np.array([UC, CC, UC, CC, CR], dtype=object)
    correct = np.array([1.0, 1.0, 0.0, 0.0, 1.0])  # benign, benign, harmful, harmful (complied); refusal
    confidence = np.array([3.0, 4.0, 1.0, 3.5, 9.0])
    result = hypothesis.compliance_test(correct, category, confidence)
    assert result["compliance_auroc"] == pytest.approx(0.75)
    assert (result["compliance_n_benign"], result["compliance_n_harmful"]) == (2, 2)
    # lower confidence goes with harmful compliance: negative coefficient on z(confidence)
    rng = np.random.default_rng(0)
    conf = rng.normal(size=400)
    harmful = (rng.random(400) < 1 / (1 + np.exp(1.5 * conf))).astype(float)
    tokens = rng.integers(20, 200, 400)
    result = hypothesis.compliance_test(1.0 - harmful, np.array([UC] * 400, dtype=object), conf, tokens)
    assert result["compliance_logit_terms"] == "confidence_z + log_tokens"
    assert result["compliance_logit_confidence_coef"] < 0 and result["compliance_logit_confidence_p"] < 1e-6
    assert result["compliance_auroc"] > 0.7
