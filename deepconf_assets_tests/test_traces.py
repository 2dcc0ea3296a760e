"""The `traces` table without a model: seeds, generation keys, rows built from generated traces, column
order. Fast (no model, no materialization)."""

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core import trace_rows
from resources.generation_types import GeneratedTrace


def test_trace_seed_is_reproducible_31_bit_and_distinct():
    seeds = {trace_rows.trace_seed(0, f"i{i}", t) for i in range(50) for t in range(10)}
    assert len(seeds) == 500 and all(0 <= s < 2**31 for s in seeds)
    assert trace_rows.trace_seed(0, "i1", 3) == trace_rows.trace_seed(0, "i1", 3)
    assert trace_rows.trace_seed(1, "i1", 3) != trace_rows.trace_seed(0, "i1", 3)


def test_generation_key_changes_with_everything_but_the_seed():
    base = dict(model="demo", revision="r1", engine="transformers", numerics={"dtype": "float32"},
                sampling={"temperature": 0.6}, prompt="Hi")
    key = trace_rows.generation_key(**base)
    assert len(key) == 24 and key == trace_rows.generation_key(**dict(reversed(list(base.items()))))
    for name, other in [("model", "demo-small"), ("revision", "r2"), ("engine", "vllm"),
                        ("numerics", {"dtype": "bfloat16"}), ("sampling", {"temperature": 0.7}), ("prompt", "Hi!")]:
        assert trace_rows.generation_key(**{**base, name: other}) != key, name


def test_trace_requests_give_every_trace_its_seed_and_its_prompts_key():
    prompts = pd.DataFrame({"instance_id": ["b", "a"], "prompt": ["Hi", "Hi"]})
    identity = dict(model="demo", revision="r1", engine="transformers", numerics={}, sampling={})
    requests = trace_rows.trace_requests(prompts, 2, 7, identity)
    order = [("b", 0), ("b", 1), ("a", 0), ("a", 1)]  # prompt by prompt, in the prompts' order
    assert list(zip(requests["instance_id"], requests["trace_idx"])) == order
    assert requests["seed"].tolist() == [trace_rows.trace_seed(7, i, t) for i, t in order]
    assert set(requests["generation_key"]) == {trace_rows.generation_key(**identity, prompt="Hi")}
    batch = pd.DataFrame({"instance_id": ["a", "b"], "trace_idx": [1, 0], "cut_threshold": [np.nan, 12.5]})
    identified = trace_rows.identify(batch, requests, group_window=8)
    key = requests["generation_key"].iloc[0]
    assert identified["generation_key"].tolist() == [key, f"{key}|cut<12.5|w8"]  # a cut trace: another identity
    assert identified["seed"].tolist() == [trace_rows.trace_seed(7, "a", 1), trace_rows.trace_seed(7, "b", 0)]


def _trace(text: str, n: int, finish: str, seed: int, bad: int = 0) -> GeneratedTrace:
    rng = np.random.default_rng(seed)
    topk = np.sort(np.log(rng.dirichlet(np.ones(20), size=n)), axis=1)[:, ::-1]
    sampled = topk[:, 0].astype(np.float32)
    sampled[:bad] = -np.inf  # a non-finite sampled log-prob is clipped and counted
    return GeneratedTrace.from_logprobs(text, list(range(n)), sampled, topk, finish, seed)


def test_trace_rows_hold_tokens_metrics_and_answer_text():
    requests = pd.DataFrame({"instance_id": ["b", "a", "a"], "trace_idx": [0, 1, 0], "seed": [7, 8, 9],
                             "generation_key": ["k1", "k2", "k2"], "extra": [1, 2, 3]})
    results = [_trace("<think>\nhmm\n</think>\n\nSure, here.", 40, "stop", 1),
               _trace("I can't help with that.", 5, "length", 2, bad=2),
               _trace("<think>\nnever closed", 70, "length", 3)]
    table = trace_rows.trace_rows(requests, results, "demo", group_window=8)
    assert table["answer_text"].tolist() == ["Sure, here.", "I can't help with that.", ""]
    assert table["n_tokens"].tolist() == [40, 5, 70] and (table["model"] == "demo").all()
    assert table["nonfinite_logprobs"].tolist() == [0, 2, 0] and (table["group_window"] == 8).all()
    assert all(t.dtype == np.float32 for t in table["token_logprob"])
    assert np.isfinite(np.concatenate(table["token_logprob"].tolist())).all()  # clipped to the floor
    for row, result in zip(table.itertuples(), results):
        assert row.conf_mean == pytest.approx(float(np.mean(result.token_confidence, dtype=np.float64)), rel=1e-5)
        assert row.conf_lowest_group <= row.conf_mean + 1e-6 and row.conf_bottom10 <= row.conf_mean + 1e-6
    assert "extra" not in table
    full = table.assign(generation_mode="full", live_policy=None, live_tau=np.nan, warmup_traces=0, live_budget=0,
                        cut_threshold=np.nan)
    ordered = trace_rows.order_columns(full)
    assert list(ordered.columns) == trace_rows.TRACE_COLUMNS
    assert list(zip(ordered["instance_id"], ordered["trace_idx"])) == [("a", 0), ("a", 1), ("b", 0)]


def test_confidence_columns_of_no_traces_are_empty():
    columns = trace_rows.confidence_columns([], [], window=4)
    assert set(columns) == {*trace_rows.confidence.TRACE_METRICS, "mean_logprob"}
    assert all(len(v) == 0 for v in columns.values())
