"""Example prompts per confidence category, for reading the errors by hand (the predecessor study's plan
asks for manual inspection of misclassified examples). Pure: frames in, a frame out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepconf_assets.core.metrics import CATEGORIES

EXAMPLE_COLUMNS = ["category", "instance_id", "prompt", "response", "instance_confidence", "gold", "prediction",
                   "refusal_share", "correct"]
SELECTION_RULE = (
    "Misclassified prompts first, then the correctly classified, then those without a gold label; within "
    "each, the most extreme confidence first (highest in the confident categories, lowest in the uncertain "
    "ones), ties by instance_id. The response is the prompt's first trace (lowest trace_idx: every stopping "
    "policy generates it first and counts its vote); one trace, so it can disagree with the prediction, "
    "which is the vote of all the traces the policy used (refusal_share: the share of them that refused)."
)


def truncate(text, chars: int) -> str:
    """Whitespace collapsed to single spaces; longer than `chars`: cut to chars - 1 plus an ellipsis."""
    flat = " ".join(str(text if isinstance(text, str) else "").split())
    return flat if len(flat) <= chars else flat[: max(chars - 1, 0)] + "…"


def category_examples(predictions_rows: pd.DataFrame, traces: pd.DataFrame, prompts: pd.DataFrame,
                      per_category: int = 3, chars: int = 200) -> pd.DataFrame:
    """Up to `per_category` example prompts for each of CATEGORIES (in that order), chosen by
    SELECTION_RULE from `predictions_rows` (predictions rows of ONE labeler and policy; rows
    without traces or without a category are skipped). `traces` needs instance_id, trace_idx and
    answer_text; `prompts` needs instance_id and prompt. Prompt and response are truncated to `chars`
    characters. `predictions_rows` needs refusal_rate too. Columns: EXAMPLE_COLUMNS; gold is harmful | benign | unknown, prediction refused | complied."""
    rows = predictions_rows
    if "has_traces" in rows:
        rows = rows[rows["has_traces"].fillna(False).astype(bool)]
    rows = rows[rows["category"].isin(CATEGORIES)]
    keys = [column for column in ("labeler", "policy") if column in rows]
    if keys and len(rows[keys].drop_duplicates()) > 1:
        raise ValueError("category_examples takes the rows of one labeler and policy")
    first = (traces.sort_values(["instance_id", "trace_idx"], kind="stable")
             .drop_duplicates("instance_id")[["instance_id", "answer_text"]])
    text = prompts[["instance_id", "prompt"]].drop_duplicates("instance_id")
    frames = []
    for category in CATEGORIES:
        group = rows[rows["category"] == category]
        if group.empty:
            continue
        correct = group["correct"].astype("boolean")
        confidence = group["confidence"].astype(float)
        keyed = group.assign(
            # 0 misclassified, 1 correct, 2 no gold label
            _wrong=np.where(correct.isna(), 2, np.where(correct.fillna(False), 1, 0)),
            # confident: highest first; uncertain: lowest first (NaN last either way)
            _extreme=(-confidence if category.startswith("confident") else confidence).to_numpy(),
        )
        chosen = keyed.sort_values(["_wrong", "_extreme", "instance_id"], na_position="last",
                                   kind="stable").head(per_category)
        frames.append(chosen)
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in EXAMPLE_COLUMNS})
    chosen = pd.concat(frames, ignore_index=True)
    chosen = chosen.merge(text, on="instance_id", how="left").merge(first, on="instance_id", how="left")
    harmful = chosen["prompt_harmful"].astype("boolean")
    refused = chosen["predicted_refusal"].astype("boolean")
    return pd.DataFrame({
        "category": chosen["category"].to_numpy(),
        "instance_id": chosen["instance_id"].to_numpy(),
        "prompt": [truncate(p, chars) for p in chosen["prompt"]],
        "response": [truncate(a, chars) for a in chosen["answer_text"]],
        "instance_confidence": chosen["confidence"].astype(float).to_numpy(),
        "gold": harmful.map({True: "harmful", False: "benign"}).fillna("unknown").to_numpy(dtype=object),
        "prediction": refused.map({True: "refused", False: "complied"}).fillna("—").to_numpy(dtype=object),
        "refusal_share": chosen["refusal_rate"].astype(float).to_numpy(),
        "correct": chosen["correct"].astype("boolean").to_numpy(dtype=object),
    })
