"""The `traces` table without a model: seeds, generation keys, rows built from generated traces, column
order. Fast (no model, no materialization)."""

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core import traces
from resources.generation_types import GeneratedTrace


def test_trace_seed_is_reproducible_31_bit_and_distinct():
    seeds = {traces.trace_seed(0, f"i{i}", t) for i in range(50) for t in range(10)}
    assert len(seeds) == 500 and all(0 <= s < 2**31 for s in seeds)
    assert traces.trace_seed(0, "i1", 3) == traces.trace_seed(0, "i1", 3)
    assert traces.trace_seed(1, "i1", 3) != traces.trace_seed(0, "i1", 3)


def test_generation_key_changes_with_everything_but_the_seed():
    base = dict(model="demo", revision="r1", engine="transformers", numerics={"dtype": "float32"},
                sampling={"temperature": 0.6}, prompt="Hi")
    key = traces.generation_key(**base)
    assert len(key) == 24 and key == traces.generation_key(**dict(reversed(list(base.items()))))
    for name, other in [("model", "demo-small"), ("revision", "r2"), ("engine", "vllm"),
                        ("numerics", {"dtype": "bfloat16"}), ("sampling", {"temperature": 0.7}), ("prompt", "Hi!")]:
        assert traces.generation_key(**{**base, name: other}) != key, name


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
    table = traces.trace_rows(requests, results, "demo", group_window=8)
    assert table["answer_text"].tolist() == ["Sure, here.", "I can't help with that.", ""]
    assert table["n_tokens"].tolist() == [40, 5, 70] and (table["model"] == "demo").all()
    assert table["nonfinite_logprobs"].tolist() == [0, 2, 0] and (table["group_window"] == 8).all()
    assert all(t.dtype == np.float32 for t in table["token_logprob"])
    assert np.isfinite(np.concatenate(table["token_logprob"].tolist())).all()  # clipped to the floor
    for row, result in zip(table.itertuples(), results):
        assert row.conf_mean == pytest.approx(float(np.mean(result.token_confidence, dtype=np.float64)), rel=1e-5)
        assert row.conf_lowest_group <= row.conf_mean + 1e-6 and row.conf_bottom10 <= row.conf_mean + 1e-6
    assert "extra" not in table
    full = table.assign(generation_mode="full", live_policy=None, live_tau=np.nan, warmup_traces=0,
                        cut_threshold=np.nan)
    ordered = traces.order_columns(full)
    assert list(ordered.columns) == traces.TRACE_COLUMNS
    assert list(zip(ordered["instance_id"], ordered["trace_idx"])) == [("a", 0), ("a", 1), ("b", 0)]


def test_confidence_columns_of_no_traces_are_empty():
    columns = traces.confidence_columns([], [], window=4)
    assert set(columns) == {*traces.confidence.TRACE_METRICS, "mean_logprob"}
    assert all(len(v) == 0 for v in columns.values())
