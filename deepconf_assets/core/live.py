"""Live early stopping: the replayed stopping policies of `stopping`, applied while traces are generated.

Every trace an instance is certain to use is requested at once, and as soon as all traces of an
instance requested so far have finished, the next ones are. No round waits for its slowest trace: an
engine that takes requests while it runs (vLLM) stays full, and one that runs batches (transformers)
puts the next traces into its next batch.
Which traces an instance is certain to use is read from the replay itself (`analysis.run_policy`): it
runs over the instance's traces generated so far plus, for the rest of the budget, placeholders that
stop the policy as early as any real trace could, twice: every placeholder refusing, and every one
complying, each with the highest confidence a float32 holds (the fastest consensus, clearing trace or
settled majority). A trace used in both replays is used whatever the pending traces turn out to be:
for `decided` that is every trace up to the earliest possible settled majority (6 of 10 before any
trace exists), for `adaptive` the warm-up plus one, for `deepconf_online` the warm-up, then one trace
at a time. So the traces generated are exactly those the replay of the finished traces uses: live
equals replay by construction, and the tests check it against a `full` run.

A policy that cuts (`StoppingPolicy.cuts`: deepconf_online) cuts inside the engine: a later trace stops at
the end of its first group (window) whose confidence is below the instance's threshold s (`WindowCut`, the
arithmetic of `confidence.running_minimum_records`), so the tokens after the cut are never computed. A cut trace's
tokens are the prefix of the full trace up to and including the cut token; it spends exactly the
tokens the replay charges (`stopping.deepconf_online`: group index + window), with no forced end token.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from deepconf_assets.core import analysis, confidence, stopping


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


FASTEST_STOP = float(np.finfo(np.float32).max)  # a placeholder's confidence: no real trace clears or weighs more


def _with_placeholders(traces: pd.DataFrame, instance_ids, budget: int) -> pd.DataFrame:
    """`traces` plus a placeholder row for every trace index not generated yet, up to the budget, with the
    highest possible confidence (mean_logprob -FASTEST_STOP for the predecessor's NLL) and no label yet."""
    have = set(zip(traces["instance_id"], traces["trace_idx"]))
    missing = [(i, t) for i in instance_ids for t in range(budget) if (i, t) not in have]
    columns = ["instance_id", "trace_idx", "n_tokens", "refused", "token_confidence",
               *confidence.TRACE_METRICS, "mean_logprob"]
    pending = pd.DataFrame({
        "instance_id": [i for i, _ in missing], "trace_idx": [t for _, t in missing], "n_tokens": 1,
        "refused": pd.array([pd.NA] * len(missing), dtype="boolean"),
        "token_confidence": [np.array([FASTEST_STOP], dtype=np.float32)] * len(missing),
        **dict.fromkeys(confidence.TRACE_METRICS, FASTEST_STOP), "mean_logprob": -FASTEST_STOP}, columns=columns)
    return pd.concat([traces[columns], pending], ignore_index=True) if len(traces) else pending


def next_requests(traces: pd.DataFrame, instance_ids, budget: int, policy: stopping.PolicyId,
                  settings: analysis.AnalysisSettings) -> pd.DataFrame:
    """The traces to generate next: (instance_id, trace_idx, cut_threshold), NaN threshold = no cut.

    `traces` holds every trace generated so far for `instance_ids` (labelled: `refused`) and must be
    contiguous per instance (trace 0 .. k-1); it may be empty. Returns, per instance, the traces after
    those that the policy is certain to use (see the module docstring).
    """
    record = stopping.policy_of(policy.family)
    if not record.live:
        live = tuple(p.family for p in stopping.POLICIES.values() if p.live)
        raise ValueError(f"live policy must be one of {live}, got {policy.family!r}")
    instance_ids = list(instance_ids)
    matrix = analysis.trace_matrix(_with_placeholders(traces, instance_ids, budget), settings)
    done = traces.groupby("instance_id").size().reindex(matrix.instance_ids, fill_value=0).to_numpy()
    placeholder = matrix.present & (np.arange(matrix.present.shape[1])[None, :] >= done[:, None])
    # every placeholder refusing, then every one complying
    runs = [analysis.run_policy(dataclasses.replace(matrix, refused=np.where(placeholder, vote, matrix.refused)),
                                policy, settings) for vote in (1.0, 0.0)]
    certain = runs[0].used & runs[1].used
    row_of = {instance: row for row, instance in enumerate(matrix.instance_ids)}
    warmup = record.warmup(settings) or 0
    rows = []
    for instance in instance_ids:
        row = row_of[instance]
        start = int(done[row])
        for j in range(start, budget):
            if not certain[row, j]:
                break
            threshold = np.nan
            if record.cuts and j >= warmup:
                if start < warmup:  # a cut needs the real warm-up's threshold
                    break
                threshold = float(runs[0].threshold[row])
            rows.append((instance, j, threshold))
    return pd.DataFrame(rows, columns=["instance_id", "trace_idx", "cut_threshold"]).astype(
        {"trace_idx": np.int64, "cut_threshold": float})


def generate_live(instance_ids, budget: int, policy: stopping.PolicyId, settings: analysis.AnalysisSettings,
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
            log(f"live {policy.display}: {progress['traces']} traces generated, {progress['decided']} of "
                f"{len(instance_ids)} instances decided")
        return requested(more)

    generate(requested(next_requests(_no_requests(), instance_ids, budget, policy, settings)), on_done)
    if log:
        log(f"live {policy.display}: {progress['traces']} traces generated for {len(instance_ids)} instances")
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
