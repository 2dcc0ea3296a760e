"""The generation resource: N sampled traces per prompt with per-token DeepConf confidence.

One resource, two backends behind one `generate` method, same output fields:
  * `vllm` (GPU, production): one engine per run, every missing request in one streaming
    submission with per-request seeds, `logprobs=k`, automatic prefix caching;
  * `transformers` (CPU or GPU): batched across prompts, length-sorted, left-padded.
`backend: auto` picks vLLM when it is importable and a GPU is present.

Every registered model loads through it, generators and classifiers alike (WildGuard is
`engine("wildguard")`, see resources.wildguard_classifier), with the same backend, dtype and vLLM
settings.
One engine is loaded at a time: asking for another model closes the loaded one first, so a 7B
classifier and a generator never share a GPU. vLLM's tensor-parallel size comes from the model
registry unless set here.

Work is resumable and incremental: finished traces go to a `ShardStore` as they complete (a shard
per `batch_sequences` traces); a request already in the store is never generated again. Requests
are planned in one deterministic order (prompt length, then request order), so a re-run after a kill
forms the same batches as the run it resumes.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import resource
import sys
import time
from typing import Callable, Literal, Optional

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from deepconf_assets.core.live import WindowCut
from resources.generation_types import GeneratedTrace, GenerationStats, SamplingSettings
from resources.model_registry import model_spec, resolve_model_dir
from resources.shard_store import ShardStore, as_shard_rows

class GenerationOutOfMemory(RuntimeError):
    """The accelerator ran out of memory; the message names the setting to lower."""


class GenerationResource(ConfigurableResource):
    """Samples traces from (and classifies with) a registered model. An engine loads once per run (per
    process) and stays loaded until another model is asked for."""

    # Literal choices are enums in Dagster's config schema: a wrong value is refused at launch.
    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="auto | vllm | transformers (auto = vLLM when importable and a GPU is present)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="transformers: auto (cuda when available, else cpu) | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on GPU, float32 on CPU (bfloat16 batches would make a trace depend "
                            "on its batch on the CPU: README, 'bfloat16 on the CPU'); or float32 | bfloat16 | float16")
    batch_sequences: int = Field(256, ge=1, description="transformers: most sequences per forward batch; both: traces per shard")
    batch_tokens: int = Field(
        65536, ge=1, description="transformers: most prompt + answer tokens per batch (sequences x (longest prompt + "
                                 "max_new_tokens)), which bounds the KV cache: SmolLM2-135M keeps 46 KB per token in "
                                 "float32, so 65,536 tokens are 3 GB")
    max_model_len: Optional[int] = Field(
        None, ge=16, description="Context limit (prompt + answer); empty = the model's own positions (SmolLM2 8,192, "
                                 "Qwen3 40,960). Longer prompts are quarantined")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM: share of GPU memory for weights and KV cache")
    tensor_parallel_size: Optional[int] = Field(
        None, ge=1, description="vLLM: GPUs per model; empty = the model registry's `gpus` for each model "
                                "(change it there, so the Kubernetes GPU request follows)")
    enforce_eager: bool = Field(False, description="vLLM: skip CUDA graphs (needed by the CPU build)")

    _engine: object = PrivateAttr(default=None)
    _engine_key: Optional[str] = PrivateAttr(default=None)

    def unavailable(self) -> str | None:
        """Why this machine cannot run the configured backend and device (None when it can): asked at the
        run's first step, so an impossible setting fails in seconds, not after a model load."""
        if self.backend == "vllm" and importlib.util.find_spec("vllm") is None:
            return "generator.backend is 'vllm' but vLLM is not installed here (pip install -e '.[vllm]' on a GPU machine)"
        if self.device.startswith("cuda"):
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if index >= count:
                return (f"generator.device is '{self.device}' but this machine has {count} CUDA device(s); "
                        f"use 'auto' or 'cpu'")
        return None

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        import torch

        return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"

    @property
    def loaded_model(self) -> str | None:
        """The key of the model whose engine is loaded now (None before the first load)."""
        return self._engine_key

    def tensor_parallel_for(self, model_key: str) -> int:
        return self.tensor_parallel_size or model_spec(model_key).gpus

    def engine(self, model_key: str, log: Callable | None = None):
        """The loaded engine for a model key: loaded once and reused while the same model is asked
        for; another model's engine is closed first (one model on the accelerator at a time)."""
        if self._engine_key == model_key:
            return self._engine
        folder = resolve_model_dir(model_key, log)  # raises ModelWeightsNotFound before anything is unloaded
        if self._engine is not None:
            if log:
                log(f"closing '{self._engine_key}' to load '{model_key}' (one model loaded at a time)")
            self.close()
        backend = self.resolved_backend()
        started = time.monotonic()
        if log:
            log(f"loading '{model_key}' from {folder} with the {backend} backend"
                + (" (vLLM: about 20-60 s to start its engine)" if backend == "vllm" else ""))
        if backend == "vllm":
            from resources.vllm_engine import VllmEngine

            engine = VllmEngine(folder, self, tensor_parallel_size=self.tensor_parallel_for(model_key))
        else:
            import torch

            from resources.transformers_engine import TransformersEngine

            device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
            engine = TransformersEngine(folder, device, self.dtype)
        self._engine, self._engine_key = engine, model_key
        if log:
            log(f"loaded '{model_key}' in {time.monotonic() - started:.0f}s")
        return engine

    def close(self) -> None:
        """Release the loaded engine and its accelerator memory (vLLM workers are separate processes)."""
        engine, self._engine, self._engine_key = self._engine, None, None
        if engine is None:
            return
        if hasattr(engine, "close"):
            engine.close()
        del engine
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def teardown_after_execution(self, context) -> None:
        """Release the engine at the end of a run."""
        self.close()

    def context_limit(self, model_key: str) -> int:
        positions = self.engine(model_key).max_positions
        return positions if self.max_model_len is None else min(self.max_model_len, positions)

    def chat_template(self, model_key: str) -> dict:
        """Which chat template prompts go through: the model's own (from its folder), a hash that names it,
        whether it reads Qwen3's `enable_thinking` switch and whether it adds a default system prompt."""
        tokenizer = self.engine(model_key).tokenizer
        template = tokenizer.chat_template
        if not isinstance(template, str) or not template:
            raise ValueError(f"'{model_key}' has no chat template in its tokenizer: a chat prompt cannot be formed")
        probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                              add_generation_prompt=True)
        return {"chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
                "chat_template_reads_enable_thinking": "enable_thinking" in template,
                "chat_template_default_system_prompt": "system" in probe.split("user", 1)[0]}

    def chat_prompts(self, model_key: str, prompts: list[str], settings: SamplingSettings) -> list[str]:
        tokenizer = self.engine(model_key).tokenizer
        return [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True, enable_thinking=settings.enable_thinking)
            for p in prompts
        ]

    def prompt_token_counts(self, model_key: str, prompts: list[str], settings: SamplingSettings) -> list[int]:
        if not prompts:  # a tokenizer called on an empty batch raises IndexError
            return []
        texts = self.chat_prompts(model_key, prompts, settings)
        return [len(ids) for ids in self.engine(model_key).tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(
        self,
        model_key: str,
        prompts: list[str],
        seeds: list[int],
        keys: list[str],
        settings: SamplingSettings,
        store: ShardStore | None = None,
        log: Callable | None = None,
        cut_thresholds: list[float] | None = None,
        group_window: int | None = None,
        more: Callable[[list[int], list[GeneratedTrace]], list[tuple]] | None = None,
    ) -> tuple[list[GeneratedTrace], GenerationStats]:
        """One trace per (prompt, seed, generation key) request, in request order.

        Live early stopping: a request with a finite `cut_thresholds` entry stops at the end of its first
        `group_window`-token group whose confidence is below it (finish_reason "cut"); its generation key
        must then name the threshold, since the stored trace depends on it.

        Streaming (`more`): as traces finish (those found in the shard store first), `more(indices, traces)`
        returns further requests (prompt, seed, key, cut_threshold) that join this same run at once, with
        the next indices; the engine never waits for a whole batch or round to end before they start. The
        results then hold every request, the added ones after the given ones."""
        engine = self.engine(model_key, log)
        stats = GenerationStats(requested=len(prompts), backend=engine.name)
        if not prompts:
            return [], stats
        prompts, seeds, keys = list(prompts), list(seeds), list(keys)
        thresholds = list(cut_thresholds) if cut_thresholds is not None else [float("nan")] * len(prompts)
        texts = self.chat_prompts(model_key, prompts, settings)
        lengths = [len(ids) for ids in engine.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        plan = np.lexsort((np.arange(len(texts)), lengths))  # deterministic: by length, then request order

        # streaming: what the added requests will need is not known yet, so every stored row is read once
        stored = store.read(None if more else set(zip(keys, seeds)), warn=log) if store is not None else None
        rows = stored.to_dict("records") if stored is not None else []
        position = {(row["generation_key"], int(row["seed"])): i for i, row in enumerate(rows)}

        def found(key: str, seed: int) -> GeneratedTrace | None:
            """The stored trace of a request, or None."""
            i = position.get((key, int(seed)))
            if i is None:
                return None
            row = rows[i]
            return GeneratedTrace(
                text=row["text"], token_ids=list(map(int, row["token_ids"])), token_logprob=row["token_logprob"],
                token_confidence=row["token_confidence"], nonfinite_logprobs=int(row["nonfinite_logprobs"]),
                finish_reason=row["finish_reason"], seed=int(row["seed"]))

        results: list[GeneratedTrace | None] = [found(k, s) for k, s in zip(keys, seeds)]

        def add(requests: list[tuple]) -> list[int]:
            """Append requests; returns their indices."""
            first = len(prompts)
            for prompt, seed, key, threshold in requests:
                prompts.append(prompt), seeds.append(int(seed)), keys.append(key), thresholds.append(float(threshold))
                results.append(found(key, seed))
            texts.extend(self.chat_prompts(model_key, prompts[first:], settings))
            stats.requested += len(requests)
            return list(range(first, len(prompts)))

        def follow(indices: list[int]) -> list[int]:
            """Hand finished traces to `more`; what it adds and the store already holds is handed on too.
            Returns the added indices that must be generated."""
            to_generate = []
            while more is not None and indices:
                added = add(more(indices, [results[i] for i in indices]))
                indices = [i for i in added if results[i] is not None]
                stats.reused += len(indices)
                to_generate += [i for i in added if results[i] is None]
            return to_generate

        missing = [int(i) for i in plan if results[i] is None]
        stats.reused = len(prompts) - len(missing)
        missing += follow([i for i in range(len(prompts)) if results[i] is not None])
        if log:
            log(f"{stats.reused} of {stats.requested} traces found in the shard store; generating {len(missing)}"
                + (" (and whatever live stopping asks for next)" if more else ""))
        if not missing:
            return results, stats

        started = time.monotonic()
        unwritten: list[int] = []
        last_log = [0.0]

        def cut_of(i: int):
            return WindowCut(thresholds[i], group_window) if np.isfinite(thresholds[i]) else None

        last_write = [time.monotonic()]

        def write_shards(everything: bool = False) -> None:
            """A shard per `batch_sequences` finished traces; the rest too when asked, or when the last shard
            is SHARD_EVERY_S old (a kill then loses at most that much work)."""
            everything = everything or time.monotonic() - last_write[0] >= SHARD_EVERY_S
            while unwritten and (len(unwritten) >= self.batch_sequences or everything):
                chunk = unwritten[: self.batch_sequences]
                if store is not None:
                    store.write(as_shard_rows([keys[i] for i in chunk], [results[i] for i in chunk]))
                    stats.shards_written += 1
                del unwritten[: len(chunk)]
                last_write[0] = time.monotonic()

        def report(force: bool = False) -> None:
            """A progress line at most every PROGRESS_EVERY_S: traces done, tokens/s, ETA: the traces still to
            finish at the expected length, less the tokens they already have, at the rate so far. The expected
            length is the mean of the finished traces (max_new_tokens until 20 have finished: the first to
            finish are the short ones), and at least the mean length of the traces still running."""
            seconds = time.monotonic() - started
            if not log or not (force or seconds - last_log[0] >= PROGRESS_EVERY_S):
                return
            last_log[0] = seconds
            left = stats.requested - stats.reused - stats.generated
            running_tokens = decoded[0] - stats.generated_tokens  # tokens of unfinished traces (0 on vLLM)
            mean = max(stats.generated_tokens / stats.generated if stats.generated >= 20 else settings.max_new_tokens,
                       running_tokens / running_rows[0] if running_rows[0] else 0.0)
            rate = decoded[0] / seconds if seconds else 0.0
            eta = max(0.0, (left * mean - running_tokens) / rate) if rate else float("nan")
            log(f"generated {stats.generated}/{stats.generated + left} traces ({decoded[0]:,} tokens decoded, "
                f"{rate:,.0f} tokens/s), ETA {eta:.0f}s" + (" (live stopping may add more)" if more else ""))

        decoded, running_rows = [0], [0]

        def on_tokens(n: int) -> None:
            """The transformers engine decoded one token for each of its n running rows."""
            decoded[0] += n
            running_rows[0] = n
            report()

        def finished(indices: list[int], traces: list[GeneratedTrace]) -> list[tuple]:
            """Called by the engine as traces complete: keep them, write a shard per `batch_sequences`,
            report progress; returns the requests to start now (streaming), as (index, text, seed, cut)."""
            for index, trace in zip(indices, traces):
                results[index] = trace
            unwritten.extend(indices)
            write_shards()
            stats.generated += len(indices)
            new_tokens = sum(len(t.token_ids) for t in traces)
            stats.generated_tokens += new_tokens
            if engine.name == "vllm":  # the transformers engine counts its tokens step by step
                decoded[0] += new_tokens
            stats.seconds = time.monotonic() - started
            new = follow(list(indices))
            missing.extend(new)
            report(force=not new and stats.generated == len(missing))
            return [(i, texts[i], seeds[i], cut_of(i)) for i in new]

        try:
            stats.generation_calls = engine.run(
                list(missing), [texts[i] for i in missing], [seeds[i] for i in missing], settings,
                self.batch_sequences, finished, [cut_of(i) for i in missing], batch_tokens=self.batch_tokens,
                on_tokens=on_tokens)
        except Exception as exc:  # noqa: BLE001 - re-raised unchanged unless it is an out-of-memory error
            if _is_out_of_memory(exc):
                raise GenerationOutOfMemory(
                    f"{engine.name} ran out of accelerator memory on '{model_key}' ({exc}). Lower "
                    + ("`gpu_memory_utilization` or `max_model_len`" if engine.name == "vllm"
                       else f"`batch_tokens` (now {self.batch_tokens})")
                    + " in the `generator` resource config, or `max_new_tokens` in the traces config. "
                    "Finished shards are kept; a re-run resumes from them."
                ) from exc
            raise
        finally:
            write_shards(everything=True)  # what finished is kept, also when the run is interrupted
        stats.seconds = time.monotonic() - started
        stats.peak_rss_mb = peak_rss_mb()
        return results, stats


PROGRESS_EVERY_S = 10.0  # seconds between progress lines in the run log
SHARD_EVERY_S = 30.0  # finished traces wait at most this long for a shard


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (vLLM's engine processes not included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KB


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "out of memory" in text or "outofmemory" in text or "no available memory for the cache" in text
