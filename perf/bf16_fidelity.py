"""Benchmark: what bfloat16 does to DeepConf confidence, measured on the same tokens.

    python perf/bf16_fidelity.py [--model smollm2-135m] [--prompts 24] [--traces 10] [--max-new-tokens 96]
                                 [--subset-seed 0]

Traces are generated once in float32 by the project's engine (transformers backend, the seeds a run uses),
then teacher-forced through the same model loaded in float32 and in bfloat16: both score exactly the same
tokens, so every difference is the dtype's. Printed, float32 against bfloat16:
  * the per-token confidence difference |C_bf16 - C_f32| (median, 99th percentile, max);
  * the Spearman correlation of per-trace `conf_mean` and `conf_lowest_group` (the run's group window);
  * the share of instances whose confidence category changes at the within-decision threshold (decisions
    from the heuristic labels' majority over every trace, identical in both dtypes since the tokens are;
    instance confidence = mean `conf_mean`, category_percentile 50, as the report);
  * a sanity row: float32 teacher-forced against the engine's own float32 confidences.
Last line: median_dc=<x> p99_dc=<y> spearman_mean=<r> spearman_lowest=<r> category_change_share=<s>.
`--subset-seed` draws another stratified subset (the figures re-measured on other traces).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from deepconf_assets import paths
from deepconf_assets.core import confidence, metrics
from deepconf_assets.core.benchmarks import load_benchmark
from deepconf_assets.core.prompt_subset import stratified_subset
from deepconf_assets.core.refusal import is_refusal
from resources.generation import GenerationResource
from resources.generation_types import SamplingSettings
from resources.transformers_engine import TransformersEngine, cpu_has_native_bf16


def teacher_forced_confidence(engine: TransformersEngine, prompt: str, token_ids: list[int], k: int) -> np.ndarray:
    """DeepConf C of each generated token, scored by `engine` on the prompt followed by exactly these tokens."""
    prompt_ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + list(token_ids)])
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1]
    topk = torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1).values.double().numpy()
    return confidence.token_confidence(topk)[0]


def categories(instance_conf: np.ndarray, refused: np.ndarray) -> np.ndarray:
    thresholds = metrics.category_thresholds(instance_conf, refused, 50.0, "within_decision")
    return metrics.category_codes(instance_conf, refused, thresholds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--traces", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=confidence.DEFAULT_GROUP_WINDOW)
    args = parser.parse_args()

    benchmark, _ = load_benchmark("xstest", paths.data_dir())
    prompts = stratified_subset(benchmark, args.prompts, seed=args.subset_seed)["prompt"].tolist()
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens)
    requests = [p for p in prompts for _ in range(args.traces)]
    generator = GenerationResource(backend="transformers", dtype="float32")
    started = time.perf_counter()
    traces, _ = generator.generate(args.model, requests, list(range(len(requests))),
                                   [f"fidelity-{i}" for i in range(len(requests))], settings)
    print(f"generated {len(traces)} float32 traces ({sum(len(t.token_ids) for t in traces):,} tokens) in "
          f"{time.perf_counter() - started:.0f} s")
    print(f"native bfloat16 arithmetic on this CPU (avx512_bf16 / amx_bf16): {cpu_has_native_bf16()}")
    texts = generator.chat_prompts(args.model, requests, settings)
    f32 = generator.engine(args.model)
    bf16 = TransformersEngine(f32.folder, "cpu", "bfloat16")

    scored, seconds = {}, {}
    for name, engine in (("float32", f32), ("bfloat16", bf16)):
        started = time.perf_counter()
        scored[name] = [teacher_forced_confidence(engine, text, t.token_ids, settings.logprobs_k)
                        for text, t in zip(texts, traces)]
        seconds[name] = time.perf_counter() - started
    generator.close()
    tokens = sum(len(t.token_ids) for t in traces)
    print(f"teacher-forced scoring: float32 {tokens / seconds['float32']:.0f} tokens/s, bfloat16 "
          f"{tokens / seconds['bfloat16']:.0f} tokens/s")

    live = np.concatenate([t.token_confidence for t in traces]).astype(np.float64)
    a, b = np.concatenate(scored["float32"]), np.concatenate(scored["bfloat16"])
    print(f"sanity, float32 teacher-forced against the engine's float32: max |dC| {np.abs(a - live).max():.2e}")
    diff = np.abs(b - a)
    lengths = np.array([len(t.token_ids) for t in traces])
    window = args.window
    per_trace = {name: confidence.trace_metrics(np.concatenate(values), lengths, window)
                 for name, values in scored.items()}
    rho_mean = spearmanr(per_trace["float32"]["conf_mean"], per_trace["bfloat16"]["conf_mean"]).statistic
    rho_lowest = spearmanr(per_trace["float32"]["conf_lowest_group"],
                           per_trace["bfloat16"]["conf_lowest_group"]).statistic

    refused = np.array([is_refusal(t.text) for t in traces], dtype=np.float64).reshape(len(prompts), args.traces)
    share = refused.mean(axis=1)
    decision = np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, np.nan))  # a tie: no decision either dtype
    codes = {name: categories(values["conf_mean"].reshape(len(prompts), args.traces).mean(axis=1), decision)
             for name, values in per_trace.items()}
    decided = codes["float32"] >= 0
    moved = int(np.sum(codes["float32"][decided] != codes["bfloat16"][decided]))
    changed = moved / decided.sum() if decided.any() else float("nan")

    print(f"{len(traces)} traces of {len(prompts)} prompts, {tokens:,} tokens, group window {window}")
    print(f"per-token |C_bf16 - C_f32|: median {np.median(diff):.4f}, p99 {np.percentile(diff, 99):.4f}, "
          f"max {diff.max():.4f} (C itself: median {np.median(a):.3f})")
    print(f"Spearman float32 vs bfloat16: conf_mean {rho_mean:.4f}, conf_lowest_group {rho_lowest:.4f}")
    print(f"categories changed at the within-decision threshold: {moved} "
          f"of {int(decided.sum())} decided instances ({changed:.1%})")
    print(f"median_dc={np.median(diff):.4f} p99_dc={np.percentile(diff, 99):.4f} spearman_mean={rho_mean:.4f} "
          f"spearman_lowest={rho_lowest:.4f} category_change_share={changed:.4f}")


if __name__ == "__main__":
    main()
