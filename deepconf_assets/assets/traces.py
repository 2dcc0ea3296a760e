from dataclasses import asdict
from enum import Enum

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetKey, Config, Failure,
    MaterializeResult, MetadataValue, asset,
)
from pydantic import Field, ValidationError, field_validator, model_validator

from deepconf_assets import metadata, paths
from deepconf_assets.contracts import TracesFrame
from deepconf_assets.core import confidence
from deepconf_assets.core.benchmarks import BENCHMARK_SPECS
from deepconf_assets.assets.analysis_inputs import OWNERS, resolved_settings
from deepconf_assets.core.live import generate_live
from deepconf_assets.core.prompt_subset import stratified_subset
from deepconf_assets.labelers import LABELERS, LabelerContext
from resources.analysis_settings import AnalysisSettingsResource
from deepconf_assets.core.traces import generation_key, order_columns, trace_rows, trace_seed
from deepconf_assets.deployment import executor_kind, gpu_step, retry_if_transient
from deepconf_assets.partitions import benchmark_and_model, experiment_partitions, unknown_partition
from resources.generation import GenerationOutOfMemory, GenerationResource, peak_rss_mb
from resources.generation_types import GenerationStats, SamplingSettings
from resources.model_registry import MODELS, ModelWeightsNotFound, known_positions, weights_problem, weights_provenance
from resources.shard_store import ShardStore


class GenerationMode(str, Enum):
    full = "full"
    live = "live"


LIVE_LABELER = "heuristic"  # live votes need labels during generation: the cheap, CPU-only labeler


MIN_TEMPERATURE = 1e-5  # vLLM samples greedily below this (its _SAMPLING_EPS): refused, not silently changed
MAX_LOGPROBS_K = 20  # vLLM returns at most 20 log-probs per token (its default max_logprobs)


class TracesConfig(Config):
    """Generation settings of one `traces` run. Ranges are checked at the run's first step
    (`check_run_settings`); settings that depend on the model (top_k and logprobs_k against its vocabulary,
    the context limit) are checked by `traces` before anything is generated."""

    traces_per_prompt: int = Field(10, ge=1, le=4096, description="Sampled answers per prompt (the budget).")
    temperature: float = Field(0.6, ge=0, description=f"0 = greedy; otherwise at least {MIN_TEMPERATURE}.")
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0, description="0 = no top-k filter.")
    max_new_tokens: int = Field(256, ge=1)
    logprobs_k: int = Field(confidence.DEFAULT_TOPK, ge=1, le=MAX_LOGPROBS_K, description="k of DeepConf token confidence.")
    group_window: int = Field(confidence.DEFAULT_GROUP_WINDOW, ge=1,
                              description=f"Group confidence window in tokens (paper: {confidence.PAPER_GROUP_WINDOW}).")
    enable_thinking: bool = Field(False, description="Qwen3 thinking mode (off, as in the predecessor).")
    seed: int = Field(0, description="Base seed; each trace's seed derives from it, the instance and trace index.")
    max_prompts: int | None = Field(
        None, ge=1, description="Only N prompts: a seeded subset drawn in proportion from every category x "
                                "harmfulness stratum (not the first N rows: files are ordered by type).")
    prompt_subset_seed: int = Field(0, description="Seed of the max_prompts subset.")
    generation_mode: GenerationMode = Field(
        GenerationMode.full,
        description="full = every trace in full (the sweep and the budget ablation need it); live = generate only "
                    "the traces the headline policy uses (analysis_settings.headline_rule: adaptive, "
                    "deepconf_online or decided, with that resource's warm-up, percentile, consensus tau and "
                    "confidence metric), cutting deepconf_online traces inside the engine. Live votes use the "
                    "heuristic labeler.")

    @field_validator("temperature")
    @classmethod
    def _not_silently_greedy(cls, value: float) -> float:
        if 0 < value < MIN_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy) or at least {MIN_TEMPERATURE}: vLLM samples greedily below it")
        return value

    @model_validator(mode="after")
    def _greedy_has_one_trace(self) -> "TracesConfig":
        if self.temperature == 0 and self.traces_per_prompt > 1:
            raise ValueError(f"temperature 0 (greedy) makes the {self.traces_per_prompt} traces of a prompt identical, "
                             f"so votes, consensus and early stopping would be degenerate: use traces_per_prompt 1 "
                             f"or a temperature above 0")
        return self

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, logprobs_k=self.logprobs_k,
            enable_thinking=self.enable_thinking,
        )


def check_run_settings(context, generator: GenerationResource, analysis_settings: AnalysisSettingsResource) -> None:
    """At the run's first step, before any asset is written: refuse a partition key that does not exist
    (a UI or GraphQL launch is not checked by Dagster), range-check the run's `traces` config (if it has
    one), check the headline labeler against the registry and ask whether this machine can run the
    generator's backend and device. A bad setting fails the run once, in seconds, naming the field; never
    after upstream work, never retried."""
    problem = unknown_partition(context.run.tags.get("dagster/partition", ""))
    if problem:
        raise Failure(description=problem + ". Nothing was run.", allow_retries=False)
    config = ((context.run.run_config or {}).get("ops", {}).get("traces") or {}).get("config")
    problems = []
    if config is not None:
        try:
            traces_config = TracesConfig(**config)
        except ValidationError as exc:
            problems += [f"invalid traces config: {'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg']}"
                         + (f" (got {e['input']!r})" if e["loc"] else "") for e in exc.errors()]
        else:
            model = model_of(context)
            positions = known_positions(model)
            limits = [v for v in (generator.max_model_len, positions) if v is not None]
            if limits and traces_config.max_new_tokens >= min(limits):
                problems.append("invalid traces config: " + no_room(traces_config.max_new_tokens, model, min(limits)))
            if traces_config.generation_mode == GenerationMode.live:
                try:
                    analysis_settings.resolve(None).live_policy
                except ValueError as exc:
                    problems.append(f"invalid traces config: generation_mode live: {exc}")
    try:
        resolved_settings(analysis_settings)
    except ValueError as exc:
        problems.append(f"invalid analysis settings: {exc}")
    # On Kubernetes this step runs on a CPU node and `traces` on a GPU node, which asks for itself.
    if executor_kind() == "in_process":
        # the model's weights matter only to a run that generates (empty: the whole job, or a Python
        # `materialize`, whose selection is not recorded on the run)
        selected = context.run.asset_selection
        generates = not selected or AssetKey("traces") in selected
        problems += [p for p in (generator.unavailable(), weights_problem(model_of(context)) if generates else None) if p]
    if problems:
        raise Failure(description="; ".join(problems) + ". Nothing was run.", allow_retries=False)


def model_of(context) -> str | None:
    """The partition's model (None when the run has no valid experiment partition)."""
    key = context.run.tags.get("dagster/partition", "")
    return None if unknown_partition(key) else benchmark_and_model(key)[1]


def no_room(max_new_tokens: int, model: str, limit: int) -> str:
    return (f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt within the context limit of '{model}' "
            f"({limit} tokens: the smaller of generator.max_model_len and the model's positions); lower max_new_tokens")


def check_model_settings(sampling: SamplingSettings, model: str, vocab_size: int, limit: int,
                         template: dict) -> None:
    """Settings the engine would silently change, or that cannot work with this model, are refused before
    anything is generated."""
    if sampling.max_new_tokens >= limit:
        raise Failure(description=f"invalid traces config: {no_room(sampling.max_new_tokens, model, limit)}. Nothing "
                                  f"was generated.", allow_retries=False)
    if sampling.enable_thinking and not template["chat_template_reads_enable_thinking"]:
        raise Failure(description=f"invalid traces config: enable_thinking is Qwen3's switch, and the chat template "
                                  f"of '{model}' does not read it (the prompts would be the same as without it). Set "
                                  f"enable_thinking false. Nothing was generated.", allow_retries=False)
    for name in ("top_k", "logprobs_k"):
        value = getattr(sampling, name)
        if value > vocab_size:
            raise Failure(description=f"invalid traces config: {name} ({value}) exceeds the vocabulary of '{model}' "
                                      f"({vocab_size} tokens); the engine would silently use {vocab_size}"
                                      + (" (no filter: set 0)" if name == "top_k" else "") + ". Nothing was generated.",
                          allow_retries=False)


CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # tab, newline and carriage return are text


def quarantine(prompts: pd.DataFrame, token_counts: list[int], limit: int, max_new_tokens: int) -> pd.Series:
    """Why a prompt is kept away from the engine ("" = it is sent exactly as the benchmark holds it).
    A NUL or other control character would be cut or changed on the way to the model, so the model
    would answer a different prompt than the benchmark's: quarantined, never cleaned silently."""
    reason = pd.Series("", index=prompts.index, dtype=object)
    too_long = np.asarray(token_counts) + max_new_tokens > limit
    reason[too_long] = f"prompt + max_new_tokens exceeds the context limit of {limit} tokens"
    control = prompts["prompt"].str.contains(CONTROL_CHARACTERS, regex=True)
    reason[control] = "control character in the prompt (NUL or another non-text character)"
    reason[prompts["prompt"].str.strip() == ""] = "empty prompt"
    return reason


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    kinds={"pytorch", "vllm", "parquet"},
    owners=OWNERS,
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
    reasons = quarantine(prompts, counts, limit, sampling.max_new_tokens)
    quarantined = prompts.assign(reason=reasons)[reasons != ""]
    if len(quarantined):
        context.log.warning(f"{len(quarantined)} prompts quarantined (not sent to the model): "
                            f"{quarantined['reason'].value_counts().to_dict()}")
    prompts = prompts[reasons == ""]
    if prompts.empty:
        spec = BENCHMARK_SPECS.get(benchmark)
        source = (f"{paths.data_dir() / benchmark / spec.local_file}" if spec is not None and spec.local_file
                  else f"benchmark '{benchmark}'")
        raise Failure(
            description=f"no prompt of {source} can be sent to the model: {len(reasons)} prompts, all quarantined "
                        f"({reasons.value_counts().to_dict() if len(reasons) else 'the file has no prompt rows'}). "
                        f"Fix the file (or max_prompts) and re-run; nothing was generated.",
            allow_retries=False)

    n = config.traces_per_prompt
    requests = pd.DataFrame({
        "instance_id": prompts["instance_id"].repeat(n).to_numpy(),
        "prompt": prompts["prompt"].repeat(n).to_numpy(),
        "trace_idx": np.tile(np.arange(n), len(prompts)),
    })
    requests["seed"] = [trace_seed(config.seed, i, t) for i, t in zip(requests["instance_id"], requests["trace_idx"])]
    engine = generator.resolved_backend()
    sampling_dict = asdict(sampling)
    key_of = {p: generation_key(model, weights["fingerprint"], engine, engine_of_model.numerics, sampling_dict, p)
              for p in prompts["prompt"].unique()}
    requests["generation_key"] = requests["prompt"].map(key_of)
    stats = GenerationStats(backend=engine)
    store = ShardStore(paths.storage_dir() / "shards" / benchmark / model)

    def identified(batch: pd.DataFrame) -> pd.DataFrame:
        """`batch` (instance_id, trace_idx, optional cut_threshold) with prompt, seed and generation key."""
        batch = batch.merge(requests, on=["instance_id", "trace_idx"], how="left", validate="one_to_one")
        if "cut_threshold" in batch:  # a cut trace depends on its threshold: part of its identity
            batch["generation_key"] = [key if np.isnan(s) else f"{key}|cut<{s!r}|w{config.group_window}"
                                       for key, s in zip(batch["generation_key"], batch["cut_threshold"].astype(float))]
        return batch

    def generate(batch: pd.DataFrame, on_done=None) -> pd.DataFrame:
        """Trace rows for `batch`, in its order. Streaming (live): `on_done(rows)` hears of traces as they
        finish and returns the requests to add to the same run; the rows of every request are returned."""
        batch = identified(batch)
        more = None
        if on_done is not None:
            def more(indices: list[int], results: list) -> list[tuple]:
                nonlocal batch
                rows = trace_rows(batch.iloc[indices], results, model, config.group_window)
                added = identified(on_done(rows.assign(cut_threshold=batch["cut_threshold"].iloc[indices].to_numpy())))
                if len(added):
                    batch = pd.concat([batch, added], ignore_index=True)
                return list(zip(added["prompt"], added["seed"], added["generation_key"], added["cut_threshold"]))
        thresholds = batch["cut_threshold"].astype(float).tolist() if "cut_threshold" in batch else None
        try:
            with retry_if_transient(context.log.warning, "generation"):
                results, part = generator.generate(
                    model, batch["prompt"].tolist(), batch["seed"].tolist(), batch["generation_key"].tolist(),
                    sampling, store=store, log=context.log.info, cut_thresholds=thresholds,
                    group_window=config.group_window, more=more)
        except GenerationOutOfMemory as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        stats.add(part)
        return trace_rows(batch, results, model, config.group_window)

    if config.generation_mode == GenerationMode.live:
        try:
            settings = analysis_settings.resolve(config.group_window)
            policy = settings.live_policy
        except ValueError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        context.log.info(f"{len(prompts)} prompts, live {policy.display} within {n} traces on '{model}' ({engine})")
        labeler = LABELERS[LIVE_LABELER]
        prompt_of = dict(zip(prompts["instance_id"], prompts["prompt"]))

        def label(rows: pd.DataFrame) -> pd.Series:
            labels = labeler.run(rows["instance_id"].map(prompt_of).tolist(), rows["answer_text"].tolist(),
                                 LabelerContext(generator=None, log=context.log.info))
            return labels["refused"]

        table = generate_live(prompts["instance_id"].tolist(), n, policy, settings, generate, label, context.log.info)
        table = table.drop(columns="refused")
        table["live_policy"] = policy.display
        table["live_tau"] = np.nan if policy.tau is None else policy.tau
    else:
        context.log.info(f"{len(prompts)} prompts x {n} traces on '{model}' ({engine})")
        table = generate(requests[["instance_id", "trace_idx"]])
        table["cut_threshold"] = np.nan
        table["live_policy"] = None
        table["live_tau"] = np.nan
    table["generation_mode"] = config.generation_mode.value
    table["warmup_traces"] = analysis_settings.warmup_traces if config.generation_mode == GenerationMode.live else 0
    table = order_columns(table)

    summary = table[["n_tokens", *confidence.TRACE_METRICS, "mean_logprob"]].describe().T.reset_index()
    return MaterializeResult(
        value=table,
        metadata={
            "dagster/row_count": len(table),
            "instances": int(table["instance_id"].nunique()),
            "backend": engine,
            "traces_generated": stats.generated,
            "traces_reused_from_shards": stats.reused,
            "generation_mode": config.generation_mode.value,
            "generation_settings": MetadataValue.json({**sampling_dict, "traces_per_prompt": n, "seed": config.seed,
                                                       "group_window": config.group_window, "model": model,
                                                       "revision": MODELS[model].revision, "engine": engine,
                                                       "numerics": engine_of_model.numerics,
                                                       "max_prompts": config.max_prompts,
                                                       "prompt_subset_seed": config.prompt_subset_seed}),
            "weights": MetadataValue.json(weights),
            **{name: value for name, value in template.items()},
            "peak_rss_mb": int(round(stats.peak_rss_mb or peak_rss_mb())),
            "prompts_total": len(benchmark_prompts),
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
            "prompts_quarantined": len(quarantined),
            "context_limit": limit,  # min(generator.max_model_len, the model's positions): the limit actually used
            "finish_reasons": metadata.table(table["finish_reason"].value_counts().rename_axis("finish_reason").reset_index()),
            "nonfinite_logprobs_clipped": int(table["nonfinite_logprobs"].sum()),
            "mean_conf_mean": metadata.number(float(table["conf_mean"].mean())) if len(table) else metadata.number(None),
            "summary": metadata.table(summary),
            "preview": metadata.table(table[["instance_id", "trace_idx", "n_tokens", "conf_mean", "answer_text"]].head(10)),
        },
        check_results=[AssetCheckResult(
            check_name="prompts_quarantined", passed=len(quarantined) == 0, severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": len(quarantined),
                      "by_reason": metadata.table(quarantined["reason"].value_counts().rename_axis("reason").reset_index()),
                      "instances": metadata.table(quarantined[["instance_id", "reason"]].head(20))},
        )],
    )
