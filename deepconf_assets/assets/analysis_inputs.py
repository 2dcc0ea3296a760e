"""What the analysis assets share: the run's analysis settings resolved once (`resolved_settings`), every
registered labeler's labels through one mapping (`LABEL_INS`, received as `**refusal_labels`), and the
replay of one partition per labeler."""

import pandas as pd
from dagster import AssetIn

from deepconf_assets.core.analysis import AnalysisSettings, PartitionAnalysis, attach_labels
from deepconf_assets.core.stopping import PolicyId
from deepconf_assets.labelers import LABELERS, labeler_of_asset
from resources.analysis_settings import AnalysisSettingsResource, scored_window

LABEL_INS = {labeler.asset_name: AssetIn() for labeler in LABELERS.values()}


def split_by_availability(refusal_labels: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """({labeler: labels} of the labelers that ran, {labeler: why not} of those that could not)."""
    available, unavailable = {}, {}
    for asset_name, labels in refusal_labels.items():
        name = labeler_of_asset(asset_name).name
        reasons = labels["unavailable_reason"].dropna() if "unavailable_reason" in labels else pd.Series(dtype=object)
        if len(reasons):
            unavailable[name] = str(reasons.iloc[0])
        else:
            available[name] = labels
    return available, unavailable


def resolved_settings(resource: AnalysisSettingsResource, traces: pd.DataFrame | None = None) -> AnalysisSettings:
    """The core settings of this run: with the window `traces` were scored with (None for an asset that reads
    no traces) and a registered headline labeler."""
    if resource.headline_labeler not in LABELERS:
        raise ValueError(f"analysis_settings.headline_labeler={resource.headline_labeler!r} is not a registered "
                         f"labeler; expected one of {sorted(LABELERS)}")
    return resource.resolve(None if traces is None else scored_window(traces))


def live_policy_of(settings: AnalysisSettings, traces: pd.DataFrame) -> PolicyId | None:
    """The policy that generated a live partition (None for a full one); it must be the analysis' headline
    policy with the same consensus tau and warm-up, else the replay would not be the run that happened."""
    modes = set(traces["generation_mode"]) if "generation_mode" in traces else {"full"}
    if modes != {"live"}:
        if "live" in modes:
            raise ValueError("traces mix live and full generation; re-materialize traces in one mode")
        return None
    policy = settings.live_policy
    recorded = (str(traces["live_policy"].iloc[0]), int(traces["warmup_traces"].iloc[0]), traces["live_tau"].iloc[0])
    expected = (policy.display, settings.warmup_traces, policy.tau if policy.tau is not None else float("nan"))
    same_tau = (pd.isna(recorded[2]) and pd.isna(expected[2])) or recorded[2] == expected[2]
    if recorded[:2] != expected[:2] or not same_tau:
        raise ValueError(f"traces were generated live by {recorded[0]} (warm-up {recorded[1]}, tau {recorded[2]}); the "
                         f"analysis settings ask for {expected[0]} (warm-up {expected[1]}, tau {expected[2]}): set "
                         f"analysis_settings to the live policy, or re-materialize traces")
    return policy


def analyses_by_labeler(settings: AnalysisSettings, prompts: pd.DataFrame, traces: pd.DataFrame,
                        refusal_labels: dict[str, pd.DataFrame]) -> list[PartitionAnalysis]:
    """One replay per labeler that ran (of the live policy only, on a live partition)."""
    live = live_policy_of(settings, traces)
    budget = None
    if live is not None:  # the replay settles against the budget the live run had, not the traces it left
        if "live_budget" not in traces:
            raise ValueError("live traces without a live_budget column (written before it was recorded): "
                             "re-materialize traces (finished traces are reused from the shard store)")
        budget = int(traces["live_budget"].iloc[0])
    available, _ = split_by_availability(refusal_labels)
    return [PartitionAnalysis(attach_labels(traces, labels), prompts, name, settings, live, budget)
            for name, labels in available.items()]


FULL_TRACES_ONLY = ("not applicable: this partition was generated live ({policy}), so only the traces that policy "
                    "used exist; the sweep and the budget ablation replay every policy over full traces. "
                    "Materialize traces with generation_mode=full for them.")


def require_headline(settings: AnalysisSettings, table: pd.DataFrame) -> pd.Series:
    """The row of the headline labeler and policy, or an error saying why it is missing."""
    rows = settings.headline_rows(table)
    if rows.empty:
        raise ValueError(
            f"no rows for the headline labeler '{settings.headline_labeler}' and policy '{settings.headline.display}' "
            f"(labelers present: {sorted(table['labeler'].unique()) if len(table) else []}); the labeler may be "
            f"unavailable, or predictions was made with other analysis settings: re-materialize it")
    return rows.iloc[0]
