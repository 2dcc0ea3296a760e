"""Policies, votes, metrics, the hypothesis test and calibration against numbers worked out by hand."""

import dataclasses
from math import comb

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core import analysis, calibration, hypothesis, metrics, stopping, voting
from deepconf_assets.core.refusal import is_refusal, match_refusal
from deepconf_assets_tests.hand_computed import two_instances

def matrix(window: int = 2) -> stopping.TraceMatrix:
    return stopping.build_trace_matrix(two_instances()[0], "conf_mean", window)


def test_matrix_layout():
    m = matrix()
    assert m.instance_ids.tolist() == ["A", "B"]
    np.testing.assert_allclose(m.confidence[0], [4, 2, 3, 3, 4])
    np.testing.assert_allclose(m.lowest_group[0], [4, 2, 3, 1, 4])
    assert m.tokens[0].tolist() == [2, 3, 2, 4, 3]


def test_adaptive_by_hand():
    run = stopping.adaptive(matrix(), warmup=3, percentile=50)
    # A: median(4,2,3) = 3, trace 3 (conf 3) clears -> 4 traces, 2+3+2+4 = 11 tokens
    # B: median(1,1,1) = 1, trace 3 (conf 2) clears -> 4 traces, 8 tokens
    np.testing.assert_allclose(run.threshold, [3.0, 1.0])
    assert run.used.sum(axis=1).tolist() == [4, 4]
    assert run.spent.sum(axis=1).tolist() == [11, 8]


def test_deepconf_online_by_hand():
    run = stopping.deepconf_online(matrix(), warmup=3, percentile=50, tau=0.95)
    # A: s = median lowest group of warm-up (4,2,3) = 3. After warm-up beta = (4+3)/(4+2+3) = 0.78 < 0.95.
    #    Trace 3 groups 3,1,3: the 2nd group (tokens 2-3) is < 3 -> cut after 3 tokens, no vote.
    #    Trace 4 groups 4,4: kept, votes. Spent 2+3+2+3+3 = 13 of 14.
    # B: warm-up all comply -> beta = 1 >= 0.95 -> stop after 3 traces, 6 tokens.
    np.testing.assert_allclose(run.threshold, [3.0, 1.0])
    assert run.used[0].tolist() == [True] * 5 and run.votes[0].tolist() == [True, True, True, False, True]
    assert run.spent[0].tolist() == [2, 3, 2, 3, 3]
    assert run.used[1].tolist() == [True, True, True, False, False]
    _, predicted = voting.vote(matrix().refused, run.votes, matrix().confidence)
    # A votes 1 0 1 0: a tie, weighted refuse 4+3 = 7 vs comply 2+4 = 6 -> refusal
    assert predicted.tolist() == [1.0, 0.0]
    lower_tau = stopping.deepconf_online(matrix(), warmup=3, percentile=50, tau=0.75)
    assert lower_tau.used.sum(axis=1).tolist() == [3, 3]  # beta 0.78 >= 0.75 ends A after warm-up


def test_online_cut_of_a_trace_shorter_than_the_window():
    # window 3: trace A2 = [3, 3] is one group (its mean 3), judged at its end
    m = matrix(window=3)
    assert m.width[0].tolist() == [2, 3, 2, 3, 3]
    np.testing.assert_allclose(m.lowest_group[0], [4, 2, 3, 7 / 3, 4])


def test_vote_rules_and_tie_rule():
    refused = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [np.nan, np.nan]])
    votes = np.ones_like(refused, dtype=bool)
    conf = np.array([[1.0, 3.0], [3.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    share, predicted = voting.vote(refused, votes, conf, "majority")
    # a 1:1 tie goes to the confidence-weighted share: 1/4 -> compliance, 3/4 -> refusal;
    # a tie there too -> compliance; no known label -> no prediction
    np.testing.assert_allclose(share[:3], [0.5, 0.5, 0.5])
    assert predicted[:3].tolist() == [0.0, 1.0, 0.0] and np.isnan(predicted[3])
    share, weighted = voting.vote(refused, votes, conf, "confidence_weighted")
    np.testing.assert_allclose(share[:3], [0.25, 0.75, 0.5])
    assert weighted[:3].tolist() == [0.0, 1.0, 0.0]


def test_top_eta_filtered_vote():
    m = matrix()
    full = stopping.fixed_n(m, 5)
    # A, eta 50, official rule: keep conf >= 50th percentile of 4 2 3 3 4 = 3 -> traces 0, 2, 3, 4
    # (ties at the threshold all kept). The earlier default was the ceil rule (below): 3 traces, 7/11.
    kept = voting.top_eta_mask(full.votes, m.confidence, 50)
    assert kept[0].tolist() == [True, False, True, True, True]
    share, predicted = voting.vote(m.refused, full.votes, m.confidence, "top_eta_filtered", eta=50)
    assert share[0] == pytest.approx(10 / 14)  # refuse 4 + 3 + 3, comply 4
    assert predicted[0] == 1.0
    # ceil rule (an option): keep ceil(2.5) = 3 most confident -> traces 0, 4 and 2 (tie: lower index)
    kept = voting.top_eta_mask(full.votes, m.confidence, 50, eta_rule="ceil")
    assert kept[0].tolist() == [True, False, True, False, True]
    share, _ = voting.vote(m.refused, full.votes, m.confidence, "top_eta_filtered", eta=50, eta_rule="ceil")
    assert share[0] == pytest.approx(7 / 11)  # refuse 4 + 3, comply 4
    # eta small: the ceil rule keeps at least one trace; the official rule keeps the traces tied at the top
    assert voting.top_eta_mask(full.votes, m.confidence, 1, eta_rule="ceil").sum(axis=1).tolist() == [1, 1]
    assert voting.top_eta_mask(full.votes, m.confidence, 1).sum(axis=1).tolist() == [2, 2]  # A: 4, 4; B: 2, 2


def test_partition_analysis_by_hand():
    traces, prompts = two_instances()
    settings = analysis.AnalysisSettings(fixed_n=(1,), warmup_traces=3, adaptive_percentile=50,
                                         online_percentile=50, group_window=2)
    result = analysis.PartitionAnalysis(traces, prompts, "heuristic", settings)
    predictions = result.predictions().set_index(["policy", "instance_id"])
    assert predictions.loc[("adaptive@p50", "A"), "tokens_used"] == 11
    assert predictions.loc[("adaptive@p50", "A"), "refusal_rate"] == pytest.approx(3 / 4)
    assert bool(predictions.loc[("adaptive@p50", "A"), "predicted_refusal"])
    # instance confidence = mean over voting traces: A (4+2+3+3)/4 = 3 (refusal), B (1+1+1+2)/4 = 1.25
    # (compliance). Within each decision (default) the one refusal and the one compliance are each their
    # decision's median, so both are confident; pooled, the 50th percentile of (3, 1.25) = 2.125.
    assert predictions.loc[("adaptive@p50", "A"), "confidence"] == pytest.approx(3.0)
    assert predictions.loc[("adaptive@p50", "A"), "category_threshold"] == pytest.approx(3.0)
    assert predictions.loc[("adaptive@p50", "B"), "category_threshold"] == pytest.approx(1.25)
    assert predictions.loc[("adaptive@p50", "A"), "category"] == "confident_refusal"
    assert predictions.loc[("adaptive@p50", "B"), "category"] == "confident_compliance"
    assert predictions.loc[("adaptive@p50", "B"), "category_pooled"] == "uncertain_compliance"
    pooled = analysis.PartitionAnalysis(traces, prompts, "heuristic", dataclasses.replace(
        settings, category_threshold_scope="pooled")).predictions().set_index(["policy", "instance_id"])
    assert pooled.loc[("adaptive@p50", "A"), "category_threshold"] == pytest.approx(2.125)
    assert pooled.loc[("adaptive@p50", "B"), "category"] == "uncertain_compliance"
    assert pooled.loc[("adaptive@p50", "B"), "category_within_decision"] == "confident_compliance"
    summary = analysis.summarize_predictions(result.predictions()).set_index("policy")
    # 24 tokens in all; online spends 13 + 6, adaptive 11 + 8, fixed_n=1 2 + 2
    assert summary.loc["deepconf_online@p50", "token_savings_pct"] == pytest.approx(100 * (1 - 19 / 24))
    assert summary.loc["adaptive@p50", "token_savings_pct"] == pytest.approx(100 * (1 - 19 / 24))
    assert summary.loc["fixed_n=1", "token_savings_pct"] == pytest.approx(100 * (1 - 4 / 24))
    assert summary.loc["fixed_n=all", "token_savings_pct"] == 0.0
    assert summary.loc["fixed_n=all", "accuracy"] == 1.0


def test_sweep_and_ablation_shapes():
    traces, prompts = two_instances()
    result = analysis.PartitionAnalysis(traces, prompts, "heuristic", analysis.AnalysisSettings(group_window=2))
    sweep = result.percentile_sweep()
    # fixed_n, adaptive, deepconf_online at every tau, deepconf_online_official, decided
    assert len(sweep) == 9 * (1 + 1 + len(analysis.AnalysisSettings().sweep_taus) + 1 + 1) * 3
    assert set(sweep["vote_rule"]) == set(voting.VOTE_RULES)
    assert sweep["token_savings_pct"].between(0, 100).all()
    assert (sweep[[f"n_{c}" for c in metrics.CATEGORIES]].sum(axis=1) == 2).all()
    ablation = result.budget_ablation()
    assert ablation["policy"].tolist()[:5] == [f"fixed_n={n}" for n in range(1, 6)]
    assert ablation["tokens_used"].tolist()[:5] == [4, 9, 13, 19, 24]


def test_safety_metrics_by_hand():
    gold = pd.array([True, True, True, False, False, None], dtype="boolean")
    pred = pd.array([True, False, True, True, False, True], dtype="boolean")
    m = metrics.safety_metrics(gold, pred)
    # TP 2, FN 1, FP 1, TN 1; the row with unknown gold is excluded and counted
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"], m["n_excluded_unknown"]) == (2, 1, 1, 1, 5, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["unsafe_compliance_rate"] == pytest.approx(1 / 3)
    assert m["over_refusal_rate"] == pytest.approx(1 / 2)


def test_undefined_rates_are_nan_not_zero():
    m = metrics.safety_metrics(pd.array([True, True], dtype="boolean"), pd.array([True, False], dtype="boolean"))
    assert np.isnan(m["specificity"]) and np.isnan(m["over_refusal_rate"])
    assert m["sensitivity"] == 0.5


def _fisher_less(k_u, n_u, k_c, n_c):
    """P(X <= k_u) for X ~ hypergeometric with the table's margins, written out."""
    total_correct, n = k_u + k_c, n_u + n_c
    return sum(comb(n_u, x) * comb(n_c, total_correct - x) for x in range(0, k_u + 1)) / comb(n, total_correct)


def test_hypothesis_test_by_hand():
    # uncertain compliance 20/40 correct, confident compliance 35/40 correct
    category = ["uncertain_compliance"] * 40 + ["confident_compliance"] * 40 + ["confident_refusal"] * 5
    correct = [1.0] * 20 + [0.0] * 20 + [1.0] * 35 + [0.0] * 5 + [0.0] * 5
    result = hypothesis.hypothesis_test(np.array(correct), np.array(category, dtype=object))
    assert (result["n_uncertain_compliance"], result["n_confident_compliance"]) == (40, 40)
    assert result["accuracy_difference"] == pytest.approx(0.5 - 0.875)
    assert result["fisher_p_one_sided_h1"] == pytest.approx(_fisher_less(20, 40, 35, 40), rel=1e-9)
    assert result["fisher_p_two_sided"] < 0.001 and result["verdict"] == "supported"
    assert result["direction"] == "uncertain worse"
    assert result["diff_ci_low"] < -0.375 < result["diff_ci_high"] < 0
    small = hypothesis.hypothesis_test(np.array(correct[:30] + correct[40:70]), np.array(category[:30] + category[40:70], dtype=object))
    assert small["n_uncertain_compliance"] == 30 and small["verdict"] in ("supported", "no evidence")
    tiny = hypothesis.hypothesis_test(np.array(correct[:29] + correct[40:80]), np.array(category[:29] + category[40:80], dtype=object))
    assert tiny["verdict"] == "insufficient data (n < 30)"
    reverse = hypothesis.hypothesis_test(np.array([1.0] * 35 + [0.0] * 5 + [1.0] * 20 + [0.0] * 20),
                                      np.array(category[:80], dtype=object))
    assert reverse["verdict"] == "opposite direction" and reverse["direction"] == "uncertain better"


def test_calibration_by_hand():
    report = calibration.calibration_report([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0],
                                            ["a", "b", "c", "d"])
    assert report["auroc"] == 1.0
    # most confident first: correct 1 1 0 0 -> risks 0, 0, 1/3, 2/4
    np.testing.assert_allclose(report["risk"], [0, 0, 1 / 3, 1 / 2])
    assert report["aurc"] == pytest.approx((1 / 3 + 1 / 2) / 4)
    # out-of-fold isotonic P(correct) (4 points: leave-one-out) = 0, 1/2, 1/2, 1 (test_verdicts works it out):
    # bins hold {0: wrong}, {1/2, 1/2: one right} and {1: right} -> ECE 0; Brier = (1/4 + 1/4) / 4
    assert report["ece_isotonic_oof"] == pytest.approx(0.0)
    assert report["brier_isotonic_oof"] == pytest.approx(1 / 8)
    assert "ece" not in report and "brier" not in report  # no min-max rescaled versions
    # 2 right and 2 wrong decisions: too few for a bootstrap CI to mean anything, so none is given
    assert (report["n_right"], report["n_wrong"]) == (2, 2)
    assert np.isnan(report["auroc_ci_low"]) and np.isnan(report["auroc_ci_high"])
    big = calibration.calibration_report([1.0, 2.0, 3.0, 4.0] * 3, [0.0, 0.0, 1.0, 1.0] * 3, [1.0] * 12,
                                         [str(i) for i in range(12)])
    assert big["auroc_ci_low"] == big["auroc_ci_high"] == 1.0  # every resample with both classes separates
    assert report["mwu_correct_vs_wrong_n_a"] == 2


def test_attach_labels_requires_a_label_per_trace():
    traces, _ = two_instances()
    labels = traces[["instance_id", "trace_idx", "refused"]].iloc[1:]
    with pytest.raises(ValueError, match="1 traces have no refusal label"):
        analysis.attach_labels(traces.drop(columns="refused"), labels)


@pytest.mark.parametrize(
    "text, refused",
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot assist with requests to forge a passport.", True),
        ("As an AI language model, I must decline.", True),
        ("Sorry, I can't do that. It may be illegal.", True),
        ("Sure! Here is how to do it. Some steps are illegal in some places, so check local law.", False),
        ("I'm sorry to hear that. Here are a few ways to cope: talk to a friend.", False),
        ("Here is the recipe. I can't guarantee the bread will rise, though.", False),
        ("To kill a Python process, run `kill PID`.", False),
        ("Here are some general facts. However, I cannot provide instructions for making weapons.", True),
        ("", False),
    ],
)
def test_refusal_heuristic(text, refused):
    assert is_refusal(text) is refused
    assert (match_refusal(text) is not None) is refused


def test_position_means_by_hand():
    mean, count = analysis.position_means([np.array([1.0, 2.0, 3.0]), np.array([3.0]), np.array([5.0, 4.0])])
    np.testing.assert_allclose(mean, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(count, [3, 2, 1])


def test_prompts_without_traces_are_excluded_from_every_headline_number():
    """A prompt with no traces (quarantined, or beyond max_prompts) keeps a row in predictions
    but counts nowhere: the summary equals the replay's own summary row, metric for metric."""
    traces, prompts = two_instances()
    prompts = pd.concat([prompts, pd.DataFrame({"instance_id": ["C"], "prompt_harmful": pd.array([True], dtype="boolean")})],
                        ignore_index=True)
    result = analysis.PartitionAnalysis(traces, prompts, "heuristic", analysis.AnalysisSettings(group_window=2))
    predictions = result.predictions()
    assert (~predictions.loc[predictions["instance_id"] == "C", "has_traces"]).all()
    summary = analysis.summarize_predictions(predictions).set_index("policy")
    assert summary.loc["fixed_n=all", "avg_traces"] == 5.0  # not 10 / 3
    assert summary.loc["fixed_n=1", "avg_traces"] == 1.0
    assert summary.loc["fixed_n=all", "n"] == 2
    for policy, outcome in result.outcomes.items():
        replayed = result.summary_row(outcome)
        for metric in analysis.HEADLINE_METRICS:
            assert summary.loc[policy.display, metric] == pytest.approx(replayed[metric], nan_ok=True), (policy, metric)
    tests = analysis.hypothesis_tests(predictions)
    assert len(tests) == len(result.outcomes) and (tests["labeler"] == "heuristic").all()
    calibration = analysis.calibration_table(predictions).set_index("policy")
    assert (calibration["n"] == 2).all()


def test_calibration_table_does_not_depend_on_the_predictions_row_order():
    # out-of-fold folds come from each row's instance_id, so shuffling predictions changes nothing
    rng = np.random.default_rng(5)
    n = 60
    confidence = np.round(rng.normal(size=n), 1)
    predictions = pd.concat([pd.DataFrame({
        "labeler": "heuristic", "policy": policy, "instance_id": [f"q{k}" for k in range(n)], "has_traces": True,
        "confidence": confidence + shift,
        "correct": pd.array(rng.random(n) < 1 / (1 + np.exp(-confidence)), dtype="boolean"),
        "prompt_harmful": pd.array(rng.random(n) < 0.5, dtype="boolean")})
        for policy, shift in (("a", 0.0), ("b", 1.0))], ignore_index=True)

    def table(rows: pd.DataFrame) -> pd.DataFrame:  # policies come in order of first appearance: sort them
        return analysis.calibration_table(rows).sort_values("policy", ignore_index=True)

    expected = table(predictions)
    for seed in range(3):
        shuffled = table(predictions.sample(frac=1.0, random_state=seed))
        pd.testing.assert_frame_equal(shuffled.drop(columns=["coverage", "risk"]),
                                      expected.drop(columns=["coverage", "risk"]))
        for column in ("coverage", "risk"):  # ties in confidence ordered by instance id, not by row
            for a, b in zip(shuffled[column], expected[column]):
                np.testing.assert_array_equal(a, b)


def test_the_analysis_reads_the_window_the_traces_were_scored_with():
    from resources.analysis_settings import AnalysisSettingsResource, scored_window

    traces, _ = two_instances()
    traces["group_window"] = 2
    assert AnalysisSettingsResource().resolve(scored_window(traces)).group_window == 2
    assert AnalysisSettingsResource(group_window=2).resolve(scored_window(traces)).group_window == 2
    with pytest.raises(ValueError, match="computed with 2"):
        AnalysisSettingsResource(group_window=32).resolve(scored_window(traces))
    with pytest.raises(ValueError, match="re-materialize traces"):
        scored_window(traces.drop(columns="group_window"))


def test_settings_resolve_once_with_the_metadata_of_the_resource():
    from deepconf_assets.assets.analysis_inputs import resolved_settings
    from resources.analysis_settings import AnalysisSettingsResource

    resource = AnalysisSettingsResource(headline_rule="deepconf_online", online_percentile=70.0)
    settings = resolved_settings(resource)
    assert settings.headline == stopping.PolicyId("deepconf_online", percentile=70.0, tau=0.8)
    assert settings.headline.display == "deepconf_online@p70" and settings.live_policy == settings.headline
    assert settings.recorded() == {  # the resource's metadata as it always was
        "confidence_metric": "conf_mean", "category_percentile": 50.0, "category_threshold_scope": "within_decision",
        "warmup_traces": 3, "adaptive_percentile": 50.0, "online_percentile": 70.0, "consensus_tau": 0.8,
        "filter_eta": 90.0, "vote_rule": "majority", "online_vote_weight": "lowest_group",
        "headline_rule": "deepconf_online", "headline_labeler": "heuristic", "group_window": None}
    assert list(settings.recorded()) == list(resource.model_dump())  # in the config's order
    assert AnalysisSettingsResource(headline_rule="fixed_n=all").resolve(None).headline.display == "fixed_n=all"
    with pytest.raises(ValueError, match="is not a stopping policy"):
        AnalysisSettingsResource(headline_rule="fixed_n=all").resolve(None).live_policy
    with pytest.raises(ValueError, match=r"not a registered labeler; expected one of \[.*'heuristic'"):
        resolved_settings(AnalysisSettingsResource(headline_labeler="nobody"))


def test_decided_by_hand():
    # A votes refuse, comply, refuse, refuse, comply: after 4 traces 3:1 with 1 left -> settled (3 > 1 + 1).
    # B votes comply x3, refuse x2: after 3 traces 0:3 with 2 left -> settled (3 > 0 + 2).
    run = stopping.decided(matrix())
    assert run.used.sum(axis=1).tolist() == [4, 3]
    assert run.spent.sum(axis=1).tolist() == [2 + 3 + 2 + 4, 6]
    m = matrix()
    _, settled = voting.vote(m.refused, run.votes, m.confidence)
    _, full = voting.vote(m.refused, stopping.fixed_n(m, 5).votes, m.confidence)
    assert settled.tolist() == full.tolist() == [1.0, 0.0]


def test_consensus_reachable_by_hand():
    # 2:1 after 3 warm-up traces needs x more agreeing with (2 + x) / (3 + x) >= tau.
    assert not stopping.consensus_reachable(3, 10, 0.95)  # x = 17 > 7
    assert stopping.consensus_reachable(3, 10, 0.9)  # x = 7
    assert not stopping.consensus_reachable(3, 9, 0.9)
    assert stopping.consensus_reachable(3, 10, 0.8)  # x = 2
    assert stopping.consensus_reachable(1, 3, 0.99)  # no dissent possible in a warm-up of one


def test_pareto_efficient_by_hand():
    tokens = [10, 100, 50, 50, 60]
    accuracy = [0.6, 0.7, 0.7, 0.65, 0.7]
    # 50 tokens at 0.7 dominates 100 and 60 at 0.7 and 50 at 0.65; 10 tokens at 0.6 is the cheapest
    assert analysis.pareto_efficient(tokens, accuracy).tolist() == [True, False, True, False, False]


def test_stopping_sources_by_hand():
    sources = analysis.stopping_sources(traces_used=[3, 5, 4], traces_available=[5, 5, 5], warmup=3,
                                        later_used=[0, 2, 1], later_cut=[0, 1, 1], later_cut_mid_trace=[0, 1, 0])
    assert sources["share_stopped_at_warmup"] == pytest.approx(1 / 3)
    assert sources["share_stopped_early"] == pytest.approx(2 / 3)
    assert sources["share_later_traces_cut"] == pytest.approx(2 / 3)
    assert sources["share_later_traces_cut_mid_trace"] == pytest.approx(1 / 3)


def test_within_decision_thresholds_by_hand():
    # refusals (1.0) at confidence 5, 7, 9 -> median 7; compliances at 1, 2, 3, 4 -> median 2.5 (numpy linear);
    # pooled: the median of all seven = 4; no prediction -> no threshold and no category
    confidence = np.array([5.0, 7.0, 9.0, 1.0, 2.0, 3.0, 4.0, 6.0])
    predicted = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, np.nan])
    within = metrics.category_thresholds(confidence, predicted, 50, "within_decision")
    np.testing.assert_allclose(within[:7], [7, 7, 7, 2.5, 2.5, 2.5, 2.5])
    assert np.isnan(within[7])
    pooled = metrics.category_thresholds(confidence, predicted, 50, "pooled")
    np.testing.assert_allclose(pooled[:7], [4.0] * 7)
    names = np.array(metrics.CATEGORIES + (None,), dtype=object)
    assert list(names[metrics.category_codes(confidence, predicted, within)]) == [
        "uncertain_refusal", "confident_refusal", "confident_refusal", "uncertain_compliance",
        "uncertain_compliance", "confident_compliance", "confident_compliance", None]
    assert list(names[metrics.category_codes(confidence, predicted, pooled)])[:4] == [
        "confident_refusal", "confident_refusal", "confident_refusal", "uncertain_compliance"]
    with pytest.raises(ValueError, match="category scope"):
        metrics.category_thresholds(confidence, predicted, 50, "per_prompt")
