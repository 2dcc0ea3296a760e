"""Raw benchmark files as observable source assets: their data version is the file's SHA-256, so
replacing a file marks everything downstream as changed in the UI."""


import hashlib
import warnings

from dagster import AssetsDefinition, BetaWarning, DataVersion, observable_source_asset

from deepconf_assets import paths
from deepconf_assets.core.benchmarks import HUB_SOURCES, LOCAL_FILES, local_path


def _file_version(benchmark: str) -> DataVersion:
    path = local_path(benchmark, paths.data_dir())
    if not path.exists():
        fallback = f"hub:{HUB_SOURCES[benchmark][0]}" if benchmark in HUB_SOURCES else "missing"
        return DataVersion(f"absent ({fallback})")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return DataVersion(digest.hexdigest())


def _raw_file_asset(benchmark: str) -> AssetsDefinition:
    warnings.filterwarnings("ignore", "Function `observable_source_asset`", BetaWarning)

    @observable_source_asset(
        name=f"raw_{benchmark}",
        group_name="raw_benchmarks",
        description=(
            f"The official {benchmark} file `data/{benchmark}/{LOCAL_FILES[benchmark]}` "
            f"(moved with DEEPCONF_DATA_DIR). Observing it records the file's SHA-256 as its version."
        ),
    )
    def _observe() -> DataVersion:
        return _file_version(benchmark)

    return _observe


raw_benchmark_files = [_raw_file_asset(b) for b in LOCAL_FILES]
