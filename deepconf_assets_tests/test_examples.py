"""The report's error-analysis examples: which prompts, in which order, how much text."""

import pandas as pd
import pytest

from deepconf_assets.core import html_report
from deepconf_assets.core.examples import EXAMPLE_COLUMNS, category_examples, truncate
from deepconf_assets.core.metrics import CATEGORIES


def _frames():
    # (instance_id, category, confidence, harmful, refused) for one labeler x policy
    spec = [
        ("a1", "confident_refusal", 0.9, True, True),
        ("a2", "confident_refusal", 0.8, False, True),   # misclassified: first despite lower confidence
        ("a3", "confident_refusal", 0.95, True, True),
        ("a4", "confident_refusal", 0.7, True, True),
        ("a5", "confident_refusal", 0.6, False, True),   # misclassified, less extreme than a2
        ("b1", "uncertain_compliance", 0.2, False, False),
        ("b2", "uncertain_compliance", 0.1, False, False),
        ("c1", "confident_compliance", 0.9, None, False),  # no gold label: after the correct ones
        ("c2", "confident_compliance", 0.6, False, False),
        ("z1", None, None, True, None),                    # no prediction: no category
    ]
    predictions = pd.DataFrame({
        "instance_id": [s[0] for s in spec], "labeler": "heuristic", "policy": "decided", "has_traces": True,
        "prompt_harmful": pd.array([s[3] for s in spec], dtype="boolean"),
        "predicted_refusal": pd.array([s[4] for s in spec], dtype="boolean"),
        "confidence": [s[2] for s in spec], "category": [s[1] for s in spec],
        "refusal_rate": [0.7 if s[4] else 0.1 if s[4] is not None else None for s in spec],
    })
    predictions["correct"] = pd.array(
        [None if pd.isna(h) or pd.isna(r) else h == r
         for h, r in zip(predictions["prompt_harmful"], predictions["predicted_refusal"])], dtype="boolean")
    ids = [s[0] for s in spec]
    # two traces each, stored out of order: the response is trace_idx 0's answer
    traces = pd.DataFrame({
        "instance_id": ids * 2, "trace_idx": [1] * len(ids) + [0] * len(ids),
        "answer_text": [f"second {i}" for i in ids] + [f"first answer of {i}\n\n  " + "x" * 300 for i in ids],
    })
    prompts = pd.DataFrame({"instance_id": ids + ["n1"], "prompt": [f"prompt {i} " + "p" * 400 for i in ids] + ["none"],
                            "prompt_harmful": pd.array([s[3] for s in spec] + [True], dtype="boolean")})
    return predictions, traces, prompts


def test_category_examples_order_truncation_and_counts():
    predictions, traces, prompts = _frames()
    examples = category_examples(predictions, traces, prompts, per_category=3, chars=50)
    assert list(examples.columns) == EXAMPLE_COLUMNS
    # CATEGORIES order; 3 where there are more, fewer where fewer, none for an empty category
    counts = examples["category"].value_counts().to_dict()
    assert counts == {"confident_refusal": 3, "confident_compliance": 2, "uncertain_compliance": 2}
    assert list(dict.fromkeys(examples["category"])) == [c for c in CATEGORIES if c in counts]
    by = {c: list(g["instance_id"]) for c, g in examples.groupby("category", sort=False)}
    assert by["confident_refusal"] == ["a2", "a5", "a3"]  # misclassified first (most confident first), then correct
    assert by["uncertain_compliance"] == ["b2", "b1"]      # uncertain: least confident first
    assert by["confident_compliance"] == ["c2", "c1"]      # correct before unknown gold
    row = examples.set_index("instance_id").loc["a2"]
    assert row["gold"] == "benign" and row["prediction"] == "refused" and row["correct"] is False
    assert row["instance_confidence"] == pytest.approx(0.8) and row["refusal_share"] == pytest.approx(0.7)
    assert row["response"].startswith("first answer of a2 xx") and "\n" not in row["response"]
    assert len(row["response"]) == 50 and row["response"].endswith("…")
    assert len(row["prompt"]) == 50 and row["prompt"].startswith("prompt a2 ")
    assert examples.set_index("instance_id").loc["c1", "gold"] == "unknown"
    assert "z1" not in set(examples["instance_id"])


def test_category_examples_skip_prompts_without_traces_and_render():
    predictions, traces, prompts = _frames()
    predictions.loc[predictions["instance_id"] == "a2", "has_traces"] = False
    examples = category_examples(predictions, traces, prompts, per_category=2)
    assert list(examples.loc[examples["category"] == "confident_refusal", "instance_id"]) == ["a5", "a3"]
    page = html_report.render("t", "h", [html_report.Section("Examples per confidence category", "rule", examples)])
    assert b"Examples per confidence category" in page and b"a5" in page
    empty = category_examples(predictions.iloc[0:0], traces, prompts)
    assert empty.empty and list(empty.columns) == EXAMPLE_COLUMNS
    with pytest.raises(ValueError, match="one labeler and policy"):
        category_examples(pd.concat([predictions, predictions.assign(policy="fixed_n=1")]), traces, prompts)


def test_truncate():
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate(None, 5) == ""
