"""What the analysis assets share: every registered labeler's labels through one mapping
(`LABEL_INS`, received as `**refusal_labels`), and the replay of one partition per labeler."""

import pandas as pd
from dagster import AssetIn

from deepconf_assets.core.analysis import PartitionAnalysis, attach_labels
from deepconf_assets.labelers import LABELERS, labeler_of_asset
from deepconf_assets.partitions import experiment_partitions
from resources.analysis_settings import AnalysisSettingsResource

LABEL_INS = {labeler.asset_name: AssetIn() for labeler in LABELERS.values()}
ANALYSIS = dict(partitions_def=experiment_partitions, group_name="experiment", io_manager_key="parquet_io_manager")


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


def analyses_by_labeler(settings: AnalysisSettingsResource, prompts: pd.DataFrame, traces: pd.DataFrame,
                        refusal_labels: dict[str, pd.DataFrame]) -> list[PartitionAnalysis]:
    """One replay per labeler that ran."""
    core = settings.settings(traces)
    available, _ = split_by_availability(refusal_labels)
    return [PartitionAnalysis(attach_labels(traces, labels), prompts, name, core) for name, labels in available.items()]


def require_headline(settings: AnalysisSettingsResource, table: pd.DataFrame) -> pd.Series:
    """The row of the headline labeler and policy, or an error saying why it is missing."""
    rows = table[(table["labeler"] == settings.labeler) & (table["policy"] == settings.headline_policy)]
    if rows.empty:
        raise ValueError(
            f"no rows for the headline labeler '{settings.labeler}' and policy '{settings.headline_policy}' "
            f"(labelers present: {sorted(table['labeler'].unique()) if len(table) else []}); the labeler may be "
            f"unavailable, or instance_predictions was made with other analysis settings: re-materialize it")
    return rows.iloc[0]
