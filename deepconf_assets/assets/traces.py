"""`traces`: N sampled answers per prompt from the partition's model, with DeepConf token confidence.
Its settings and their checks are in deepconf_assets.run_settings; the rows, seeds and generation keys
in core/trace_rows.py; the prompts never sent in core/quarantine.py."""

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Failure, MaterializeResult,
    MetadataValue, asset,
)

from deepconf_assets import metadata, paths
from deepconf_assets.asset_defaults import EXPERIMENT
from deepconf_assets.contracts import TracesFrame
from deepconf_assets.core import confidence
from deepconf_assets.core.benchmarks import BENCHMARK_SPECS
from deepconf_assets.core.live import generate_live
from deepconf_assets.core.prompt_subset import stratified_subset
from deepconf_assets.core.quarantine import conflicting_labels, nothing_sendable, quarantine
from deepconf_assets.core.trace_rows import identify, order_columns, trace_requests, trace_rows
from deepconf_assets.deployment import gpu_step
from deepconf_assets.labelers import LABELERS, LabelerContext
from deepconf_assets.partitions import benchmark_and_model, experiment_partitions
from deepconf_assets.retries import retry_if_transient
from deepconf_assets.run_settings import GenerationMode, TracesConfig, check_model_settings
from resources.analysis_settings import AnalysisSettingsResource
from resources.generation import GenerationOutOfMemory, GenerationResource, peak_rss_mb
from resources.generation_types import GenerationStats, SamplingSettings
from resources.model_registry import MODELS, ModelWeightsNotFound, weights_provenance
from resources.shard_store import ShardStore

LIVE_LABELER = "heuristic"  # live votes need labels during generation: the cheap, CPU-only labeler


@asset(
    **EXPERIMENT,
    io_manager_key="parquet_io_manager",
    kinds={"pytorch", "vllm", "parquet"},
    dagster_type=TracesFrame,
    **gpu_step(),
    # no retry policy: only transient errors are retried (`retry_if_transient` around generation); an
    # interrupt, bad settings or damaged weights fail the run at once
    check_specs=[AssetCheckSpec("prompts_quarantined", asset="traces", partitions_def=experiment_partitions,
                                description="Empty prompts and prompts that do not fit the context are never "
                                            "sent to the model; this counts them (warning when any).")],
    description=(
        "N sampled answers per prompt from the partition's model, with DeepConf token confidence "
        "C = -mean of the top-k log-probs at each generated token (larger = more confident) and the "
        "trace metrics conf_mean, conf_lowest_group, conf_bottom10, conf_tail. n_tokens counts every "
        "generated token including the final EOS. Resumable: finished traces are kept as shards under "
        "storage/shards and never generated twice."
    ),
)
def traces(
    context: AssetExecutionContext,
    config: TracesConfig,
    benchmark_prompts: pd.DataFrame,
    generator: GenerationResource,
    analysis_settings: AnalysisSettingsResource,
):  # no return annotation: with check_specs Dagster would read MaterializeResult as "no value"
    benchmark, model = benchmark_and_model(context.partition_key)
    prompts = stratified_subset(benchmark_prompts, config.max_prompts, config.prompt_subset_seed)
    sampling = config.sampling()
    loaded = load_model(context, generator, model, prompts, sampling)
    reasons = quarantine(prompts, loaded.token_counts, loaded.context_limit, sampling.max_new_tokens,
                         conflicting=conflicting_labels(benchmark_prompts))
    quarantined = prompts.assign(reason=reasons)[reasons != ""]
    if len(quarantined):
        context.log.warning(f"{len(quarantined)} prompts quarantined (not sent to the model): "
                            f"{quarantined['reason'].value_counts().to_dict()}")
    prompts = prompts[reasons == ""]
    if prompts.empty:
        raise Failure(description=nothing_sendable(benchmark_source(benchmark), reasons), allow_retries=False)

    engine = generator.resolved_backend()
    sampling_dict = asdict(sampling)
    identity = dict(model=model, revision=loaded.weights["fingerprint"], engine=engine,
                    numerics=loaded.engine_of_model.numerics, sampling=sampling_dict)
    requests = trace_requests(prompts, config.traces_per_prompt, config.seed, identity)
    stats = GenerationStats(backend=engine)
    scope = f"{config.traces_per_prompt} traces on '{model}' ({engine})"  # in the log line of either mode
    with ShardStore(paths.storage_dir() / "shards" / benchmark / model).exclusive(context.log.info) as store:
        generate = trace_generator(context, generator, model, sampling, config.group_window, requests, stats, store)
        if config.generation_mode == GenerationMode.live:
            table = live_traces(context, analysis_settings, prompts, config, generate, scope)
        else:
            table = full_traces(context, prompts, requests, generate, scope)
    table["generation_mode"] = config.generation_mode.value
    table = order_columns(table)
    return MaterializeResult(
        value=table,
        metadata=traces_metadata(table, config, sampling_dict, model, engine, loaded, stats, len(benchmark_prompts),
                                 len(quarantined)),
        check_results=[quarantine_check(quarantined)],
    )


@dataclass(frozen=True)
class LoadedModel:
    """The partition's model, loaded and checked against the run's settings."""

    engine_of_model: object  # the loaded engine (folder, vocab_size, numerics)
    weights: dict  # weights_provenance: the fingerprint and where the weights came from
    template: dict  # what the chat template does, recorded as metadata
    token_counts: list[int]  # per prompt, chat template applied
    context_limit: int  # min(generator.max_model_len, the model's positions): the limit actually used


def load_model(context, generator: GenerationResource, model: str, prompts: pd.DataFrame,
               sampling: SamplingSettings) -> LoadedModel:
    """Loads `model` and checks the settings against it; what cannot work fails at once, never retried."""
    if problem := generator.unavailable():
        raise Failure(description=problem + ". Nothing was generated.", allow_retries=False)
    try:
        engine_of_model = generator.engine(model, context.log.info)  # builds or de-quantises on first use
        weights = weights_provenance(model, engine_of_model.folder)
        template = generator.chat_template(model)
        counts = generator.prompt_token_counts(model, prompts["prompt"].tolist(), sampling)
        limit = generator.context_limit(model)
        check_model_settings(sampling, model, engine_of_model.vocab_size, limit, template)
    except ModelWeightsNotFound as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"'{model}' weights: {weights}; chat template {template}")
    if generator.max_model_len is not None and limit < generator.max_model_len:
        context.log.info(f"generator.max_model_len {generator.max_model_len} is more than '{model}' has positions; "
                         f"the context limit used is {limit} (recorded as context_limit)")
    return LoadedModel(engine_of_model, weights, template, counts, limit)


def benchmark_source(benchmark: str) -> str:
    """The benchmark's local file, for a message (its name when it has none)."""
    spec = BENCHMARK_SPECS.get(benchmark)
    return (f"{paths.data_dir() / benchmark / spec.local_file}" if spec is not None and spec.local_file
            else f"benchmark '{benchmark}'")


def trace_generator(context, generator: GenerationResource, model: str, sampling: SamplingSettings,
                    group_window: int, requests: pd.DataFrame, stats: GenerationStats, store: ShardStore):
    """`generate(batch, on_done=None)`: the trace rows of `batch` (instance_id, trace_idx, optional
    cut_threshold) out of `requests`, kept in `store` and counted in `stats`."""

    def generate(batch: pd.DataFrame, on_done=None) -> pd.DataFrame:
        """Trace rows for `batch`, in its order. Streaming (live): `on_done(rows)` hears of traces as they
        finish and returns the requests to add to the same run; the rows of every request are returned."""
        batch = identify(batch, requests, group_window)
        more = None
        if on_done is not None:
            def more(indices: list[int], results: list) -> list[tuple]:
                nonlocal batch
                rows = trace_rows(batch.iloc[indices], results, model, group_window)
                added = identify(on_done(rows.assign(cut_threshold=batch["cut_threshold"].iloc[indices].to_numpy())),
                                 requests, group_window)
                if len(added):
                    batch = pd.concat([batch, added], ignore_index=True)
                return list(zip(added["prompt"], added["seed"], added["generation_key"], added["cut_threshold"]))
        thresholds = batch["cut_threshold"].astype(float).tolist() if "cut_threshold" in batch else None
        try:
            with retry_if_transient(context.log.warning, "generation"):
                results, part = generator.generate(
                    model, batch["prompt"].tolist(), batch["seed"].tolist(), batch["generation_key"].tolist(),
                    sampling, store=store, log=context.log.info, cut_thresholds=thresholds,
                    group_window=group_window, more=more)
        except GenerationOutOfMemory as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        stats.add(part)
        return trace_rows(batch, results, model, group_window)

    return generate


def live_traces(context, analysis_settings: AnalysisSettingsResource, prompts: pd.DataFrame, config: TracesConfig,
                generate, scope: str) -> pd.DataFrame:
    """Only the traces the headline policy uses, stopped and cut as they are generated; votes are labelled
    by `LIVE_LABELER` as traces finish."""
    try:
        settings = analysis_settings.resolve(config.group_window)
        policy = settings.live_policy
    except ValueError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"{len(prompts)} prompts, live {policy.display} within {scope}")
    labeler = LABELERS[LIVE_LABELER]
    prompt_of = dict(zip(prompts["instance_id"], prompts["prompt"]))

    def label(rows: pd.DataFrame) -> pd.Series:
        labels = labeler.run(rows["instance_id"].map(prompt_of).tolist(), rows["answer_text"].tolist(),
                             LabelerContext(generator=None, log=context.log.info))
        return labels["refused"]

    table = generate_live(prompts["instance_id"].tolist(), config.traces_per_prompt, policy, settings, generate,
                          label, context.log.info)
    table = table.drop(columns="refused")
    table["live_policy"] = policy.display
    table["live_tau"] = np.nan if policy.tau is None else policy.tau
    table["warmup_traces"] = analysis_settings.warmup_traces
    table["live_budget"] = config.traces_per_prompt  # the replay must know it: `decided` settles against it
    return table


def full_traces(context, prompts: pd.DataFrame, requests: pd.DataFrame, generate, scope: str) -> pd.DataFrame:
    """Every trace of every prompt, in full (the sweep and the budget ablation need them)."""
    context.log.info(f"{len(prompts)} prompts x {scope}")
    table = generate(requests[["instance_id", "trace_idx"]])
    table["cut_threshold"] = np.nan
    table["live_policy"] = None
    table["live_tau"] = np.nan
    table["warmup_traces"] = 0
    table["live_budget"] = 0
    return table


def traces_metadata(table: pd.DataFrame, config: TracesConfig, sampling_dict: dict, model: str, engine: str,
                    loaded: LoadedModel, stats: GenerationStats, prompts_total: int, quarantined: int) -> dict:
    """What was generated, with which settings and weights, at what cost."""
    summary = table[["n_tokens", *confidence.TRACE_METRICS, "mean_logprob"]].describe().T.reset_index()
    return {
        "dagster/row_count": len(table),
        "instances": int(table["instance_id"].nunique()),
        "backend": engine,
        "traces_generated": stats.generated,
        "traces_reused_from_shards": stats.reused,
        "generation_mode": config.generation_mode.value,
        "generation_settings": MetadataValue.json({**sampling_dict, "traces_per_prompt": config.traces_per_prompt,
                                                   "seed": config.seed, "group_window": config.group_window,
                                                   "model": model, "revision": MODELS[model].revision,
                                                   "engine": engine, "numerics": loaded.engine_of_model.numerics,
                                                   "max_prompts": config.max_prompts,
                                                   "prompt_subset_seed": config.prompt_subset_seed}),
        "weights": MetadataValue.json(loaded.weights),
        **{name: value for name, value in loaded.template.items()},
        "peak_rss_mb": int(round(stats.peak_rss_mb or peak_rss_mb())),
        "prompts_total": prompts_total,
        "live_policy": str(table["live_policy"].iloc[0]) if config.generation_mode == GenerationMode.live and len(table) else "",
        "traces_cut": int((table["finish_reason"] == "cut").sum()),
        "n_tokens_median": metadata.number(float(table["n_tokens"].median()) if len(table) else None),
        "share_traces_longer_than_window": metadata.number(
            float((table["n_tokens"] > config.group_window).mean()) if len(table) else None),
        "generation_calls": stats.generation_calls,
        "shards_written": stats.shards_written,
        "generated_tokens": stats.generated_tokens,
        "tokens_per_second": metadata.number(stats.tokens_per_second),
        "generation_seconds": metadata.number(stats.seconds),
        "prompts_quarantined": quarantined,
        "context_limit": loaded.context_limit,  # min(generator.max_model_len, the model's positions): the limit actually used
        "finish_reasons": metadata.table(table["finish_reason"].value_counts().rename_axis("finish_reason").reset_index()),
        "nonfinite_logprobs_clipped": int(table["nonfinite_logprobs"].sum()),
        "mean_conf_mean": metadata.number(float(table["conf_mean"].mean())) if len(table) else metadata.number(None),
        "summary": metadata.table(summary),
        "preview": metadata.table(table[["instance_id", "trace_idx", "n_tokens", "conf_mean", "answer_text"]].head(10)),
    }


def quarantine_check(quarantined: pd.DataFrame) -> AssetCheckResult:
    """`prompts_quarantined`: a warning when any prompt was kept away from the model."""
    return AssetCheckResult(
        check_name="prompts_quarantined", passed=len(quarantined) == 0, severity=AssetCheckSeverity.WARN,
        metadata={"quarantined": len(quarantined),
                  "by_reason": metadata.table(quarantined["reason"].value_counts().rename_axis("reason").reset_index()),
                  "instances": metadata.table(quarantined[["instance_id", "reason"]].head(20))},
    )
