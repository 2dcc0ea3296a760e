"""Can the refusal labels be trusted? Every registered labeler against human refusal labels."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets import metadata, paths
from deepconf_assets.assets.refusal_labels import label_traces
from deepconf_assets.core.agreement import refusal_agreement
from deepconf_assets.core.benchmarks import gold_responses
from deepconf_assets.deployment import gpu_step, gpus_needed
from deepconf_assets.labelers import LABELERS
from deepconf_assets.partitions import benchmark_and_model

DESCRIPTION = (
    "Every registered refusal labeler against human refusal labels where the benchmark has them (XSTest's "
    "labelled completions; WildGuardMix gold responses): precision, recall, F1, Cohen's kappa and the confusion "
    "counts, positive = refusal. The gold responses are the same for every model partition; model-based "
    "labelers keep a cache keyed by the response, so they score them once."
)
GPU_LABELERS = [labeler.model_key for labeler in LABELERS.values() if labeler.needs_gpu]


@asset(
    **ANALYSIS,
    required_resource_keys={"generator"},
    **(gpu_step(max(GPU_LABELERS, key=gpus_needed)) if GPU_LABELERS else {}),
    description=DESCRIPTION,
)
def labeler_validation(context: AssetExecutionContext, benchmark_prompts: pd.DataFrame) -> MaterializeResult:
    benchmark, _ = benchmark_and_model(context.partition_key)
    gold, source = gold_responses(benchmark, benchmark_prompts, paths.data_dir())
    if gold.empty:
        return MaterializeResult(value=pd.DataFrame({"labeler": pd.Series(dtype=str), "status": pd.Series(dtype=str)}),
                                 metadata={"status": f"{benchmark} has no gold refusal labels"})
    responses = pd.DataFrame({"instance_id": range(len(gold)), "trace_idx": 0,
                              "answer_text": gold["response"].fillna("").to_numpy()})
    prompts = pd.DataFrame({"instance_id": range(len(gold)), "prompt": gold["prompt"].fillna("").to_numpy()})
    rows = []
    for labeler in LABELERS.values():
        labels, reason, _ = label_traces(labeler, context, prompts, responses)
        rows.append({"labeler": labeler.name, "status": reason or "ok",
                     **({} if reason else refusal_agreement(gold["gold_refusal"], labels["refused"]))})
    table = pd.DataFrame(rows)
    return MaterializeResult(
        value=table,
        metadata={"gold": source, "responses": len(gold),
                  **{f"{r.labeler}_f1": metadata.number(r.f1) for r in table.itertuples() if r.status == "ok"},
                  "validation": metadata.table(table.assign(status=table["status"].str[:60]))},
    )
