"""The settings of a `traces` run (`TracesConfig`) and the checks that refuse a bad one before any work:
`check_run_settings` at the run's first step, `check_model_settings` once the model is loaded."""

from enum import Enum

from dagster import AssetKey, Config, Failure
from pydantic import Field, ValidationError, field_validator, model_validator

from deepconf_assets.assets.analysis_inputs import resolved_settings
from deepconf_assets.core import confidence
from deepconf_assets.deployment import executor_kind
from deepconf_assets.partitions import benchmark_and_model, partition_tags_disagree, unknown_partition
from resources.analysis_settings import AnalysisSettingsResource
from resources.generation import GenerationResource
from resources.generation_types import SamplingSettings
from resources.model_registry import known_positions, weights_problem


class GenerationMode(str, Enum):
    full = "full"
    live = "live"


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
    problem = unknown_partition(context.run.tags.get("dagster/partition", "")) or partition_tags_disagree(context.run.tags)
    if problem:
        raise Failure(description=problem + ". Nothing was run.", allow_retries=False)
    config = ((context.run.run_config or {}).get("ops", {}).get("traces") or {}).get("config")
    # the model's weights and the traces' window matter only to a run that generates (empty: the whole
    # job, or a Python `materialize`, whose selection is not recorded on the run)
    selected = context.run.asset_selection
    generates = not selected or AssetKey("traces") in selected
    problems = []
    window = TracesConfig().group_window if generates else None  # the window the run's traces will be scored with
    if config is not None:
        try:
            traces_config = TracesConfig(**config)
        except ValidationError as exc:
            problems += [f"invalid traces config: {'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg']}"
                         + (f" (got {e['input']!r})" if e["loc"] else "") for e in exc.errors()]
            window = None
        else:
            window = traces_config.group_window if generates else None
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
        analysis_settings.resolve(window)  # analysis_settings.group_window against the traces this run writes
    except ValueError as exc:
        problems.append(f"invalid analysis settings: {exc}")
    # On Kubernetes this step runs on a CPU node and `traces` on a GPU node, which asks for itself.
    if executor_kind() == "in_process":
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
