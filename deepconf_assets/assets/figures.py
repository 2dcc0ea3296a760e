"""Figures as PNG assets under storage/assets/<figure>/<benchmark>/<model>.png, each also shown
inline in its materialization metadata. Every figure shows the headline labeler
(`analysis_settings.headline_labeler`) and, where it plots one policy, the headline policy."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_inputs import LABEL_INS, OWNERS, resolved_settings, split_by_availability
from deepconf_assets.core import analysis, calibration, metrics, plots
from deepconf_assets.core.analysis import AnalysisSettings
from deepconf_assets.partitions import experiment_partitions
from resources.analysis_settings import AnalysisSettingsResource

FIGURE = dict(partitions_def=experiment_partitions, group_name="experiment", io_manager_key="png_io_manager",
              kinds={"matplotlib", "png"}, owners=OWNERS)


def _category_counts(rows: pd.DataFrame) -> pd.DataFrame:
    known = rows[rows["correct"].notna()]
    grouped = known.groupby("category")["correct"].agg(n="size", accuracy="mean")
    return grouped.reindex(list(metrics.CATEGORIES)).fillna({"n": 0}).reset_index()


def _figure(png: bytes, caption: str) -> MaterializeResult:
    return MaterializeResult(value=png, metadata={"figure": metadata.image(png, caption)})


def _not_applicable(context: AssetExecutionContext, source: str) -> MaterializeResult:
    """The figure of an empty table (a sweep on a live partition): a notice instead of an empty plot."""
    message = f"{source} is empty for this partition: see that asset's `not_applicable` metadata."
    return _figure(plots.notice_png(f"{context.partition_key}: {source}", message), f"{source}: not applicable")


def _of_labeler(settings: AnalysisSettings, table: pd.DataFrame) -> pd.DataFrame:
    return table[table["labeler"] == settings.headline_labeler]


def _headline(settings: AnalysisSettings, predictions: pd.DataFrame) -> pd.DataFrame:
    """The headline labeler's rows of the headline policy for prompts with traces."""
    return analysis.with_traces(settings.headline_rows(predictions))


def _subject(settings: AnalysisSettings) -> str:
    return f"{settings.headline.display}, {settings.headline_labeler} labels"


@asset(**FIGURE, description="2x2 confusion matrix (gold harmful/benign x refused/complied) of the headline policy.")
def fig_confusion_matrix(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                            instance_predictions: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rows = _headline(settings, instance_predictions)
    summary = metrics.safety_metrics(rows["prompt_harmful"], rows["predicted_refusal"])
    title = f"{context.partition_key}: {_subject(settings)} (n={summary['n']})"
    return _figure(plots.confusion_matrix_png(summary, title), f"Confusion matrix, {settings.headline.display}")


@asset(**FIGURE, description="Accuracy, sensitivity, specificity, F1 and token savings against the threshold percentile, for the adaptive and deepconf_online policies.")
def fig_percentile_curves(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                             percentile_sweep: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rule = settings.vote_rule
    title = f"{context.partition_key}: stopping policies ({rule} vote, {settings.headline_labeler} labels)"
    if percentile_sweep.empty:
        return _not_applicable(context, "percentile_sweep")
    sweep = _of_labeler(settings, percentile_sweep)
    return _figure(plots.percentile_curves_png(sweep, title, rule, tau=settings.consensus_tau),
                   "Percentile safety curves")


@asset(**FIGURE, description="Prompts and accuracy per confident/uncertain x refusal/compliance category.")
def fig_categories(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                                 instance_predictions: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rows = _headline(settings, instance_predictions)
    thresholds = analysis.decision_thresholds(rows["category_threshold"], rows["predicted_refusal"])
    metric, percentile = settings.confidence_metric, f"{settings.category_percentile:g}th"
    if settings.category_threshold_scope == "pooled":
        note = (f"Confident = instance {metric} >= {thresholds['category_threshold_compliance']:.3f} (the {percentile} "
                f"percentile of every decision).")
    else:
        note = (f"Confident = instance {metric} >= the {percentile} percentile of the same decision: "
                f"{thresholds['category_threshold_compliance']:.3f} for compliances, "
                f"{thresholds['category_threshold_refusal']:.3f} for refusals.")
    title = f"{context.partition_key}: confidence categories, {_subject(settings)}"
    return _figure(plots.category_bars_png(_category_counts(rows), note, title), "Accuracy by confidence category")


def _by(rows: pd.DataFrame, column: str, names: dict) -> dict:
    return {label: rows.loc[rows[column] == value, "confidence"].to_numpy() for value, label in names.items()}


def _confidence_figure(name: str, description: str, column: str, groups: dict, plot, subject: str, note: str):
    """An asset plotting instance confidence (headline policy and labeler) grouped by `column`."""

    @asset(name=name, **FIGURE, description=description)
    def confidence_figure(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                          instance_predictions: pd.DataFrame) -> MaterializeResult:
        settings = resolved_settings(analysis_settings)
        rows = _headline(settings, instance_predictions)
        rows = rows[rows["confidence"].notna()]
        png = plot(_by(rows, column, groups), f"{context.partition_key}: {subject}",
                   f"{note} {_subject(settings).capitalize()}.")
        return _figure(png, subject.capitalize())

    return confidence_figure


CATEGORY_NAMES = {c: c.replace("_", " ") for c in metrics.CATEGORIES}
fig_conf_correctness = _confidence_figure(
    "fig_conf_correctness", "Instance confidence of correct vs wrong decisions.",
    "correct", {True: "correct", False: "wrong"}, plots.confidence_boxes_png, "confidence by correctness",
    "Correct = refused a harmful prompt or answered a benign one.")
fig_conf_category = _confidence_figure(
    "fig_conf_category", "Instance confidence per confident/uncertain x refusal/compliance category.",
    "category", CATEGORY_NAMES, plots.confidence_boxes_png, "confidence by category",
    "Categories split at the category percentile of instance confidence.")
fig_conf_distributions = _confidence_figure(
    "fig_conf_distributions", "Confidence distributions (densities) of the four confidence categories.",
    "category", CATEGORY_NAMES, plots.confidence_histograms_png, "confidence distributions", "")
fig_conf_harmfulness = _confidence_figure(
    "fig_conf_harmfulness", "Instance confidence on harmful vs benign prompts (gold labels).",
    "prompt_harmful", {True: "harmful prompt", False: "benign prompt"}, plots.confidence_boxes_png,
    "confidence by prompt harmfulness", plots.POSITIVE_CLASS_NOTE)


@asset(**FIGURE, description="Instance confidence against answer length (mean n_tokens of the voting traces, log "
                              "scale) per confidence category; the title gives the length-adjusted primary effect: "
                              "among compliances, the logistic coefficient of z(confidence) in harmful ~ "
                              "z(confidence) + log(mean_tokens).")
def fig_conf_length(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                                instance_predictions: pd.DataFrame, hypothesis_test: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rows = _headline(settings, instance_predictions)
    if "mean_tokens" not in rows:
        raise ValueError("instance_predictions has no mean_tokens column; re-materialize instance_predictions")
    rows = rows[rows["confidence"].notna() & (rows["mean_tokens"] > 0)]
    groups = {label: (rows.loc[rows["category"] == c, "mean_tokens"].to_numpy(dtype=float),
                      rows.loc[rows["category"] == c, "confidence"].to_numpy(dtype=float))
              for c, label in CATEGORY_NAMES.items()}
    test = settings.headline_rows(hypothesis_test)
    effect = "length-adjusted effect n/a"
    if len(test) and np.isfinite(test["compliance_logit_confidence_coef"].iloc[0]):
        t = test.iloc[0]
        effect = (f"compliances: log-odds of a harmful prompt per SD of confidence "
                  f"{t['compliance_logit_confidence_coef']:+.2f} [{t['compliance_logit_confidence_ci_low']:+.2f}, "
                  f"{t['compliance_logit_confidence_ci_high']:+.2f}], p={t['compliance_logit_confidence_p']:.3g}")
    title = f"{context.partition_key}: confidence vs length; {effect}"
    note = (f"Logistic regression among compliances, harmful ~ "
            f"{test['compliance_logit_terms'].iloc[0] if len(test) else 'confidence_z'} (95% Wald CI); < 0 = lower "
            f"confidence goes with complying on a harmful prompt (H1's direction). "
            f"{_subject(settings).capitalize()}.")
    return _figure(plots.confidence_by_length_png(groups, title, note), "Confidence against answer length")


@asset(**FIGURE, ins=LABEL_INS, description="Mean token confidence along the answer, refusing vs complying traces.")
def fig_trace_evolution(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                           traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    labeler = resolved_settings(analysis_settings).headline_labeler
    available, unavailable = split_by_availability(refusal_labels)
    if labeler not in available:
        raise ValueError(f"headline labeler '{labeler}' has no labels here: "
                         f"{unavailable.get(labeler, 'not registered')}")
    labelled = analysis.attach_labels(traces, available[labeler])
    curves = {name: analysis.position_means(list(labelled.loc[labelled["refused"] == value, "token_confidence"]))
              for value, name in ((True, "refusing traces"), (False, "complying traces"))}
    title = f"{context.partition_key}: confidence along the answer ({labeler} labels)"
    return _figure(plots.trace_evolution_png(curves, title), "Trace evolution")


@asset(**FIGURE, description="Reliability diagram: accuracy per bin of P(correct | confidence) from the 5-fold "
                              "out-of-fold isotonic fit (the probability ECE is computed on).")
def fig_reliability(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                               instance_predictions: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rows = _headline(settings, instance_predictions)
    rows = rows[rows["confidence"].notna() & rows["correct"].notna()]
    n, accuracy, _ = calibration.reliability_oof(rows["confidence"].to_numpy(dtype=float),
                                                 rows["correct"].to_numpy(dtype=float))
    png = plots.reliability_png(n, accuracy, f"{context.partition_key}: reliability, {_subject(settings)}")
    return _figure(png, "Reliability diagram")


def _labeler_figure(name: str, description: str, source: str, plot, subject: str):
    """An asset plotting the headline labeler's rows of the table `source` (one row per policy)."""

    @asset(name=name, **FIGURE, ins={source: AssetIn()}, description=description)
    def labeler_figure(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                       **tables: pd.DataFrame) -> MaterializeResult:
        if tables[source].empty:
            return _not_applicable(context, source)
        settings = resolved_settings(analysis_settings)
        rows = _of_labeler(settings, tables[source])
        title = f"{context.partition_key}: {subject} ({settings.headline_labeler} labels)"
        return _figure(plot(rows, title), subject.capitalize())

    return labeler_figure


def _risk_coverage_png(rows: pd.DataFrame, title: str) -> bytes:
    curves = {r.policy: (np.asarray(r.coverage), np.asarray(r.risk), r.aurc) for r in rows.itertuples()}
    return plots.risk_coverage_png(curves, title)


fig_risk_coverage = _labeler_figure(
    "fig_risk_coverage", "Risk-coverage curves per policy (headline labeler) with their AURC.",
    "calibration", _risk_coverage_png, "risk vs coverage")
fig_budget_ablation = _labeler_figure(
    "fig_budget_ablation", "Accuracy against tokens: fixed_n = 1..budget, adaptive and deepconf_online.",
    "budget_ablation", plots.budget_ablation_png, "accuracy vs tokens")
