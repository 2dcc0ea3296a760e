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


def partition_tags_disagree(tags: dict) -> str | None:
    """Why a run's partition tags contradict each other (a launch through GraphQL or the API may set
    `dagster/partition` and the per-dimension tags apart, and Dagster then runs the dimension tags' key);
    None when they agree or only one form is given."""
    key = tags.get("dagster/partition")
    dims = [tags.get(f"dagster/partition/{name}") for name in experiment_partitions.partition_dimension_names]
    if key and all(dims) and "|".join(dims) != key:
        return (f"the run's tags name two partitions: dagster/partition={key!r} but the dimension tags say "
                f"{'|'.join(dims)!r}; launch it with one partition key")
    return None


def run_partition_problem(tags: dict) -> str | None:
    """Why a run's partition tags cannot be run: a key that is neither an experiment nor a benchmark key
    (listing the valid ones), or tags that name two partitions; None when they are fine or absent."""
    key = tags.get("dagster/partition")
    if key is None:
        return None
    if unknown_partition(key) and unknown_partition(key, benchmark_partitions):
        return unknown_partition(key)
    return partition_tags_disagree(tags)


def refuse_unknown_cli_partition(argv: list[str]) -> None:
    """`dagster asset materialize --partition <key>` with a key that exists nowhere: Dagster answers with a
    long traceback that names no valid key. It loads this code location before it checks the key, so the
    mistake is answered here in one line with the valid keys (benchmark keys are valid too: the
    comparisons group)."""
    if "materialize" not in argv:
        return
    keys = [a.split("=", 1)[1] for a in argv if a.startswith("--partition=")]
    keys += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--partition"]
    for key in keys:
        if run_partition_problem({"dagster/partition": key}):
            raise SystemExit(f"dagster asset materialize: {unknown_partition(key)} (or a benchmark key for the "
                             f"comparisons group: {', '.join(benchmark_partitions.get_partition_keys())})")


if __name__ == "__main__":  # `python -m deepconf_assets.partitions`: the valid experiment partition keys
    print("\n".join(str(k) for k in experiment_partitions.get_partition_keys()))
