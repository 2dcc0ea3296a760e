"""Analyses replayed from the stored traces of one partition (no generation): the percentile sweep,
the budget ablation, the hypothesis test and calibration."""

import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import AnalysisConfig, analyses_by_labeler
from deepconf_assets.partitions import experiment_partitions

ANALYSIS = dict(partitions_def=experiment_partitions, group_name="experiment", io_manager_key="parquet_io_manager")


def _per_labeler(method: str, config: AnalysisConfig, prompts: pd.DataFrame, traces: pd.DataFrame,
                 heuristic: pd.DataFrame, wildguard: pd.DataFrame) -> pd.DataFrame:
    """`method` of PartitionAnalysis for every labeler with labels, stacked (column `labeler`)."""
    return pd.concat([getattr(a, method)() for a in analyses_by_labeler(config, prompts, traces, heuristic, wildguard)],
                     ignore_index=True)


@asset(
    **ANALYSIS,
    description=(
        "Threshold percentiles 10..90 x policies (fixed_n=all, adaptive, deepconf_online) x vote rules "
        "(majority, confidence-weighted, top-eta filtered): safety metrics, traces and tokens used, token "
        "savings against generating every trace, and the confidence categories drawn at the same percentile."
    ),
)
def percentile_sweep(config: AnalysisConfig, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                     refusal_labels_heuristic: pd.DataFrame, refusal_labels_wildguard: pd.DataFrame) -> MaterializeResult:
    sweep = _per_labeler("percentile_sweep", config, benchmark_prompts, traces, refusal_labels_heuristic,
                         refusal_labels_wildguard)
    shown = sweep[sweep["vote_rule"] == config.vote_rule][
        ["labeler", "policy", "percentile", "accuracy", "sensitivity", "specificity", "f1", "avg_traces",
         "token_savings_pct", "n_uncertain_compliance", "accuracy_uncertain_compliance"]
    ]
    return MaterializeResult(value=sweep, metadata={"dagster/row_count": len(sweep), "sweep": metadata.table(shown)})


@asset(
    **ANALYSIS,
    description="Accuracy against tokens spent: fixed_n for every n up to the budget, adaptive and deepconf_online.",
)
def budget_ablation(config: AnalysisConfig, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                    refusal_labels_heuristic: pd.DataFrame, refusal_labels_wildguard: pd.DataFrame) -> MaterializeResult:
    table = _per_labeler("budget_ablation", config, benchmark_prompts, traces, refusal_labels_heuristic,
                         refusal_labels_wildguard)
    shown = table[["labeler", "policy", "accuracy", "sensitivity", "specificity", "avg_traces", "tokens_used", "token_savings_pct"]]
    return MaterializeResult(value=table, metadata={"dagster/row_count": len(table), "ablation": metadata.table(shown)})


@asset(
    **ANALYSIS,
    description=(
        "H1: uncertain compliance is less accurate than confident compliance. Per policy: n and accuracy "
        "per category, one-sided Fisher exact p, bootstrap 95% CI of the accuracy difference, and the "
        "verdict supported | not supported | insufficient data (n < 30)."
    ),
)
def hypothesis_test(config: AnalysisConfig, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                    refusal_labels_heuristic: pd.DataFrame, refusal_labels_wildguard: pd.DataFrame) -> MaterializeResult:
    table = _per_labeler("hypothesis_tests", config, benchmark_prompts, traces, refusal_labels_heuristic,
                         refusal_labels_wildguard)
    headline = table[table["labeler"] == "heuristic"].set_index("policy").loc[config.headline_policy()]
    return MaterializeResult(
        value=table,
        metadata={
            "headline_policy": config.headline_policy(),
            "verdict": str(headline["verdict"]),
            "fisher_p_one_sided": metadata.number(headline["fisher_p_one_sided"]),
            "accuracy_difference": metadata.number(headline["accuracy_difference"]),
            "tests": metadata.table(table),
        },
    )


@asset(
    **ANALYSIS,
    description=(
        "Does instance confidence separate correct from wrong decisions? Per policy: AUROC, ECE (15 bins), "
        "Brier (confidence min-max rescaled to [0, 1]), AURC with the risk-coverage curve, and Mann-Whitney "
        "U tests of confidence by correctness and by prompt harmfulness."
    ),
)
def calibration(config: AnalysisConfig, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                refusal_labels_heuristic: pd.DataFrame, refusal_labels_wildguard: pd.DataFrame) -> MaterializeResult:
    table = _per_labeler("calibration", config, benchmark_prompts, traces, refusal_labels_heuristic,
                         refusal_labels_wildguard)
    shown = table[["labeler", "policy", "n", "auroc", "ece", "brier", "aurc", "mwu_correct_vs_wrong_p", "mwu_harmful_vs_benign_p"]]
    headline = table[table["labeler"] == "heuristic"].set_index("policy").loc[config.headline_policy()]
    return MaterializeResult(
        value=table,
        metadata={"auroc": metadata.number(headline["auroc"]), "aurc": metadata.number(headline["aurc"]),
                  "calibration": metadata.table(shown)},
    )
