"""Asset checks, per `benchmark|model` partition. They read the stored asset, so they also catch a
file changed or corrupted after materialization."""


import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, asset_check

from deepconf_assets.assets.benchmark_prompts import benchmark_prompts
from deepconf_assets.assets.predictions import predictions
from deepconf_assets.assets.traces import traces
from deepconf_assets.core import metrics
from deepconf_assets.core.confidence import TRACE_METRICS, confidence_sign_check, sign_and_finiteness
from deepconf_assets.metadata import number, table
from deepconf_assets.partitions import experiment_partitions


def confidence_violations(traces: pd.DataFrame) -> dict:
    """passed + metadata for traces_confidence_valid (a function so tests can feed it bad tables)."""
    counts = sign_and_finiteness(
        traces[list(TRACE_METRICS)].to_numpy(dtype=float),
        np.concatenate([np.asarray(v, dtype=float) for v in traces["token_confidence"]]) if len(traces) else np.zeros(0),
    )
    return {"passed": not any(counts.values()),
            "metadata": {**counts, "logprobs_clipped_upstream": int(traces["nonfinite_logprobs"].sum())}}


@asset_check(asset=benchmark_prompts, partitions_def=experiment_partitions, blocking=True,
             description="instance_id is unique: every downstream join relies on it.")
def prompts_unique_ids(benchmark_prompts: pd.DataFrame) -> AssetCheckResult:
    duplicates = int(benchmark_prompts["instance_id"].duplicated().sum())
    return AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_ids": duplicates})


@asset_check(asset=benchmark_prompts, partitions_def=experiment_partitions,
             description="Counts empty prompts: they stay in the table but are never sent to a model.")
def prompts_not_empty(benchmark_prompts: pd.DataFrame) -> AssetCheckResult:
    empty = int((benchmark_prompts["prompt"].str.strip() == "").sum())
    return AssetCheckResult(passed=empty == 0, severity=AssetCheckSeverity.WARN,
                            metadata={"empty_prompts_quarantined": empty})


@asset_check(asset=traces, partitions_def=experiment_partitions, blocking=True,
             description="Confidences are finite and non-negative: C = -mean top-k log-prob is >= 0, so a "
                         "negative value means the sign was flipped somewhere (larger must mean more confident).")
def traces_confidence_valid(traces: pd.DataFrame) -> AssetCheckResult:
    return AssetCheckResult(**confidence_violations(traces))


def confidence_sign(traces: pd.DataFrame) -> dict:
    """passed + description + metadata for traces_confidence_sign (a function so tests can feed it bad
    tables). Every confidence a policy, a vote weight or a category reads (all of TRACE_METRICS) is
    checked against mean_logprob; the check fails if any column fails, and the description names it."""
    results = {column: confidence_sign_check(traces[column], traces["mean_logprob"], traces["n_tokens"])
               for column in TRACE_METRICS}
    failing = [column for column, result in results.items() if not result["passed"]]
    rows = pd.DataFrame([{"column": column, "spearman_rho": result["spearman"],
                          "p_negative": result.get("p_negative", float("nan")), "n": result["n"],
                          "passed": result["passed"]} for column, result in results.items()])
    first = results[TRACE_METRICS[0]]
    if failing:
        description = "Flipped confidence sign in " + ", ".join(failing) + ": " + "; ".join(
            f"{column} {results[column]['verdict']}" for column in failing)
    elif not first["assessable"]:
        description = f"Passed, {first['verdict']}"
    else:
        description = f"Every confidence column ({', '.join(TRACE_METRICS)}) passes the sign check"
    return {"passed": not failing, "description": description,
            "metadata": {"columns": table(rows),
                         **{f"spearman_{column}_vs_mean_logprob": number(result["spearman"])
                            for column, result in results.items()},
                         "failing_columns": ", ".join(failing) or "none",
                         "traces": first["n"], "assessable": first["assessable"],
                         "verdict": "; ".join(f"{column}: {result['verdict']}" for column, result in results.items())}}


@asset_check(asset=traces, partitions_def=experiment_partitions, blocking=True,
             description="Trace confidence rises with the sampled tokens' likelihood: over a partition of >= 30 "
                         "traces, the Spearman correlation with mean_logprob of every confidence a policy, vote "
                         "weight or category reads (conf_mean, conf_lowest_group, conf_bottom10, conf_tail) must "
                         "not be significantly negative (one-sided p < 0.01); any failing column fails the check "
                         "and is named. The sampled-token NLL (the predecessor's quantity, >= 0 so it passes the "
                         "sign check above) correlates negatively and fails. Traces of fewer than 8 tokens are too "
                         "short to judge and left out; fewer than 30 longer traces: passes, marked not assessable.")
def traces_confidence_sign(traces: pd.DataFrame) -> AssetCheckResult:
    return AssetCheckResult(**confidence_sign(traces))


@asset_check(asset=traces, partitions_def=experiment_partitions,
             additional_ins={"benchmark_prompts": AssetIn("benchmark_prompts")},
             description="Every prompt has at least one trace (a run limited by max_prompts warns) "
                         "and every trace has at least one token.")
def traces_every_instance_has_a_trace(traces: pd.DataFrame, benchmark_prompts: pd.DataFrame) -> AssetCheckResult:
    per_instance = traces.groupby("instance_id").size()
    without = int((~benchmark_prompts["instance_id"].isin(per_instance.index)).sum())
    nonpositive = int((traces["n_tokens"] < 1).sum())
    return AssetCheckResult(
        passed=without == 0 and nonpositive == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"instances_with_traces": int(len(per_instance)), "prompts_without_traces": without,
                  "min_traces": int(per_instance.min()) if len(per_instance) else 0,
                  "traces_without_tokens": nonpositive},
    )


@asset_check(asset=predictions, partitions_def=experiment_partitions,
             description="Per policy, the four confidence categories add up to the instances with a prediction.")
def categories_add_up(predictions: pd.DataFrame) -> AssetCheckResult:
    failures = []
    for (labeler, policy), group in predictions.groupby(["labeler", "policy"]):
        counted = int(group["category"].isin(metrics.CATEGORIES).sum())
        predicted = int(group["predicted_refusal"].notna().sum())
        if counted != predicted:
            failures.append(f"{labeler}/{policy}: {counted} categorised vs {predicted} predicted")
    missing = [c for c in metrics.CATEGORIES if c not in set(predictions["category"].dropna())]
    return AssetCheckResult(
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        metadata={"mismatches": "; ".join(failures) or "none",
                  "empty_categories": ", ".join(missing) or "none"},
    )
