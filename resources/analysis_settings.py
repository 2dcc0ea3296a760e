"""The analysis settings: one resource (`analysis`) shared by every analysis asset of a run, edited
once in the launchpad (`resources: analysis: config: ...`) and recorded in each asset's metadata.

Assets turn it once into the core `AnalysisSettings` (`resolve`) and pass that down.

The group window is not an analysis setting: it is the window the traces were scored with (the
`group_window` column of `traces`, set by the traces config). Naming another one here is an error,
not a silent recomputation.
"""

from __future__ import annotations

from enum import Enum

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from deepconf_assets.core.analysis import AnalysisSettings
from deepconf_assets.core.confidence import CONFIDENCE_CHOICES, DEFAULT_GROUP_WINDOW
from deepconf_assets.core.metrics import CATEGORY_SCOPES
from deepconf_assets.core.stopping import ONLINE_VOTE_WEIGHTS, headline_choices
from deepconf_assets.core.voting import VOTE_RULES

# The four DeepConf trace metrics, plus `predecessor_nll`: the predecessor's quantity, NOT DeepConf (the
# mean sampled-token negative log-likelihood, -mean_logprob, larger = LESS likely), to reproduce its artifact.
ConfidenceMetric = Enum("ConfidenceMetric", {m: m for m in CONFIDENCE_CHOICES})
# deepconf_online vote weights: lowest_group (the official code's min_conf) or the confidence_metric.
OnlineVoteWeight = Enum("OnlineVoteWeight", {w: w for w in ONLINE_VOTE_WEIGHTS})
VoteRule = Enum("VoteRule", {r: r for r in VOTE_RULES})
CategoryScope = Enum("CategoryScope", {s: s for s in CATEGORY_SCOPES})
# The policy behind headline numbers, figures and the report: the stopping policies' headline choices, fixed
# when this module is imported ("decided" equals fixed_n=all's predictions with fewer traces). The report also
# names every Pareto-efficient policy (accuracy against tokens). Dagster config names are identifiers:
# "fixed_n=all" is chosen as fixed_n_all.
HeadlinePolicy = Enum("HeadlinePolicy", {choice.replace("=", "_"): choice for choice in headline_choices()})

_DEFAULTS = AnalysisSettings()


class AnalysisSettingsResource(ConfigurableResource):
    """Settings of the analysis assets; defaults and meaning in core.analysis.AnalysisSettings."""

    confidence_metric: ConfidenceMetric = Field(
        ConfidenceMetric[_DEFAULTS.confidence_metric],
        description="Trace confidence behind thresholds, vote weights and categories (larger = more confident): "
                    "conf_mean, conf_lowest_group, conf_bottom10, conf_tail (DeepConf). predecessor_nll is NOT "
                    "DeepConf: the predecessor's mean sampled-token negative log-likelihood (-mean_logprob, larger "
                    "= LESS likely), offered only to reproduce its sign artifact (asset paradox_check).")
    category_percentile: float = Field(
        _DEFAULTS.category_percentile, ge=0, le=100,
        description="Confident = instance confidence >= this percentile (of the same decision's instances, or "
                    "of every instance: category_threshold_scope).")
    category_threshold_scope: CategoryScope = Field(
        CategoryScope[_DEFAULTS.category_threshold_scope],
        description="within_decision: compliances are split at the percentile of the compliances' confidences, "
                    "refusals at that of the refusals' (the question compares compliances with compliances); "
                    "pooled: one percentile over every decision (refusals are usually far more confident, so "
                    "'uncertain' then nearly means 'complied'). predictions records both.")
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
                    "group confidence (the official code's min_conf; its default final answer is the unweighted "
                    "majority, see the README); confidence_metric = the confidence_metric.")
    headline_rule: HeadlinePolicy = Field(
        HeadlinePolicy["decided"], description="The policy behind headline numbers, figures and the report "
                                               "(adaptive and deepconf_online at their configured percentiles).")
    headline_labeler: str = Field(
        _DEFAULTS.headline_labeler, description="The labeler behind headline numbers, figures and the report "
                                                "(a registered labeler: checked when the run starts).")
    group_window: int | None = Field(
        None, ge=1, description="Leave empty: the window the traces were scored with is used. A value that "
                                "differs from it is an error (re-materialize traces with that window instead).")

    def resolve(self, group_window: int | None) -> AnalysisSettings:
        """The core settings of a run whose traces were scored with `group_window` (`scored_window`; None for
        an asset that reads no traces, and so replays nothing)."""
        if None not in (group_window, self.group_window) and group_window != self.group_window:
            raise ValueError(
                f"the analysis asks for group_window={self.group_window} but the traces' conf_lowest_group was "
                f"computed with {group_window}; set traces.group_window={self.group_window} and re-materialize "
                f"traces, or leave analysis.group_window empty")
        return AnalysisSettings(
            confidence_metric=self.confidence_metric.value, category_percentile=self.category_percentile,
            category_threshold_scope=self.category_threshold_scope.value,
            warmup_traces=self.warmup_traces, adaptive_percentile=self.adaptive_percentile,
            online_percentile=self.online_percentile, consensus_tau=self.consensus_tau,
            group_window=group_window, filter_eta=self.filter_eta,
            vote_rule=self.vote_rule.value, online_vote_weight=self.online_vote_weight.value,
            headline_rule=self.headline_rule.value, headline_labeler=self.headline_labeler,
            requested_group_window=self.group_window,
        )


def scored_window(traces: pd.DataFrame) -> int:
    """The group window stored with the traces (the default for no traces)."""
    if "group_window" not in traces:
        raise ValueError("traces hold no group_window column (written before it was recorded); "
                         "re-materialize traces (finished traces are reused from the shard store)")
    windows = sorted(int(w) for w in pd.unique(traces["group_window"]))
    if len(windows) > 1:
        raise ValueError(f"traces were scored with several group windows {windows}; re-materialize traces")
    return windows[0] if windows else DEFAULT_GROUP_WINDOW
