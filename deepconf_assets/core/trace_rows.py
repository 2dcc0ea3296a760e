"""The `traces` table: identities (seeds, generation keys), answer text and confidence columns."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd

from deepconf_assets.core import confidence

# "stop": the model ended (its EOS counted in n_tokens); "length": max_new_tokens reached; "cut": stopped by
# live early stopping at a confidence window below its threshold
FINISH_REASONS = ("stop", "length", "cut")

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def strip_thinking(text: str) -> str:
    """The answer without Qwen3's `<think>...</think>` block (an unclosed block is all thinking)."""
    return _THINK_BLOCK.sub("", text).strip()


def trace_seed(base_seed: int, instance_id: str, trace_idx: int) -> int:
    """A 31-bit seed per trace: reproducible, independent of batch composition and order."""
    digest = hashlib.sha256(f"{base_seed}:{instance_id}:{trace_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def generation_key(model: str, revision: str, engine: str, numerics: dict, sampling: dict, prompt: str) -> str:
    """Hash of everything that determines a prompt's traces apart from the trace seed: the engine (the same
    seed samples differently in vLLM and in transformers) and its numerics (dtype, device, attention: float32
    and bfloat16 traces differ). `revision` names the weights: the registry's weights fingerprint (revision
    and files; for a built-in model its files' hashes; for a GGUF its distribution, version, hash)."""
    payload = json.dumps({"model": model, "revision": revision, "engine": engine, "numerics": numerics,
                          "sampling": sampling, "prompt": prompt}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def trace_requests(prompts: pd.DataFrame, traces_per_prompt: int, base_seed: int, identity: dict) -> pd.DataFrame:
    """One row per trace to generate, prompt by prompt: instance_id, prompt, trace_idx, its seed and its
    prompt's generation key (`identity`: the arguments of `generation_key` but the prompt)."""
    n = traces_per_prompt
    requests = pd.DataFrame({
        "instance_id": prompts["instance_id"].repeat(n).to_numpy(),
        "prompt": prompts["prompt"].repeat(n).to_numpy(),
        "trace_idx": np.tile(np.arange(n), len(prompts)),
    })
    requests["seed"] = [trace_seed(base_seed, i, t) for i, t in zip(requests["instance_id"], requests["trace_idx"])]
    key_of = {p: generation_key(**identity, prompt=p) for p in prompts["prompt"].unique()}
    requests["generation_key"] = requests["prompt"].map(key_of)
    return requests


def identify(batch: pd.DataFrame, requests: pd.DataFrame, group_window: int) -> pd.DataFrame:
    """`batch` (instance_id, trace_idx, optional cut_threshold) with prompt, seed and generation key from
    `requests` (`trace_requests`)."""
    batch = batch.merge(requests, on=["instance_id", "trace_idx"], how="left", validate="one_to_one")
    if "cut_threshold" in batch:  # a cut trace depends on its threshold: part of its identity
        batch["generation_key"] = [key if np.isnan(s) else f"{key}|cut<{s!r}|w{group_window}"
                                   for key, s in zip(batch["generation_key"], batch["cut_threshold"].astype(float))]
    return batch


def confidence_columns(token_confidences: list[np.ndarray], token_logprobs: list[np.ndarray],
                       window: int) -> dict[str, object]:
    """Per trace: trace confidence metrics and the mean sampled-token log-prob (clipped like C)."""
    lengths = np.array([len(t) for t in token_confidences], dtype=np.int64)
    if not len(lengths):
        return {name: np.zeros(0) for name in (*confidence.TRACE_METRICS, "mean_logprob")}
    columns: dict[str, object] = dict(
        confidence.trace_metrics(np.concatenate(token_confidences), lengths, window))
    sampled, _ = confidence.clip_logprobs(np.concatenate(token_logprobs))
    columns["mean_logprob"] = confidence.segment_means(sampled, lengths)
    return columns


def trace_rows(requests: pd.DataFrame, results: list, model: str, group_window: int) -> pd.DataFrame:
    """One traces row per generated trace: `requests` (instance_id, trace_idx, seed, generation_key) in the
    order of `results` (GeneratedTrace), with the token arrays and the trace confidence metrics."""
    table = requests[["instance_id", "trace_idx", "seed", "generation_key"]].reset_index(drop=True).copy()
    table["model"] = model
    table["text"] = [r.text for r in results]
    table["answer_text"] = [strip_thinking(r.text) for r in results]
    table["n_tokens"] = [len(r.token_ids) for r in results]
    table["finish_reason"] = [r.finish_reason for r in results]
    table["token_confidence"] = [np.asarray(r.token_confidence, dtype=np.float32) for r in results]
    table["token_logprob"] = [confidence.clip_logprobs(r.token_logprob)[0].astype(np.float32) for r in results]
    table["nonfinite_logprobs"] = [int(r.nonfinite_logprobs) for r in results]
    for name, values in confidence_columns(list(table["token_confidence"]), list(table["token_logprob"]),
                                           group_window).items():
        table[name] = values
    table["group_window"] = group_window  # the analyses read the window from here
    return table


# generation_mode full | live; in live mode: live_policy (its name in predictions), live_tau,
# warmup_traces, live_budget (traces_per_prompt: the most the policy could take) and each trace's
# cut_threshold (NaN: not cut-watched); finish_reason "cut" = stopped by it
TRACE_COLUMNS = [
    "instance_id", "trace_idx", "model", "text", "answer_text", "n_tokens", "finish_reason", "seed",
    "token_confidence", "token_logprob", "conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail",
    "mean_logprob", "nonfinite_logprobs", "group_window", "generation_key",
    "generation_mode", "live_policy", "live_tau", "warmup_traces", "live_budget", "cut_threshold",
]


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df[TRACE_COLUMNS].sort_values(["instance_id", "trace_idx"], kind="stable").reset_index(drop=True)
