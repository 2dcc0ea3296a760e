"""The dagster-pandas data contracts: a real table passes, a broken one fails its step with a type-check
message that names the column."""

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterTypeCheckDidNotPass, asset, check_dagster_type, materialize

from deepconf_assets.contracts import BenchmarkPromptsFrame, InstancePredictionsFrame, TracesFrame
from deepconf_assets.core.benchmarks import load_benchmark
from deepconf_assets.paths import data_dir


def traces_table() -> pd.DataFrame:
    conf = [np.array([2.0, 3.0], dtype=np.float32), np.array([1.0], dtype=np.float32)]
    return pd.DataFrame({
        "instance_id": ["a", "a"], "trace_idx": [0, 1], "model": "demo", "text": ["x", "y"],
        "answer_text": ["x", "y"], "n_tokens": [2, 1], "finish_reason": ["stop", "length"], "seed": [1, 2],
        "token_confidence": conf, "token_logprob": [np.array([-0.1, -0.2], dtype=np.float32),
                                                    np.array([-0.3], dtype=np.float32)],
        "conf_mean": [2.5, 1.0], "conf_lowest_group": [2.5, 1.0], "conf_bottom10": [2.5, 1.0],
        "conf_tail": [2.5, 1.0], "mean_logprob": [-0.15, -0.3], "nonfinite_logprobs": [0, 0],
        "group_window": [32, 32], "generation_key": ["k", "k"], "generation_mode": ["full", "full"],
    })


def predictions_table() -> pd.DataFrame:
    return pd.DataFrame({
        "instance_id": ["a", "b"], "labeler": "heuristic", "policy": "fixed_n=all",
        "prompt_harmful": pd.array([True, False], dtype="boolean"), "has_traces": [True, False],
        "traces_used": [10, 0], "tokens_used": [100, 0], "refusal_rate": [0.8, np.nan],
        "predicted_refusal": pd.array([True, None], dtype="boolean"), "confidence": [3.0, np.nan],
        "category": ["confident_refusal", None], "category_threshold": [2.0, 2.0],
        "category_within_decision": ["confident_refusal", None], "category_pooled": ["uncertain_refusal", None],
        "correct": pd.array([True, None], dtype="boolean"), "mean_tokens": [12.5, np.nan],
    })


def test_real_tables_meet_their_contracts():
    prompts, _ = load_benchmark("xstest", data_dir())
    assert check_dagster_type(BenchmarkPromptsFrame, prompts).success
    assert check_dagster_type(TracesFrame, traces_table()).success
    assert check_dagster_type(InstancePredictionsFrame, predictions_table()).success


@pytest.mark.parametrize("frame_type, table, column", [
    (TracesFrame, traces_table().assign(conf_mean=[-2.5, 1.0]), "conf_mean"),  # a flipped sign
    (TracesFrame, traces_table().drop(columns="group_window"), "group_window"),
    (TracesFrame, traces_table().assign(finish_reason=["stop", "abort"]), "finish_reason"),
    (InstancePredictionsFrame, predictions_table().assign(category=["sure_refusal", None]), "category"),
    (InstancePredictionsFrame, predictions_table().assign(labeler=["heuristic", "nobody"]), "labeler"),
    (InstancePredictionsFrame, predictions_table().drop(columns="category_pooled"), "category_pooled"),
    (BenchmarkPromptsFrame, load_benchmark("xstest", data_dir())[0].assign(instance_id="same"), "instance_id"),
])
def test_a_broken_contract_names_the_column(frame_type, table, column):
    result = check_dagster_type(frame_type, table)
    assert not result.success and column in result.description


@pytest.mark.slow
def test_a_contract_break_fails_the_step_with_the_type_check(isolated_storage):
    @asset(dagster_type=TracesFrame)
    def traces() -> pd.DataFrame:
        return traces_table().assign(n_tokens=[2, 0])

    with pytest.raises(DagsterTypeCheckDidNotPass, match="n_tokens"):
        materialize([traces])


def test_every_check_on_a_partitioned_asset_reports_per_partition():
    """A check result says which partition it came from (its history is per partition in the UI)."""
    from dagster import AssetsDefinition

    from deepconf_assets.definitions import ASSET_CHECKS, ASSETS

    assets = [a for a in ASSETS if isinstance(a, AssetsDefinition)]
    partitioned = {key for a in assets for key in a.keys if a.partitions_def is not None}
    specs = [spec for a in [*assets, *ASSET_CHECKS] for spec in a.check_specs]
    assert len(specs) >= 10
    missing = [spec.name for spec in specs if spec.asset_key in partitioned and spec.partitions_def is None]
    assert not missing, missing
