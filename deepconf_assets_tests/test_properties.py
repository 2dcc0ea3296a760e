"""Property tests: invariants that must hold for any traces, not just hand-picked ones."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepconf_assets.checks import confidence_violations
from deepconf_assets.core import analysis, confidence, metrics, stopping, voting


@st.composite
def partitions(draw):
    """Random partitions: 1-6 instances x 1-6 traces, 1-12 tokens each, random labels (some unknown)."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_instances, n_traces = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_instances):
        for t in range(rng.integers(1, n_traces + 1)):
            tokens = rng.gamma(2.0, 2.0, size=rng.integers(1, 13)).astype(np.float32)
            rows.append({"instance_id": f"i{i}", "trace_idx": t, "token_confidence": tokens,
                         "conf_mean": float(tokens.astype(np.float64).mean()), "n_tokens": len(tokens),
                         "refused": [True, False, None][rng.integers(0, 3) if rng.random() < 0.2 else rng.integers(0, 2)]})
    traces = pd.DataFrame(rows)
    traces["refused"] = traces["refused"].astype("boolean")
    prompts = pd.DataFrame({"instance_id": [f"i{i}" for i in range(n_instances)],
                            "prompt_harmful": pd.array(rng.integers(0, 2, n_instances).astype(bool), dtype="boolean")})
    return traces, prompts, draw(st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(partitions(), st.floats(0, 100), st.floats(0, 100))
def test_adaptive_tokens_are_monotone_in_the_threshold_percentile(data, p1, p2):
    traces, _, window = data
    m = stopping.build_trace_matrix(traces, "conf_mean", window)
    low, high = sorted((p1, p2))
    assert (stopping.adaptive(m, 2, low).spent.sum(axis=1) <= stopping.adaptive(m, 2, high).spent.sum(axis=1) + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(partitions(), st.floats(0, 100), st.floats(0.5, 1.0))
def test_policies_spend_within_budget(data, percentile, tau):
    traces, _, window = data
    m = stopping.build_trace_matrix(traces, "conf_mean", window)
    for run in (stopping.fixed_n(m, 2), stopping.adaptive(m, 2, percentile), stopping.deepconf_online(m, 2, percentile, tau)):
        assert (run.spent <= m.tokens + 1e-9).all() and (run.spent >= 0).all()
        assert not (run.votes & ~run.used).any() and not (run.used & ~m.present).any()
        assert (run.used.sum(axis=1) >= np.minimum(1, m.n_available)).all()
        savings = 100 * (1 - run.spent.sum() / m.tokens.sum())
        assert -1e-9 <= savings <= 100


@settings(max_examples=60, deadline=None)
@given(partitions(), st.floats(0, 100))
def test_online_cuts_exactly_the_traces_below_threshold(data, percentile):
    traces, _, window = data
    m = stopping.build_trace_matrix(traces, "conf_mean", window)
    run = stopping.deepconf_online(m, 1, percentile, tau=1.01)  # tau > 1: never stops early
    later = run.used & (np.arange(m.present.shape[1])[None, :] >= 1)
    below = m.lowest_group < run.threshold[:, None]
    assert ((later & ~run.votes) == (later & below)).all()
    # the lowest group from the matrix equals the trace metric computed directly
    direct = confidence.trace_metrics(
        np.concatenate(traces.sort_values(["instance_id", "trace_idx"])["token_confidence"].tolist()),
        traces.sort_values(["instance_id", "trace_idx"])["n_tokens"].to_numpy(), window)["conf_lowest_group"]
    np.testing.assert_allclose(np.sort(m.lowest_group[m.present]), np.sort(direct), rtol=1e-9)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([True, False, None])), min_size=1, max_size=40))
def test_sensitivity_plus_unsafe_compliance_is_one(pairs):
    gold = pd.array([g for g, _ in pairs], dtype="boolean")
    pred = pd.array([p for _, p in pairs], dtype="boolean")
    m = metrics.safety_metrics(gold, pred)
    if m["tp"] + m["fn"]:
        assert abs(m["sensitivity"] + m["unsafe_compliance_rate"] - 1) < 1e-12
    if m["fp"] + m["tn"]:
        assert abs(m["specificity"] + m["over_refusal_rate"] - 1) < 1e-12
    assert m["tp"] + m["fn"] + m["fp"] + m["tn"] == m["n"] and m["n"] + m["n_excluded_unknown"] == len(pairs)


@settings(max_examples=60, deadline=None)
@given(partitions(), st.floats(0.01, 100))
def test_votes_ignore_the_scale_of_confidence(data, scale):
    traces, _, window = data
    m = stopping.build_trace_matrix(traces, "conf_mean", window)
    used = stopping.fixed_n(m, 6).votes
    for rule in voting.VOTE_RULES:
        a = voting.vote(m.refused, used, m.confidence, rule)[1]
        b = voting.vote(m.refused, used, m.confidence * scale, rule)[1]
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(partitions(), st.floats(0, 100))
@pytest.mark.slow
def test_categories_add_up(data, percentile):
    traces, prompts, window = data
    result = analysis.PartitionAnalysis(traces, prompts, "heuristic", analysis.AnalysisSettings(group_window=window,
                                        category_percentile=percentile))
    predictions = result.predictions()
    for _, group in predictions.groupby("policy"):
        assert group["category"].notna().sum() == group["predicted_refusal"].notna().sum()


def test_a_sign_flipped_confidence_is_caught():
    rng = np.random.default_rng(0)
    topk = np.log(rng.dirichlet(np.ones(20), size=(30,)))
    conf, _ = confidence.token_confidence(topk)
    lengths = np.array([10, 20])
    good = pd.DataFrame({**{k: v for k, v in confidence.trace_metrics(conf, lengths, 4).items()},
                         "token_confidence": np.split(conf, [10]), "nonfinite_logprobs": [0, 0]})
    assert confidence_violations(good)["passed"]
    # the predecessor's mistake: a (log-)likelihood stored where a confidence belongs
    flipped_tokens = -conf
    flipped = pd.DataFrame({**{k: v for k, v in confidence.trace_metrics(flipped_tokens, lengths, 4).items()},
                            "token_confidence": np.split(flipped_tokens, [10]), "nonfinite_logprobs": [0, 0]})
    verdict = confidence_violations(flipped)
    assert not verdict["passed"]
    assert verdict["metadata"]["negative_token_confidences"] == 30


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0, 100))
def test_row_percentile_equals_numpy(seed, percentile):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(7, 5)).round(rng.integers(0, 3))  # rounding makes ties
    mask = rng.random((7, 5)) < 0.7
    expected = np.array([np.percentile(v[m], percentile) if m.any() else np.nan for v, m in zip(values, mask)])
    np.testing.assert_array_equal(stopping.row_percentile(values, mask, percentile), expected)
