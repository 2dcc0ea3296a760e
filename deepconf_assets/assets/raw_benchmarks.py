"""The raw benchmark files as one observable source asset, `raw_benchmark_file`, partitioned by benchmark.
Its data version is the file's SHA-256, and every asset of the `experiment` group depends on its own
benchmark's partition (`asset_defaults.EXPERIMENT`), so an edited file marks every asset of that
benchmark's partitions stale in the UI at once, through the figures and the report (Dagster's staleness
looks one dependency up, so a chain through benchmark_prompts alone would stop there).

`raw_benchmark_files_sensor` (running by default in the daemon) hashes the files every minute and
launches the observation job `observe_raw_benchmarks` for a benchmark whose file changed. Without the
daemon, observe by hand: the UI's "Observe sources" button, or
`dagster job execute -m deepconf_assets.definitions -j observe_raw_benchmarks` (every benchmark)."""

import hashlib
import warnings

from dagster import (AssetKey, AssetRecordsFilter, AssetSelection, BetaWarning, DataVersion, DataVersionsByPartition, DefaultSensorStatus,
                     RunRequest, SensorEvaluationContext, SensorResult, define_asset_job, observable_source_asset,
                     sensor)

from deepconf_assets import paths
from deepconf_assets.core.benchmarks import BENCHMARK_SPECS, BenchmarkSpec
from deepconf_assets.core.benchmarks.spec import real_source
from deepconf_assets.partitions import benchmark_partitions

RAW_BENCHMARK_FILE = "raw_benchmark_file"


def file_version(spec: BenchmarkSpec) -> str:
    """The SHA-256 of the benchmark's local file (followed through links); what stands in for it when
    there is none: the hub copy it falls back to, or "generated"."""
    if spec.generate is not None:
        return "generated"
    path = spec.local_path(paths.data_dir())
    if not path.exists():
        return f"absent ({f'hub:{spec.hub.dataset_id}' if spec.hub is not None else 'missing'})"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


warnings.filterwarnings("ignore", "Function `observable_source_asset`", BetaWarning)


@observable_source_asset(
    name=RAW_BENCHMARK_FILE,
    partitions_def=benchmark_partitions,
    group_name="raw_benchmarks",
    description=(
        "The benchmark's official file, `data/<benchmark>/<file>` (moved with DEEPCONF_DATA_DIR), one partition "
        "per benchmark. Observing it records the file's SHA-256 as its version; every experiment asset of that "
        "benchmark depends on it. Licences: " + "; ".join(f"{s.name} {s.licence}" for s in BENCHMARK_SPECS.values())
    ),
)
def raw_benchmark_file(context) -> DataVersionsByPartition:
    benchmarks = [context.partition_key] if context.has_partition_key else list(BENCHMARK_SPECS)
    for benchmark in benchmarks:
        path = BENCHMARK_SPECS[benchmark].local_path(paths.data_dir())
        if path is not None and path.exists():
            context.log.info(f"{benchmark}: {real_source(path)}")
    return DataVersionsByPartition({b: DataVersion(file_version(BENCHMARK_SPECS[b])) for b in benchmarks})


observe_raw_benchmarks = define_asset_job(
    "observe_raw_benchmarks", selection=AssetSelection.assets(RAW_BENCHMARK_FILE), partitions_def=benchmark_partitions,
    description="Observe the raw benchmark files: a changed file's SHA-256 marks its benchmark's assets stale.")


def last_observed(instance, benchmark: str) -> tuple[str | None, int]:
    """The version of `benchmark`'s file the instance last recorded, and that record's id (0: none yet)."""
    records = instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey(RAW_BENCHMARK_FILE), asset_partitions=[benchmark]), limit=1).records
    return (records[0].asset_observation.data_version, records[0].storage_id) if records else (None, 0)


@sensor(job=observe_raw_benchmarks, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Hashes every raw benchmark file each minute and observes those whose hash differs from the "
                    "version the instance last recorded (on a fresh instance: all of them, once).")
def raw_benchmark_files_sensor(context: SensorEvaluationContext) -> SensorResult:
    requests = []
    for name, spec in BENCHMARK_SPECS.items():
        version = file_version(spec)
        seen, record = last_observed(context.instance, name)
        if seen != version:  # the record id in the key: a file changed back to an older version is observed again
            requests.append(RunRequest(partition_key=name, run_key=f"{name}:{version}:{record}"))
    return SensorResult(run_requests=requests)
