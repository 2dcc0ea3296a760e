"""The predecessor's "confidence paradox", reproduced and explained: the headline policy under the
headline labeler replayed twice from the same traces, once with DeepConf confidence (`conf_mean`) and
once with the predecessor's quantity (`predecessor_nll`: the mean sampled-token negative
log-likelihood, -mean_logprob, larger = LESS likely; NOT DeepConf). Side by side, a reader sees whether
the paradox ("wrong answers looked more confident") is a sign artifact."""

from dataclasses import replace

import numpy as np
import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets.assets.analysis_inputs import LABEL_INS, resolved_settings, split_by_availability
from deepconf_assets.core import analysis, claims, hypothesis, metrics
from deepconf_assets.core.claims import Claim
from deepconf_assets.core.confidence import PREDECESSOR_NLL
from resources.analysis_settings import AnalysisSettingsResource

DEEPCONF_METRIC = "conf_mean"
COMPARED = {DEEPCONF_METRIC: "DeepConf mean token confidence (larger = more confident)",
            PREDECESSOR_NLL: "predecessor: mean sampled-token NLL = -mean_logprob (larger = LESS likely; NOT DeepConf)"}


def paradox_claim(rows: pd.DataFrame) -> Claim:
    """Under one confidence metric (its rows of the table): confident minus uncertain compliance accuracy
    (< 0: the predecessor's paradox) with its bootstrap CI and two-sided Fisher p (one test per metric)."""
    first = rows.iloc[0]
    n = rows.set_index("category")["n"]
    n_u, n_c = int(n.get("uncertain_compliance", 0)), int(n.get("confident_compliance", 0))
    return Claim(f"with {first['confidence_metric']}, confident minus uncertain compliance accuracy",
                 first["compliance_difference"], "pp", null=0.0,
                 ci=(first["compliance_difference_ci_low"], first["compliance_difference_ci_high"]), test="Fisher p",
                 p=first["fisher_p_two_sided"], n=n_u + n_c,
                 below="the paradox appears (confident compliances are less often right)",
                 above="no paradox (confident compliances are more often right)",
                 not_tested=(None if min(n_u, n_c) >= metrics.MIN_CATEGORY_N
                             else f"fewer than {metrics.MIN_CATEGORY_N} compliances in a category"),
                 undefined_why="a compliance category is empty")


def paradox_sentence(table: pd.DataFrame) -> str:
    """Each metric's paradox claim, then whether it flips with the sign: said to FLIP only when both sides are
    established, opposite ways."""
    made = {m: paradox_claim(table[table["confidence_metric"] == m]) for m in COMPARED}
    body = "; ".join(claims.say(c) for c in made.values())
    sides = {m: c.side for m, c in made.items()}
    established = all(claims.status(c) == claims.ESTABLISHED for c in made.values())
    if sides[DEEPCONF_METRIC] * sides[PREDECESSOR_NLL] < 0:
        ending = ("The paradox FLIPS with the sign of the confidence, established both ways: it is a sign artifact."
                  if established else "The point estimates flip with the sign of the confidence, but not both are "
                                      "established: a sign artifact is possible, not shown.")
    else:
        ending = "The paradox does NOT flip with the sign of the confidence."
    return f"{body[:1].upper()}{body[1:]}. {ending}"


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    description=(
        "The predecessor's artifact, side by side: the headline policy under the headline labeler replayed with "
        "DeepConf confidence (conf_mean) and with the predecessor's quantity (predecessor_nll = mean sampled-token "
        "negative log-likelihood, -mean_logprob, larger = LESS likely; NOT DeepConf). One row per (confidence "
        "metric, category): n, accuracy and the metric's hypothesis verdict; metadata says whether the 'confidence "
        "paradox' flips with the sign."
    ),
)
def paradox_check(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame,
                  traces: pd.DataFrame, **refusal_labels: pd.DataFrame) -> MaterializeResult:
    core = resolved_settings(analysis_settings, traces)
    available, unavailable = split_by_availability(refusal_labels)
    labeler = core.headline_labeler
    if labeler not in available:
        raise ValueError(f"the headline labeler '{labeler}' did not run for this partition "
                         f"({unavailable.get(labeler, 'no labels')}); choose another headline_labeler")
    policy = core.headline
    labelled = analysis.attach_labels(traces, available[labeler])
    frames = []
    for metric, meaning in COMPARED.items():
        settings = replace(core, confidence_metric=metric)
        replay = analysis.PartitionAnalysis(labelled, benchmark_prompts, labeler, settings)
        if policy not in replay.runs:
            raise ValueError(f"headline policy '{policy.display}' is not among the replayed policies "
                             f"{sorted(p.display for p in replay.runs)}")
        outcome = analysis.evaluate(replay.matrix, replay.runs[policy], replay.gold, settings.vote_rule,
                                    settings.category_percentile, settings)
        category = np.array(metrics.CATEGORIES + (None,), dtype=object)[outcome.category]
        test = hypothesis.compliance_test(outcome.correct, category)
        table = analysis.category_table(replay.summary_row(outcome))
        frames.append(table.assign(compliance_difference=-test["accuracy_difference"],
                                   compliance_difference_ci_low=-test["diff_ci_high"],
                                   compliance_difference_ci_high=-test["diff_ci_low"],
                                   fisher_p_two_sided=test["fisher_p_two_sided"],
                                   confidence_metric=metric, deepconf=metric == DEEPCONF_METRIC, meaning=meaning,
                                   labeler=labeler, policy=policy.display,
                                   category_threshold=analysis.decision_thresholds(
                                       outcome.threshold, outcome.predicted)["category_threshold_compliance"],
                                   verdict=str(test["verdict_compliances"])))
    table = pd.concat(frames, ignore_index=True)[
        ["confidence_metric", "deepconf", "labeler", "policy", "category", "n", "accuracy", "verdict",
         "compliance_difference", "compliance_difference_ci_low", "compliance_difference_ci_high",
         "fisher_p_two_sided", "category_threshold", "meaning"]]
    sentence = paradox_sentence(table)
    return MaterializeResult(value=table, metadata={
        "dagster/row_count": len(table),
        "comparison": metadata.table(table.drop(columns=["meaning", "labeler", "policy"]), max_rows=len(table)),
        "paradox": sentence,
        "headline": f"{policy.display}, {labeler} labels",
        **{f"verdict_{m}": str(table.loc[table["confidence_metric"] == m, "verdict"].iloc[0]) for m in COMPARED},
        **metadata.settings(core)})
