"""DeepConf confidence against values computed by hand."""

import numpy as np
import pytest
from scipy.special import log_softmax

from deepconf_assets.core import confidence
from deepconf_assets.core.trace_rows import confidence_columns, strip_thinking


def test_token_confidence_is_minus_mean_of_topk_logprobs():
    conf, clipped = confidence.token_confidence(np.array([[-0.1, -2.0, -3.9], [-0.5, -0.5, -0.5]]))
    # (0.1 + 2.0 + 3.9) / 3 = 2.0 ; 0.5
    np.testing.assert_allclose(conf, [2.0, 0.5], rtol=1e-6)
    assert clipped == 0


def test_peaked_distribution_is_more_confident_than_flat():
    peaked = log_softmax(np.array([10.0, 0.0, 0.0, 0.0]))
    flat = log_softmax(np.array([1.0, 1.0, 1.0, 1.0]))
    conf, _ = confidence.token_confidence(np.stack([peaked, flat]))
    # flat: -log(1/4) = 1.386; peaked: (0.000136 + 3 * 10.000136) / 4 = 7.5001
    np.testing.assert_allclose(conf, [7.50014, np.log(4)], rtol=1e-4)
    assert conf[0] > conf[1], "larger must mean more confident"


def test_nonfinite_logprobs_are_clipped_and_counted():
    conf, clipped = confidence.token_confidence(np.array([[0.0, -np.inf], [np.nan, -1.0]]))
    # floor -100: (0 + 100) / 2 = 50 ; (100 + 1) / 2 = 50.5
    np.testing.assert_allclose(conf, [50.0, 50.5])
    assert clipped == 2
    assert np.isfinite(conf).all()


def test_trace_metrics_by_hand():
    values = np.array([1, 2, 3, 4, 5], dtype=float)
    m = confidence.trace_metrics(values, np.array([5]), window=2)
    # groups (window 2): 1.5 2.5 3.5 4.5 -> mean 3, lowest 1.5, bottom max(1, floor(10% of 4))=1 group 1.5, tail 4.5
    assert m["conf_mean"][0] == pytest.approx(3.0)
    assert m["conf_lowest_group"][0] == pytest.approx(1.5)
    assert m["conf_bottom10"][0] == pytest.approx(1.5)
    assert m["conf_tail"][0] == pytest.approx(4.5)


def test_ragged_traces_and_short_trace_fallback():
    # trace A = [5, 1, 4] (length == window: one group), trace B = [2] (shorter: its mean)
    # trace C = [3, 1, 1, 3] window 3: groups 5/3, 5/3 -> lowest 1.6667, tail (1+1+3)/3
    values = np.array([5, 1, 4, 2, 3, 1, 1, 3], dtype=float)
    m = confidence.trace_metrics(values, np.array([3, 1, 4]), window=3)
    np.testing.assert_allclose(m["conf_mean"], [10 / 3, 2.0, 2.0])
    np.testing.assert_allclose(m["conf_lowest_group"], [10 / 3, 2.0, 5 / 3])
    np.testing.assert_allclose(m["conf_tail"], [10 / 3, 2.0, 5 / 3])
    np.testing.assert_allclose(m["conf_bottom10"], [10 / 3, 2.0, 5 / 3])


def test_bottom10_averages_the_lowest_tenth_of_groups():
    # window 1: groups are the values; 20 groups -> the lowest 2: (0 + 1) / 2
    values = np.arange(20, dtype=float)[::-1].copy()
    m = confidence.trace_metrics(values, np.array([20]), window=1)
    assert m["conf_bottom10"][0] == pytest.approx(0.5)
    assert m["conf_lowest_group"][0] == 0.0


def test_lowest_group_never_exceeds_mean():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=50)
    values = rng.gamma(2.0, 2.0, size=lengths.sum())
    m = confidence.trace_metrics(values, lengths, window=32)
    assert (m["conf_lowest_group"] <= m["conf_mean"] + 1e-12).all()
    assert (m["conf_bottom10"] >= m["conf_lowest_group"] - 1e-12).all()


def test_bad_lengths_are_rejected():
    with pytest.raises(ValueError, match="at least one generated token"):
        confidence.trace_metrics(np.array([1.0]), np.array([1, 0]), window=2)
    with pytest.raises(ValueError, match="lengths sum"):
        confidence.trace_metrics(np.array([1.0, 2.0]), np.array([1]), window=2)


def test_confidence_columns_per_trace():
    conf = [np.array([2.0, 101 / 3], dtype=np.float32), np.array([1.0], dtype=np.float32)]
    sampled = [np.array([-0.1, 0.0]), np.array([-np.inf])]
    cols = confidence_columns(conf, sampled, window=32)
    np.testing.assert_allclose(cols["conf_mean"], [(2.0 + 101 / 3) / 2, 1.0], rtol=1e-6)
    np.testing.assert_allclose(cols["mean_logprob"], [-0.05, -100.0])  # -inf clipped to the floor


def test_generated_trace_computes_confidence_once():
    from resources.generation_types import GeneratedTrace

    trace = GeneratedTrace.from_logprobs("hi", [5, 6], np.array([-0.1, -np.inf], dtype=np.float32),
                                         np.array([[-0.1, -2.0, -3.9], [0.0, -np.inf, -1.0]]), "stop", 7)
    # C = [2.0, (0 + 100 + 1) / 3]; clipped: one in the top-k, one sampled
    np.testing.assert_allclose(trace.token_confidence, [2.0, 101 / 3], rtol=1e-6)
    assert trace.nonfinite_logprobs == 2 and trace.token_confidence.dtype == np.float32


def test_strip_thinking():
    assert strip_thinking("<think>\nplan\n</think>\n\nHello") == "Hello"
    assert strip_thinking("<think>never closed") == ""
    assert strip_thinking("No thinking here.") == "No thinking here."
