"""A seeded, stratified subset of a benchmark's prompts (for runs that cannot afford every prompt).

Benchmark files are ordered (XSTest holds its 25-prompt types in blocks), so the first N rows cover a
few types only. The subset is drawn within every stratum = (category, prompt_harmful) in proportion to
its size (largest remainder), with at least one prompt from each stratum while N allows, so every
type and label is represented. The same prompts, seed and N always give the same subset, kept in the
file's order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STRATA = ("category", "prompt_harmful")


def stratified_subset(prompts: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """`n` rows of `prompts` drawn per stratum (all rows when n is None or at least their number)."""
    if n is None or n >= len(prompts):
        return prompts
    if n < 1:
        raise ValueError(f"a subset needs at least one prompt, got {n}")
    keys = prompts[list(STRATA)].astype(str).agg("|".join, axis=1)
    sizes = keys.value_counts().sort_index()  # sorted: the allocation does not depend on row order
    rng = np.random.default_rng(seed)
    quota = proportional_quota(sizes.to_numpy(), n, rng)
    chosen = []
    for key, take in zip(sizes.index, quota):
        rows = np.flatnonzero((keys == key).to_numpy())
        chosen.extend(rng.choice(rows, size=int(take), replace=False).tolist())
    return prompts.iloc[sorted(chosen)]


def proportional_quota(sizes: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """How many of `n` to draw from strata of `sizes`: one from each (the largest first) while n allows, the
    rest in proportion to size by largest remainder; never above a size. Ties are broken by `rng` (seeded),
    not by position: XSTest's 18 strata all hold 25 prompts, and position would favour its unsafe types."""
    sizes = np.asarray(sizes, dtype=np.int64)
    tiebreak = (rng or np.random.default_rng(0)).permutation(len(sizes))
    quota = np.zeros(len(sizes), dtype=np.int64)
    for index in np.lexsort((tiebreak, -sizes))[: min(n, len(sizes))]:
        quota[index] = 1
    left = n - int(quota.sum())
    if left > 0:
        room = sizes - quota
        share = room / room.sum() * left
        extra = np.floor(share).astype(np.int64)
        remainder = share - extra
        for index in np.lexsort((tiebreak, -remainder))[: left - int(extra.sum())]:
            extra[index] += 1
        quota += np.minimum(extra, room)
    return quota
