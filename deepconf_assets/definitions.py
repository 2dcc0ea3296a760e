"""The code location: one Definitions object for the whole DeepConf Safety Platform.

Assets are loaded from the modules of `deepconf_assets.assets` (a new asset module needs no change
here) and checks from `deepconf_assets.checks`; refusal labelers come from the labeler registry
(`deepconf_assets.labelers`).
"""

from __future__ import annotations

import sys

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_package_module

from deepconf_assets import assets, checks, deployment, partitions, signals
from deepconf_assets.assets.raw_benchmarks import observe_raw_benchmarks, raw_benchmark_files_sensor
from deepconf_assets.automation import SENSORS
from deepconf_assets.schedules import JOBS, SCHEDULES
from resources.analysis_settings import AnalysisSettingsResource
from resources.generation import GenerationResource
from resources.io_managers import (
    HtmlIOManagerFactory, ParquetIOManagerFactory, PngFolderIOManagerFactory, PngIOManagerFactory,
)

signals.stop_on_hangup()
partitions.refuse_unknown_cli_partition(sys.argv)  # `dagster asset materialize --partition nope`
ASSETS = load_assets_from_package_module(assets)
ASSET_CHECKS = load_asset_checks_from_modules([checks])
RESOURCES = {
    "generator": GenerationResource(),
    "analysis_settings": AnalysisSettingsResource(),
    "parquet_io_manager": ParquetIOManagerFactory(),
    "png_io_manager": PngIOManagerFactory(),
    "png_folder_io_manager": PngFolderIOManagerFactory(),
    "html_io_manager": HtmlIOManagerFactory(),
}

defs = Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    resources=RESOURCES,
    jobs=[*JOBS, observe_raw_benchmarks],
    schedules=SCHEDULES,
    # model_comparison follows new model partitions (deepconf_assets.automation); edited raw files are observed
    sensors=[*SENSORS, raw_benchmark_files_sensor],
    # Steps of one run share the process, so a model is loaded once per run (the multiprocess
    # executor would re-import torch and reload the model in every step). Parallelism comes from
    # partitions, one run each.
    executor=deployment.executor(),
)
