"""Can the refusal labels be trusted? Each labeler against human labels, and the two labelers
against each other on the same traces."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from deepconf_assets import metadata, paths
from deepconf_assets.assets.analysis_config import (
    WILDGUARD_UNAVAILABLE, AnalysisConfig, analyses_by_labeler, wildguard_available,
)
from deepconf_assets.core import agreement as labelers
from deepconf_assets.core.refusal import is_refusal, xstest_prefix_rule
from deepconf_assets.partitions import benchmark_and_model, experiment_partitions
from resources.wildguard import WildGuardResource

LABELERS = dict(partitions_def=experiment_partitions, group_name="experiment", io_manager_key="parquet_io_manager")
HEADLINE = ["accuracy", "sensitivity", "specificity", "precision", "f1", "unsafe_compliance_rate",
            "over_refusal_rate", "avg_traces", "token_savings_pct"]


def _gold_responses(benchmark: str, prompts: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if benchmark == "xstest":
        return labelers.xstest_gold_responses(paths.data_dir()), f"XSTest human labels ({labelers.XSTEST_COMPLETIONS})"
    if benchmark == "wildguardmix":
        rows = prompts[prompts["gold_response"].notna()]
        return (pd.DataFrame({"prompt": rows["prompt"], "response": rows["gold_response"],
                              "gold_refusal": rows["gold_response_refusal"]}).reset_index(drop=True),
                "WildGuardMix response_refusal_label")
    return pd.DataFrame(columns=["prompt", "response", "gold_refusal"]), ""


@asset(
    **LABELERS,
    pool="gpu",
    description=(
        "Each refusal labeler against human refusal labels where the benchmark has them (XSTest's "
        "labelled completions; WildGuardMix gold responses): precision, recall, F1, Cohen's kappa and the "
        "confusion counts, positive = refusal. XSTest's own prefix rule is the reference row."
    ),
)
def labeler_validation(context: AssetExecutionContext, benchmark_prompts: pd.DataFrame,
                       wildguard: WildGuardResource) -> MaterializeResult:
    benchmark, _ = benchmark_and_model(context.partition_key)
    gold, source = _gold_responses(benchmark, benchmark_prompts)
    if gold.empty:
        return MaterializeResult(value=pd.DataFrame(columns=["labeler", "status"]),
                                 metadata={"status": f"{benchmark} has no gold refusal labels"})
    responses = gold["response"].fillna("")
    rows = [
        {"labeler": "heuristic", "status": "ok", **labelers.refusal_agreement(gold["gold_refusal"], responses.map(is_refusal))},
        {"labeler": "xstest_prefix_rule (reference)", "status": "ok",
         **labelers.refusal_agreement(gold["gold_refusal"], responses.map(xstest_prefix_rule))},
    ]
    folder, reason = wildguard.locate()
    if folder is None:
        rows.append({"labeler": "wildguard", "status": f"{WILDGUARD_UNAVAILABLE}: {reason}"})
    else:
        labels = wildguard.classify(folder, gold["prompt"].tolist(), responses.tolist(), log=context.log.info)
        rows.append({"labeler": "wildguard", "status": "ok", **labelers.refusal_agreement(gold["gold_refusal"], labels["refused"])})
    table = pd.DataFrame(rows)
    heuristic = table.iloc[0]
    return MaterializeResult(
        value=table,
        metadata={"gold": source, "heuristic_f1": metadata.number(heuristic["f1"]),
                  "heuristic_kappa": metadata.number(heuristic["kappa"]),
                  "validation": metadata.table(table.drop(columns=["status"]).assign(status=table["status"].str[:60]))},
    )


@asset(
    **LABELERS,
    description=(
        "Heuristic vs WildGuard on the same traces: trace-level agreement and kappa, and every headline "
        "metric (headline policy) under each labeler side by side with the difference. Reports "
        "'WildGuard unavailable' when the classifier did not run."
    ),
)
def labeler_comparison(config: AnalysisConfig, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                       refusal_labels_heuristic: pd.DataFrame, refusal_labels_wildguard: pd.DataFrame) -> MaterializeResult:
    results = {a.labeler: a for a in analyses_by_labeler(config, benchmark_prompts, traces, refusal_labels_heuristic,
                                                           refusal_labels_wildguard)}
    policy = config.headline_policy()
    values = {}
    for labeler, result in results.items():
        summary = result.summary().set_index("policy").loc[policy]
        verdict = result.hypothesis_tests().set_index("policy").loc[policy, "verdict"]
        values[labeler] = {**{m: summary[m] for m in HEADLINE}, "hypothesis_verdict": verdict}
    available = wildguard_available(refusal_labels_wildguard)
    table = pd.DataFrame({
        "metric": HEADLINE,
        "heuristic": [float(values["heuristic"][m]) for m in HEADLINE],
        "wildguard": [float(values["wildguard"][m]) if available else float("nan") for m in HEADLINE],
        "wildguard_status": "compared" if available else WILDGUARD_UNAVAILABLE,
    })
    table["difference_wildguard_minus_heuristic"] = table["wildguard"] - table["heuristic"]
    meta = {"policy": policy, "status": "compared" if available else WILDGUARD_UNAVAILABLE,
            "hypothesis_verdict_heuristic": str(values["heuristic"]["hypothesis_verdict"]),
            "hypothesis_verdict_wildguard": str(values["wildguard"]["hypothesis_verdict"]) if available
            else WILDGUARD_UNAVAILABLE}
    if available:
        merged = refusal_labels_heuristic.merge(refusal_labels_wildguard, on=["instance_id", "trace_idx"],
                                                suffixes=("_heuristic", "_wildguard"))
        agreement = labelers.refusal_agreement(merged["refused_wildguard"], merged["refused_heuristic"])
        meta.update({"trace_agreement": metadata.number(agreement["agreement"]),
                     "trace_kappa": metadata.number(agreement["kappa"])})
    meta["comparison"] = metadata.table(table)
    return MaterializeResult(value=table, metadata=meta)
