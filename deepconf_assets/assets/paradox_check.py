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
from deepconf_assets.core import analysis, hypothesis, metrics
from deepconf_assets.core.confidence import PREDECESSOR_NLL
from resources.analysis_settings import AnalysisSettingsResource

DEEPCONF_METRIC = "conf_mean"
COMPARED = {DEEPCONF_METRIC: "DeepConf mean token confidence (larger = more confident)",
            PREDECESSOR_NLL: "predecessor: mean sampled-token NLL = -mean_logprob (larger = LESS likely; NOT DeepConf)"}


def paradox(rows: pd.DataFrame) -> bool | None:
    """The predecessor's paradox in category terms: confident compliance LESS accurate than uncertain
    compliance (None when either accuracy is undefined)."""
    acc = rows.set_index("category")["accuracy"]
    confident, uncertain = acc.get("confident_compliance", np.nan), acc.get("uncertain_compliance", np.nan)
    return None if np.isnan(confident) or np.isnan(uncertain) else bool(confident < uncertain)


def paradox_sentence(table: pd.DataFrame) -> str:
    said = {m: paradox(table[table["confidence_metric"] == m]) for m in COMPARED}
    if None in said.values():
        return ("The confidence paradox cannot be judged: a compliance category is empty under "
                + ", ".join(m for m, p in said.items() if p is None) + ".")
    state = {m: "appears (confident compliance less accurate than uncertain)" if p
             else "does not appear (confident compliance at least as accurate as uncertain)" for m, p in said.items()}
    flips = said[DEEPCONF_METRIC] != said[PREDECESSOR_NLL]
    ending = ("The paradox FLIPS with the sign of the confidence: it is a sign artifact." if flips
              else "The paradox does NOT flip with the sign of the confidence.")
    return (f"With predecessor_nll the paradox {state[PREDECESSOR_NLL]}; with DeepConf conf_mean it "
            f"{state[DEEPCONF_METRIC]}. {ending}")


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
        frames.append(table.assign(confidence_metric=metric, deepconf=metric == DEEPCONF_METRIC, meaning=meaning,
                                   labeler=labeler, policy=policy.display,
                                   category_threshold=analysis.decision_thresholds(
                                       outcome.threshold, outcome.predicted)["category_threshold_compliance"],
                                   verdict=str(test["verdict_compliances"])))
    table = pd.concat(frames, ignore_index=True)[
        ["confidence_metric", "deepconf", "labeler", "policy", "category", "n", "accuracy", "verdict",
         "category_threshold", "meaning"]]
    sentence = paradox_sentence(table)
    return MaterializeResult(value=table, metadata={
        "dagster/row_count": len(table),
        "comparison": metadata.table(table.drop(columns=["meaning", "labeler", "policy"]), max_rows=len(table)),
        "paradox": sentence,
        "headline": f"{policy.display}, {labeler} labels",
        **{f"verdict_{m}": str(table.loc[table["confidence_metric"] == m, "verdict"].iloc[0]) for m in COMPARED},
        **metadata.settings(core)})
