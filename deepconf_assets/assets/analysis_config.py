
import pandas as pd
from dagster import Config
from pydantic import Field

from deepconf_assets.core.analysis import AnalysisSettings, PartitionAnalysis, adaptive_name, attach_labels
from deepconf_assets.core.confidence import TRACE_METRICS
from deepconf_assets.core.voting import VOTE_RULES

_DEFAULTS = AnalysisSettings()


class AnalysisConfig(Config):
    """Settings shared by the analysis assets; defaults documented in core.analysis.AnalysisSettings."""

    confidence_metric: str = Field(
        _DEFAULTS.confidence_metric,
        description=f"Trace confidence behind thresholds and categories, one of {TRACE_METRICS}.",
    )
    category_percentile: float = Field(
        _DEFAULTS.category_percentile, ge=0, le=100,
        description="Confident = instance confidence >= this percentile of the partition's instances.",
    )
    warmup_traces: int = Field(_DEFAULTS.warmup_traces, ge=1, description="Adaptive policy warm-up traces.")
    adaptive_percentile: float = Field(
        _DEFAULTS.adaptive_percentile, ge=0, le=100,
        description="Adaptive policy: threshold percentile of the warm-up traces' confidences.",
    )
    online_percentile: float = Field(
        _DEFAULTS.online_percentile, ge=0, le=100,
        description="deepconf_online: threshold percentile (100 - eta) of the warm-up lowest group confidences.",
    )
    consensus_tau: float = Field(_DEFAULTS.consensus_tau, gt=0, le=1,
                                 description="deepconf_online stops when the weighted vote's top share reaches it.")
    group_window: int = Field(_DEFAULTS.group_window, ge=1, description="Group confidence window (tokens).")
    filter_eta: float = Field(_DEFAULTS.filter_eta, gt=0, le=100,
                              description="top_eta_filtered vote: keep the top eta% most confident traces.")
    vote_rule: str = Field(_DEFAULTS.vote_rule, description="majority | confidence_weighted | top_eta_filtered")

    def settings(self) -> AnalysisSettings:
        if self.confidence_metric not in TRACE_METRICS:
            raise ValueError(f"confidence_metric must be one of {TRACE_METRICS}, got {self.confidence_metric!r}")
        if self.vote_rule not in VOTE_RULES:
            raise ValueError(f"vote_rule must be one of {VOTE_RULES}, got {self.vote_rule!r}")
        return AnalysisSettings(
            confidence_metric=self.confidence_metric,
            category_percentile=self.category_percentile,
            warmup_traces=self.warmup_traces,
            adaptive_percentile=self.adaptive_percentile,
            online_percentile=self.online_percentile,
            consensus_tau=self.consensus_tau,
            group_window=self.group_window,
            filter_eta=self.filter_eta,
            vote_rule=self.vote_rule,
        )

    def headline_policy(self) -> str:
        return adaptive_name(self.adaptive_percentile)


WILDGUARD_UNAVAILABLE = "WildGuard unavailable"


def wildguard_available(wildguard_labels: pd.DataFrame) -> bool:
    """refusal_labels_wildguard is empty exactly when no WildGuard weights were found."""
    return len(wildguard_labels) > 0


def analyses_by_labeler(config: AnalysisConfig, prompts: pd.DataFrame, traces: pd.DataFrame,
                        heuristic: pd.DataFrame, wildguard: pd.DataFrame) -> list[PartitionAnalysis]:
    """One analysis per labeler with labels: the heuristic always, WildGuard when it ran."""
    labels = {"heuristic": heuristic}
    if wildguard_available(wildguard):
        labels["wildguard"] = wildguard
    return [PartitionAnalysis(attach_labels(traces, table), prompts, name, config.settings())
            for name, table in labels.items()]
