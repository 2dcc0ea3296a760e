"""The analysis settings: one resource (`analysis`) shared by every analysis asset of a run, edited
once in the launchpad (`resources: analysis: config: ...`) and recorded in each asset's metadata.

The group window is not an analysis setting: it is the window the traces were scored with (the
`group_window` column of `traces`, set by the traces config). Naming another one here is an error,
not a silent recomputation.
"""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum

import pandas as pd
from dagster import ConfigurableResource, MetadataValue
from pydantic import Field

from deepconf_assets.core.analysis import ALL_TRACES, AnalysisSettings, adaptive_name, online_name
from deepconf_assets.core.confidence import CONFIDENCE_CHOICES
from deepconf_assets.core.live import LIVE_POLICIES, LivePolicy
from deepconf_assets.core.metrics import CATEGORY_SCOPES
from deepconf_assets.core.stopping import ONLINE_VOTE_WEIGHTS, consensus_reachable, consensus_trivial
from deepconf_assets.core.voting import VOTE_RULES
from deepconf_assets.labelers import LABELERS

# The four DeepConf trace metrics, plus `predecessor_nll`: the predecessor's quantity, NOT DeepConf (the
# mean sampled-token negative log-likelihood, -mean_logprob, larger = LESS likely), to reproduce its artifact.
ConfidenceMetric = Enum("ConfidenceMetric", {m: m for m in CONFIDENCE_CHOICES})
# deepconf_online vote weights: lowest_group (the official DeepConf code) or the confidence_metric.
OnlineVoteWeight = Enum("OnlineVoteWeight", {w: w for w in ONLINE_VOTE_WEIGHTS})
VoteRule = Enum("VoteRule", {r: r for r in VOTE_RULES})
CategoryScope = Enum("CategoryScope", {s: s for s in CATEGORY_SCOPES})
Labeler = Enum("Labeler", {name: name for name in LABELERS})
# The policy behind headline numbers, figures and the report; "decided" equals fixed_n=all's predictions
# with fewer traces. The report also names every Pareto-efficient policy (accuracy against tokens).
HeadlinePolicy = Enum("HeadlinePolicy", {"decided": "decided", "adaptive": "adaptive",
                                         "deepconf_online": "deepconf_online", "fixed_n_all": ALL_TRACES})

_DEFAULTS = AnalysisSettings()


class AnalysisSettingsResource(ConfigurableResource):
    """Settings of the analysis assets; defaults and meaning in core.analysis.AnalysisSettings."""

    confidence_metric: ConfidenceMetric = Field(
        ConfidenceMetric[_DEFAULTS.confidence_metric],
        description="Trace confidence behind thresholds, vote weights and categories (larger = more confident): "
                    "conf_mean, conf_lowest_group, conf_bottom10, conf_tail (DeepConf). predecessor_nll is NOT "
                    "DeepConf: the predecessor's mean sampled-token negative log-likelihood (-mean_logprob, larger "
                    "= LESS likely), offered only to reproduce its sign artifact (asset predecessor_comparison).")
    category_percentile: float = Field(
        _DEFAULTS.category_percentile, ge=0, le=100,
        description="Confident = instance confidence >= this percentile (of the same decision's instances, or "
                    "of every instance: category_threshold_scope).")
    category_threshold_scope: CategoryScope = Field(
        CategoryScope[_DEFAULTS.category_threshold_scope],
        description="within_decision: compliances are split at the percentile of the compliances' confidences, "
                    "refusals at that of the refusals' (the question compares compliances with compliances); "
                    "pooled: one percentile over every decision (refusals are usually far more confident, so "
                    "'uncertain' then nearly means 'complied'). instance_predictions records both.")
    warmup_traces: int = Field(_DEFAULTS.warmup_traces, ge=1, description="Adaptive and deepconf_online warm-up traces.")
    adaptive_percentile: float = Field(
        _DEFAULTS.adaptive_percentile, ge=0, le=100,
        description="Adaptive policy: threshold percentile of the warm-up traces' confidences.")
    online_percentile: float = Field(
        _DEFAULTS.online_percentile, ge=0, le=100,
        description="deepconf_online: threshold percentile (100 - eta) of the warm-up lowest group confidences.")
    consensus_tau: float = Field(_DEFAULTS.consensus_tau, gt=0, le=1,
                                 description="deepconf_online stops when the weighted vote's top share reaches it.")
    filter_eta: float = Field(_DEFAULTS.filter_eta, gt=0, le=100,
                              description="top_eta_filtered vote: keep the top eta% most confident traces.")
    vote_rule: VoteRule = Field(VoteRule[_DEFAULTS.vote_rule], description="How the voting traces decide.")
    online_vote_weight: OnlineVoteWeight = Field(
        OnlineVoteWeight[_DEFAULTS.online_vote_weight],
        description="deepconf_online vote weights (consensus and final vote): lowest_group = each trace's lowest "
                    "group confidence, as the official DeepConf code; confidence_metric = the confidence_metric.")
    headline_rule: HeadlinePolicy = Field(
        HeadlinePolicy["decided"], description="The policy behind headline numbers, figures and the report "
                                               "(adaptive and deepconf_online at their configured percentiles).")
    headline_labeler: Labeler = Field(
        Labeler["heuristic"], description="The labeler behind headline numbers, figures and the report.")
    group_window: int | None = Field(
        None, ge=1, description="Leave empty: the window the traces were scored with is used. A value that "
                                "differs from it is an error (re-materialize traces with that window instead).")

    @property
    def headline_policy(self) -> str:
        rule = self.headline_rule.value
        return {"adaptive": adaptive_name(self.adaptive_percentile),
                "deepconf_online": online_name(self.online_percentile)}.get(rule, rule)

    @property
    def labeler(self) -> str:
        return self.headline_labeler.value

    def headline_rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of a per labeler x policy table that belong to the headline labeler and policy."""
        return table[(table["labeler"] == self.labeler) & (table["policy"] == self.headline_policy)]

    def settings(self, traces: pd.DataFrame) -> AnalysisSettings:
        """The core settings for these traces, with the window they were scored with."""
        return AnalysisSettings(
            confidence_metric=self.confidence_metric.value, category_percentile=self.category_percentile,
            category_threshold_scope=self.category_threshold_scope.value,
            warmup_traces=self.warmup_traces, adaptive_percentile=self.adaptive_percentile,
            online_percentile=self.online_percentile, consensus_tau=self.consensus_tau,
            group_window=scored_window(traces, self.group_window), filter_eta=self.filter_eta,
            vote_rule=self.vote_rule.value, online_vote_weight=self.online_vote_weight.value,
        )

    def live_policy(self) -> LivePolicy:
        """The headline policy, for live generation (traces generation_mode=live)."""
        policy = self.headline_rule.value
        if policy not in LIVE_POLICIES:
            raise ValueError(f"live generation runs the headline policy, but headline_rule={policy!r} is not a "
                             f"stopping policy; set it to one of {LIVE_POLICIES} (fixed_n_all is generation_mode=full)")
        percentile = {"adaptive": self.adaptive_percentile, "deepconf_online": self.online_percentile}.get(
            policy, float("nan"))
        return LivePolicy(policy, percentile, self.consensus_tau if policy == "deepconf_online" else None)

    def consensus_warning(self, budget: int) -> str | None:
        """Why deepconf_online is degenerate at this budget, or None when its consensus is reachable after one
        dissenting warm-up trace and not reached by every warm-up split."""
        if consensus_trivial(self.warmup_traces, self.consensus_tau):
            w = self.warmup_traces
            return (f"deepconf_online reduces to fixed_n={w}: consensus_tau={self.consensus_tau:g} <= "
                    f"{-(-w // 2)}/{w}, the smallest top share of {w} equally weighted warm-up votes, so every "
                    f"instance stops after the warm-up whatever the answers (with lowest group weights a split "
                    f"can fall below it, so a few may go on); its savings are fixed_n={w}'s, not confidence's; "
                    f"raise consensus_tau above {-(-w // 2)}/{w}")
        if consensus_reachable(self.warmup_traces, budget, self.consensus_tau):
            return None
        return (f"deepconf_online is degenerate: consensus_tau={self.consensus_tau:g} cannot be reached within "
                f"{budget} traces after one dissenting warm-up trace ({self.warmup_traces} warm-up), so any split "
                f"warm-up runs to the full budget and its savings measure warm-up unanimity, not confidence; "
                f"lower consensus_tau or raise traces_per_prompt")

    def metadata(self) -> dict:
        """The settings as materialization metadata, so every analysis says what produced it."""
        values = {name: (v.value if isinstance(v, Enum) else v) for name, v in self.model_dump().items()}
        return {"analysis_settings": MetadataValue.json(values)}


def scored_window(traces: pd.DataFrame, requested: int | None) -> int:
    """The group window stored with the traces; `requested` must be None or equal to it."""
    if "group_window" not in traces:
        raise ValueError("traces hold no group_window column (written before it was recorded); "
                         "re-materialize traces (finished traces are reused from the shard store)")
    windows = sorted(int(w) for w in pd.unique(traces["group_window"]))
    if len(windows) > 1:
        raise ValueError(f"traces were scored with several group windows {windows}; re-materialize traces")
    stored = windows[0] if windows else asdict(AnalysisSettings())["group_window"]
    if requested is not None and requested != stored:
        raise ValueError(
            f"the analysis asks for group_window={requested} but the traces' conf_lowest_group was computed "
            f"with {stored}; set traces.group_window={requested} and re-materialize traces, or leave "
            f"analysis.group_window empty")
    return stored
