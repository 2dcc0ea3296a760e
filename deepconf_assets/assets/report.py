"""The `report` asset: one self-contained HTML page per `benchmark|model` with every figure and the
numbers behind the headline, under storage/assets/report/<benchmark>/<model>.html."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MaterializeResult, MetadataValue, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_inputs import require_headline
from deepconf_assets.core import analysis
from deepconf_assets.core import report as html_report
from deepconf_assets.partitions import experiment_partitions
from resources.analysis_settings import AnalysisSettingsResource

# (asset, heading) in reading order.
FIGURES = [
    ("confusion_matrix_figure", "Confusion matrix of the headline policy"),
    ("percentile_curves_figure", "Safety metrics and token savings against the threshold percentile"),
    ("budget_ablation_figure", "Accuracy against tokens spent"),
    ("confidence_categories_figure", "Accuracy per confidence category"),
    ("confidence_by_correctness_figure", "Confidence of correct and wrong decisions"),
    ("confidence_by_category_figure", "Confidence per category"),
    ("confidence_distributions_figure", "Confidence distributions per category"),
    ("confidence_by_harmfulness_figure", "Confidence on harmful and benign prompts"),
    ("trace_evolution_figure", "Token confidence along the answer"),
    ("reliability_diagram_figure", "Reliability diagram"),
    ("risk_coverage_figure", "Risk against coverage"),
]


def _headline(settings: AnalysisSettingsResource, summary: pd.DataFrame, hypothesis: pd.DataFrame) -> str:
    r = require_headline(settings, summary)
    verdict = require_headline(settings, hypothesis)["verdict"]
    return (f"{settings.headline_policy} ({settings.labeler} labels, n={r['n']}): accuracy {r['accuracy']:.3f}, "
            f"sensitivity {r['sensitivity']:.3f}, specificity {r['specificity']:.3f}, "
            f"{r['avg_traces']:.2f} traces per prompt, {r['token_savings_pct']:.1f}% tokens saved; "
            f"'uncertain compliance is riskier': {verdict}.")


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="html_io_manager",
    ins={name: AssetIn() for name, _ in FIGURES},
    description=(
        "Self-contained HTML report for one benchmark|model: the headline sentence, metrics of every "
        "policy and labeler, the hypothesis test, calibration, labeler validation and every figure, "
        "in one file you can open in a browser or send to a colleague."
    ),
)
def report(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource, instance_predictions: pd.DataFrame,
           hypothesis_test: pd.DataFrame, calibration: pd.DataFrame, labeler_validation: pd.DataFrame,
           labeler_comparison: pd.DataFrame, **figures: bytes) -> MaterializeResult:
    summary = analysis.summarize_predictions(instance_predictions)
    headline = _headline(analysis_settings, summary, hypothesis_test)
    metrics = summary[["labeler", "policy", *analysis.HEADLINE_METRICS]]
    sections = [
        html_report.Section("Metrics per labeler and policy", "Token savings are against generating every trace in full.",
                            metrics),
        html_report.Section("Hypothesis: uncertain compliance is less accurate than confident compliance",
                            "One-sided Fisher exact test; bootstrap 95% CI of the accuracy difference.", hypothesis_test),
        html_report.Section("Calibration of instance confidence against correctness",
                            "ECE after min-max rescaling of confidence; AURC = mean risk over coverage.",
                            calibration.drop(columns=["coverage", "risk"])),
        html_report.Section("Refusal labelers against gold labels", "", labeler_validation),
        html_report.Section("The labelers side by side on the same traces", "", labeler_comparison),
        *[html_report.Section(heading, png=figures[name]) for name, heading in FIGURES],
    ]
    page = html_report.render(f"DeepConf safety report: {context.partition_key}", headline, sections)
    context.log.info(f"report: {len(page) / 1e6:.1f} MB, {len(FIGURES)} figures")
    return MaterializeResult(value=page, metadata={
        "headline": MetadataValue.text(headline),
        "size_bytes": len(page),
        "metrics": metadata.table(metrics),
        **analysis_settings.metadata(),
    })
