"""transformers backend (CPU or GPU): batched across prompts, left padding, per-trace seeds.

The decode loop (`generate_batch`) runs the model with its KV cache and drops finished rows from
the batch as soon as they emit an EOS (transformers' `generate` keeps them computing until the
longest answer ends). Each step goes through `sample_next`, which
  * records the top-k log-probs of the model's raw distribution (temperature 1, before any
    filtering, as vLLM reports `logprobs`) from which DeepConf confidence is computed, and the
    log-prob of the token it samples;
  * samples with temperature, top-k and top-p through the Gumbel-max trick, the noise being a
    hash of (trace seed, step, token id). A trace therefore depends on its own seed only, not on
    which other traces share its batch, like vLLM's per-request seeds.
"""

from __future__ import annotations

import ctypes
import sys
import time
from pathlib import Path

import numpy as np

from deepconf_assets.core import confidence
from resources.generation_types import GeneratedTrace, SamplingSettings

_M32 = 0xFFFFFFFF


def _pcg_hash(x):
    """PCG hash on int64 tensors holding 32-bit values (Jarzynski & Olano, 2020)."""
    state = (x * 747796405 + 2891336453) & _M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _M32
    return (word >> 22) ^ word


def seeded_uniform(seeds, step: int, token_ids):
    """Uniform(0,1) noise that depends only on (seed, step, token id); shape of `token_ids`."""
    import torch

    h = _pcg_hash(_pcg_hash(seeds & _M32) ^ ((seeds >> 32) & _M32))
    h = _pcg_hash(h ^ (step & _M32))
    h = _pcg_hash(h[:, None] ^ token_ids)
    return (h.to(torch.float64) + 0.5) / 2.0**32


def sample_next(scores, seeds, step: int, settings: SamplingSettings):
    """One decoding step for a batch of rows.

    Returns (chosen token, top-k log-probs of the raw distribution, log-prob of the chosen token).
    Temperature, top-k and top-p are applied as vLLM and transformers do (in that order); the draw is
    Gumbel-max with noise hashed from (row seed, step, token id), so a row's result depends on its
    own seed only.
    """
    import torch

    logprobs = torch.log_softmax(scores.float(), dim=-1)
    vocab = logprobs.shape[-1]
    filtered = settings.temperature > 0 and settings.top_k and settings.top_k > 0
    # one top-k over the vocabulary serves both: the confidence's k and the sampler's top_k candidates
    # (log_softmax and scores / temperature rank tokens alike)
    best_logprobs, best_ids = logprobs.topk(min(max(settings.logprobs_k, settings.top_k if filtered else 0), vocab), dim=-1)
    topk = best_logprobs[:, : min(settings.logprobs_k, vocab)]
    if settings.temperature <= 0:
        token = logprobs.argmax(dim=-1)
    else:
        scaled = scores.float() / settings.temperature
        if filtered:
            candidates = best_ids[:, : min(settings.top_k, vocab)]
            values = scaled.gather(1, candidates)
        else:
            values, candidates = scaled.sort(dim=-1, descending=True)
        if settings.top_p < 1.0:
            probs = torch.softmax(values, dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs
            values = values.masked_fill(mass_before > settings.top_p, float("-inf"))  # keeps the top token
        gumbel = -torch.log(-torch.log(seeded_uniform(seeds, step, candidates)))
        pick = (values.double() + gumbel).argmax(dim=-1, keepdim=True)
        token = candidates.gather(1, pick).squeeze(1)
    return token, topk, logprobs.gather(1, token[:, None]).squeeze(1)


class TransformersEngine:
    """A loaded model and tokenizer; `generate_batch` runs one batch of (prompt, seed) requests."""

    name = "transformers"

    def __init__(self, folder: Path, device: str, dtype: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                       "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", trust_remote_code=False)
        on_cpu = device == "cpu"
        if on_cpu:
            _register_cpu_attention()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, trust_remote_code=False,
                                                     attn_implementation=CPU_ATTENTION if on_cpu else None)
        self.model = model.to(device).eval()
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 10**9))
        self.vocab_size = int(model.config.vocab_size)  # the width of the logits

    def run(self, indices: list[int], texts: list[str], seeds: list[int], settings: SamplingSettings,
            batch_sequences: int, finished, cuts: list | None = None, batch_tokens: int | None = None,
            on_tokens=None) -> int:
        """Generate in batches (in the given order) of at most `batch_sequences` sequences and `batch_tokens`
        prompt + answer tokens; report each batch to `finished`, which may return more requests (index,
        text, seed, cut): they join the queue, shortest first, and go into the next batch. `cuts`: a
        `WindowCut` (or None) per request: the row leaves the batch when it says stop. `on_tokens(n)` hears
        of the n tokens of every decoding step (progress inside a long batch)."""
        def queued(items) -> list[tuple]:
            items = list(items)
            lengths = self.tokenizer([t for _, t, _, _ in items], add_special_tokens=False)["input_ids"] if items else []
            return [(len(ids), *item) for ids, item in zip(lengths, items)]

        queue = [(len(ids), *item) for ids, item in zip(
            self.tokenizer(texts, add_special_tokens=False)["input_ids"],
            zip(indices, texts, seeds, cuts if cuts is not None else [None] * len(texts)))]
        calls = 0
        while queue:
            part = token_budget_batches([q[0] for q in queue], settings.max_new_tokens, batch_sequences, batch_tokens)[0]
            batch, queue = queue[part], queue[part.stop:]
            traces = self.generate_batch([q[2] for q in batch], [q[3] for q in batch], settings, [q[4] for q in batch],
                                         on_tokens)
            calls += 1
            # new requests join the queue by length, so a batch mixes what is queued without extra padding
            queue = sorted(queue + queued(finished([q[1] for q in batch], traces) or []), key=lambda q: q[0])
        return calls

    def next_token_logprobs(self, texts: list[str], token_ids: list[int], batch: int = 16):
        """log P(token | text) for each text and candidate token: (texts, candidates) array."""
        import torch

        out = []
        with torch.inference_mode():
            for first in range(0, len(texts), batch):
                encoded = self.tokenizer(texts[first:first + batch], return_tensors="pt", padding=True,
                                         add_special_tokens=False).to(self.model.device)
                positions = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**encoded, position_ids=positions, logits_to_keep=1).logits[:, -1]
                out.append(torch.log_softmax(logits.float(), dim=-1)[:, token_ids].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(token_ids)))

    def generate_batch(self, texts: list[str], seeds: list[int], settings: SamplingSettings,
                       cuts: list | None = None, on_tokens=None) -> list[GeneratedTrace]:
        """Prefill the left-padded batch once, then decode step by step with the KV cache; rows
        that generated an EOS, or that their `WindowCut` stops (live early stopping), leave the batch
        at once, so one long answer does not keep finished rows computing and a cut trace's later
        tokens are never computed."""
        import torch
        from transformers import DynamicCache

        model, tokenizer = self.model, self.tokenizer
        device = model.device
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        mask = encoded["attention_mask"]
        eos = torch.tensor(self.eos_ids, device=device)
        rows = torch.arange(len(texts), device=device)  # batch row -> request
        row_seeds = torch.tensor(seeds, dtype=torch.int64, device=device)
        tokens = [[] for _ in texts]
        topks = [[] for _ in texts]
        sampled = [[] for _ in texts]
        finished = [False] * len(texts)
        was_cut = [False] * len(texts)
        cuts = cuts if cuts is not None else [None] * len(texts)
        watched = any(c is not None for c in cuts)
        cache = DynamicCache(config=model.config)
        trimmed = time.monotonic()
        with torch.inference_mode():
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions,
                           past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            for step in range(settings.max_new_tokens):
                token, topk, logprob = sample_next(logits, row_seeds, step, settings)
                token_list, topk_np, logprob_np = token.tolist(), topk.float().cpu().numpy(), logprob.float().cpu().numpy()
                done = torch.isin(token, eos)
                # the stored confidence of each row's token, computed as GeneratedTrace does (row by row)
                step_confidence = confidence.token_confidence(topk_np.astype(np.float64))[0] if watched else None
                for i, request in enumerate(rows.tolist()):
                    tokens[request].append(token_list[i])
                    topks[request].append(topk_np[i])
                    sampled[request].append(logprob_np[i])
                    if cuts[request] is not None and cuts[request].push(step_confidence[i]):
                        was_cut[request] = True
                        done[i] = True
                for request in rows[done].tolist():
                    finished[request] = True
                if on_tokens is not None:
                    on_tokens(len(token_list))
                if device.type == "cpu" and time.monotonic() - trimmed >= TRIM_EVERY_S:
                    release_freed_memory()
                    trimmed = time.monotonic()
                if step + 1 == settings.max_new_tokens or bool(done.all()):
                    break
                if bool(done.any()):
                    keep = (~done).nonzero().squeeze(1)
                    cache.batch_select_indices(keep)
                    rows, row_seeds, token, mask, positions = (
                        rows[keep], row_seeds[keep], token[keep], mask[keep], positions[keep])
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1
                logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                               past_key_values=cache, use_cache=True).logits[:, -1]
        return [
            GeneratedTrace.from_logprobs(
                text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                token_logprob=np.array(sampled[r], dtype=np.float32), topk_logprobs=np.array(topks[r]),
                finish_reason="cut" if was_cut[r] else "stop" if finished[r] else "length", seed=int(seeds[r]),
            )
            for r, ids in enumerate(tokens)
        ]


def token_budget_batches(prompt_lengths: list[int], max_new_tokens: int, batch_sequences: int,
                         batch_tokens: int | None) -> list[slice]:
    """Consecutive batches of at most `batch_sequences` sequences whose padded size (sequences x (longest
    prompt + max_new_tokens)) stays within `batch_tokens`, the KV cache's bound; a sequence alone over the
    budget still gets a batch of its own."""
    batches, first = [], 0
    while first < len(prompt_lengths):
        end, longest = first, 0
        while end < len(prompt_lengths) and end - first < batch_sequences:
            longest_if = max(longest, prompt_lengths[end])
            if batch_tokens is not None and end > first and (end - first + 1) * (longest_if + max_new_tokens) > batch_tokens:
                break
            longest, end = longest_if, end + 1
        batches.append(slice(first, end))
        first = end
    return batches


CPU_ATTENTION = "sdpa_gqa"


def _sdpa_gqa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' sdpa attention with torch's grouped-query support instead of repeating the KV heads."""
    import torch

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _register_cpu_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CPU_ATTENTION, _sdpa_gqa)
    AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)


# Seconds between heap trims in the decode loop: a step of a real model (SmolLM2, 256 rows) takes about 0.8 s,
# so it is trimmed every step; the demo model's 5 ms steps every hundred (trimming costs about 1 ms).
TRIM_EVERY_S = 0.5


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system (glibc `malloc_trim`; a no-op elsewhere). See the
    module docstring: without it, the KV cache that grows a token a step fragments the heap."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")  # not ctypes.util.find_library: it forks a subprocess
        libc.malloc_trim  # musl and other libcs have none
        return libc
    except (OSError, AttributeError):
        return None


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos
