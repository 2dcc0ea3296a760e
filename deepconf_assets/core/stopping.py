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
                               beta >= tau, or when the traces run out. Vote weights (for beta, and for
                               the final vote's tie-break or weighted rule): each trace's lowest group
                               confidence, the official code's `min_conf` (`vote_weight="lowest_group"`),
                               or the analysis' confidence metric (`vote_weight="confidence_metric"`).
                               The official code has no tau (see deepconf_online_reference).
    deepconf_online_reference(w, p)
                               the official code's online algorithm (facebookresearch/deepconf at
                               675529d), as a reference for what confidence alone saves: the same
                               threshold s and the same cuts of later traces, but no tau stop (every
                               trace of the budget is generated), and a warm-up trace votes only if its
                               own lowest group confidence >= s (it is generated in full either way).
                               Same vote weights as deepconf_online. Its docstring cites the official
                               lines and says where this differs.

Where savings come from: the tokens of traces never generated because a policy stopped sampling, and
the tokens removed from generated traces by confidence cuts (deepconf_online: stopped by consensus tau
vs cut by confidence). With equal vote weights, tau <= ceil(w/2)/w makes deepconf_online stop after the
warm-up whatever the answers, i.e. fixed_n = w (`consensus_trivial`); a tau that one dissenting warm-up
trace makes unreachable runs any split warm-up to the full budget (`consensus_reachable`).

Every policy is one `StoppingPolicy` record in `POLICIES`: the sweep, the replayed policies, the budget
ablation, live generation and the headline choices all read it. A policy in a run is a `PolicyId`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
import pandas as pd

from deepconf_assets.core import confidence as conf_math

if TYPE_CHECKING:
    from deepconf_assets.core.analysis import AnalysisSettings


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
    n_windows: np.ndarray | None = None  # (instances, traces) groups per trace
    width: np.ndarray | None = None  # (instances, traces) tokens per group: min(window, n_tokens)
    # record lows of each trace's running minimum (see confidence.running_minimum_records), grouped
    # by trace: its row/column in the matrix, the group index and the value
    record_row: np.ndarray | None = None
    record_col: np.ndarray | None = None
    record_group: np.ndarray | None = None
    record_value: np.ndarray | None = None

    @property
    def n_available(self) -> np.ndarray:
        return self.present.sum(axis=1)


@dataclass(frozen=True)
class PolicyRun:
    used: np.ndarray  # traces generated (fully or up to a cut)
    votes: np.ndarray  # traces whose answer counts
    spent: np.ndarray  # tokens spent per trace (0 where unused)
    threshold: np.ndarray | None = None
    weights: np.ndarray | None = None  # vote weights the policy sets itself (deepconf_online); None: matrix.confidence


def build_trace_matrix(
    traces: pd.DataFrame, confidence_column: str, group_window: int | None = None
) -> TraceMatrix:
    """`traces` needs instance_id, trace_idx, n_tokens, `confidence_column` and refused (nullable);
    with `group_window`, also token_confidence (for deepconf_online). `confidence_column` may be
    confidence.PREDECESSOR_NLL (the predecessor's quantity, NOT DeepConf): -mean_logprob."""
    df = traces.sort_values(["instance_id", "trace_idx"], kind="stable")
    row, instance_ids = pd.factorize(df["instance_id"], sort=True)
    instance_ids = np.asarray(instance_ids, dtype=object)
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
        trace, group, value, lowest, width, n_windows = conf_math.running_minimum_records(
            df["token_confidence"].tolist(), group_window)
        groups = dict(
            lowest_group=scatter(lowest, np.nan),
            n_windows=scatter(n_windows, 0, np.int64),
            width=scatter(width, 0, np.int64),
            record_row=row[trace], record_col=col[trace], record_group=group, record_value=value,
        )
    return TraceMatrix(
        instance_ids=instance_ids,
        confidence=scatter(conf_math.confidence_values(df, confidence_column), np.nan),
        refused=scatter(refused.to_numpy(dtype=np.float64, na_value=np.nan), np.nan),
        tokens=scatter(lengths, 0.0),
        present=present,
        **groups,
    )


def row_percentile(values: np.ndarray, mask: np.ndarray, percentile: float) -> np.ndarray:
    """Per-row `percentile` of values[mask], numpy's default linear interpolation; NaN for an empty row.

    Same numbers as np.nanpercentile(np.where(mask, values, nan), p, axis=1), without its per-row loop.
    """
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    count = mask.sum(axis=1)
    position = (np.maximum(count, 1) - 1) * (percentile / 100.0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    low = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0]
    fraction = position - below
    with np.errstate(invalid="ignore"):  # empty rows (inf - inf) become NaN below
        # numpy's _lerp: exact at both ends
        value = np.where(fraction >= 0.5, high - (high - low) * (1 - fraction), low + (high - low) * fraction)
    return np.where(count > 0, value, np.nan)


def _columns(matrix: TraceMatrix) -> np.ndarray:
    return np.arange(matrix.present.shape[1])[None, :]


def fixed_n(matrix: TraceMatrix, n: int) -> PolicyRun:
    used = matrix.present & (_columns(matrix) < n)
    return PolicyRun(used=used, votes=used, spent=np.where(used, matrix.tokens, 0.0))


def adaptive(matrix: TraceMatrix, warmup: int, percentile: float) -> PolicyRun:
    present, cols = matrix.present, _columns(matrix)
    threshold = row_percentile(matrix.confidence, present & (cols < warmup), percentile)
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


# lowest_group: the official code's min_conf (deepconf/utils.py:301 at 675529d), the weight of its
# min_conf-weighted vote, which its default final answer (an unweighted majority) overwrites
ONLINE_VOTE_WEIGHTS = ("lowest_group", "confidence_metric")


@dataclass(frozen=True)
class _OnlineCuts:
    threshold: np.ndarray  # s per instance
    warm: np.ndarray  # warm-up traces
    below: np.ndarray  # present traces with a group < s (<=> conf_lowest_group < s)
    spent_if_used: np.ndarray  # tokens a trace costs: up to its cut after the warm-up, in full otherwise
    weights: np.ndarray  # vote weights, 0 where absent


def _online_cuts(matrix: TraceMatrix, warmup: int, percentile: float, vote_weight: str) -> _OnlineCuts:
    """Threshold and cuts shared by deepconf_online and deepconf_online_reference."""
    if matrix.record_value is None:
        raise ValueError("deepconf_online needs group confidences: build the matrix with group_window")
    if vote_weight not in ONLINE_VOTE_WEIGHTS:
        raise ValueError(f"vote_weight must be one of {ONLINE_VOTE_WEIGHTS}, got {vote_weight!r}")
    present, cols = matrix.present, _columns(matrix)
    weights = matrix.lowest_group if vote_weight == "lowest_group" else matrix.confidence
    conf_math.require_finite(matrix.confidence, present, matrix.instance_ids, "trace confidence")
    conf_math.require_finite(matrix.lowest_group, present, matrix.instance_ids, "lowest group confidence")
    weights = np.where(present, weights, 0.0)
    warm = present & (cols < warmup)
    threshold = row_percentile(matrix.lowest_group, warm, percentile)
    # a trace's first group below s is its first record low below s (records are grouped by trace)
    below = matrix.record_value < threshold[matrix.record_row]
    trace_key = matrix.record_row * present.shape[1] + matrix.record_col
    starts = np.flatnonzero(np.r_[True, trace_key[1:] != trace_key[:-1]]) if len(trace_key) else trace_key[:0]
    passing = matrix.n_windows.copy()  # groups before the cut; all of them when never below s
    if len(starts):
        first_below = np.minimum.reduceat(np.where(below, matrix.record_group, np.iinfo(np.int64).max), starts)
        rows, cols = matrix.record_row[starts], matrix.record_col[starts]
        passing[rows, cols] = np.minimum(first_below, passing[rows, cols])
    below = present & (passing < matrix.n_windows)
    # warm-up traces are generated before s exists: never cut
    spent_if_used = np.where(below & ~warm, passing + matrix.width, matrix.tokens)
    return _OnlineCuts(threshold=threshold, warm=warm, below=below, spent_if_used=spent_if_used, weights=weights)


def deepconf_online(matrix: TraceMatrix, warmup: int, percentile: float, tau: float,
                    vote_weight: str = "lowest_group") -> PolicyRun:
    c = _online_cuts(matrix, warmup, percentile, vote_weight)
    present, warm, weights = matrix.present, c.warm, c.weights
    cut = c.below & ~warm

    used, votes = warm.copy(), warm.copy()
    for j in range(min(warmup, present.shape[1]), present.shape[1]):
        beta = top_share(matrix.refused, votes, weights)
        go_on = present[:, j] & ~(beta >= tau)  # NaN beta (no vote yet): keep sampling
        used[:, j] = go_on
        votes[:, j] = go_on & ~cut[:, j]
    return PolicyRun(used=used, votes=votes, spent=np.where(used, c.spent_if_used, 0.0), threshold=c.threshold,
                     weights=weights)


def deepconf_online_reference(matrix: TraceMatrix, warmup: int, percentile: float,
                              vote_weight: str = "lowest_group") -> PolicyRun:
    """The official code's online algorithm (no tau): every trace of the budget is generated, later traces
    cut as in deepconf_online; a trace votes only if no group of it falls below s (a warm-up trace: its
    lowest group clears s; a later one: it was not cut). Its savings are what the confidence cuts alone save.

    What the official code does (facebookresearch/deepconf at 675529d, files under deepconf/):
      - s = np.percentile(warm-up min_confs, 100 - confidence_percentile) (wrapper.py:208). The library
        default 90 (wrapper.py:76) gives the 10th percentile, as p = 10 here; examples/example_online.py:258
        passes 10, the 90th percentile ("DeepConf-low").
      - 16 warm-up traces of a budget of 256 (wrapper.py:74-75). The other 240 are generated in one batch
        (wrapper.py:223-235), with no consensus stop. A trace is forced to EOS once the mean of its last
        2048 token confidences (window_size, wrapper.py:80) is < s, checked only once the window is full
        (processors.py:43-54). Afterwards every later trace with min_conf < s is marked stopped
        (wrapper.py:250-252), shorter ones included.
      - Voting traces: warm-up traces with min_conf >= s and later traces not marked stopped
        (wrapper.py:312-325). Their min_conf-weighted vote (wrapper.py:315,324,337) is overwritten by
        default (compute_multiple_voting=True, wrapper.py:83,148-159) by their unweighted majority,
        Counter.most_common(1) (utils.py:72-73,206): a tie goes to the answer seen first.
      - C = -mean of the log-probs vLLM returns (top 20, plus the sampled token when outside them),
        rounded to 3 decimals (utils.py:48-49); group means rounded too (utils.py:61). The in-engine stop
        uses exactly the top 20, unrounded (processors.py:29-34).
    Where this differs, and why:
      - Final answer: `vote_rule`, as for every policy. The default majority breaks an even split by these
        weights, then counts it as compliance (official: the first answer seen). Answers are binary, so
        splits happen, and trace order is an accident of sampling. `confidence_weighted` gives the official
        min_conf-weighted vote that the library overwrites (up to rounding and ties).
      - Warm-up `warmup_traces` (3) of a budget of `traces_per_prompt` (10): the predecessor's setting,
        affordable for a whole benchmark. Group window 32 by default: 2048 would make every answer of at
        most 256 tokens one group.
      - Cuts are replayed from stored traces: cut at the end of the first group below s, where the
        official EOS falls, with the tokens up to there counted.
      - C averages exactly the top k, unrounded; non-finite log-probs are clipped and counted.
    """
    c = _online_cuts(matrix, warmup, percentile, vote_weight)
    used = matrix.present
    # at least one warm-up trace votes: s <= the warm-up's largest lowest group
    return PolicyRun(used=used.copy(), votes=used & ~c.below, spent=np.where(used, c.spent_if_used, 0.0),
                     threshold=c.threshold, weights=c.weights)


def decided(matrix: TraceMatrix, warmup: int = 1, budget: int | None = None) -> PolicyRun:
    """Stop as soon as the traces still to come can no longer change the majority over the whole budget
    (after at least `warmup` traces). With the majority vote its predictions are exactly those of
    fixed_n = all, with fewer traces: a zero-loss reference for every other stopping rule.

    After k traces with r refusals and c compliances (unknown labels count for neither) and m traces
    left, the majority is settled when r > c + m (refusal) or c > r + m (compliance). A tie is never
    taken as settled: the full vote would break it by confidence, which the unseen traces may change.
    The budget is each instance's available traces, or `budget` (a live run, which stored only the
    traces it used).
    """
    present, cols = matrix.present, _columns(matrix)
    known = present & ~np.isnan(matrix.refused)
    refusals = np.cumsum(known & (matrix.refused == 1.0), axis=1)
    compliances = np.cumsum(known & (matrix.refused == 0.0), axis=1)
    left = (matrix.n_available[:, None] if budget is None else budget) - (cols + 1)
    settled = present & (cols + 1 >= warmup) & ((refusals > compliances + left) | (compliances > refusals + left))
    last = np.where(settled.any(axis=1), settled.argmax(axis=1), matrix.n_available - 1)
    used = present & (cols <= last[:, None])
    return PolicyRun(used=used, votes=used, spent=np.where(used, matrix.tokens, 0.0))


def consensus_reachable(warmup: int, budget: int, tau: float) -> bool:
    """Whether deepconf_online can still reach consensus tau within the budget after ONE dissenting
    warm-up trace (equal vote weights): (warmup - 1 + x) / (warmup + x) >= tau for some x <= budget - warmup.
    When it cannot, any split warm-up runs to the full budget and the policy's savings measure warm-up
    unanimity, not confidence."""
    if warmup < 2:
        return True
    needed = max(0.0, (tau * warmup - (warmup - 1)) / (1.0 - tau)) if tau < 1 else float("inf")
    return np.ceil(needed - 1e-9) <= budget - warmup


def consensus_trivial(warmup: int, tau: float) -> bool:
    """Whether deepconf_online stops after the warm-up whatever its answers, i.e. is fixed_n = warmup:
    with equal vote weights the smallest top share of w warm-up votes is ceil(w/2)/w (a 1/2 tie for even
    w), and tau <= that is reached by every split. With unequal weights (lowest group) a split can fall
    below it (2:1 where the lone dissenter weighs almost as much as the other two is barely above 1/2),
    so some instances may go on; unknown labels count for neither side."""
    smallest = np.ceil(warmup / 2) / warmup if warmup >= 1 else float("inf")
    return bool(tau <= smallest + 1e-12)


ALL = "all"  # fixed_n over the whole budget


@dataclass(frozen=True)
class PolicyId:
    """A policy with its parameters, as run: written to tables as `display`, never parsed back."""

    family: str  # a key of POLICIES
    percentile: float | None = None  # threshold percentile (policies with `threshold`)
    tau: float | None = None  # consensus (policies with `consensus`)
    n: int | Literal["all"] | None = None  # traces (fixed_n)

    @property
    def display(self) -> str:
        """"fixed_n=5", "fixed_n=all", "adaptive@p50", "deepconf_online@p10" (tau is a column), "decided"."""
        if self.n is not None:
            return f"{self.family}={self.n}"
        if self.percentile is not None:
            return f"{self.family}@p{self.percentile:g}"
        return self.family


@dataclass(frozen=True)
class StoppingPolicy:
    """One stopping policy: how it runs, and where it appears."""

    family: str
    # run(matrix, policy, settings, budget): `budget` is traces per prompt when it exceeds the traces stored
    # (a live partition), else None
    run: Callable[[TraceMatrix, PolicyId, AnalysisSettings, int | None], PolicyRun]
    configured: Callable[[AnalysisSettings], PolicyId]  # the run the analysis settings configure
    warmup: Callable[[AnalysisSettings], int | None] = lambda settings: None  # traces taken before it may stop
    threshold: bool = False  # takes a threshold percentile: the sweep runs it at each percentile
    consensus: bool = False  # takes a consensus tau: the sweep also runs it at each swept tau
    cuts: bool = False  # later traces are cut at `PolicyRun.threshold` (live: inside the engine)
    # its runs in predictions and the budget ablation; None: the configured one
    replays: Callable[[AnalysisSettings, int], tuple[PolicyId, ...]] | None = None
    live: bool = False  # live generation can run it
    headline: str | None = None  # its analysis_settings.headline_rule choice, if it can be the headline
    plot: bool = False  # a panel of the percentile curves figure (at the configured tau)
    # why it decides every prompt as fixed_n=all does under these settings, when it does by construction (None:
    # it may differ); the report then says "identical by construction" instead of testing the difference
    identical_to_every_trace: Callable[[AnalysisSettings], str | None] = lambda settings: None

    def replayed(self, settings: AnalysisSettings, budget: int) -> tuple[PolicyId, ...]:
        return (self.configured(settings),) if self.replays is None else self.replays(settings, budget)

    def swept(self, settings: AnalysisSettings, percentile: float) -> list[PolicyId]:
        """Its runs in the percentile sweep at `percentile`."""
        policy = self.configured(settings)
        if self.threshold:
            policy = replace(policy, percentile=percentile)
        if not self.consensus:
            return [policy]
        return [replace(policy, tau=tau) for tau in sorted({*settings.sweep_taus, settings.consensus_tau})]


FIXED_N, DECIDED = "fixed_n", "decided"
ONLINE, ONLINE_REFERENCE = "deepconf_online", "deepconf_online_official"
EVERY_TRACE = PolicyId(FIXED_N, n=ALL)  # every trace in full: the token-savings baseline


def _warmup(settings: AnalysisSettings) -> int:
    return settings.warmup_traces


POLICIES: dict[str, StoppingPolicy] = {p.family: p for p in (
    StoppingPolicy(
        FIXED_N, run=lambda m, p, s, budget: fixed_n(m, m.present.shape[1] if p.n == ALL else p.n),
        configured=lambda s: EVERY_TRACE, headline="fixed_n=all",
        replays=lambda s, budget: (*(PolicyId(FIXED_N, n=n) for n in s.fixed_n if n < budget), EVERY_TRACE)),
    StoppingPolicy(
        "adaptive", run=lambda m, p, s, budget: adaptive(m, s.warmup_traces, p.percentile),
        configured=lambda s: PolicyId("adaptive", percentile=s.adaptive_percentile), warmup=_warmup,
        threshold=True, live=True, headline="adaptive", plot=True),
    StoppingPolicy(
        ONLINE, run=lambda m, p, s, budget: deepconf_online(m, s.warmup_traces, p.percentile, p.tau,
                                                            vote_weight=s.online_vote_weight),
        configured=lambda s: PolicyId(ONLINE, percentile=s.online_percentile, tau=s.consensus_tau), warmup=_warmup,
        threshold=True, consensus=True, cuts=True, live=True, headline=ONLINE, plot=True),
    StoppingPolicy(  # the official code's online algorithm: in the sweep only
        ONLINE_REFERENCE, run=lambda m, p, s, budget: deepconf_online_reference(
            m, s.warmup_traces, p.percentile, vote_weight=s.online_vote_weight),
        configured=lambda s: PolicyId(ONLINE_REFERENCE, percentile=s.online_percentile), warmup=_warmup,
        threshold=True, cuts=True, replays=lambda s, budget: ()),
    StoppingPolicy(
        DECIDED, run=lambda m, p, s, budget: decided(m, budget=budget), configured=lambda s: PolicyId(DECIDED),
        warmup=lambda s: 1, live=True, headline=DECIDED,
        identical_to_every_trace=lambda s: ("it stops only once the traces left cannot change the majority vote"
                                            if s.vote_rule == "majority" else None)),
)}


def policy_of(family: str) -> StoppingPolicy:
    if family not in POLICIES:
        raise ValueError(f"unknown policy {family!r}; expected one of {tuple(POLICIES)}")
    return POLICIES[family]


def headline_choices() -> tuple[str, ...]:
    return tuple(p.headline for p in POLICIES.values() if p.headline)


def headline_policy(choice: str) -> StoppingPolicy:
    """The policy behind an analysis_settings.headline_rule choice."""
    for policy in POLICIES.values():
        if policy.headline == choice:
            return policy
    raise ValueError(f"unknown headline_rule {choice!r}; expected one of {headline_choices()}")
