"""The code location: one Definitions object for the whole DeepConf Safety Platform."""

from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules

from deepconf_assets import checks, deployment
from deepconf_assets.schedules import JOBS, SCHEDULES
from deepconf_assets.assets import (
    analyses, benchmark_prompts, figures, instance_predictions, labeler_validation as labelers, model_comparison, raw_benchmarks,
    refusal_labels, report, traces,
)
from resources.generation import GenerationResource
from resources.wildguard import WildGuardResource
from resources.io_managers import HtmlIOManagerFactory, ParquetIOManagerFactory, PngIOManagerFactory

ASSETS = [
    *raw_benchmarks.raw_benchmark_files,
    benchmark_prompts.benchmark_prompts,
    traces.traces,
    refusal_labels.refusal_labels_heuristic,
    refusal_labels.refusal_labels_wildguard,
    labelers.labeler_validation,
    labelers.labeler_comparison,
    instance_predictions.instance_predictions,
    analyses.percentile_sweep,
    analyses.budget_ablation,
    analyses.hypothesis_test,
    analyses.calibration,
    *[getattr(figures, name) for name, _ in report.FIGURES],
    report.report,
    model_comparison.model_comparison,
    model_comparison.model_comparison_figure,
]
ASSET_CHECKS = load_asset_checks_from_modules([checks])
RESOURCES = {
    "generator": GenerationResource(),
    "wildguard": WildGuardResource(),
    "parquet_io_manager": ParquetIOManagerFactory(),
    "png_io_manager": PngIOManagerFactory(),
    "html_io_manager": HtmlIOManagerFactory(),
}

defs = Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    resources=RESOURCES,
    jobs=JOBS,
    schedules=SCHEDULES,
    # Steps of one run share the process, so a model is loaded once per run (the multiprocess
    # executor would re-import torch and reload the model in every step). Parallelism comes from
    # partitions, one run each.
    executor=deployment.executor(),
)
