from dagster import AssetExecutionContext, MaterializeResult, asset

from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets.run_settings import check_run_settings
from resources.generation import GenerationResource
from resources.analysis_settings import AnalysisSettingsResource
from deepconf_assets import metadata, paths
from deepconf_assets.contracts import BenchmarkPromptsFrame
from deepconf_assets.core.benchmarks import BENCHMARK_SPECS, load_benchmark
from deepconf_assets.core.quarantine import conflicting_labels
from deepconf_assets.partitions import benchmark_and_model

_FROM_HUB = "/".join(spec.name for spec in BENCHMARK_SPECS.values() if spec.hub is not None)
_GENERATED = "/".join(spec.name for spec in BENCHMARK_SPECS.values() if spec.generate is not None)


@asset(
    **ANALYSIS,
    dagster_type=BenchmarkPromptsFrame,
    description=(
        "One row per benchmark prompt in the shared data contract: instance_id, prompt, the gold "
        "label prompt_harmful (nullable: unlabelled prompts stay unlabelled), category, adversarial "
        f"and any reference response. Read from data/<benchmark>/ (or the Hugging Face hub for {_FROM_HUB}); "
        f"{_GENERATED} is generated. Identical for every model partition. Each benchmark is one "
        "BenchmarkSpec (deepconf_assets/core/benchmarks/sources/<benchmark>.py); its licence is in the metadata."
    ),
)
def benchmark_prompts(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                      generator: GenerationResource) -> MaterializeResult:
    # The first step of every run: the partition key and the settings are checked here, before anything
    # is written. The analysis settings are validated by being required.
    check_run_settings(context, generator, analysis_settings)
    benchmark, _ = benchmark_and_model(context.partition_key)
    prompts, source = load_benchmark(benchmark, paths.data_dir())
    context.log.info(f"{benchmark}: {len(prompts)} prompts from {source}")
    by_category = (
        prompts.groupby("category")["prompt_harmful"]
        .agg(n="size", harmful=lambda s: int(s.sum()), unlabelled=lambda s: int(s.isna().sum()))
        .reset_index()
    )
    conflicting = conflicting_labels(prompts)
    if conflicting:
        context.log.warning(f"{len(conflicting)} prompts share their text with a prompt of the opposite gold label; "
                            f"traces quarantines them (never sent, counted by its prompts_quarantined check)")
    extra = {}
    if "openai_moderation_max" in prompts:
        extra["openai_moderation_missing"] = int(prompts["openai_moderation_max"].isna().sum())
    return MaterializeResult(
        value=prompts,
        metadata={
            **extra,
            "source": source,
            "licence": str(BENCHMARK_SPECS[benchmark].licence),
            "dagster/row_count": len(prompts),
            "harmful": int(prompts["prompt_harmful"].sum()),
            "benign": int((prompts["prompt_harmful"] == False).sum()),  # noqa: E712 (nullable)
            "unlabelled": int(prompts["prompt_harmful"].isna().sum()),
            "conflicting_label_prompts": len(conflicting),
            "by_category": metadata.table(by_category),
            "preview": metadata.table(prompts[["instance_id", "category", "prompt_harmful", "prompt"]].head(10)),
        },
    )
