"""Stopping policies replayed from stored traces (a sweep costs no GPU time).

Traces of an instance are taken in `trace_idx` order, as if sampled one after another.

    fixed_n(n)              use the first n traces (all of them when fewer exist)
    adaptive(w, p)          warm up with the first w traces; threshold = p-th percentile (numpy linear
                            interpolation) of their confidences; then take traces one by one until
                            one has confidence >= threshold (it is used too) or the traces run out

Tokens spent = sum of the real `n_tokens` of the used traces; token savings are measured against
generating every stored trace in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TraceMatrix:
    """Traces of one partition as (instances x traces) arrays, left-aligned in trace_idx order."""

    instance_ids: np.ndarray
    confidence: np.ndarray  # float, NaN where absent
    refused: np.ndarray  # 1.0 / 0.0 / NaN (absent or unknown label)
    tokens: np.ndarray  # float, 0 where absent
    present: np.ndarray  # bool

    @property
    def n_available(self) -> np.ndarray:
        return self.present.sum(axis=1)


def build_trace_matrix(traces: pd.DataFrame, confidence_column: str) -> TraceMatrix:
    """`traces` needs instance_id, trace_idx, n_tokens, `confidence_column` and refused (nullable)."""
    df = traces.sort_values(["instance_id", "trace_idx"], kind="stable")
    instance_ids, row = np.unique(df["instance_id"].to_numpy(), return_inverse=True)
    col = df.groupby("instance_id", sort=False).cumcount().to_numpy()
    shape = (len(instance_ids), int(col.max()) + 1 if len(col) else 0)

    def scatter(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(shape, fill, dtype=np.float64)
        out[row, col] = values
        return out

    refused = pd.Series(df["refused"]).astype("boolean")
    present = np.zeros(shape, dtype=bool)
    present[row, col] = True
    return TraceMatrix(
        instance_ids=instance_ids,
        confidence=scatter(df[confidence_column].to_numpy(dtype=np.float64), np.nan),
        refused=scatter(refused.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan), np.nan),
        tokens=scatter(df["n_tokens"].to_numpy(dtype=np.float64), 0.0),
        present=present,
    )


def fixed_n(matrix: TraceMatrix, n: int) -> np.ndarray:
    """Mask of used traces: the first n."""
    cols = np.arange(matrix.present.shape[1])
    return matrix.present & (cols[None, :] < n)


def adaptive(matrix: TraceMatrix, warmup: int, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """Mask of used traces and the per-instance threshold (see module docstring)."""
    present = matrix.present
    cols = np.arange(present.shape[1])[None, :]
    warm = np.where(present & (cols < warmup), matrix.confidence, np.nan)
    threshold = np.nanpercentile(warm, percentile, axis=1)
    clears = present & (cols >= warmup) & (matrix.confidence >= threshold[:, None])
    last = np.where(clears.any(axis=1), clears.argmax(axis=1), matrix.n_available - 1)
    return present & (cols <= last[:, None]), threshold
