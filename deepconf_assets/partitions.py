"""Partitions: every per-partition asset shares `experiment_partitions` (keys `<benchmark>|<model>`),
so one CLI run can materialize the whole `experiment` group for one key. Cross-model assets use
`benchmark_partitions`."""

from __future__ import annotations

from dagster import MultiPartitionKey, MultiPartitionsDefinition, PartitionsDefinition, StaticPartitionsDefinition

from deepconf_assets.core.benchmarks import BENCHMARKS
from resources.model_registry import MODEL_KEYS

benchmark_partitions = StaticPartitionsDefinition(list(BENCHMARKS))
model_partitions = StaticPartitionsDefinition(list(MODEL_KEYS))

# Dimension names sort as benchmark < model, so keys and storage paths read <benchmark>|<model>.
experiment_partitions = MultiPartitionsDefinition(
    {"benchmark": benchmark_partitions, "model": model_partitions}
)


def benchmark_and_model(partition_key: str | MultiPartitionKey) -> tuple[str, str]:
    key = partition_key if isinstance(partition_key, MultiPartitionKey) else None
    if key is None:
        benchmark, model = str(partition_key).split("|")
        return benchmark, model
    return key.keys_by_dimension["benchmark"], key.keys_by_dimension["model"]


def unknown_partition(partition_key: object, partitions_def: PartitionsDefinition = experiment_partitions) -> str | None:
    """Why `partition_key` is not a key of `partitions_def`, listing the valid keys; None when it is one.
    The CLI refuses an unknown key itself; a run launched through the UI or GraphQL only learns of it here."""
    valid = [str(k) for k in partitions_def.get_partition_keys()]
    if str(partition_key) in valid:
        return None
    return (f"partition {str(partition_key)!r} does not exist. Valid keys ({len(valid)}, <benchmark>|<model>): "
            f"{', '.join(valid)}")


if __name__ == "__main__":  # `python -m deepconf_assets.partitions`: the valid experiment partition keys
    print("\n".join(str(k) for k in experiment_partitions.get_partition_keys()))
