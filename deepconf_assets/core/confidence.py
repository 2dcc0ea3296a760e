"""DeepConf token and trace confidence (arXiv 2508.15260), vectorised over ragged traces.

Sign convention, stated once and tested: token confidence

    C_i = -(1/k) * sum_{j<=k} log P_i(j)        over the top-k candidates at generated position i

is >= 0 and LARGER MEANS MORE CONFIDENT (a peaked distribution puts almost all mass on one token,
so the other k-1 candidates have very negative log-probs). It is not the sampled token's
negative log-likelihood, whose sign is the opposite (that is `mean_logprob`, larger = more likely).

Group confidence is the mean of C over a sliding window of `window` tokens (stride 1). A trace
shorter than the window has one group: its whole length, i.e. its plain mean.

Trace metrics:
    conf_mean          mean of C over all generated tokens
    conf_lowest_group  minimum group confidence
    conf_bottom10      mean of the lowest floor(10%) of the group confidences (at least one group),
                       as the official code (`int(0.1 * n_groups)`); `bottom_rounding="ceil"` is an option
    conf_tail          confidence of the last window
Token counts include the final EOS token: it is generated from a distribution like any other.

Non-finite log-probs (-inf from masked candidates, NaN) are clipped to LOGPROB_FLOOR and counted,
so one bad value can never turn a confidence into inf/NaN.
"""

from __future__ import annotations

import numpy as np

from deepconf_assets.core.formats import p_is

DEFAULT_TOPK = 20
# 32 tokens is ~1/8 of a 256-token answer: long enough to smooth single-token spikes, short enough
# that a 256-token answer has 225 groups. The paper's 2048 would collapse every such answer to its mean.
DEFAULT_GROUP_WINDOW = 32
PAPER_GROUP_WINDOW = 2048
LOGPROB_FLOOR = -100.0  # below log(float32 min normal) ~ -87.3: no finite float32 log-prob reaches it

TRACE_METRICS = ("conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail")
BOTTOM_ROUNDINGS = ("floor", "ceil")  # floor: the official DeepConf code

# The predecessor's quantity, NOT DeepConf: the mean negative log-likelihood of the sampled tokens
# (= -mean_logprob, >= 0, LARGER = LESS likely). Selectable only to reproduce its "confidence paradox".
PREDECESSOR_NLL = "predecessor_nll"
CONFIDENCE_CHOICES = (*TRACE_METRICS, PREDECESSOR_NLL)  # what an analysis may use as trace confidence
SIGN_CHECK_MIN_TRACES = 30
# A trace this short is mostly its first tokens (an opening word, an end-of-sequence), whose confidence and
# likelihood need not move together: 4,096 demo traces of 4 tokens gave Spearman -0.128. Shorter traces are
# left out of the sign check, and a run without SIGN_CHECK_MIN_TRACES longer ones is "not assessable".
SIGN_CHECK_MIN_TOKENS = 8


def confidence_values(traces, name: str) -> np.ndarray:
    """The trace confidence `name` (one of CONFIDENCE_CHOICES) of a traces table, as float64.
    `predecessor_nll` is computed from the `mean_logprob` column: -mean_logprob."""
    if name == PREDECESSOR_NLL:
        return -np.asarray(traces["mean_logprob"], dtype=np.float64)
    if name not in TRACE_METRICS:
        raise ValueError(f"unknown confidence metric {name!r}; expected one of {CONFIDENCE_CHOICES}")
    return np.asarray(traces[name], dtype=np.float64)


def require_finite(values: np.ndarray, mask: np.ndarray, instance_ids=None, what: str = "confidence") -> None:
    """ValueError naming the instance when values[mask] holds a NaN (or inf): a weight or confidence
    must never silently become 0. Entries outside `mask` (absent traces) may be NaN by design."""
    bad = np.asarray(mask, dtype=bool) & ~np.isfinite(np.asarray(values, dtype=np.float64))
    if bad.any():
        rows, cols = np.nonzero(bad)
        name = instance_ids[rows[0]] if instance_ids is not None else f"row {rows[0]}"
        raise ValueError(f"non-finite {what} for instance_id {name} (trace position {cols[0]}); "
                         f"{len(rows)} such traces in all: recompute the traces' confidences")


SIGN_CHECK_ALPHA = 0.01


def confidence_sign_check(conf: np.ndarray, mean_logprob: np.ndarray, n_tokens: np.ndarray | None = None,
                          min_traces: int = SIGN_CHECK_MIN_TRACES) -> dict:
    """Does trace confidence rise with the sampled tokens' mean log-prob, as DeepConf's C does?

    A peaked distribution gives both a large C and a likely sampled token, so over a partition the
    Spearman correlation of conf_mean with mean_logprob is positive; the sampled-token NLL (the
    predecessor's quantity, = -mean_logprob) gives a negative one. The check fails when the correlation
    is negative and significantly so (one-sided p < 0.01): a small partition whose correlation is near
    zero is no evidence of a flipped sign (20 prompts x 3 demo traces give -0.008, p = 0.95). Returns
    spearman, its one-sided p for a negative correlation, n, assessable (n >= min_traces), passed and a
    verdict sentence. Traces of fewer than SIGN_CHECK_MIN_TOKENS tokens (`n_tokens`) are too short to judge
    and left out."""
    conf = np.asarray(conf, dtype=np.float64)
    logprob = np.asarray(mean_logprob, dtype=np.float64)
    finite = np.isfinite(conf) & np.isfinite(logprob)
    short = 0
    if n_tokens is not None:
        long_enough = np.asarray(n_tokens) >= SIGN_CHECK_MIN_TOKENS
        short = int((finite & ~long_enough).sum())
        finite &= long_enough
    n = int(finite.sum())
    if n < min_traces:
        why = f" ({short} traces of fewer than {SIGN_CHECK_MIN_TOKENS} tokens are too short to judge)" if short else ""
        return {"spearman": float("nan"), "n": n, "assessable": False, "passed": True,
                "verdict": f"not assessable: {n} traces < {min_traces}{why}"}
    from scipy.stats import spearmanr

    test = spearmanr(conf[finite], logprob[finite], alternative="less")
    rho, p_negative = float(test.statistic), float(test.pvalue)
    passed = not (rho < 0 and p_negative < SIGN_CHECK_ALPHA)
    if rho > 0:
        verdict = f"positive (Spearman {rho:.3f}): larger confidence = more likely tokens, as DeepConf's C"
    elif passed:
        verdict = (f"not conclusive (Spearman {rho:.3f}, one-sided p {p_is(p_negative)} for a negative "
                   f"correlation): no evidence of a flipped sign at {n} traces")
    else:
        verdict = (f"NEGATIVE (Spearman {rho:.3f}, one-sided p {p_is(p_negative)}): this looks like the "
                   f"sampled-token NLL or a flipped sign, not DeepConf confidence")
    return {"spearman": rho, "p_negative": p_negative, "n": n, "assessable": True, "passed": bool(passed),
            "verdict": verdict}


def clip_logprobs(logprobs: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace non-finite log-probs by LOGPROB_FLOOR; return (clipped float64 array, count clipped)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    bad = ~np.isfinite(lp)
    return np.where(bad, LOGPROB_FLOOR, np.maximum(lp, LOGPROB_FLOOR)), int(bad.sum())


def token_confidence(topk_logprobs: np.ndarray) -> tuple[np.ndarray, int]:
    """C_i = -mean over the last axis of the top-k log-probs; returns (float32 C, count clipped)."""
    lp, n_clipped = clip_logprobs(topk_logprobs)
    return (-lp.mean(axis=-1)).astype(np.float32), n_clipped


def _segment_sums(cumsum: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    return cumsum[stop] - cumsum[start]


def _check_ragged(values: np.ndarray, lengths: np.ndarray, window: int) -> None:
    if window < 1:
        raise ValueError(f"group window must be >= 1, got {window}")
    if (lengths < 1).any():
        raise ValueError("every trace needs at least one generated token")
    if lengths.sum() != len(values):
        raise ValueError(f"lengths sum to {lengths.sum()} but {len(values)} values were given")


def group_confidences(values: np.ndarray, lengths: np.ndarray, window: int):
    """Sliding-window (stride 1) means of ragged traces, from one cumulative sum.

    Returns (group means, trace of each group, index of the group within its trace,
    per-trace group width = min(window, length), per-trace number of groups).
    """
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    _check_ragged(values, lengths, window)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    width = np.minimum(window, lengths)  # shorter traces: one group over the whole trace
    n_windows = lengths - width + 1
    window_offsets = np.concatenate([[0], np.cumsum(n_windows)])
    trace_of_group = np.repeat(np.arange(len(lengths)), n_windows)
    local = np.arange(window_offsets[-1]) - window_offsets[:-1][trace_of_group]
    start = offsets[:-1][trace_of_group] + local
    group = _segment_sums(cumsum, start, start + width[trace_of_group]) / width[trace_of_group]
    return group, trace_of_group, local, width, n_windows


def running_minimum_records(traces: list, window: int, chunk: int = 4096):
    """Where each trace's running minimum of group confidence drops, for online early stopping.

    The first group of a trace whose confidence is below a threshold s is the first record low below
    s, so these few records per trace answer "where would this trace be cut?" for any s.
    Computed in chunks of traces on a padded (traces x tokens) cumulative sum.

    Returns (record_trace, record_group, record_value, lowest group, width, number of groups).
    """
    lengths = np.array([len(t) for t in traces], dtype=np.int64)
    _check_ragged(np.zeros(int(lengths.sum())), lengths, window)
    width = np.minimum(window, lengths)
    n_groups = lengths - width + 1
    record_trace, record_group, record_value = [], [], []
    for first in range(0, len(traces), chunk):
        part = slice(first, first + chunk)
        lens, ngr = lengths[part], n_groups[part]
        padded = np.zeros((len(lens), int(lens.max()) + 1))
        padded[:, 1:][np.arange(lens.max())[None, :] < lens[:, None]] = np.concatenate(traces[part])
        cumsum = np.cumsum(padded, axis=1)
        span = int(min(window, lens.max()))
        groups = (cumsum[:, span:] - cumsum[:, :-span]) / span  # full-window groups of width `span`
        short = lens < span  # traces shorter than the window: one group, their mean
        groups[short, 0] = cumsum[short, lens[short]] / lens[short]
        groups[np.arange(groups.shape[1])[None, :] >= ngr[:, None]] = np.inf
        running = np.minimum.accumulate(groups, axis=1)
        is_record = np.ones_like(running, dtype=bool)
        is_record[:, 1:] = running[:, 1:] < running[:, :-1]
        is_record &= np.isfinite(running)
        rows, cols = np.nonzero(is_record)
        record_trace.append(rows + first)
        record_group.append(cols)
        record_value.append(running[rows, cols])
    record_trace, record_group = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (record_trace, record_group))
    record_value = np.concatenate(record_value) if record_value else np.zeros(0)
    last = np.r_[record_trace[1:] != record_trace[:-1], True] if len(record_trace) else np.zeros(0, bool)
    lowest = np.full(len(traces), np.nan)
    lowest[record_trace[last]] = record_value[last]  # a trace's last record low is its lowest group
    return record_trace, record_group, record_value, lowest, width, n_groups


def trace_metrics(values: np.ndarray, lengths: np.ndarray, window: int = DEFAULT_GROUP_WINDOW,
                  bottom_rounding: str = "floor") -> dict[str, np.ndarray]:
    """Trace confidence metrics for traces concatenated in `values` with the given `lengths`.

    conf_bottom10 averages the lowest max(1, floor(10% of groups)) groups (official DeepConf code), or
    max(1, ceil(...)) with bottom_rounding="ceil".
    No per-token Python loop: window sums come from one cumulative sum over all traces.
    """
    if bottom_rounding not in BOTTOM_ROUNDINGS:
        raise ValueError(f"bottom_rounding must be one of {BOTTOM_ROUNDINGS}, got {bottom_rounding!r}")
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    _check_ragged(values, lengths, window)
    n_traces = len(lengths)
    if n_traces == 0:
        return {name: np.zeros(0) for name in TRACE_METRICS}

    group, trace_of_group, local, width, n_windows = group_confidences(values, lengths, window)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    mean = _segment_sums(cumsum, offsets[:-1], offsets[1:]) / lengths
    tail = _segment_sums(cumsum, offsets[1:] - width, offsets[1:]) / width

    window_starts = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    lowest = np.minimum.reduceat(group, window_starts)

    order = np.lexsort((group, trace_of_group))  # by trace, then ascending group confidence
    rounding = np.floor if bottom_rounding == "floor" else np.ceil
    n_bottom = np.maximum(1, rounding(0.1 * n_windows).astype(np.int64))  # = int(0.1 * n) for floor, exactly
    keep = local < n_bottom[trace_of_group]  # `local` read as the rank within the sorted trace
    bottom10 = np.bincount(trace_of_group[keep], weights=group[order][keep], minlength=n_traces) / n_bottom

    return {
        "conf_mean": mean,
        "conf_lowest_group": lowest,
        "conf_bottom10": bottom10,
        "conf_tail": tail,
    }


def segment_means(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean of each ragged segment (e.g. mean sampled-token log-prob per trace)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cumsum = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])
    return _segment_sums(cumsum, offsets[:-1], offsets[1:]) / lengths


def sign_and_finiteness(trace_metrics: np.ndarray, token_confidences: np.ndarray) -> dict[str, int]:
    """Counts of values that cannot be DeepConf confidences: non-finite, or negative (C >= 0 by
    definition, so negatives mean the sign was flipped, e.g. a log-likelihood stored as confidence)."""
    metrics_ = np.asarray(trace_metrics, dtype=np.float64)
    tokens = np.asarray(token_confidences, dtype=np.float64)
    return {
        "nonfinite_trace_metrics": int((~np.isfinite(metrics_)).sum()),
        "nonfinite_token_confidences": int((~np.isfinite(tokens)).sum()),
        "negative_trace_metrics": int((metrics_ < 0).sum()),
        "negative_token_confidences": int((tokens < 0).sum()),
    }
