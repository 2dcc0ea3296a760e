"""The generation resource: N sampled traces per prompt with per-token top-k log-probabilities.

Backend now: transformers (CPU or GPU), batched across prompts with left padding and length-sorted
batches. The model is loaded once per run and reused for every batch.

Sampling happens in `SeededSampler`, a logits processor that sees the raw logits of every step:
  * it records the top-k log-probs of the model's distribution (temperature 1, before any
    filtering, as vLLM reports `logprobs`) from which DeepConf confidence is computed, and the
    log-prob of the token it samples;
  * it samples with temperature, top-k and top-p through the Gumbel-max trick, the noise being a
    hash of (trace seed, step, token id). A trace therefore depends on its own seed only, not on
    which other traces share its batch, like vLLM's per-request seeds.
`generate` is then run greedily over the processor's one-hot output.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.model_registry import resolve_model_dir


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 256
    logprobs_k: int = 20
    enable_thinking: bool = False


@dataclass
class GeneratedTrace:
    text: str
    token_ids: list[int]
    token_logprob: np.ndarray  # (T,) log-prob of each sampled token under the model
    topk_logprobs: np.ndarray  # (T, k) top-k log-probs at each generated position
    finish_reason: str  # "stop" (EOS generated, counted in T) or "length"
    seed: int


@dataclass
class GenerationStats:
    sequences: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    batches: int = 0
    extra: dict = field(default_factory=dict)


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


class SeededSampler:
    """Logits processor: records top-k log-probs, samples per-trace-seeded, returns one-hot logits."""

    def __init__(self, seeds, prompt_length: int, settings: SamplingSettings):
        self.seeds = seeds
        self.prompt_length = prompt_length
        self.settings = settings
        self.topk: list = []
        self.sampled_logprob: list = []

    def __call__(self, input_ids, scores):
        import torch

        s = self.settings
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        self.topk.append(logprobs.topk(min(s.logprobs_k, logprobs.shape[-1]), dim=-1).values)
        if s.temperature <= 0:
            token = logprobs.argmax(dim=-1)
        else:
            scaled = scores.float() / s.temperature
            if s.top_k and s.top_k > 0:
                values, candidates = scaled.topk(min(s.top_k, scaled.shape[-1]), dim=-1)
            else:
                values, candidates = scaled.sort(dim=-1, descending=True)
            if s.top_p < 1.0:
                probs = torch.softmax(values, dim=-1)
                mass_before = probs.cumsum(dim=-1) - probs
                values = values.masked_fill(mass_before > s.top_p, float("-inf"))  # keeps the top token
            step = input_ids.shape[1] - self.prompt_length
            gumbel = -torch.log(-torch.log(seeded_uniform(self.seeds, step, candidates)))
            pick = (values.double() + gumbel).argmax(dim=-1, keepdim=True)
            token = candidates.gather(1, pick).squeeze(1)
        self.sampled_logprob.append(logprobs.gather(1, token[:, None]).squeeze(1))
        one_hot = torch.full_like(scores, float("-inf"))
        return one_hot.scatter_(1, token[:, None], 0.0)


class GenerationResource(ConfigurableResource):
    """Samples traces from a registered model. Engines load once per run (per process)."""

    backend: str = "transformers"
    device: str = "auto"  # auto = cuda when available, else cpu
    dtype: str = "auto"  # auto = bfloat16 on cuda, float32 on cpu
    batch_sequences: int = 256  # sequences (prompts x traces) per generate call

    _engines: dict = PrivateAttr(default_factory=dict)

    def _device(self) -> str:
        import torch

        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self, model_key: str, log=None):
        """(model, tokenizer, model folder) for a model key, loaded once and cached."""
        if model_key not in self._engines:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.backend != "transformers":
                raise ValueError(f"backend {self.backend!r} is not available yet; use 'transformers'")
            folder = resolve_model_dir(model_key, log)
            device = self._device()
            dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                     "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
            tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False)
            self._engines[model_key] = (model.to(device).eval(), tokenizer, Path(folder))
        return self._engines[model_key]

    def chat_prompt(self, tokenizer, prompt: str, settings: SamplingSettings) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True,
            enable_thinking=settings.enable_thinking,
        )

    def generate(
        self, model_key: str, prompts: list[str], seeds: list[int], settings: SamplingSettings, log=None
    ) -> tuple[list[GeneratedTrace], GenerationStats]:
        """One trace per (prompt, seed) request; results in request order."""
        import torch

        model, tokenizer, _ = self.load(model_key, log)
        texts = [self.chat_prompt(tokenizer, p, settings) for p in prompts]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
        eos_ids = _eos_ids(model, tokenizer)
        results: list[GeneratedTrace | None] = [None] * len(prompts)
        stats = GenerationStats()
        started = time.monotonic()
        for first in range(0, len(order), self.batch_sequences):
            batch = order[first : first + self.batch_sequences]
            traces = self._generate_batch(
                model, tokenizer, [texts[i] for i in batch], [seeds[i] for i in batch], settings, eos_ids
            )
            for index, trace in zip(batch, traces):
                results[index] = trace
            stats.batches += 1
            stats.sequences += len(batch)
            stats.generated_tokens += sum(len(t.token_ids) for t in traces)
            stats.seconds = time.monotonic() - started
            if log:
                rate = stats.generated_tokens / max(stats.seconds, 1e-9)
                eta = stats.seconds / stats.sequences * (len(order) - stats.sequences)
                log(f"generated {stats.sequences}/{len(order)} traces, {rate:,.0f} tokens/s, ETA {eta:.0f}s")
        return results, stats

    def _generate_batch(self, model, tokenizer, texts, seeds, settings, eos_ids) -> list[GeneratedTrace]:
        import torch
        from transformers import LogitsProcessorList

        device = model.device
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        prompt_length = encoded["input_ids"].shape[1]
        sampler = SeededSampler(torch.tensor(seeds, dtype=torch.int64, device=device), prompt_length, settings)
        # Greedy over SeededSampler's one-hot logits; the model's own sampling defaults are reset to
        # neutral values so transformers neither applies nor warns about them.
        config = copy.deepcopy(model.generation_config)
        config.update(
            do_sample=False, temperature=1.0, top_p=1.0, top_k=50, min_p=None, repetition_penalty=1.0,
            max_new_tokens=settings.max_new_tokens, max_length=None, eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0],
        )
        with torch.inference_mode():
            sequences = model.generate(**encoded, generation_config=config,
                                       logits_processor=LogitsProcessorList([sampler]))
        generated = sequences[:, prompt_length:].cpu().numpy()
        topk = torch.stack(sampler.topk, dim=1).float().cpu().numpy()
        sampled = torch.stack(sampler.sampled_logprob, dim=1).float().cpu().numpy()
        is_eos = np.isin(generated, eos_ids)
        traces = []
        for row, seed in enumerate(seeds):
            stops = np.flatnonzero(is_eos[row])
            length = int(stops[0]) + 1 if len(stops) else generated.shape[1]
            ids = generated[row, :length].tolist()
            traces.append(GeneratedTrace(
                text=tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                token_logprob=sampled[row, :length].astype(np.float32),
                topk_logprobs=topk[row, :length].astype(np.float32),
                finish_reason="stop" if len(stops) else "length",
                seed=int(seed),
            ))
        return traces


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos
