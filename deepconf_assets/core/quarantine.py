"""Prompts kept away from the engine, each with its reason: a prompt is sent exactly as the benchmark
holds it or not at all, never cleaned or cut silently."""

from collections.abc import Collection

import numpy as np
import pandas as pd

CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # tab, newline and carriage return are text


# under 100 characters, so the UI's reason tables show it whole
CONFLICTING_LABELS = "same text as another prompt with the opposite gold label (case and spacing ignored)"


def conflicting_labels(prompts: pd.DataFrame) -> set[str]:
    """instance_ids of prompts whose text, ignoring case and spacing, also appears with the opposite
    gold label (harmful and benign). Whole-benchmark: a subset may hold only one side of the pair."""
    text = prompts["prompt"].map(lambda t: " ".join(str(t).split()).casefold())
    labelled = prompts["prompt_harmful"].notna()
    labels = prompts.loc[labelled, "prompt_harmful"].groupby(text[labelled]).nunique()
    return set(prompts.loc[text.isin(labels.index[labels > 1]), "instance_id"])


def quarantine(prompts: pd.DataFrame, token_counts: list[int], limit: int, max_new_tokens: int,
               conflicting: Collection[str] = ()) -> pd.Series:
    """Why a prompt is kept away from the engine ("" = it is sent exactly as the benchmark holds it).
    A NUL or other control character would be cut or changed on the way to the model, so the model
    would answer a different prompt than the benchmark's: quarantined, never cleaned silently. A prompt
    whose text the benchmark also labels the other way (`conflicting`) has no single truth to score."""
    reason = pd.Series("", index=prompts.index, dtype=object)
    if len(conflicting):
        reason[prompts["instance_id"].isin(list(conflicting)).to_numpy()] = CONFLICTING_LABELS
    too_long = np.asarray(token_counts) + max_new_tokens > limit
    reason[too_long] = f"prompt + max_new_tokens exceeds the context limit of {limit} tokens"
    control = prompts["prompt"].str.contains(CONTROL_CHARACTERS, regex=True)
    reason[control] = "control character in the prompt (NUL or another non-text character)"
    reason[prompts["prompt"].str.strip() == ""] = "empty prompt"
    return reason


def nothing_sendable(source: str, reasons: pd.Series) -> str:
    """Why nothing is generated when every prompt of `source` (the benchmark's file or name) is quarantined."""
    return (f"no prompt of {source} can be sent to the model: {len(reasons)} prompts, all quarantined "
            f"({reasons.value_counts().to_dict() if len(reasons) else 'the file has no prompt rows'}). "
            f"Fix the file (or max_prompts) and re-run; nothing was generated.")
