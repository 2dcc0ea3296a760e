"""Live early stopping: the replayed stopping policies of `stopping`, applied while traces are generated.

Rounds, batched across instances (the predecessor's parallel scheme, across prompts):
  round 0      the warm-up traces of every instance, in full;
  round j > 0  trace j of every instance the policy has not stopped yet.
Whether an instance needs trace j is read from the replay itself: `analysis.run_policy` runs over the
traces generated so far plus placeholders for the rest of the budget, and trace j is generated iff the
replay uses it. A replay's use of trace j depends only on traces before j (and on how many traces the
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
                  generate: Callable[[pd.DataFrame], pd.DataFrame],
                  label: Callable[[pd.DataFrame], pd.Series], log: Callable | None = None) -> pd.DataFrame:
    """Run the rounds. `generate(requests)` returns one trace row per request (instance_id, trace_idx,
    n_tokens, token_confidence, the trace metrics, mean_logprob, ...), cut where `cut_threshold` is
    finite; `label(rows)` returns their nullable `refused`. Returns every generated trace, with
    `refused` and `cut_threshold`."""
    generated = pd.DataFrame(columns=["instance_id", "trace_idx"])
    for round_number in range(budget):
        requests = next_requests(generated, instance_ids, budget, policy, settings)
        if not len(requests):
            break
        rows = generate(requests)
        rows = rows.assign(refused=label(rows).to_numpy(), cut_threshold=requests["cut_threshold"].to_numpy())
        generated = rows if not len(generated) else pd.concat([generated, rows], ignore_index=True)
        if log:
            log(f"live {policy.name}: round {round_number}, {len(requests)} traces "
                f"({requests['instance_id'].nunique()} instances still undecided)")
    return generated.sort_values(["instance_id", "trace_idx"], kind="stable").reset_index(drop=True)
