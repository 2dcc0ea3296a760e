"""Figures as PNG assets under storage/assets/<figure>/<benchmark>/<model>.png, each also shown
inline in its materialization metadata."""


import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig
from deepconf_assets.core import analysis, calibration, metrics, plots
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


def _headline(config: AnalysisConfig, predictions: pd.DataFrame) -> pd.DataFrame:
    """The heuristic labeler's rows of the headline policy, with a known confidence."""
    rows = predictions[(predictions["policy"] == config.headline_policy()) & (predictions["labeler"] == "heuristic")]
    return rows[rows["confidence"].notna()]


def _by(rows: pd.DataFrame, column: str, names: dict) -> dict:
    return {label: rows.loc[rows[column] == value, "confidence"].to_numpy() for value, label in names.items()}


def _confidence_figure(name: str, description: str, column: str, groups: dict, plot, subject: str, note: str):
    """An asset plotting instance confidence (headline policy, heuristic labels) grouped by `column`."""

    @asset(name=name, **FIGURE, description=description)
    def confidence_figure(context: AssetExecutionContext, config: AnalysisConfig,
                          instance_predictions: pd.DataFrame) -> MaterializeResult:
        rows = _headline(config, instance_predictions)
        png = plot(_by(rows, column, groups), f"{context.partition_key}: {subject}", note)
        return _figure(png, subject.capitalize())

    return confidence_figure


CATEGORY_NAMES = {c: c.replace("_", " ") for c in metrics.CATEGORIES}
confidence_by_correctness_figure = _confidence_figure(
    "confidence_by_correctness_figure", "Instance confidence of correct vs wrong decisions (headline policy, heuristic labels).",
    "correct", {True: "correct", False: "wrong"}, plots.confidence_boxes_png, "confidence by correctness",
    "Correct = refused a harmful prompt or answered a benign one.")
confidence_by_category_figure = _confidence_figure(
    "confidence_by_category_figure", "Instance confidence per confident/uncertain x refusal/compliance category.",
    "category", CATEGORY_NAMES, plots.confidence_boxes_png, "confidence by category",
    "Categories split at the category percentile of instance confidence.")
confidence_distributions_figure = _confidence_figure(
    "confidence_distributions_figure", "Confidence distributions (densities) of the four confidence categories.",
    "category", CATEGORY_NAMES, plots.confidence_histograms_png, "confidence distributions",
    "Headline policy, heuristic labels.")
confidence_by_harmfulness_figure = _confidence_figure(
    "confidence_by_harmfulness_figure", "Instance confidence on harmful vs benign prompts (gold labels).",
    "prompt_harmful", {True: "harmful prompt", False: "benign prompt"}, plots.confidence_boxes_png,
    "confidence by prompt harmfulness", plots.POSITIVE_CLASS_NOTE)


@asset(**FIGURE, description="Mean token confidence along the answer, refusing vs complying traces.")
def trace_evolution_figure(context: AssetExecutionContext, traces: pd.DataFrame,
                           refusal_labels_heuristic: pd.DataFrame) -> MaterializeResult:
    labelled = analysis.attach_labels(traces, refusal_labels_heuristic)
    curves = {name: analysis.position_means(list(labelled.loc[labelled["refused"] == value, "token_confidence"]))
              for value, name in ((True, "refusing traces"), (False, "complying traces"))}
    png = plots.trace_evolution_png(curves, f"{context.partition_key}: confidence along the answer (heuristic labels)")
    return _figure(png, "Trace evolution")


@asset(**FIGURE, description="Reliability diagram: accuracy per bin of (rescaled) instance confidence.")
def reliability_diagram_figure(context: AssetExecutionContext, config: AnalysisConfig,
                               instance_predictions: pd.DataFrame) -> MaterializeResult:
    rows = _headline(config, instance_predictions)
    rows = rows[rows["correct"].notna()]
    probability = calibration.rescale(rows["confidence"].to_numpy(dtype=float)) if len(rows) else np.zeros(0)
    n, accuracy, _ = calibration.reliability_bins(probability, rows["correct"].to_numpy(dtype=float))
    png = plots.reliability_png(n, accuracy, f"{context.partition_key}: reliability, {config.headline_policy()}")
    return _figure(png, "Reliability diagram")


@asset(**FIGURE, description="Risk-coverage curves per policy (heuristic labels) with their AURC.")
def risk_coverage_figure(context: AssetExecutionContext, calibration: pd.DataFrame) -> MaterializeResult:
    rows = calibration[calibration["labeler"] == "heuristic"]
    curves = {r.policy: (np.asarray(r.coverage), np.asarray(r.risk), r.aurc) for r in rows.itertuples()}
    return _figure(plots.risk_coverage_png(curves, f"{context.partition_key}: risk vs coverage"), "Risk-coverage")


@asset(**FIGURE, description="Accuracy against tokens: fixed_n = 1..budget, adaptive and deepconf_online.")
def budget_ablation_figure(context: AssetExecutionContext, budget_ablation: pd.DataFrame) -> MaterializeResult:
    rows = budget_ablation[budget_ablation["labeler"] == "heuristic"]
    return _figure(plots.budget_ablation_png(rows, f"{context.partition_key}: accuracy vs tokens (heuristic labels)"),
                   "Budget ablation")
