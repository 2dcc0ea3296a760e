"""Alignment with the official DeepConf code (facebookresearch/deepconf at 675529d) and the predecessor's
artifact (its sampled-token NLL read as confidence, the "confidence paradox"), against numbers worked out
by hand."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from dagster import asset, materialize

from deepconf_assets.assets.paradox_check import paradox_sentence
from deepconf_assets.checks import confidence_sign, traces_confidence_sign
from deepconf_assets.core import analysis, confidence, stopping, voting
from deepconf_assets.partitions import experiment_partitions

# ----------------------------------------------------------------------------- bottom-10 %


def test_bottom10_floor_by_default_ceil_as_option():
    # window 1: the groups are the values 0..24 (25 groups). Official: int(0.1 * 25) = 2 -> (0 + 1) / 2;
    # ceil: 3 -> (0 + 1 + 2) / 3. Nine groups: floor 0 -> at least 1 -> 0; ceil 1 -> 0.
    values = np.r_[np.arange(25.0)[::-1], np.arange(9.0)]
    lengths = np.array([25, 9])
    floor = confidence.trace_metrics(values, lengths, window=1)
    ceil = confidence.trace_metrics(values, lengths, window=1, bottom_rounding="ceil")
    np.testing.assert_allclose(floor["conf_bottom10"], [0.5, 0.0])
    np.testing.assert_allclose(ceil["conf_bottom10"], [1.0, 0.0])
    # 15 groups: floor 1 -> the lowest group; ceil 2 -> mean of the two lowest
    m = confidence.trace_metrics(np.arange(15.0), np.array([15]), window=1, bottom_rounding="ceil")
    assert m["conf_bottom10"][0] == pytest.approx(0.5)
    assert confidence.trace_metrics(np.arange(15.0), np.array([15]), window=1)["conf_bottom10"][0] == 0.0
    with pytest.raises(ValueError, match="bottom_rounding"):
        confidence.trace_metrics(values, lengths, window=1, bottom_rounding="round")


# ----------------------------------------------------------------------------- top-eta filtering


def _top_eta(confs, eta=90.0, rule="percentile"):
    conf = np.array([confs], dtype=float)
    return voting.top_eta_mask(np.ones_like(conf, dtype=bool), conf, eta, rule)[0]


def test_top_eta_90_drops_one_of_five_and_one_of_ten():
    # n = 5, conf 5 1 4 2 3: 10th percentile = 1 + 0.4 * (2 - 1) = 1.4 -> the trace with conf 1 is dropped
    assert _top_eta([5, 1, 4, 2, 3]).tolist() == [True, False, True, True, True]
    assert _top_eta([5, 1, 4, 2, 3], rule="floor").tolist() == [True, False, True, True, True]  # floor(4.5) = 4
    assert _top_eta([5, 1, 4, 2, 3], rule="ceil").all()  # ceil(4.5) = 5: the earlier ceil rule kept every trace
    # n = 10, conf 1..10: 10th percentile = 1 + 0.9 = 1.9 -> 9 kept (floor(9) = ceil(9) = 9 too)
    ten = np.arange(1.0, 11.0)
    assert _top_eta(ten).tolist() == [False] + [True] * 9
    assert _top_eta(ten, rule="ceil").sum() == 9
    # n = 11: 10th percentile = exactly the 2nd lowest -> 10 kept, where floor(9.9) = 9
    assert _top_eta(np.arange(1.0, 12.0)).sum() == 10 and _top_eta(np.arange(1.0, 12.0), rule="floor").sum() == 9
    # one trace is always kept; ties at the threshold are all kept
    assert _top_eta([3.0]).tolist() == [True]
    assert _top_eta([2, 2, 2, 2, 2]).all()


def test_top_eta_ignores_traces_that_do_not_vote():
    conf = np.array([[5.0, 1.0, 4.0, np.nan, 3.0]])
    votes = np.array([[True, True, True, False, True]])
    # voting confidences 5 1 4 3: 10th percentile = 1 + 0.3 * 2 = 1.6 -> drop conf 1
    assert voting.top_eta_mask(votes, np.where(votes, conf, 0.0), 90)[0].tolist() == [True, False, True, False, True]


# ----------------------------------------------------------------------------- online vote weights


def online_traces() -> pd.DataFrame:
    # window 2. t0 [1,5,5] refused: mean 11/3, groups 3, 5 -> lowest 3
    #           t1 [4,4]   complied: mean 4, lowest 4
    #           t2 [1,9]   refused: mean 5, one group -> lowest 5
    tokens = [[1, 5, 5], [4, 4], [1, 9]]
    return pd.DataFrame({
        "instance_id": ["A"] * 3, "trace_idx": [0, 1, 2],
        "token_confidence": [np.array(t, dtype=np.float32) for t in tokens],
        "conf_mean": [float(np.mean(t)) for t in tokens], "n_tokens": [len(t) for t in tokens],
        "refused": pd.array([True, False, True], dtype="boolean"),
    })


def test_online_votes_are_weighted_by_lowest_group_by_default():
    m = stopping.build_trace_matrix(online_traces(), "conf_mean", 2)
    # warm-up 2, percentile 0: s = min(3, 4) = 3; t2's lowest group 5 >= 3: not cut.
    # lowest-group weights: after warm-up beta = max(3, 4) / 7 = 0.571 >= 0.55 -> stop at 2 traces.
    run = stopping.deepconf_online(m, warmup=2, percentile=0, tau=0.55)
    np.testing.assert_allclose(run.weights[0], [3, 4, 5])
    assert run.used[0].tolist() == [True, True, False]
    # conf_mean weights: beta = 4 / (11/3 + 4) = 0.522 < 0.55 -> t2 is sampled and votes
    by_metric = stopping.deepconf_online(m, warmup=2, percentile=0, tau=0.55, vote_weight="confidence_metric")
    np.testing.assert_allclose(by_metric.weights[0], [11 / 3, 4, 5])
    assert by_metric.used[0].tolist() == [True, True, True] and by_metric.votes[0].tolist() == [True, True, True]
    with pytest.raises(ValueError, match="vote_weight"):
        stopping.deepconf_online(m, 2, 0, 0.55, vote_weight="mean")


def test_online_final_vote_uses_the_policy_weights():
    traces = online_traces()
    prompts = pd.DataFrame({"instance_id": ["A"], "prompt_harmful": pd.array([True], dtype="boolean")})
    base = analysis.AnalysisSettings(warmup_traces=2, online_percentile=0, consensus_tau=0.55, group_window=2,
                                     vote_rule="confidence_weighted")
    assert base.online_vote_weight == "lowest_group"
    shares = {}
    for weight in ("lowest_group", "confidence_metric"):
        settings = dataclasses.replace(base, online_vote_weight=weight)
        result = analysis.PartitionAnalysis(traces, prompts, "heuristic", settings)
        policy = stopping.POLICIES["deepconf_online"].configured(settings)
        outcome = analysis.evaluate(result.matrix, result.runs[policy], result.gold, "confidence_weighted", 50, settings)
        shares[weight] = (outcome.refusal_rate[0], outcome.predicted[0])
    # lowest group: t0, t1 vote: refuse 3 / (3 + 4) -> compliance
    assert shares["lowest_group"][0] == pytest.approx(3 / 7) and shares["lowest_group"][1] == 0.0
    # conf_mean: t0, t1, t2 vote: (11/3 + 5) / (11/3 + 4 + 5) -> refusal
    assert shares["confidence_metric"][0] == pytest.approx((11 / 3 + 5) / (11 / 3 + 9))
    assert shares["confidence_metric"][1] == 1.0


# ----------------------------------------------------------------------------- NaN weights


def test_a_nan_weight_raises_naming_the_instance():
    refused = np.array([[1.0, 0.0], [1.0, 0.0]])
    votes = np.ones_like(refused, dtype=bool)
    conf = np.array([[1.0, 2.0], [np.nan, 2.0]])
    for rule in voting.VOTE_RULES:
        with pytest.raises(ValueError, match="instance_id inst-B"):
            voting.vote(refused, votes, conf, rule, instance_ids=np.array(["inst-A", "inst-B"]))
    # a NaN where the trace does not vote (absent) is by design
    votes[1, 0] = False
    share, predicted = voting.vote(refused, votes, conf, "confidence_weighted")
    assert predicted.tolist() == [0.0, 0.0]


def test_a_nan_confidence_raises_in_online_stopping_but_absent_traces_do_not():
    traces = pd.concat([online_traces(), online_traces().iloc[:2].assign(instance_id="B")], ignore_index=True)
    m = stopping.build_trace_matrix(traces, "conf_mean", 2)  # B has 2 traces: its third is absent (NaN)
    assert np.isnan(m.confidence[1, 2])
    stopping.deepconf_online(m, 2, 0, 0.55, vote_weight="confidence_metric")  # no error
    bad = traces.copy()
    bad.loc[(bad["instance_id"] == "B") & (bad["trace_idx"] == 1), "conf_mean"] = np.nan
    m = stopping.build_trace_matrix(bad, "conf_mean", 2)
    for weight in stopping.ONLINE_VOTE_WEIGHTS:  # a NaN confidence raises whatever weighs the votes
        with pytest.raises(ValueError, match="instance_id B"):
            stopping.deepconf_online(m, 2, 0, 0.55, vote_weight=weight)
    with pytest.raises(ValueError, match="instance_id B"):
        voting.vote(m.refused, stopping.fixed_n(m, 3).votes, m.confidence, instance_ids=m.instance_ids)


# ----------------------------------------------------------------------------- the predecessor's artifact


def traces_from_logprobs(n_traces: int = 40, seed: int = 0) -> pd.DataFrame:
    """Traces whose token log-probs come from Dirichlet top-20 distributions of varying peakedness;
    the sampled token is drawn from each distribution. Columns: DeepConf conf_mean and mean_logprob."""
    rng = np.random.default_rng(seed)
    conf_tokens, sampled, lengths = [], [], []
    for t in range(n_traces):
        length = int(rng.integers(10, 40))
        probs = rng.dirichlet(np.full(20, 10 ** rng.uniform(-1.5, 1.0)), size=length)
        probs = np.clip(probs, 1e-30, None)
        probs /= probs.sum(axis=1, keepdims=True)
        choice = np.array([rng.choice(20, p=p) for p in probs])
        conf, _ = confidence.token_confidence(np.log(probs))
        conf_tokens.append(conf)
        sampled.append(np.log(probs[np.arange(length), choice]))
        lengths.append(length)
    lengths = np.array(lengths)
    metrics = confidence.trace_metrics(np.concatenate(conf_tokens), lengths, window=4)
    table = pd.DataFrame({
        "instance_id": [f"i{t // 4}" for t in range(n_traces)], "trace_idx": [t % 4 for t in range(n_traces)],
        **metrics, "mean_logprob": confidence.segment_means(np.concatenate(sampled), lengths),
        "token_confidence": conf_tokens, "n_tokens": lengths, "nonfinite_logprobs": 0,
    })
    return table


def nll_columns(traces: pd.DataFrame) -> pd.DataFrame:
    """The predecessor's mistake: the mean sampled-token NLL stored where a confidence belongs (>= 0)."""
    return traces.assign(conf_mean=-traces["mean_logprob"])


def test_sign_check_passes_deepconf_and_fails_the_sampled_token_nll():
    good = traces_from_logprobs()
    result = confidence.confidence_sign_check(good["conf_mean"], good["mean_logprob"])
    assert result["assessable"] and result["passed"] and result["spearman"] > 0.5
    bad = nll_columns(good)
    assert (bad["conf_mean"] >= 0).all()  # so the non-negativity check cannot catch it
    result = confidence.confidence_sign_check(bad["conf_mean"], bad["mean_logprob"])
    assert result["assessable"] and not result["passed"] and result["spearman"] == pytest.approx(-1.0)
    assert "NLL" in result["verdict"]
    # the check's function reads the same columns
    assert confidence_sign(good)["passed"] and not confidence_sign(bad)["passed"]


def test_sign_check_leaves_out_traces_too_short_to_judge():
    # a flipped sign over 40 traces fails; the same traces cut to fewer than 8 tokens are not judged
    bad = nll_columns(traces_from_logprobs())
    assert not confidence_sign(bad)["passed"]
    short = bad.assign(n_tokens=confidence.SIGN_CHECK_MIN_TOKENS - 1)
    result = confidence_sign(short)
    assert result["passed"] and result["metadata"]["assessable"] is False
    assert "0 traces < 30 (40 traces of fewer than 8 tokens are too short to judge)" in result["metadata"]["verdict"]
    mixed = bad.assign(n_tokens=[confidence.SIGN_CHECK_MIN_TOKENS] * 30 + [1] * 10)  # 30 long enough: judged
    assert not confidence_sign(mixed)["passed"] and confidence_sign(mixed)["metadata"]["traces"] == 30


def test_sign_check_is_not_assessable_below_30_traces():
    bad = nll_columns(traces_from_logprobs(n_traces=29))
    result = confidence_sign(bad)
    assert result["passed"] and result["metadata"]["assessable"] is False
    assert "not assessable" in result["metadata"]["verdict"]


def _materialize_sign_check(table: pd.DataFrame):
    @asset(name="traces", partitions_def=experiment_partitions)
    def stub_traces() -> pd.DataFrame:
        return table

    @asset(partitions_def=experiment_partitions, deps=[stub_traces])
    def downstream() -> None:
        return None

    return materialize([stub_traces, downstream, traces_confidence_sign], partition_key="xstest|demo",
                       raise_on_error=False)


@pytest.mark.slow
def test_the_blocking_sign_check_fails_the_run_on_nll_traces():
    good = _materialize_sign_check(traces_from_logprobs())
    assert good.success
    bad = _materialize_sign_check(nll_columns(traces_from_logprobs()))
    assert not bad.success
    (evaluation,) = bad.get_asset_check_evaluations()
    assert evaluation.check_name == "traces_confidence_sign" and not evaluation.passed
    assert evaluation.metadata["spearman_conf_mean_vs_mean_logprob"].value == pytest.approx(-1.0)
    assert not bad.get_asset_materialization_events()[1:]  # downstream never ran


@pytest.mark.slow
def test_sign_check_covers_every_confidence_column_and_names_the_flipped_one():
    good = traces_from_logprobs()
    result = confidence_sign(good)
    assert result["passed"] and result["metadata"]["failing_columns"] == "none"
    for column in confidence.TRACE_METRICS:
        assert f"| {column}" in result["metadata"]["columns"].value  # one table row per column
    # only conf_lowest_group flipped (the sampled-token NLL of the weakest window, still >= 0)
    bad = good.assign(conf_lowest_group=-good["mean_logprob"])
    assert (bad["conf_lowest_group"] >= 0).all()
    result = confidence_sign(bad)
    assert not result["passed"] and result["metadata"]["failing_columns"] == "conf_lowest_group"
    assert "conf_lowest_group" in result["description"] and "conf_mean" not in result["description"]
    assert result["metadata"]["spearman_conf_lowest_group_vs_mean_logprob"].value == pytest.approx(-1.0)
    assert result["metadata"]["spearman_conf_mean_vs_mean_logprob"].value > 0.5
    run = _materialize_sign_check(bad)
    assert not run.success
    (evaluation,) = run.get_asset_check_evaluations()
    assert not evaluation.passed and "conf_lowest_group" in evaluation.description
    assert evaluation.metadata["failing_columns"].value == "conf_lowest_group"


def test_predecessor_nll_is_minus_mean_logprob_in_the_trace_matrix():
    traces = traces_from_logprobs().assign(refused=pd.array([True, False] * 20, dtype="boolean"))
    m = stopping.build_trace_matrix(traces, confidence.PREDECESSOR_NLL)
    expected = stopping.build_trace_matrix(traces.assign(conf_mean=-traces["mean_logprob"]), "conf_mean")
    np.testing.assert_array_equal(m.confidence, expected.confidence)
    assert (m.confidence[m.present] > 0).all()
    assert confidence.PREDECESSOR_NLL in confidence.CONFIDENCE_CHOICES
    assert confidence.PREDECESSOR_NLL not in confidence.TRACE_METRICS  # never a stored DeepConf column


def test_paradox_sentence():
    def table(metric, confident, uncertain, ci, p, n=40):
        return pd.DataFrame({"confidence_metric": metric, "category": ["confident_compliance", "uncertain_compliance"],
                             "accuracy": [confident, uncertain], "n": n, "compliance_difference": confident - uncertain,
                             "compliance_difference_ci_low": ci[0], "compliance_difference_ci_high": ci[1],
                             "fisher_p_two_sided": p})

    flipped = pd.concat([table("conf_mean", 0.8, 0.6, (0.05, 0.35), 0.01),
                         table("predecessor_nll", 0.6, 0.8, (-0.35, -0.05), 0.01)])
    said = paradox_sentence(flipped)
    assert "FLIPS" in said and "with predecessor_nll, confident minus uncertain compliance accuracy -20.0 pp" in said
    assert "the paradox appears (confident compliances are less often right)" in said
    # point estimates that flip without both being established: no sign artifact is claimed
    unsure = pd.concat([table("conf_mean", 0.8, 0.6, (-0.05, 0.35), 0.2),
                        table("predecessor_nll", 0.6, 0.8, (-0.35, -0.05), 0.01)])
    assert "FLIPS" not in paradox_sentence(unsure) and "a sign artifact is possible, not shown" in paradox_sentence(unsure)
    same = pd.concat([table("conf_mean", 0.6, 0.8, (-0.35, -0.05), 0.01),
                      table("predecessor_nll", 0.6, 0.8, (-0.35, -0.05), 0.01)])
    assert "does NOT flip" in paradox_sentence(same)
    few = pd.concat([table("conf_mean", 0.6, 0.8, (-0.35, -0.05), 0.01, n=10), table("predecessor_nll", 0.6, 0.8,
                                                                                     (-0.35, -0.05), 0.01)])
    assert "not tested (fewer than 30 compliances in a category)" in paradox_sentence(few)


def test_predecessor_comparison_asset_side_by_side():
    from deepconf_assets.assets.paradox_check import paradox_check
    from resources.analysis_settings import AnalysisSettingsResource

    traces = traces_from_logprobs(n_traces=80, seed=1).assign(group_window=4)
    rng = np.random.default_rng(2)
    refused = pd.array(rng.random(len(traces)) < 0.4, dtype="boolean")
    labels = traces[["instance_id", "trace_idx"]].assign(refused=refused)
    ids = sorted(traces["instance_id"].unique())
    harmful = pd.array(rng.random(len(ids)) < 0.5, dtype="boolean")
    prompts = pd.DataFrame({"instance_id": ids, "prompt_harmful": harmful})
    unavailable = labels.assign(unavailable_reason="no weights")
    result = paradox_check(
        analysis_settings=AnalysisSettingsResource(), benchmark_prompts=prompts, traces=traces,
        labels_heuristic=labels, labels_wildguard=unavailable, labels_xstest_rule=labels)
    table = result.value
    assert len(table) == 8 and set(table["confidence_metric"]) == {"conf_mean", "predecessor_nll"}
    assert table.groupby("confidence_metric")["n"].sum().tolist() == [len(ids), len(ids)]
    assert table.loc[table["deepconf"], "confidence_metric"].unique().tolist() == ["conf_mean"]
    assert {"paradox", "comparison", "verdict_conf_mean", "verdict_predecessor_nll"} <= set(result.metadata)
