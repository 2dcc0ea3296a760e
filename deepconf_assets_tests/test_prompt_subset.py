"""The max_prompts subset: seeded, stratified by category x harmfulness, never the first N rows."""

import numpy as np
import pandas as pd
import pytest

from deepconf_assets import paths
from deepconf_assets.core.benchmarks import load_benchmark
from deepconf_assets.core.prompt_subset import proportional_quota, stratified_subset


def test_quota_by_hand():
    # sizes 6, 3, 1 and n = 5: one each (3), then 2 more in proportion to what is left (5, 2, 0) ->
    # shares 1.43, 0.57, 0 -> floors 1, 0 and the larger remainder (0.57) takes the last one
    assert proportional_quota(np.array([6, 3, 1]), 5).tolist() == [2, 2, 1]
    assert proportional_quota(np.array([6, 3, 1]), 2).tolist() == [1, 1, 0]  # the largest strata first
    assert proportional_quota(np.array([6, 3, 1]), 10).tolist() == [6, 3, 1]
    assert proportional_quota(np.array([25] * 18), 36).tolist() == [2] * 18


def test_xstest_subset_covers_every_type_and_label():
    prompts, _ = load_benchmark("xstest", paths.data_dir())
    strata = prompts.groupby(["category", "prompt_harmful"]).ngroups
    subset = stratified_subset(prompts, 60, seed=0)
    assert len(subset) == 60 and subset["instance_id"].is_unique
    assert subset.groupby(["category", "prompt_harmful"]).ngroups == strata  # every type x label
    # in proportion: XSTest's 450 prompts are 200 unsafe, 250 safe
    assert subset["prompt_harmful"].sum() in range(24, 30)
    # the first 60 rows would cover 3 types only
    assert prompts.head(60)["category"].nunique() < subset["category"].nunique()
    # seeded and in the file's order
    pd.testing.assert_frame_equal(subset, stratified_subset(prompts, 60, seed=0))
    assert not subset.equals(stratified_subset(prompts, 60, seed=1))
    assert list(subset.index) == sorted(subset.index)


def test_no_subset_keeps_everything():
    prompts, _ = load_benchmark("xstest", paths.data_dir())
    assert stratified_subset(prompts, None) is prompts and stratified_subset(prompts, 10_000) is prompts
    with pytest.raises(ValueError):
        stratified_subset(prompts, 0)
