"""Analyses of one partition. The percentile sweep and the budget ablation replay the stored traces
(every policy from one generation, no GPU); the hypothesis test and calibration read
predictions, like every other consumer of the headline numbers."""

import pandas as pd
from dagster import MaterializeResult, MetadataValue, asset

from deepconf_assets import metadata
from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets.assets.analysis_inputs import (
    FULL_TRACES_ONLY, LABEL_INS, analyses_by_labeler, live_policy_of, require_headline, resolved_settings,
)
from deepconf_assets.core import analysis
from deepconf_assets.core.analysis import AnalysisSettings
from deepconf_assets.core.answer import hypothesis_summary, summary_markdown
from deepconf_assets.core.interpret import hypothesis_sentence
from resources.analysis_settings import AnalysisSettingsResource


HYPOTHESIS = (
    "H1: uncertain compliance is riskier (less often correct) than confident compliance; categories split each "
    "decision at its own confidence median by default (category_threshold_scope). Per labeler and policy. "
    "Primary, among compliances: n and accuracy per category, the difference with a bootstrap 95% CI, two-sided "
    "Fisher p and its Holm correction across the policies tested (p_holm), verdict_compliances; the AUROC of "
    "confidence for benign against harmful compliances with its CI, and harmful ~ z(confidence) + log(length). "
    "Stratified by prompt harmfulness over every decision (uncertain vs confident): Breslow-Day first; per-stratum "
    "odds ratios, CIs, Fisher p (Holm) and verdicts; the Cochran-Mantel-Haenszel pooled OR and p only where the "
    "strata agree; a logistic regression correct ~ uncertain * harmful + log(length). `verdict` combines both "
    "('supported' only when they agree; otherwise confounded by / depends on harmfulness, opposite direction "
    "within a stratum, not confirmed) and `verdict_why` says why. Read from predictions."
)


def _replayed(method: str, settings: AnalysisSettings, prompts: pd.DataFrame, traces: pd.DataFrame,
              refusal_labels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """`method` of PartitionAnalysis for every labeler that ran, stacked (column `labeler`)."""
    return pd.concat([getattr(a, method)() for a in analyses_by_labeler(settings, prompts, traces, refusal_labels)],
                     ignore_index=True)


def _not_applicable(settings: AnalysisSettings, traces: pd.DataFrame) -> MaterializeResult | None:
    """An empty table that says why, on a live partition; None on a full one."""
    policy = live_policy_of(settings, traces)
    if policy is None:
        return None
    return MaterializeResult(value=pd.DataFrame({"labeler": pd.Series(dtype=object)}), metadata={
        "dagster/row_count": 0, "not_applicable": FULL_TRACES_ONLY.format(policy=policy.display)})


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    description=(
        "Threshold percentiles 10..90 x policies (fixed_n=all, adaptive, deepconf_online at consensus tau "
        "0.6..0.95, deepconf_online_official = the official code's online algorithm without tau, decided) x vote "
        "rules (majority, confidence-weighted, top-eta filtered): safety metrics, traces and "
        "tokens used, token savings against generating every trace, where the savings come from (instances "
        "stopped at the warm-up or early, later traces cut mid-trace; savings_stopped_pct = tokens never "
        "generated because sampling stopped, savings_cut_pct = tokens removed by confidence cuts, summing to "
        "token_savings_pct), `degenerate` (why a deepconf_online row does not measure confidence), and the "
        "confidence categories drawn at the same percentile."
    ),
)
def percentile_sweep(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame,
                     traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings, traces)
    if (live := _not_applicable(settings, traces)) is not None:
        return live
    sweep = _replayed("percentile_sweep", settings, benchmark_prompts, traces, refusal_labels)
    shown = sweep[(sweep["vote_rule"] == settings.vote_rule) & (sweep["labeler"] == settings.headline_labeler)][
        ["policy", "percentile", "tau", "accuracy", "sensitivity", "specificity", "f1", "avg_traces",
         "token_savings_pct", "savings_stopped_pct", "savings_cut_pct", "share_stopped_early",
         "share_later_traces_cut_mid_trace", "degenerate", "n_uncertain_compliance",
         "accuracy_uncertain_compliance", "categories_below_30"]
    ]
    online = sweep[(sweep["policy"] == "deepconf_online") & (sweep["labeler"] == settings.headline_labeler)
                   & (sweep["vote_rule"] == settings.vote_rule)]
    default = online[(online["percentile"] == settings.online_percentile) & (online["tau"] == settings.consensus_tau)]
    official = sweep[(sweep["policy"] == analysis.ONLINE_REFERENCE) & (sweep["labeler"] == settings.headline_labeler)
                     & (sweep["vote_rule"] == settings.vote_rule) & (sweep["percentile"] == settings.online_percentile)]
    warning = settings.consensus_warning(int(traces.groupby("instance_id").size().max()) if len(traces) else 0)
    return MaterializeResult(value=sweep, metadata={
        "dagster/row_count": len(sweep), "sweep": metadata.table(shown, max_rows=len(shown)),
        "online_savings_pct_min": metadata.percent(online["token_savings_pct"].min() if len(online) else None),
        "online_savings_pct_max": metadata.percent(online["token_savings_pct"].max() if len(online) else None),
        "online_later_traces_cut_mid_trace_pct": metadata.percent(
            100 * default["share_later_traces_cut_mid_trace"].iloc[0] if len(default) else None),
        # the configured setting's savings split, and what confidence cuts alone save (official online, no tau)
        "online_savings_stopped_by_consensus_pct": metadata.percent(
            default["savings_stopped_pct"].iloc[0] if len(default) else None),
        "online_savings_cut_by_confidence_pct": metadata.percent(default["savings_cut_pct"].iloc[0] if len(default) else None),
        "online_official_savings_pct": metadata.percent(official["token_savings_pct"].iloc[0] if len(official) else None),
        "deepconf_online_setting": warning or "consensus reachable after one dissenting warm-up trace, and not "
                                              "reached by every warm-up split",
        "sweep_shown": f"{settings.headline_labeler} labels, {settings.vote_rule} vote: "
                       f"{len(shown)} of {len(sweep)} rows (every labeler and vote rule is in the parquet file)",
        **metadata.settings(settings)})


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    description="Accuracy against tokens spent: fixed_n for every n up to the budget, adaptive and deepconf_online.",
)
def budget_ablation(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame,
                    traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings, traces)
    if (live := _not_applicable(settings, traces)) is not None:
        return live
    table = _replayed("budget_ablation", settings, benchmark_prompts, traces, refusal_labels)
    shown = table[["labeler", "policy", "accuracy", "sensitivity", "specificity", "avg_traces", "tokens_used",
                   "token_savings_pct"]]
    return MaterializeResult(value=table, metadata={"dagster/row_count": len(table), "ablation": metadata.table(shown),
                                                    **metadata.settings(settings)})


@asset(
    **ANALYSIS,
    description=HYPOTHESIS,
)
def hypothesis_test(analysis_settings: AnalysisSettingsResource, predictions: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    table = analysis.hypothesis_tests(predictions)
    headline = require_headline(settings, table)
    numbers = ("p_holm", "accuracy_difference", "diff_ci_low", "diff_ci_high", "compliance_auroc",
               "compliance_auroc_ci_low", "compliance_auroc_ci_high", "breslow_day_p", "cmh_odds_ratio", "cmh_p_holm",
               "benign_odds_ratio", "benign_p_holm", "harmful_odds_ratio", "harmful_p_holm",
               "logit_interaction_coef", "logit_interaction_p")
    return MaterializeResult(
        value=table,
        metadata={
            # the answer first, narrow enough for the pop-up; every column is in the parquet and the report
            "answer": MetadataValue.md(summary_markdown(hypothesis_summary(table, settings.headline_labeler)) + "\n\n"
                                       + (hypothesis_sentence(headline, int((table["labeler"] == settings.headline_labeler).sum()))
                                          or "")),
            "headline": f"{settings.headline.display}, {settings.headline_labeler} labels",
            **{name: str(headline[name]) for name in ("verdict", "verdict_why", "verdict_compliances", "direction",
                                                      "verdict_stratified", "verdict_benign", "verdict_harmful")},
            **metadata.numbers({name: headline[name] for name in numbers}),
            **metadata.settings(settings),
        },
    )


@asset(
    **ANALYSIS,
    description=(
        "Does instance confidence separate correct from wrong decisions? Per labeler and policy, primary and "
        "scale-free: AUROC and AURC (with the risk-coverage curve), each with a seeded bootstrap 95% CI, over all "
        "decisions and within harmful and within benign prompts. ECE (15 bins) and Brier only on a probability: "
        "P(correct | confidence) by 5-fold out-of-fold isotonic regression, the mean and 5-95% range over 20 fold "
        "assignments (ece_isotonic_oof, brier_isotonic_oof), Brier beside the base-rate Brier p(1 - p). "
        "Mann-Whitney U tests of confidence by correctness "
        "and by prompt harmfulness. Read from predictions."
    ),
)
def calibration(analysis_settings: AnalysisSettingsResource, predictions: pd.DataFrame) -> MaterializeResult:
    table = analysis.calibration_table(predictions)
    shown = table[["labeler", "policy", "n", "auroc", "auroc_ci_low", "auroc_ci_high", "auroc_harmful",
                   "auroc_benign", "aurc", "ece_isotonic_oof", "ece_isotonic_oof_p5", "ece_isotonic_oof_p95",
                   "brier_isotonic_oof", "brier_base_rate", "mwu_correct_vs_wrong_p", "mwu_harmful_vs_benign_p"]]
    settings = resolved_settings(analysis_settings)
    headline = require_headline(settings, table)
    return MaterializeResult(
        value=table,
        metadata={**{name: metadata.number(headline[name]) for name in (
                      "auroc", "auroc_harmful", "auroc_benign", "aurc", "ece_isotonic_oof", "ece_isotonic_oof_p5",
                      "ece_isotonic_oof_p95", "brier_isotonic_oof", "brier_base_rate")},
                  "calibration": metadata.table(shown), **metadata.settings(settings)},
    )
