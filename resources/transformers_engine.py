"""transformers backend (CPU or GPU): continuous batching across prompts, left padding, per-trace seeds.

The decode loop (`TransformersEngine.run`, `_DecodeBatch`) runs the model with its KV cache; a row leaves
the batch as soon as it emits an EOS or its live cut fires (transformers' `generate` keeps finished rows
computing until the longest answer ends), and queued requests take its place at once, prefilled apart
and padded into the cache on the left, so the batch stays full until the queue is empty. Each step goes
through `sample_next`, which
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
from dataclasses import dataclass, field
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


def seeded_uniform(seeds, step, token_ids):
    """Uniform(0,1) noise that depends only on (seed, step, token id); shape of `token_ids`. `step`: an int,
    or a tensor of each row's step (rows of a continuous batch are at different steps)."""
    import torch

    h = _pcg_hash(_pcg_hash(seeds & _M32) ^ ((seeds >> 32) & _M32))
    h = _pcg_hash(h ^ (step & _M32))
    h = _pcg_hash(h[:, None] ^ token_ids)
    return (h.to(torch.float64) + 0.5) / 2.0**32


def sample_next(scores, seeds, step, settings: SamplingSettings):
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


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of hardware bfloat16 matrix arithmetic


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU does bfloat16 arithmetic in hardware (AVX512-BF16 or AMX-BF16 among the flags of
    /proc/cpuinfo), detected, never guessed from the model; False where the flags cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def resolved_dtype(dtype: str, device: str) -> str:
    """generator.dtype as the engine loads it: "auto" is bfloat16 on a GPU and float32 on a CPU, also one with
    native bfloat16 arithmetic (`cpu_has_native_bf16`): measured there (README, "bfloat16 on the CPU"),
    bfloat16 scores the same tokens faithfully, but a batched bfloat16 forward differs from a lone one, so a
    trace would depend on its batch and live early stopping would no longer equal its replay."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


class TransformersEngine:
    """A loaded model and tokenizer; `run` generates (prompt, seed) requests with continuous batching."""

    name = "transformers"

    def __init__(self, folder: Path, device: str, dtype: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        torch_dtype = getattr(torch, resolved_dtype(dtype, device))
        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", trust_remote_code=False)
        on_cpu = device == "cpu"
        if on_cpu:
            _register_cpu_attention()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, trust_remote_code=False,
                                                     attn_implementation=CPU_ATTENTION if on_cpu else None)
        self.model = model.to(device).eval()
        # what, beyond weights and sampling, decides the traces' numbers (part of every generation key)
        self.numerics = {"dtype": str(torch_dtype).removeprefix("torch."), "device": self.model.device.type,
                         "attention": CPU_ATTENTION if on_cpu else "default"}
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 10**9))
        self.vocab_size = int(model.config.vocab_size)  # the width of the logits

    def run(self, indices: list[int], texts: list[str], seeds: list[int], settings: SamplingSettings,
            batch_sequences: int, finished, cuts: list | None = None, batch_tokens: int | None = None,
            on_tokens=None) -> int:
        """Continuous batching: one running decode batch of at most `batch_sequences` sequences whose KV cache
        stays within `batch_tokens` (sequences x (longest prompt + max_new_tokens)). Queued requests, shortest
        first, join it as soon as rows leave, so the batch stays full to the end.

        Finished traces are handed to `finished`, which may return more requests (index, text, seed, cut); they
        join the queue and the running batch. Hand-over is immediate while the batch has room the queue cannot
        fill (a new request starts now), else at most every HAND_ON_EVERY_S, so the caller's work (live
        stopping replays its policy) does not slow every step. `cuts`: a `WindowCut` (or None) per request: the
        row leaves when it says stop. `on_tokens(n)` hears of the n tokens of every decoding step. Returns the
        number of prefills."""
        import torch

        queue: list[tuple] = []  # (prompt tokens, index, text, seed, cut), shortest first

        def enqueue(items) -> None:
            items = list(items)
            if items:
                lengths = self.tokenizer([t for _, t, _, _ in items], add_special_tokens=False)["input_ids"]
                queue.extend((len(ids), *item) for ids, item in zip(lengths, items))
                queue.sort(key=lambda q: q[0])  # stable: equal lengths keep request order

        enqueue(zip(indices, texts, seeds, cuts if cuts is not None else [None] * len(texts)))
        batch = _DecodeBatch(self, settings, on_tokens)
        done: list[tuple[int, GeneratedTrace]] = []
        handed, prefills = time.monotonic(), 0
        with torch.inference_mode():
            while True:
                room = admissible([q[0] for q in queue], batch.prompt_lengths, settings.max_new_tokens, batch_sequences,
                                  batch_tokens)
                # each admission is a prefill and a copy of the cache: wait for a sixteenth of the batch to be
                # free, unless the queue is shorter
                if room and room >= min(len(queue), max(1, (len(batch.rows) + room) // 16)):
                    batch.admit(queue[:room])
                    del queue[:room]
                    prefills += 1
                if not batch.rows:
                    break
                done += batch.step()
                free = batch_sequences - len(batch.rows) - len(queue)
                if done and (free > 0 or not batch.rows or time.monotonic() - handed >= HAND_ON_EVERY_S):
                    enqueue(finished([i for i, _ in done], [t for _, t in done]) or [])
                    done, handed = [], time.monotonic()
        return prefills

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

HAND_ON_EVERY_S = 0.25  # while the batch is full, finished traces are handed on at most this often
LEAD_TRIM = 16  # leading cache columns that no row attends to are cut off once there are this many


def admissible(queued: list[int], running: list[int], max_new_tokens: int, batch_sequences: int,
               batch_tokens: int | None) -> int:
    """How many of the queued prompts (token lengths, shortest first) can join a batch running prompts of
    the `running` lengths: at most `batch_sequences` sequences whose padded size (sequences x (longest prompt
    + max_new_tokens)) stays within `batch_tokens`, the KV cache's bound. A prompt alone over the budget
    still runs when the batch is empty."""
    longest, n = max(running, default=0), 0
    while n < len(queued) and len(running) + n < batch_sequences:
        longest_if = max(longest, queued[n])
        if batch_tokens is not None and (running or n) and (len(running) + n + 1) * (longest_if + max_new_tokens) > batch_tokens:
            break
        longest, n = longest_if, n + 1
    return n


@dataclass
class _Row:
    """One request in the running batch and what it has generated so far."""

    index: int
    seed: int
    cut: object  # a WindowCut or None
    prompt_length: int
    tokens: list = field(default_factory=list)
    topks: list = field(default_factory=list)
    sampled: list = field(default_factory=list)

    def trace(self, tokenizer, reason: str) -> GeneratedTrace:
        return GeneratedTrace.from_logprobs(
            text=tokenizer.decode(self.tokens, skip_special_tokens=True), token_ids=self.tokens,
            token_logprob=np.array(self.sampled, dtype=np.float32), topk_logprobs=np.array(self.topks),
            finish_reason=reason, seed=self.seed)


class _DecodeBatch:
    """The running batch: its rows, their left-padded attention mask and KV cache, each row's last position,
    decoding step and seed, and the logits of each row's next token. Rows join (`admit`: prefilled apart, then
    padded into the cache on the left) and leave (`step`: EOS, a live cut or max_new_tokens) at any step."""

    def __init__(self, engine: TransformersEngine, settings: SamplingSettings, on_tokens=None):
        import torch

        self.model, self.tokenizer, self.settings, self.on_tokens = engine.model, engine.tokenizer, settings, on_tokens
        self.eos = torch.tensor(engine.eos_ids, device=engine.model.device)
        self.rows: list[_Row] = []
        self.cache = self.mask = self.positions = self.steps = self.seeds = self.logits = None
        self.trimmed = time.monotonic()

    @property
    def prompt_lengths(self) -> list[int]:
        return [row.prompt_length for row in self.rows]

    def admit(self, items: list[tuple]) -> None:
        """Prefill queued requests (prompt tokens, index, text, seed, cut) and add them to the batch."""
        import torch
        from transformers import DynamicCache

        device = self.model.device
        encoded = self.tokenizer([q[2] for q in items], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(device)
        mask = encoded["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        seeds = torch.tensor([q[3] for q in items], dtype=torch.int64, device=device)
        fresh = (mask, positions[:, -1], torch.zeros_like(seeds), seeds, logits)
        if not self.rows:
            self.cache, (self.mask, self.positions, self.steps, self.seeds, self.logits) = cache, fresh
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            old, new = width - self.mask.shape[1], width - mask.shape[1]
            for mine, theirs in zip(self.cache.layers, cache.layers):
                mine.keys = torch.cat([_left_pad(mine.keys, old, -2), _left_pad(theirs.keys, new, -2)])
                mine.values = torch.cat([_left_pad(mine.values, old, -2), _left_pad(theirs.values, new, -2)])
            self.mask = torch.cat([_left_pad(self.mask, old, 1), _left_pad(mask, new, 1)])
            self.positions, self.steps, self.seeds, self.logits = (
                torch.cat([a, b]) for a, b in zip((self.positions, self.steps, self.seeds, self.logits), fresh[1:]))
        self.rows += [_Row(index, seed, cut, length) for length, index, _, seed, cut in items]

    def step(self) -> list[tuple[int, GeneratedTrace]]:
        """Sample every row's next token, let finished rows leave, and run the rest one step; returns the
        finished (index, trace) pairs. A cut stops a row at the token it fires on, even an EOS (as in the
        replay); otherwise an EOS ends it ("stop"), or max_new_tokens ("length")."""
        import torch

        token, topk, logprob = sample_next(self.logits, self.seeds, self.steps, self.settings)
        token_list, topk_np, logprob_np = token.tolist(), topk.float().cpu().numpy(), logprob.float().cpu().numpy()
        eos, last = torch.isin(token, self.eos).tolist(), (self.steps + 1 >= self.settings.max_new_tokens).tolist()
        watched = any(row.cut is not None for row in self.rows)
        # the stored confidence of each row's token, computed as GeneratedTrace does
        step_confidence = confidence.token_confidence(topk_np.astype(np.float64))[0] if watched else None
        finished, keep = [], []
        for i, row in enumerate(self.rows):
            row.tokens.append(token_list[i]), row.topks.append(topk_np[i]), row.sampled.append(logprob_np[i])
            reason = ("cut" if row.cut is not None and row.cut.push(step_confidence[i])
                      else "stop" if eos[i] else "length" if last[i] else None)
            if reason is None:
                keep.append(i)
            else:
                finished.append((row.index, row.trace(self.tokenizer, reason)))
        if self.on_tokens is not None:
            self.on_tokens(len(token_list))
        if len(keep) < len(self.rows):
            self._select(keep, token)
            token = token[keep]
        if self.rows:
            self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
            self.positions, self.steps = self.positions + 1, self.steps + 1
            self.logits = self.model(input_ids=token[:, None], attention_mask=self.mask,
                                     position_ids=self.positions[:, None], past_key_values=self.cache,
                                     use_cache=True).logits[:, -1]
        if self.model.device.type == "cpu" and time.monotonic() - self.trimmed >= TRIM_EVERY_S:
            release_freed_memory()
            self.trimmed = time.monotonic()
        return finished

    def _select(self, keep: list[int], token) -> None:
        """Keep only these rows; drop cache columns no remaining row attends to."""
        import torch

        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache = self.mask = self.positions = self.steps = self.seeds = self.logits = None
            return
        kept = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(kept)
        self.mask, self.positions, self.steps, self.seeds = (
            t[kept] for t in (self.mask, self.positions, self.steps, self.seeds))
        lead = int(self.mask.any(dim=0).int().argmax())  # the first column some row attends to
        if lead >= LEAD_TRIM:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., lead:, :], layer.values[..., lead:, :]
            self.mask = self.mask[:, lead:]


def _left_pad(tensor, width: int, dim: int):
    """`width` zeros in front of `tensor` along `dim` (masked columns of the cache and mask)."""
    import torch

    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


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
