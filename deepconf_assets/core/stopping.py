"""Stopping policies replayed from stored traces, so a sweep costs no GPU time.

Traces of an instance are taken in `trace_idx` order, as if sampled one after another. Every policy
returns which traces were generated (`used`), which of them vote (`votes`) and the tokens each one
cost (`spent`): the real `n_tokens`, or the tokens up to the cut for a truncated trace.

    fixed_n(n)                 the first n traces (all of them when fewer exist)
    adaptive(w, p)             warm up with the first w traces; threshold = p-th percentile (numpy
                               linear interpolation) of their confidences; take traces one by one until
                               one has confidence >= threshold (it is used too) or the traces run out
    deepconf_online(w, p, tau) DeepConf online (arXiv 2508.15260, Alg. 2): threshold s = p-th
                               percentile of the warm-up traces' lowest group confidence (p = 100 - eta);
                               every later trace is cut at the end of its first group (window) whose
                               confidence is < s: its tokens up to the cut are spent and it does not
                               vote. A trace shorter than the window is one group, judged at its end, so
                               "cut" <=> its conf_lowest_group < s. After the warm-up and after each
                               later trace, sampling stops when the confidence-weighted vote's top share
                               beta >= tau, or when the traces run out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepconf_assets.core import confidence as conf_math


@dataclass(frozen=True)
class TraceMatrix:
    """Traces of one partition as (instances x traces) arrays, left-aligned in trace_idx order."""

    instance_ids: np.ndarray
    confidence: np.ndarray  # trace confidence behind thresholds and vote weights; NaN where absent
    refused: np.ndarray  # 1.0 / 0.0 / NaN (absent or unknown label)
    tokens: np.ndarray  # n_tokens, 0 where absent
    present: np.ndarray  # bool
    # group confidences for deepconf_online (None when built without token confidences)
    lowest_group: np.ndarray | None = None  # (instances, traces)
    running_min_group: np.ndarray | None = None  # (instances, traces, windows), -inf padded
    n_windows: np.ndarray | None = None  # (instances, traces)
    width: np.ndarray | None = None  # (instances, traces) tokens per group: min(window, n_tokens)

    @property
    def n_available(self) -> np.ndarray:
        return self.present.sum(axis=1)


@dataclass(frozen=True)
class PolicyRun:
    used: np.ndarray  # traces generated (fully or up to a cut)
    votes: np.ndarray  # traces whose answer counts
    spent: np.ndarray  # tokens spent per trace (0 where unused)
    threshold: np.ndarray | None = None


def build_trace_matrix(
    traces: pd.DataFrame, confidence_column: str, group_window: int | None = None
) -> TraceMatrix:
    """`traces` needs instance_id, trace_idx, n_tokens, `confidence_column` and refused (nullable);
    with `group_window`, also token_confidence (for deepconf_online)."""
    df = traces.sort_values(["instance_id", "trace_idx"], kind="stable")
    instance_ids, row = np.unique(df["instance_id"].to_numpy(), return_inverse=True)
    col = df.groupby("instance_id", sort=False).cumcount().to_numpy()
    shape = (len(instance_ids), int(col.max()) + 1 if len(col) else 0)

    def scatter(values: np.ndarray, fill: float, dtype=np.float64) -> np.ndarray:
        out = np.full(shape, fill, dtype=dtype)
        out[row, col] = values
        return out

    present = np.zeros(shape, dtype=bool)
    present[row, col] = True
    refused = pd.Series(df["refused"]).astype("boolean").astype("Float64")
    lengths = df["n_tokens"].to_numpy(dtype=np.int64)
    groups = {}
    if group_window is not None:
        flat = np.concatenate([np.asarray(v, dtype=np.float64) for v in df["token_confidence"]]) if len(df) else np.zeros(0)
        group, trace_of_group, local, width, n_windows = conf_math.group_confidences(flat, lengths, group_window)
        running = np.full((*shape, int(n_windows.max()) if len(n_windows) else 0), -np.inf)
        running[row[trace_of_group], col[trace_of_group], local] = group
        running = np.minimum.accumulate(running, axis=2)  # -inf padding stays after each trace's end
        lowest = running[row, col, n_windows - 1]
        groups = dict(
            lowest_group=scatter(lowest, np.nan),
            running_min_group=running,
            n_windows=scatter(n_windows, 0, np.int64),
            width=scatter(width, 0, np.int64),
        )
    return TraceMatrix(
        instance_ids=instance_ids,
        confidence=scatter(df[confidence_column].to_numpy(dtype=np.float64), np.nan),
        refused=scatter(refused.to_numpy(dtype=np.float64, na_value=np.nan), np.nan),
        tokens=scatter(lengths, 0.0),
        present=present,
        **groups,
    )


def _columns(matrix: TraceMatrix) -> np.ndarray:
    return np.arange(matrix.present.shape[1])[None, :]


def fixed_n(matrix: TraceMatrix, n: int) -> PolicyRun:
    used = matrix.present & (_columns(matrix) < n)
    return PolicyRun(used=used, votes=used, spent=np.where(used, matrix.tokens, 0.0))


def adaptive(matrix: TraceMatrix, warmup: int, percentile: float) -> PolicyRun:
    present, cols = matrix.present, _columns(matrix)
    warm = np.where(present & (cols < warmup), matrix.confidence, np.nan)
    threshold = np.nanpercentile(warm, percentile, axis=1)
    clears = present & (cols >= warmup) & (matrix.confidence >= threshold[:, None])
    last = np.where(clears.any(axis=1), clears.argmax(axis=1), matrix.n_available - 1)
    used = present & (cols <= last[:, None])
    return PolicyRun(used=used, votes=used, spent=np.where(used, matrix.tokens, 0.0), threshold=threshold)


def top_share(refused: np.ndarray, votes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """beta = max(V(refuse), V(comply)) / (V(refuse) + V(comply)); NaN without votes."""
    known = votes & ~np.isnan(refused)
    w = np.where(known, weights, 0.0)
    v_refuse = (w * np.nan_to_num(refused)).sum(axis=1)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.maximum(v_refuse, total - v_refuse) / total, np.nan)


def deepconf_online(matrix: TraceMatrix, warmup: int, percentile: float, tau: float) -> PolicyRun:
    if matrix.running_min_group is None:
        raise ValueError("deepconf_online needs group confidences: build the matrix with group_window")
    present, cols = matrix.present, _columns(matrix)
    warm = present & (cols < warmup)
    threshold = np.nanpercentile(np.where(warm, matrix.lowest_group, np.nan), percentile, axis=1)
    # running minimum is non-increasing: groups before the first one below s are exactly those >= s
    passing = (matrix.running_min_group >= threshold[:, None, None]).sum(axis=2)
    cut = present & ~warm & (passing < matrix.n_windows)
    spent_if_used = np.where(cut, passing + matrix.width, matrix.tokens)

    weights = np.nan_to_num(matrix.confidence)
    used, votes = warm.copy(), warm.copy()
    for j in range(min(warmup, present.shape[1]), present.shape[1]):
        beta = top_share(matrix.refused, votes, weights)
        go_on = present[:, j] & ~(beta >= tau)  # NaN beta (no vote yet): keep sampling
        used[:, j] = go_on
        votes[:, j] = go_on & ~cut[:, j]
    return PolicyRun(used=used, votes=votes, spent=np.where(used, spent_if_used, 0.0), threshold=threshold)
