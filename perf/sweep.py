"""Benchmark: the full sweep (9 percentiles x fixed_n, adaptive, deepconf_online at 5 consensus taus,
deepconf_online_official and decided x 3 vote rules = 243 rows) on a synthetic
partition of 5,000 prompts x 10 traces x 256 tokens (about the predecessor's 48,145-trace run),
vectorised (deepconf_assets.core) against a straightforward per-instance Python implementation of
the same rules written here, checking that both give identical numbers.

    python perf/sweep.py [--prompts 5000] [--traces 10] [--tokens 256]

Last line: speedup=<x> sweep_seconds=<s>
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from deepconf_assets.core import analysis

CATEGORIES = ("confident_refusal", "confident_compliance", "uncertain_refusal", "uncertain_compliance")


def synthetic_partition(n_prompts: int, n_traces: int, n_tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    harmful = rng.random(n_prompts) < 0.5
    base = rng.gamma(4.0, 2.0, n_prompts)
    refuse_p = np.where(harmful, 0.8, 0.2)
    rows = []
    for i in range(n_prompts):
        for t in range(n_traces):
            tokens = (base[i] + rng.normal(0, 1.5, n_tokens)).clip(0.01).astype(np.float32)
            rows.append((f"p{i:05d}", t, tokens, n_tokens, bool(rng.random() < refuse_p[i])))
    traces = pd.DataFrame(rows, columns=["instance_id", "trace_idx", "token_confidence", "n_tokens", "refused"])
    traces["conf_mean"] = [float(np.mean(v, dtype=np.float64)) for v in traces["token_confidence"]]
    traces["refused"] = traces["refused"].astype("boolean")
    prompts = pd.DataFrame({"instance_id": [f"p{i:05d}" for i in range(n_prompts)],
                            "prompt_harmful": pd.array(harmful, dtype="boolean")})
    return traces, prompts


# ----------------------------------------------------------------------------- straightforward version


def first_group_below(values: list[float], window: int, threshold: float) -> int | None:
    """Replays generation token by token with a running window sum, as the online rule does:
    the index of the first full group whose mean is below the threshold, or None."""
    width = min(window, len(values))
    running = 0.0
    for i, value in enumerate(values):
        running += value
        if i >= width:
            running -= values[i - width]
        if i >= width - 1 and running / width < threshold:
            return i - width + 1
    return None


def lowest_group(values: list[float], window: int) -> float:
    width = min(window, len(values))
    running, lowest = 0.0, float("inf")
    for i, value in enumerate(values):
        running += value
        if i >= width:
            running -= values[i - width]
        if i >= width - 1:
            lowest = min(lowest, running / width)
    return lowest


def straightforward_sweep(traces: pd.DataFrame, prompts: pd.DataFrame, settings: analysis.AnalysisSettings):
    gold = dict(zip(prompts["instance_id"], prompts["prompt_harmful"].astype(bool)))
    per_instance: dict[str, list[dict]] = {}
    for row in traces.sort_values(["instance_id", "trace_idx"]).itertuples(index=False):
        values = [float(v) for v in row.token_confidence]
        per_instance.setdefault(row.instance_id, []).append(
            {"conf": row.conf_mean, "refused": bool(row.refused), "tokens": row.n_tokens, "values": values,
             "width": min(settings.group_window, len(values)),
             "lowest": lowest_group(values, settings.group_window)})
    total_tokens = sum(t["tokens"] for ts in per_instance.values() for t in ts)
    w = settings.warmup_traces

    # deepconf_online weighs votes by lowest group confidence (the official min_conf) or by the confidence metric
    online_weight = "lowest" if settings.online_vote_weight == "lowest_group" else "conf"

    def top_share(votes):
        refuse = sum(t[online_weight] for t in votes if t["refused"])
        total = sum(t[online_weight] for t in votes)
        return max(refuse, total - refuse) / total if total > 0 else float("nan")

    def policy(ts, name, p, tau):
        """(used traces, voting traces, tokens spent)"""
        if name == "fixed_n":
            return ts, ts, sum(t["tokens"] for t in ts)
        if name == "decided":  # stop when the traces left cannot change the majority
            used, refuse, comply = [], 0, 0
            for k, t in enumerate(ts):
                used.append(t)
                refuse, comply = refuse + t["refused"], comply + (not t["refused"])
                left = len(ts) - k - 1
                if refuse > comply + left or comply > refuse + left:
                    break
            return used, used, sum(t["tokens"] for t in used)
        if name == "adaptive":
            threshold = np.percentile([t["conf"] for t in ts[:w]], p)
            used = list(ts[:w])
            for t in ts[w:]:
                used.append(t)
                if t["conf"] >= threshold:
                    break
            return used, used, sum(t["tokens"] for t in used)
        threshold = np.percentile([t["lowest"] for t in ts[:w]], p)
        if name == "deepconf_online_official":  # no tau: every trace; a warm-up trace votes if it clears s
            votes, spent = [t for t in ts[:w] if t["lowest"] >= threshold], sum(t["tokens"] for t in ts[:w])
            for t in ts[w:]:
                cut_at = first_group_below(t["values"], settings.group_window, threshold)
                votes += [t] if cut_at is None else []
                spent += t["tokens"] if cut_at is None else cut_at + t["width"]
            return list(ts), votes, spent
        used, votes, spent = list(ts[:w]), list(ts[:w]), sum(t["tokens"] for t in ts[:w])
        for t in ts[w:]:
            beta = top_share(votes)
            if beta == beta and beta >= tau:
                break
            used.append(t)
            cut_at = first_group_below(t["values"], settings.group_window, threshold)
            if cut_at is None:
                votes.append(t)
                spent += t["tokens"]
            else:
                spent += cut_at + t["width"]
        return used, votes, spent

    def decide(votes, rule, weight="conf"):
        weighted_total = sum(t[weight] for t in votes)
        if rule == "top_eta_filtered":  # official DeepConf: keep weights >= the (100 - eta)th percentile
            cut = np.percentile([t[weight] for t in votes], 100.0 - settings.filter_eta)
            votes = [t for t in votes if t[weight] >= cut]
            weighted_total = sum(t[weight] for t in votes)
        weighted = sum(t[weight] for t in votes if t["refused"]) / weighted_total
        if rule == "majority":
            share = sum(t["refused"] for t in votes) / len(votes)
        else:
            share = weighted
        if share == 0.5:
            share = weighted
        return share > 0.5

    rows = []
    taus = sorted({*settings.sweep_taus, settings.consensus_tau})
    for p in settings.sweep_percentiles:
        for name, tau in [("fixed_n", -1), ("adaptive", -1), *[("deepconf_online", t) for t in taus],
                          ("deepconf_online_official", -1), ("decided", -1)]:
            runs = {i: policy(ts, name, p, tau) for i, ts in per_instance.items()}
            for rule in ("majority", "confidence_weighted", "top_eta_filtered"):
                counts = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
                preds, confs = {}, {}
                for i, (used, votes, _) in runs.items():
                    preds[i] = decide(votes, rule, online_weight if name.startswith("deepconf_online") else "conf")
                    confs[i] = sum(t["conf"] for t in votes) / len(votes)
                    key = ("t" if preds[i] == gold[i] else "f") + ("p" if preds[i] else "n")
                    counts[key] += 1
                # category threshold: over the instances with the same decision, or over all ("pooled")
                within = getattr(settings, "category_threshold_scope", "pooled") == "within_decision"
                threshold = {d: np.percentile([confs[i] for i in runs if not within or preds[i] == d], p)
                             for d in set(preds.values())}
                n_cat = dict.fromkeys(CATEGORIES, 0)
                for i in runs:
                    level = "confident" if confs[i] >= threshold[preds[i]] else "uncertain"
                    n_cat[f"{level}_{'refusal' if preds[i] else 'compliance'}"] += 1
                tokens = sum(spent for _, _, spent in runs.values())
                # used traces are a prefix of the instance's traces: the rest were never generated
                stopped = sum(t["tokens"] for i, (used, _, _) in runs.items() for t in per_instance[i][len(used):])
                rows.append({"policy": name, "vote_rule": rule, "percentile": float(p), "tau": float(tau), **counts,
                             "tokens_used": tokens,
                             "avg_traces": sum(len(u) for u, _, _ in runs.values()) / len(runs),
                             "token_savings_pct": 100 * (1 - tokens / total_tokens),
                             "savings_stopped_pct": 100 * stopped / total_tokens,
                             "savings_cut_pct": 100 * (total_tokens - stopped - tokens) / total_tokens,
                             **{f"n_{c}": n for c, n in n_cat.items()}})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--traces", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()

    traces, prompts = synthetic_partition(args.prompts, args.traces, args.tokens)
    settings = analysis.AnalysisSettings()
    print(f"partition: {args.prompts} prompts x {args.traces} traces x {args.tokens} tokens "
          f"= {len(traces)} traces, {int(traces['n_tokens'].sum()):,} tokens")

    started = time.perf_counter()
    fast = analysis.PartitionAnalysis(traces, prompts, "synthetic", settings).percentile_sweep()
    fast_seconds = time.perf_counter() - started
    print(f"vectorised sweep ({len(fast)} rows, incl. building the trace matrix): {fast_seconds:.2f} s")

    started = time.perf_counter()
    slow = straightforward_sweep(traces, prompts, settings)
    slow_seconds = time.perf_counter() - started
    print(f"straightforward per-instance sweep: {slow_seconds:.2f} s")

    keys = ["policy", "vote_rule", "percentile", "tau"]
    fast["tau"] = fast["tau"].fillna(-1.0)  # policies without a consensus tau
    merged = fast.merge(slow, on=keys, suffixes=("", "_ref"))
    expected = len(settings.sweep_percentiles) * (4 + len({*settings.sweep_taus, settings.consensus_tau})) * 3
    assert len(merged) == len(fast) == len(slow) == expected, f"both sweeps must cover {expected} rows"
    exact = ["tp", "fn", "fp", "tn", "tokens_used"] + [f"n_{c}" for c in CATEGORIES]
    for column in exact:
        mismatch = merged[merged[column] != merged[f"{column}_ref"]]
        assert mismatch.empty, f"{column} differs:\n{mismatch[keys + [column, column + '_ref']]}"
    for column in ("avg_traces", "token_savings_pct", "savings_stopped_pct", "savings_cut_pct"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_ref"], rtol=1e-12, atol=1e-9, err_msg=column)
    print(f"identical numbers: confusion counts, tokens, traces, savings and category counts on all {expected} rows")
    print(f"speedup={slow_seconds / fast_seconds:.1f} sweep_seconds={fast_seconds:.2f}")


if __name__ == "__main__":
    main()
