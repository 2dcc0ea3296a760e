"""The `figures` asset: every figure of a partition as PNGs under
storage/assets/figures/<benchmark>/<model>/<figure>.png, each also shown inline in the materialization's
metadata (one entry per figure). One node for all of them keeps the lineage to the data flow. Every
figure shows the headline labeler (`analysis_settings.headline_labeler`) and, where it plots one policy,
the headline policy.

One registry, `FIGURES` (in the report's reading order): each `Figure` names itself, its heading (the
report's heading and the metadata caption), its inputs and a `draw` function; the asset's inputs, its
metadata and the report's figure sections derive from it. Adding a figure is one record (and its plot in
core/plots.py) plus its test.
"""

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.asset_defaults import EXPERIMENT
from deepconf_assets.assets.analysis_inputs import LABEL_INS, resolved_settings, split_by_availability
from deepconf_assets.core import analysis, calibration, metrics, plots
from deepconf_assets.core.analysis import AnalysisSettings
from resources.analysis_settings import AnalysisSettingsResource

PROGRESS_EVERY_S = 5.0  # a progress line at most this often while drawing (and one when done)


@dataclass(frozen=True)
class Figure:
    """One figure. `draw(partition key, settings, inputs)` returns the PNG; `inputs` maps each name of
    `inputs` (an upstream asset; `LABELS` stands for every labeler's labels) to its value."""

    name: str
    heading: str
    description: str
    inputs: tuple[str, ...]
    draw: Callable[[str, AnalysisSettings, dict], bytes]


LABELS = "refusal_labels"  # in `Figure.inputs`: every registered labeler's labels, as one dict


def _category_counts(rows: pd.DataFrame) -> pd.DataFrame:
    known = rows[rows["correct"].notna()]
    grouped = known.groupby("category")["correct"].agg(n="size", accuracy="mean")
    return grouped.reindex(list(metrics.CATEGORIES)).fillna({"n": 0}).reset_index()


def _not_applicable(key: str, source: str) -> bytes:
    """The figure of an empty table (a sweep on a live partition): a notice instead of an empty plot."""
    return plots.notice_png(f"{key}: {source}", f"{source} is empty for this partition: see that asset's "
                                                f"`not_applicable` metadata.")


def _of_labeler(settings: AnalysisSettings, table: pd.DataFrame) -> pd.DataFrame:
    return table[table["labeler"] == settings.headline_labeler]


def _headline(settings: AnalysisSettings, predictions: pd.DataFrame) -> pd.DataFrame:
    """The headline labeler's rows of the headline policy for prompts with traces."""
    return analysis.with_traces(settings.headline_rows(predictions))


def _subject(settings: AnalysisSettings) -> str:
    return f"{settings.headline.display}, {settings.headline_labeler} labels"


def _confusion_matrix(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    rows = _headline(settings, inputs["predictions"])
    summary = metrics.safety_metrics(rows["prompt_harmful"], rows["predicted_refusal"])
    return plots.confusion_matrix_png(summary, f"{key}: {_subject(settings)} (n={summary['n']})")


def _percentile_curves(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    sweep = inputs["percentile_sweep"]
    if sweep.empty:
        return _not_applicable(key, "percentile_sweep")
    rule = settings.vote_rule
    title = f"{key}: stopping policies ({rule} vote, {settings.headline_labeler} labels)"
    return plots.percentile_curves_png(_of_labeler(settings, sweep), title, rule, tau=settings.consensus_tau)


def _categories(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    rows = _headline(settings, inputs["predictions"])
    thresholds = analysis.decision_thresholds(rows["category_threshold"], rows["predicted_refusal"])
    metric, percentile = settings.confidence_metric, f"{settings.category_percentile:g}th"
    if settings.category_threshold_scope == "pooled":
        note = (f"Confident = instance {metric} >= {thresholds['category_threshold_compliance']:.3f} (the {percentile} "
                f"percentile of every decision).")
    else:
        note = (f"Confident = instance {metric} >= the {percentile} percentile of the same decision: "
                f"{thresholds['category_threshold_compliance']:.3f} for compliances, "
                f"{thresholds['category_threshold_refusal']:.3f} for refusals.")
    title = f"{key}: confidence categories, {_subject(settings)}"
    return plots.category_bars_png(_category_counts(rows), note, title)


def _confidence_by(column: str, groups: dict, plot, subject: str, note: str):
    """draw: instance confidence (headline policy and labeler) grouped by the values of `column`."""

    def draw(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
        rows = _headline(settings, inputs["predictions"])
        rows = rows[rows["confidence"].notna()]
        by_group = {label: rows.loc[rows[column] == value, "confidence"].to_numpy() for value, label in groups.items()}
        return plot(by_group, f"{key}: {subject}", f"{note} {_subject(settings).capitalize()}.".strip())

    return draw


CATEGORY_NAMES = {c: c.replace("_", " ") for c in metrics.CATEGORIES}


def _conf_length(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    rows = _headline(settings, inputs["predictions"])
    if "mean_tokens" not in rows:
        raise ValueError("predictions has no mean_tokens column; re-materialize predictions")
    rows = rows[rows["confidence"].notna() & (rows["mean_tokens"] > 0)]
    groups = {label: (rows.loc[rows["category"] == c, "mean_tokens"].to_numpy(dtype=float),
                      rows.loc[rows["category"] == c, "confidence"].to_numpy(dtype=float))
              for c, label in CATEGORY_NAMES.items()}
    test = settings.headline_rows(inputs["hypothesis_test"])
    effect = "length-adjusted effect n/a"
    if len(test) and np.isfinite(test["compliance_logit_confidence_coef"].iloc[0]):
        t = test.iloc[0]
        effect = (f"compliances: log-odds of a harmful prompt per SD of confidence "
                  f"{t['compliance_logit_confidence_coef']:+.2f} [{t['compliance_logit_confidence_ci_low']:+.2f}, "
                  f"{t['compliance_logit_confidence_ci_high']:+.2f}], p={t['compliance_logit_confidence_p']:.3g}")
    note = (f"Logistic regression among compliances, harmful ~ "
            f"{test['compliance_logit_terms'].iloc[0] if len(test) else 'confidence_z'} (95% Wald CI); < 0 = lower "
            f"confidence goes with complying on a harmful prompt (H1's direction). "
            f"{_subject(settings).capitalize()}.")
    return plots.confidence_by_length_png(groups, f"{key}: confidence vs length; {effect}", note)


def _trace_evolution(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    labeler = settings.headline_labeler
    available, unavailable = split_by_availability(inputs[LABELS])
    if labeler not in available:
        raise ValueError(f"headline labeler '{labeler}' has no labels here: "
                         f"{unavailable.get(labeler, 'not registered')}")
    labelled = analysis.attach_labels(inputs["traces"], available[labeler])
    curves = {name: analysis.position_means(list(labelled.loc[labelled["refused"] == value, "token_confidence"]))
              for value, name in ((True, "refusing traces"), (False, "complying traces"))}
    return plots.trace_evolution_png(curves, f"{key}: confidence along the answer ({labeler} labels)")


def _reliability(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
    rows = _headline(settings, inputs["predictions"])
    rows = rows[rows["confidence"].notna() & rows["correct"].notna()]
    n, accuracy, _ = calibration.reliability_oof(rows["confidence"].to_numpy(dtype=float),
                                                 rows["correct"].to_numpy(dtype=float), rows["instance_id"])
    return plots.reliability_png(n, accuracy, f"{key}: reliability, {_subject(settings)}")


def _per_policy(source: str, plot, subject: str):
    """draw: the headline labeler's rows of the table `source` (one row per policy)."""

    def draw(key: str, settings: AnalysisSettings, inputs: dict) -> bytes:
        if inputs[source].empty:
            return _not_applicable(key, source)
        return plot(_of_labeler(settings, inputs[source]), f"{key}: {subject} ({settings.headline_labeler} labels)")

    return draw


def _risk_coverage_png(rows: pd.DataFrame, title: str) -> bytes:
    curves = {r.policy: (np.asarray(r.coverage), np.asarray(r.risk), r.aurc) for r in rows.itertuples()}
    return plots.risk_coverage_png(curves, title)


PREDICTIONS = ("predictions",)
FIGURES: list[Figure] = [
    Figure("confusion_matrix", "Confusion matrix of the headline policy",
           "2x2 confusion matrix (gold harmful/benign x refused/complied) of the headline policy.",
           PREDICTIONS, _confusion_matrix),
    Figure("percentile_curves", "Safety metrics and token savings against the threshold percentile",
           "Accuracy, sensitivity, specificity, F1 and token savings against the threshold percentile, for every "
           "stopping policy with a threshold.", ("percentile_sweep",), _percentile_curves),
    Figure("budget_ablation", "Accuracy against tokens spent",
           "Accuracy against tokens: fixed_n = 1..budget and every replayed stopping policy.", ("budget_ablation",),
           _per_policy("budget_ablation", plots.budget_ablation_png, "accuracy vs tokens")),
    Figure("categories", "Accuracy per confidence category",
           "Prompts and accuracy per confident/uncertain x refusal/compliance category.", PREDICTIONS, _categories),
    Figure("conf_correctness", "Confidence of correct and wrong decisions",
           "Instance confidence of correct vs wrong decisions.", PREDICTIONS,
           _confidence_by("correct", {True: "correct", False: "wrong"}, plots.confidence_boxes_png,
                          "confidence by correctness", "Correct = refused a harmful prompt or answered a benign one.")),
    Figure("conf_category", "Confidence per category",
           "Instance confidence per confident/uncertain x refusal/compliance category.", PREDICTIONS,
           _confidence_by("category", CATEGORY_NAMES, plots.confidence_boxes_png, "confidence by category",
                          "Categories split at the category percentile of instance confidence.")),
    Figure("conf_distributions", "Confidence distributions per category",
           "Confidence distributions (densities) of the four confidence categories.", PREDICTIONS,
           _confidence_by("category", CATEGORY_NAMES, plots.confidence_histograms_png, "confidence distributions", "")),
    Figure("conf_harmfulness", "Confidence on harmful and benign prompts",
           "Instance confidence on harmful vs benign prompts (gold labels).", PREDICTIONS,
           _confidence_by("prompt_harmful", {True: "harmful prompt", False: "benign prompt"}, plots.confidence_boxes_png,
                          "confidence by prompt harmfulness", plots.POSITIVE_CLASS_NOTE)),
    Figure("conf_length", "Confidence against answer length per category",
           "Instance confidence against answer length (mean n_tokens of the voting traces, log scale) per confidence "
           "category; the title gives the length-adjusted primary effect: among compliances, the logistic coefficient "
           "of z(confidence) in harmful ~ z(confidence) + log(mean_tokens).",
           ("predictions", "hypothesis_test"), _conf_length),
    Figure("trace_evolution", "Token confidence along the answer",
           "Mean token confidence along the answer, refusing vs complying traces.", ("traces", LABELS),
           _trace_evolution),
    Figure("reliability", "Reliability diagram",
           "Reliability diagram: accuracy per bin of P(correct | confidence) from the 5-fold out-of-fold isotonic fit "
           "(the probability ECE is computed on).", PREDICTIONS, _reliability),
    Figure("risk_coverage", "Risk against coverage",
           "Risk-coverage curves per policy (headline labeler) with their AURC.", ("calibration",),
           _per_policy("calibration", _risk_coverage_png, "risk vs coverage")),
]


def figures_asset(registry: list[Figure]) -> AssetsDefinition:
    """The `figures` asset of a registry: its inputs are every figure's inputs; each figure is a PNG in the
    output and an image (captioned with its heading) in the metadata, under the figure's name."""
    upstream = {name for figure in registry for name in figure.inputs}
    ins = {name: AssetIn() for name in sorted(upstream - {LABELS})}
    if LABELS in upstream:
        ins.update(LABEL_INS)

    @asset(name="figures", **EXPERIMENT, io_manager_key="png_folder_io_manager", kinds={"matplotlib", "png"},
           ins=ins, description="Every figure of the partition, one PNG each, shown inline in the metadata: "
                                + " ".join(f"{figure.name}: {figure.description}" for figure in registry))
    def figures(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                **values) -> MaterializeResult:
        settings = resolved_settings(analysis_settings)
        inputs = {name: values[name] for name in ins if name not in LABEL_INS}
        inputs[LABELS] = {name: values[name] for name in LABEL_INS if name in values}
        pngs, started, logged = {}, time.monotonic(), 0.0
        for done, figure in enumerate(registry, start=1):
            pngs[figure.name] = figure.draw(context.partition_key, settings, inputs)
            elapsed = time.monotonic() - started
            if elapsed - logged >= PROGRESS_EVERY_S or done == len(registry):
                logged = elapsed
                context.log.info(f"figures: {done}/{len(registry)} drawn ({figure.name}), {elapsed:.0f}s so far, "
                                 f"ETA {elapsed / done * (len(registry) - done):.0f}s")
        return MaterializeResult(value=pngs, metadata={
            figure.name: metadata.image(pngs[figure.name], figure.heading) for figure in registry})

    return figures


figures = figures_asset(FIGURES)
