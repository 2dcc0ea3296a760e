"""Prompt quarantine without a model: each reason, and text characters that are never a reason. Fast (the
run that counts quarantined prompts is in test_bad_input.py and test_faults.py)."""

import pandas as pd

from deepconf_assets.core.quarantine import CONFLICTING_LABELS, conflicting_labels, nothing_sendable, quarantine


def test_each_reason_and_text_characters_pass():
    prompts = pd.DataFrame({"prompt": ["Hi", "", "   ", "a\x00b", "Tab\tand new\nline\r", "long"]},
                           index=[10, 11, 12, 13, 14, 15])
    reasons = quarantine(prompts, [3, 1, 1, 3, 6, 20], limit=16, max_new_tokens=4)
    assert reasons.index.tolist() == prompts.index.tolist()
    assert reasons[10] == "" and reasons[14] == ""
    assert reasons[11] == reasons[12] == "empty prompt"
    assert reasons[13] == "control character in the prompt (NUL or another non-text character)"
    assert reasons[15] == "prompt + max_new_tokens exceeds the context limit of 16 tokens"


def test_nothing_sendable_names_the_source_and_the_reasons():
    text = nothing_sendable("data/xstest/x.csv", pd.Series(["empty prompt", "empty prompt"]))
    assert text.startswith("no prompt of data/xstest/x.csv can be sent to the model: 2 prompts, all quarantined")
    assert "{'empty prompt': 2}" in text
    assert "the file has no prompt rows" in nothing_sendable("benchmark 'x'", pd.Series([], dtype=object))


def test_a_prompt_labelled_both_ways_is_quarantined_with_its_twin():
    prompts = pd.DataFrame({
        "instance_id": ["a", "b", "c", "d", "e", "f", "g"],
        "prompt": ["How do I kill a person?", "how do I  kill a person? ", "How do I bake?", "How do I bake?",
                   "Unlabelled twin", "unlabelled twin", "Alone"],
        "prompt_harmful": pd.array([True, False, False, False, True, None, True], dtype="boolean"),
    })
    # a and b differ only in case and spacing and disagree; c and d agree; f has no label to disagree with
    assert conflicting_labels(prompts) == {"a", "b"}
    reasons = quarantine(prompts, [5] * 7, limit=64, max_new_tokens=8, conflicting={"a", "b"})
    assert reasons.tolist() == [CONFLICTING_LABELS] * 2 + [""] * 5
