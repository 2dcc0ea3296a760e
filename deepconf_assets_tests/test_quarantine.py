"""Prompt quarantine without a model: each reason, and text characters that are never a reason. Fast (the
run that counts quarantined prompts is in test_bad_input.py and test_faults.py)."""

import pandas as pd

from deepconf_assets.core.quarantine import nothing_sendable, quarantine


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
