"""Figures as PNG assets under storage/assets/<figure>/<benchmark>/<model>.png, each also shown
inline in its materialization metadata."""


import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import metrics, plots
from deepconf_assets.partitions import experiment_partitions

FIGURE = dict(partitions_def=experiment_partitions, group_name="experiment", io_manager_key="png_io_manager")


def _category_counts(rows: pd.DataFrame) -> pd.DataFrame:
    known = rows[rows["correct"].notna()]
    grouped = known.groupby("category")["correct"].agg(n="size", accuracy="mean")
    return grouped.reindex(list(metrics.CATEGORIES)).fillna({"n": 0}).reset_index()


def _figure(png: bytes, caption: str) -> MaterializeResult:
    return MaterializeResult(value=png, metadata={"figure": metadata.image(png, caption)})


@asset(**FIGURE, description="2x2 confusion matrix (gold harmful/benign x refused/complied) of the headline policy.")
def confusion_matrix_figure(
    context: AssetExecutionContext, config: AnalysisConfig, instance_predictions: pd.DataFrame
) -> MaterializeResult:
    policy = config.headline_policy()
    rows = instance_predictions[(instance_predictions["policy"] == policy) & (instance_predictions["labeler"] == "heuristic")]
    summary = metrics.safety_metrics(rows["prompt_harmful"], rows["predicted_refusal"])
    title = f"{context.partition_key}: {policy}, heuristic labels (n={summary['n']})"
    return _figure(plots.confusion_matrix_png(summary, title), f"Confusion matrix, {policy}")


@asset(**FIGURE, description="Accuracy, sensitivity, specificity, F1 and token savings against the threshold percentile, for the adaptive and deepconf_online policies.")
def percentile_curves_figure(
    context: AssetExecutionContext, config: AnalysisConfig, percentile_sweep: pd.DataFrame
) -> MaterializeResult:
    title = f"{context.partition_key}: stopping policies ({config.vote_rule} vote, heuristic labels)"
    sweep = percentile_sweep[percentile_sweep["labeler"] == "heuristic"]
    return _figure(plots.percentile_curves_png(sweep, title, config.vote_rule), "Percentile safety curves")


@asset(**FIGURE, description="Prompts and accuracy per confident/uncertain x refusal/compliance category.")
def confidence_categories_figure(
    context: AssetExecutionContext, config: AnalysisConfig, instance_predictions: pd.DataFrame
) -> MaterializeResult:
    policy = config.headline_policy()
    rows = instance_predictions[(instance_predictions["policy"] == policy) & (instance_predictions["labeler"] == "heuristic")]
    threshold = rows["category_threshold"].iloc[0] if len(rows) else float("nan")
    note = (f"Confident = instance {config.confidence_metric} >= {threshold:.3f} "
            f"(the {config.category_percentile:g}th percentile of the partition's instances).")
    title = f"{context.partition_key}: confidence categories, {policy}"
    png = plots.category_bars_png(_category_counts(rows), note, title)
    return _figure(png, "Accuracy by confidence category")
