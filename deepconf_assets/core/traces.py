"""The `traces` table: identities (seeds, generation keys), answer text and confidence columns."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd

from deepconf_assets.core import confidence

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def strip_thinking(text: str) -> str:
    """The answer without Qwen3's `<think>...</think>` block (an unclosed block is all thinking)."""
    return _THINK_BLOCK.sub("", text).strip()


def trace_seed(base_seed: int, instance_id: str, trace_idx: int) -> int:
    """A 31-bit seed per trace: reproducible, independent of batch composition and order."""
    digest = hashlib.sha256(f"{base_seed}:{instance_id}:{trace_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def generation_key(model: str, revision: str, sampling: dict, prompt: str) -> str:
    """Hash of everything that determines a prompt's traces apart from the trace seed."""
    payload = json.dumps({"model": model, "revision": revision, "sampling": sampling, "prompt": prompt},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def confidence_columns(topk_logprobs: list[np.ndarray], token_logprobs: list[np.ndarray],
                       window: int) -> dict[str, object]:
    """Per trace: token_confidence (float32 list), trace metrics, mean_logprob, nonfinite count."""
    lengths = np.array([len(t) for t in topk_logprobs], dtype=np.int64)
    flat_topk = np.concatenate(topk_logprobs) if len(lengths) else np.zeros((0, 1))
    conf, _ = confidence.token_confidence(flat_topk)
    bad_topk = (~np.isfinite(flat_topk)).sum(axis=1)
    flat_sampled = np.concatenate(token_logprobs) if len(lengths) else np.zeros(0)
    sampled, _ = confidence.clip_logprobs(flat_sampled)
    bad_tokens = bad_topk + ~np.isfinite(flat_sampled)
    splits = np.cumsum(lengths)[:-1]
    columns: dict[str, object] = {
        "token_confidence": np.split(conf, splits),
        "token_logprob": np.split(sampled.astype(np.float32), splits),
    }
    columns.update(confidence.trace_metrics(conf, lengths, window))
    columns["mean_logprob"] = confidence.segment_means(sampled, lengths)
    columns["nonfinite_logprobs"] = np.add.reduceat(bad_tokens, np.concatenate([[0], splits])).astype(np.int64) \
        if len(lengths) else np.zeros(0, dtype=np.int64)
    return columns


TRACE_COLUMNS = [
    "instance_id", "trace_idx", "model", "text", "answer_text", "n_tokens", "finish_reason", "seed",
    "token_confidence", "token_logprob", "conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail",
    "mean_logprob", "nonfinite_logprobs", "generation_key",
]


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df[TRACE_COLUMNS].sort_values(["instance_id", "trace_idx"], kind="stable").reset_index(drop=True)
