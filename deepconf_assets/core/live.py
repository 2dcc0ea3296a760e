"""Live early stopping: the replayed stopping policies of `stopping`, applied while traces are generated.

The warm-up traces of every instance are requested at once; then, as soon as all traces of an
instance so far have finished, its next trace is requested if the policy has not stopped it. No round
waits for its slowest trace: an engine that takes requests while it runs (vLLM) stays full, and one that
runs batches (transformers) puts the next traces into its next batch.
Whether an instance needs trace j is read from the replay itself: `analysis.run_policy` runs over the
instance's traces generated so far plus placeholders for the rest of the budget, and trace j is
generated iff the replay uses it (every policy decides each instance from its own traces only). A replay's use of trace j depends only on traces before j (and on how many traces the
budget holds), so the placeholders never change it: live equals replay by construction, and the tests
check it against a `full` run.

deepconf_online cuts inside the engine: a later trace stops at the end of its first group (window)
whose confidence is below the instance's threshold s (`WindowCut`, the arithmetic of
`confidence.running_minimum_records`), so the tokens after the cut are never computed. A cut trace's
tokens are the prefix of the full trace up to and including the cut token; it spends exactly the
tokens the replay charges (`stopping.deepconf_online`: group index + window), with no forced end token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from deepconf_assets.core import analysis, confidence

LIVE_POLICIES = ("adaptive", "deepconf_online", analysis.DECIDED)


class WindowCut:
    """Watches one trace's token confidences; `push` says when the trace must stop.

    Same numbers as `confidence.running_minimum_records`: a float64 running sum of the float32 token
    confidences, group g = (sum[g + w] - sum[g]) / w, compared with `< threshold`. Groups are judged
    only once a full window exists: a trace shorter than the window ends on its own and the replay
    judges it at its end.
    """

    def __init__(self, threshold: float, window: int):
        if not np.isfinite(threshold):
            raise ValueError(f"cut threshold must be finite, got {threshold}")
        self.threshold, self.window = float(threshold), int(window)
        self.sums = [0.0]

    def push(self, token_confidence: float) -> bool:
        self.sums.append(self.sums[-1] + float(np.float32(token_confidence)))
        if len(self.sums) <= self.window:
            return False
        return (self.sums[-1] - self.sums[-1 - self.window]) / self.window < self.threshold


@dataclass(frozen=True)
class LivePolicy:
    """A stopping policy and its parameters, as named in the sweep (`analysis.run_policy`)."""

    policy: str
    percentile: float = float("nan")  # adaptive / deepconf_online threshold percentile
    tau: float | None = None  # deepconf_online consensus; None = the analysis settings' consensus_tau
    budget: int | None = None  # traces per prompt, when replaying a live partition (it stores fewer)

    def __post_init__(self):
        if self.policy not in LIVE_POLICIES:
            raise ValueError(f"live policy must be one of {LIVE_POLICIES}, got {self.policy!r}")
        if self.policy in ("adaptive", "deepconf_online") and not 0 <= self.percentile <= 100:
            raise ValueError(f"{self.policy} needs a percentile in [0, 100], got {self.percentile}")

    @property
    def name(self) -> str:
        """The policy's name in instance_predictions."""
        if self.policy == "adaptive":
            return analysis.adaptive_name(self.percentile)
        if self.policy == "deepconf_online":
            return analysis.online_name(self.percentile)
        return self.policy

    def run(self, matrix, settings: analysis.AnalysisSettings):
        return analysis.run_policy(matrix, self.policy, self.percentile, settings, tau=self.tau, budget=self.budget)


PLACEHOLDER = 0.0  # any finite value: placeholders are never read by the decision on the next trace


def _with_placeholders(traces: pd.DataFrame, instance_ids, budget: int) -> pd.DataFrame:
    """`traces` plus a placeholder row for every trace index not generated yet, up to the budget."""
    have = set(zip(traces["instance_id"], traces["trace_idx"]))
    missing = [(i, t) for i in instance_ids for t in range(budget) if (i, t) not in have]
    pending = pd.DataFrame(missing, columns=["instance_id", "trace_idx"])
    pending["n_tokens"] = 1
    pending["refused"] = pd.array([pd.NA] * len(pending), dtype="boolean")
    pending["token_confidence"] = [np.array([PLACEHOLDER], dtype=np.float32)] * len(pending)
    for column in (*confidence.TRACE_METRICS, "mean_logprob"):
        pending[column] = PLACEHOLDER
    columns = ["instance_id", "trace_idx", "n_tokens", "refused", "token_confidence",
               *confidence.TRACE_METRICS, "mean_logprob"]
    return pd.concat([traces[columns], pending], ignore_index=True)


def next_requests(traces: pd.DataFrame, instance_ids, budget: int, policy: LivePolicy,
                  settings: analysis.AnalysisSettings) -> pd.DataFrame:
    """The traces to generate next: (instance_id, trace_idx, cut_threshold), NaN threshold = no cut.

    `traces` holds every trace generated so far (labelled: `refused`) and must be contiguous per
    instance (trace 0 .. k-1). Before any trace exists, the warm-up of every instance is returned.
    """
    instance_ids = list(instance_ids)
    done = traces.groupby("instance_id").size().reindex(instance_ids, fill_value=0)
    if not len(traces):
        warmup = analysis.warmup_of(policy.policy, settings.warmup_traces) or 1
        rows = [(i, t) for i in instance_ids for t in range(min(warmup, budget))]
        return pd.DataFrame(rows, columns=["instance_id", "trace_idx"]).assign(cut_threshold=np.nan)
    matrix = analysis.trace_matrix(_with_placeholders(traces, instance_ids, budget), settings)
    run = policy.run(matrix, settings)
    row_of = {instance: row for row, instance in enumerate(matrix.instance_ids)}
    rows = []
    for instance in instance_ids:
        j = int(done[instance])
        if j < budget and run.used[row_of[instance], j]:
            threshold = run.threshold[row_of[instance]] if policy.policy == "deepconf_online" else np.nan
            rows.append((instance, j, float(threshold)))
    return pd.DataFrame(rows, columns=["instance_id", "trace_idx", "cut_threshold"])


def generate_live(instance_ids, budget: int, policy: LivePolicy, settings: analysis.AnalysisSettings,
                  generate: Callable[[pd.DataFrame, Callable[[pd.DataFrame], pd.DataFrame]], None],
                  label: Callable[[pd.DataFrame], pd.Series], log: Callable | None = None) -> pd.DataFrame:
    """Generate what the policy uses. `generate(requests, on_done)` generates the requests (instance_id,
    trace_idx, cut_threshold: cut where finite) and calls `on_done(rows)` with trace rows as they finish
    (instance_id, trace_idx, n_tokens, token_confidence, the trace metrics, mean_logprob, ...); `on_done`
    returns the requests that may start now, which `generate` adds to the same run, and it returns when
    none is left. `label(rows)` gives the rows' nullable `refused`. Returns every generated trace, with
    `refused` and `cut_threshold`."""
    instance_ids = list(instance_ids)
    rows_of: dict = {i: [] for i in instance_ids}
    pending = dict.fromkeys(instance_ids, 0)
    progress = {"traces": 0, "decided": 0}

    def requested(requests: pd.DataFrame) -> pd.DataFrame:
        for instance, count in requests["instance_id"].value_counts().items():
            pending[instance] += int(count)
        return requests

    def on_done(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(refused=label(rows).to_numpy())
        for instance, part in rows.groupby("instance_id", sort=False):
            rows_of[instance].append(part)
            pending[instance] -= len(part)
        ready = [i for i in dict.fromkeys(rows["instance_id"]) if pending[i] == 0]
        more = next_requests(pd.concat([p for i in ready for p in rows_of[i]], ignore_index=True), ready, budget,
                             policy, settings) if ready else _no_requests()
        progress["traces"] += len(rows)
        progress["decided"] += len(ready) - more["instance_id"].nunique()
        if log and progress["traces"] % LOG_EVERY_TRACES < len(rows):
            log(f"live {policy.name}: {progress['traces']} traces generated, {progress['decided']} of "
                f"{len(instance_ids)} instances decided")
        return requested(more)

    generate(requested(next_requests(pd.DataFrame(columns=["instance_id", "trace_idx"]), instance_ids, budget,
                                     policy, settings)), on_done)
    if log:
        log(f"live {policy.name}: {progress['traces']} traces generated for {len(instance_ids)} instances")
    frames = [p for i in instance_ids for p in rows_of[i]]
    generated = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["instance_id", "trace_idx"])
    return generated.sort_values(["instance_id", "trace_idx"], kind="stable").reset_index(drop=True)


LOG_EVERY_TRACES = 500


def _no_requests() -> pd.DataFrame:
    return pd.DataFrame({"instance_id": pd.Series(dtype=object), "trace_idx": pd.Series(dtype=np.int64),
                         "cut_threshold": pd.Series(dtype=float)})


def in_rounds(generate_rows: Callable[[pd.DataFrame], pd.DataFrame]):
    """A `generate` for `generate_live` from a function that generates a whole set of requests and returns
    their rows: the rows finished by one call decide what the next call generates (rounds)."""
    def generate(requests: pd.DataFrame, on_done) -> None:
        while len(requests):
            rows = generate_rows(requests).assign(cut_threshold=requests["cut_threshold"].to_numpy())
            requests = on_done(rows)

    return generate
