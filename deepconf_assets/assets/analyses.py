"""Analyses of one partition. The percentile sweep and the budget ablation replay the stored traces
(every policy from one generation, no GPU); the hypothesis test and calibration read
instance_predictions, like every other consumer of the headline numbers."""

import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_inputs import ANALYSIS, LABEL_INS, analyses_by_labeler, require_headline
from deepconf_assets.core import analysis
from resources.analysis_settings import AnalysisSettingsResource


def _replayed(method: str, settings: AnalysisSettingsResource, prompts: pd.DataFrame, traces: pd.DataFrame,
              refusal_labels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """`method` of PartitionAnalysis for every labeler that ran, stacked (column `labeler`)."""
    return pd.concat([getattr(a, method)() for a in analyses_by_labeler(settings, prompts, traces, refusal_labels)],
                     ignore_index=True)


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    description=(
        "Threshold percentiles 10..90 x policies (fixed_n=all, adaptive, deepconf_online) x vote rules "
        "(majority, confidence-weighted, top-eta filtered): safety metrics, traces and tokens used, token "
        "savings against generating every trace, and the confidence categories drawn at the same percentile."
    ),
)
def percentile_sweep(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame,
                     traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    sweep = _replayed("percentile_sweep", analysis_settings, benchmark_prompts, traces, refusal_labels)
    shown = sweep[(sweep["vote_rule"] == analysis_settings.vote_rule.value)
                  & (sweep["labeler"] == analysis_settings.labeler)][
        ["policy", "percentile", "accuracy", "sensitivity", "specificity", "f1", "avg_traces",
         "token_savings_pct", "n_uncertain_compliance", "accuracy_uncertain_compliance"]
    ]
    return MaterializeResult(value=sweep, metadata={
        "dagster/row_count": len(sweep), "sweep": metadata.table(shown, max_rows=len(shown)),
        "sweep_shown": f"{analysis_settings.labeler} labels, {analysis_settings.vote_rule.value} vote: "
                       f"{len(shown)} of {len(sweep)} rows (every labeler and vote rule is in the parquet file)",
        **analysis_settings.metadata()})


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    description="Accuracy against tokens spent: fixed_n for every n up to the budget, adaptive and deepconf_online.",
)
def budget_ablation(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame,
                    traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    table = _replayed("budget_ablation", analysis_settings, benchmark_prompts, traces, refusal_labels)
    shown = table[["labeler", "policy", "accuracy", "sensitivity", "specificity", "avg_traces", "tokens_used",
                   "token_savings_pct"]]
    return MaterializeResult(value=table, metadata={"dagster/row_count": len(table), "ablation": metadata.table(shown),
                                                    **analysis_settings.metadata()})


@asset(
    **ANALYSIS,
    description=(
        "H1: uncertain compliance is less accurate than confident compliance. Per labeler and policy: n and "
        "accuracy per category, one-sided Fisher exact p, bootstrap 95% CI of the accuracy difference, and "
        "the verdict supported | not supported | insufficient data (n < 30). Read from instance_predictions."
    ),
)
def hypothesis_test(analysis_settings: AnalysisSettingsResource, instance_predictions: pd.DataFrame) -> MaterializeResult:
    table = analysis.hypothesis_tests(instance_predictions)
    headline = require_headline(analysis_settings, table)
    return MaterializeResult(
        value=table,
        metadata={
            "headline": f"{analysis_settings.headline_policy}, {analysis_settings.labeler} labels",
            "verdict": str(headline["verdict"]),
            "fisher_p_one_sided": metadata.number(headline["fisher_p_one_sided"]),
            "accuracy_difference": metadata.number(headline["accuracy_difference"]),
            "tests": metadata.table(table),
            **analysis_settings.metadata(),
        },
    )


@asset(
    **ANALYSIS,
    description=(
        "Does instance confidence separate correct from wrong decisions? Per labeler and policy: AUROC, ECE "
        "(15 bins), Brier (confidence min-max rescaled to [0, 1]), AURC with the risk-coverage curve, and "
        "Mann-Whitney U tests of confidence by correctness and by prompt harmfulness. Read from "
        "instance_predictions."
    ),
)
def calibration(analysis_settings: AnalysisSettingsResource, instance_predictions: pd.DataFrame) -> MaterializeResult:
    table = analysis.calibration_table(instance_predictions)
    shown = table[["labeler", "policy", "n", "auroc", "ece", "brier", "aurc", "mwu_correct_vs_wrong_p",
                   "mwu_harmful_vs_benign_p"]]
    headline = require_headline(analysis_settings, table)
    return MaterializeResult(
        value=table,
        metadata={"auroc": metadata.number(headline["auroc"]), "aurc": metadata.number(headline["aurc"]),
                  "calibration": metadata.table(shown), **analysis_settings.metadata()},
    )
