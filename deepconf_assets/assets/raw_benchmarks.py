"""Raw benchmark files as observable source assets, one per `BenchmarkSpec` with a local file: their
data version is the file's SHA-256, so replacing a file marks everything downstream as changed in the UI."""


import hashlib
import warnings

from dagster import AssetsDefinition, BetaWarning, DataVersion, observable_source_asset

from deepconf_assets import paths
from deepconf_assets.core.benchmarks import BENCHMARK_SPECS, BenchmarkSpec


def _file_version(spec: BenchmarkSpec) -> DataVersion:
    path = spec.local_path(paths.data_dir())
    if not path.exists():
        fallback = f"hub:{spec.hub.dataset_id}" if spec.hub is not None else "missing"
        return DataVersion(f"absent ({fallback})")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return DataVersion(digest.hexdigest())


def _raw_file_asset(spec: BenchmarkSpec) -> AssetsDefinition:
    warnings.filterwarnings("ignore", "Function `observable_source_asset`", BetaWarning)

    @observable_source_asset(
        name=f"raw_{spec.name}",
        group_name="raw_benchmarks",
        description=(
            f"The official {spec.name} file `data/{spec.name}/{spec.local_file}` "
            f"(moved with DEEPCONF_DATA_DIR). Licence: {spec.licence}. "
            f"Observing it records the file's SHA-256 as its version."
        ),
        metadata={"licence": str(spec.licence)},
    )
    def _observe() -> DataVersion:
        return _file_version(spec)

    return _observe


raw_benchmark_files = [_raw_file_asset(spec) for spec in BENCHMARK_SPECS.values() if spec.local_file is not None]
