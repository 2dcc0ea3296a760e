"""Decorator arguments the assets share, so that a group's partitions, owners, kinds and IO manager are
set in one place: `EXPERIMENT` (one partition per benchmark|model), `COMPARISONS` (one per benchmark,
run by automation) and the parquet tables built on them."""

from dagster import AssetDep, AssetIn, MultiToSingleDimensionPartitionMapping

from deepconf_assets.automation import COMPARISON_CONDITION
from deepconf_assets.partitions import benchmark_partitions, experiment_partitions

OWNERS = ["team:deepconf-safety"]  # shown in the asset catalog; filter by owner there

# Every experiment asset depends on its benchmark's raw file (assets/raw_benchmarks.py), so an edited
# file makes all of them stale at once, not one level at a time.
RAW_FILE_DEP = AssetDep("raw_benchmark_file",
                        partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="benchmark"))
EXPERIMENT = dict(partitions_def=experiment_partitions, group_name="experiment", owners=OWNERS, deps=[RAW_FILE_DEP])
# A parquet table per benchmark|model (the per-partition analyses).
ANALYSIS = dict(**EXPERIMENT, io_manager_key="parquet_io_manager", kinds={"pandas", "parquet"})

COMPARISONS = dict(partitions_def=benchmark_partitions, group_name="comparisons",
                   automation_condition=COMPARISON_CONDITION, owners=OWNERS)
# A parquet table per benchmark read from the predictions of every materialized model partition.
EVERY_MODEL_TABLE = dict(
    **COMPARISONS, io_manager_key="parquet_io_manager", kinds={"pandas", "parquet"},
    ins={"predictions": AssetIn(
        partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="benchmark"),
        metadata={"allow_missing_partitions": True})},
)
