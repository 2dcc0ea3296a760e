
from dataclasses import asdict

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from deepconf_assets import metadata
from deepconf_assets.core import confidence
from deepconf_assets.core.traces import (
    confidence_columns, generation_key, order_columns, strip_thinking, trace_seed,
)
from deepconf_assets.partitions import benchmark_and_model, experiment_partitions
from resources.generation import GenerationResource, SamplingSettings
from resources.model_registry import MODELS


class TracesConfig(Config):
    traces_per_prompt: int = Field(10, ge=1, description="Sampled answers per prompt (the budget).")
    temperature: float = Field(0.6, ge=0, description="0 = greedy.")
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0, description="0 = no top-k filter.")
    max_new_tokens: int = Field(256, ge=1)
    logprobs_k: int = Field(confidence.DEFAULT_TOPK, ge=1, description="k of DeepConf token confidence.")
    group_window: int = Field(confidence.DEFAULT_GROUP_WINDOW, ge=1,
                              description=f"Group confidence window in tokens (paper: {confidence.PAPER_GROUP_WINDOW}).")
    enable_thinking: bool = Field(False, description="Qwen3 thinking mode (off, as in the predecessor).")
    seed: int = Field(0, description="Base seed; each trace's seed derives from it, the instance and trace index.")
    max_prompts: int | None = Field(None, ge=1, description="Only the first N prompts (smoke tests).")

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, logprobs_k=self.logprobs_k,
            enable_thinking=self.enable_thinking,
        )


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    pool="gpu",
    description=(
        "N sampled answers per prompt from the partition's model, with DeepConf token confidence "
        "C = -mean of the top-k log-probs at each generated token (larger = more confident) and the "
        "trace metrics conf_mean, conf_lowest_group, conf_bottom10, conf_tail. n_tokens counts every "
        "generated token including the final EOS."
    ),
)
def traces(
    context: AssetExecutionContext,
    config: TracesConfig,
    benchmark_prompts: pd.DataFrame,
    generator: GenerationResource,
) -> MaterializeResult:
    _, model = benchmark_and_model(context.partition_key)
    prompts = benchmark_prompts if config.max_prompts is None else benchmark_prompts.head(config.max_prompts)
    empty = prompts["prompt"].str.strip() == ""
    if empty.any():
        context.log.warning(f"{int(empty.sum())} empty prompts quarantined: not sent to the model")
        prompts = prompts[~empty]
    sampling = config.sampling()
    n = config.traces_per_prompt
    requests = pd.DataFrame(
        {
            "instance_id": prompts["instance_id"].repeat(n).to_numpy(),
            "prompt": prompts["prompt"].repeat(n).to_numpy(),
            "trace_idx": list(range(n)) * len(prompts),
        }
    )
    requests["seed"] = [trace_seed(config.seed, i, t) for i, t in zip(requests["instance_id"], requests["trace_idx"])]
    context.log.info(f"{len(prompts)} prompts x {n} traces on '{model}'")
    results, stats = generator.generate(
        model, requests["prompt"].tolist(), requests["seed"].tolist(), sampling, log=context.log.info
    )

    revision = MODELS[model].revision
    sampling_dict = asdict(sampling)
    keys = {p: generation_key(model, revision, sampling_dict, p) for p in prompts["prompt"].unique()}
    table = requests[["instance_id", "trace_idx", "seed"]].copy()
    table["model"] = model
    table["text"] = [r.text for r in results]
    table["answer_text"] = [strip_thinking(r.text) for r in results]
    table["n_tokens"] = [len(r.token_ids) for r in results]
    table["finish_reason"] = [r.finish_reason for r in results]
    for name, values in confidence_columns(
        [r.topk_logprobs for r in results], [r.token_logprob for r in results], config.group_window
    ).items():
        table[name] = list(values) if name in ("token_confidence", "token_logprob") else values
    table["generation_key"] = requests["prompt"].map(keys)
    table = order_columns(table)

    summary = table[["n_tokens", *confidence.TRACE_METRICS, "mean_logprob"]].describe().T.reset_index()
    return MaterializeResult(
        value=table,
        metadata={
            "dagster/row_count": len(table),
            "instances": int(table["instance_id"].nunique()),
            "empty_prompts_quarantined": int(empty.sum()),
            "generated_tokens": int(table["n_tokens"].sum()),
            "tokens_per_second": metadata.number(stats.generated_tokens / max(stats.seconds, 1e-9)),
            "generation_seconds": metadata.number(stats.seconds),
            "finish_reasons": metadata.table(table["finish_reason"].value_counts().rename_axis("finish_reason").reset_index()),
            "nonfinite_logprobs_clipped": int(table["nonfinite_logprobs"].sum()),
            "mean_conf_mean": metadata.number(float(table["conf_mean"].mean())),
            "summary": metadata.table(summary),
            "preview": metadata.table(table[["instance_id", "trace_idx", "n_tokens", "conf_mean", "answer_text"]].head(10)),
        },
    )
