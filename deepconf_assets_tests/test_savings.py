"""Where savings come from: the official-style online reference, the stopped/cut split and degenerate tau."""

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core import analysis, stopping, voting

# Three instances, four traces each, group window 2, warm-up 3, threshold percentile 50.
# (token confidences -> groups of 2 -> lowest group; refused)
#   X: [4,4] 4; [2,2] 2; [3,3,3] 3; [5,1,1,5] groups 3,1,3 -> 1     refused 1 0 1 1   tokens 2 2 3 4 = 11
#   Y: [2,2] 2; [2,2] 2; [2,2] 2;   [2,2,1,1] groups 2,1.5,1 -> 1   refused 0 0 0 0   tokens 2 2 2 4 = 10
#   Z: [1,3] 2; [3,3] 3; [2,2,2] 2; [3,3,3] 3                       refused 0 1 0 1   tokens 2 2 3 3 = 10
# s = median of the warm-up lowest groups: X (4,2,3) -> 3, Y (2,2,2) -> 2, Z (2,3,2) -> 2. 31 tokens in all.
TOKENS = {
    "X": [[4, 4], [2, 2], [3, 3, 3], [5, 1, 1, 5]],
    "Y": [[2, 2], [2, 2], [2, 2], [2, 2, 1, 1]],
    "Z": [[1, 3], [3, 3], [2, 2, 2], [3, 3, 3]],
}
REFUSED = {"X": [1, 0, 1, 1], "Y": [0, 0, 0, 0], "Z": [0, 1, 0, 1]}


def three_instances() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [(i, t, np.array(v, dtype=np.float32), float(np.mean(v)), bool(REFUSED[i][t]), len(v))
            for i, traces in TOKENS.items() for t, v in enumerate(traces)]
    traces = pd.DataFrame(rows, columns=["instance_id", "trace_idx", "token_confidence", "conf_mean", "refused",
                                         "n_tokens"])
    traces["refused"] = traces["refused"].astype("boolean")
    prompts = pd.DataFrame({"instance_id": ["X", "Y", "Z"], "prompt_harmful": pd.array([True, False, True],
                                                                                       dtype="boolean")})
    return traces, prompts


SETTINGS = analysis.AnalysisSettings(warmup_traces=3, online_percentile=50, adaptive_percentile=50, group_window=2,
                                     consensus_tau=0.8, sweep_percentiles=(50.0,), sweep_taus=(0.6, 0.8))


def test_official_online_reference_by_hand():
    m = stopping.build_trace_matrix(three_instances()[0], "conf_mean", 2)
    run = stopping.deepconf_online_reference(m, warmup=3, percentile=50)
    np.testing.assert_allclose(run.threshold, [3.0, 2.0, 2.0])
    # every trace is generated (no tau stop)
    assert run.used.all()
    # X: warm-up votes only where lowest group >= 3: t0 (4) and t2 (3), not t1 (2); t3's 2nd group (tokens
    #    1-2, mean 1) < 3 -> cut after 1 + 2 = 3 of 4 tokens, no vote.
    # Y: warm-up lowest groups 2 >= 2 all vote; t3's 2nd group (1.5) < 2 -> cut after 3 of 4 tokens.
    # Z: all lowest groups >= 2: every trace votes, none cut.
    assert run.votes.tolist() == [[True, False, True, False], [True, True, True, False], [True] * 4]
    assert run.spent.tolist() == [[2, 2, 3, 3], [2, 2, 2, 3], [2, 2, 3, 3]]
    np.testing.assert_allclose(run.weights, m.lowest_group)
    _, predicted = voting.vote(m.refused, run.votes, run.weights)
    # X refuse 2:0; Y comply; Z 2:2 tie -> lowest-group weights refuse 3 + 3 > comply 2 + 2 -> refusal
    assert predicted.tolist() == [1.0, 0.0, 1.0]


def test_savings_split_by_hand():
    traces, prompts = three_instances()
    sweep = analysis.PartitionAnalysis(traces, prompts, "heuristic", SETTINGS).percentile_sweep()
    sweep = sweep[sweep["vote_rule"] == "majority"]
    official = sweep[sweep["policy"] == analysis.ONLINE_REFERENCE].iloc[0]
    # official: spent 10 + 9 + 10 = 29 of 31; nothing stopped, 1 + 1 tokens cut
    assert official["tokens_used"] == 29 and np.isnan(official["tau"])
    assert official["savings_stopped_pct"] == 0.0
    assert official["savings_cut_pct"] == pytest.approx(100 * 2 / 31)
    assert official["degenerate"] == ""
    online = sweep[sweep["policy"] == "deepconf_online"].set_index("tau")
    # tau 0.8, lowest-group weights after the warm-up: X beta = (4 + 3) / 9 = 0.78 -> goes on, t3 cut (1 token);
    # Y beta = 1 -> stops, t3 (4 tokens) never generated; Z beta = (2 + 2) / 7 = 0.57 -> goes on, t3 kept.
    # Spent 10 + 6 + 10 = 26 of 31: 4 tokens stopped by consensus, 1 cut by confidence.
    row = online.loc[0.8]
    assert row["tokens_used"] == 26
    assert row["savings_stopped_pct"] == pytest.approx(100 * 4 / 31)
    assert row["savings_cut_pct"] == pytest.approx(100 * 1 / 31)
    assert row["token_savings_pct"] == pytest.approx(100 * 5 / 31)
    # budget 4: 2:1 needs (2 + x) / (3 + x) >= 0.8, x = 2 traces, only 1 left -> unreachable
    assert "unreachable" in row["degenerate"]
    # tau 0.6 <= 2/3: structurally fixed_n=3, flagged even though Z (beta 0.57, unequal weights) goes on
    row = online.loc[0.6]
    assert "fixed_n=3" in row["degenerate"] and row["share_stopped_at_warmup"] == pytest.approx(2 / 3)
    for _, row in sweep.iterrows():
        assert row["savings_stopped_pct"] + row["savings_cut_pct"] == pytest.approx(row["token_savings_pct"], abs=1e-9)
        if row["policy"] != "deepconf_online":
            assert row["degenerate"] == ""


def random_partition(n_prompts: int = 60, n_traces: int = 8, seed: int = 1):
    """Traces of 1..12 tokens (some shorter than the window), varying counts per prompt, random labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_prompts):
        base, p_refuse = rng.uniform(1, 5), rng.uniform(0, 1)
        for t in range(rng.integers(4, n_traces + 1)):
            values = (base + rng.normal(0, 1.0, rng.integers(1, 13))).clip(0.05).astype(np.float32)
            rows.append((f"p{i:03d}", t, values, float(np.mean(values)), bool(rng.random() < p_refuse), len(values)))
    traces = pd.DataFrame(rows, columns=["instance_id", "trace_idx", "token_confidence", "conf_mean", "refused",
                                         "n_tokens"])
    traces["refused"] = traces["refused"].astype("boolean")
    prompts = pd.DataFrame({"instance_id": [f"p{i:03d}" for i in range(n_prompts)],
                            "prompt_harmful": pd.array(rng.random(n_prompts) < 0.5, dtype="boolean")})
    return traces, prompts


def test_stopped_plus_cut_is_the_token_savings():
    traces, prompts = random_partition()
    settings = analysis.AnalysisSettings(group_window=4)
    result = analysis.PartitionAnalysis(traces, prompts, "heuristic", settings)
    sweep = result.percentile_sweep()
    assert set(sweep["policy"]) == set(stopping.POLICIES)
    np.testing.assert_allclose(sweep["savings_stopped_pct"] + sweep["savings_cut_pct"], sweep["token_savings_pct"],
                               rtol=0, atol=1e-9)
    fixed = sweep[sweep["policy"].isin(["fixed_n", "adaptive", "decided"])]
    assert (fixed["savings_cut_pct"] == 0).all()  # only the online policies cut
    official = sweep[sweep["policy"] == analysis.ONLINE_REFERENCE]
    assert (official["savings_stopped_pct"] == 0).all() and (official["savings_cut_pct"] > 0).any()
    # the predictions route (stopping_table against the fixed_n=all tokens) gives the same identity
    predictions = result.predictions()
    table = analysis.stopping_table(predictions, settings).set_index("policy")
    summary = analysis.summarize_predictions(predictions).set_index("policy")
    np.testing.assert_allclose(table["savings_stopped_pct"] + table["savings_cut_pct"],
                               summary.loc[table.index, "token_savings_pct"], rtol=0, atol=1e-9)


def test_trivial_tau_is_flagged():
    # 3 warm-up votes split at worst 2:1, top share 2/3: tau 0.6 is always reached after the warm-up
    assert stopping.consensus_trivial(3, 0.6) and stopping.consensus_trivial(3, 2 / 3)
    assert not stopping.consensus_trivial(3, 0.8)
    assert stopping.consensus_trivial(4, 0.5) and not stopping.consensus_trivial(4, 0.6)  # even: a 1/2 tie
    assert stopping.consensus_trivial(1, 1.0)  # one vote is always unanimous
    warning = analysis.AnalysisSettings(warmup_traces=3, consensus_tau=0.6).consensus_warning(10)
    assert warning is not None and warning.startswith("deepconf_online reduces to fixed_n=3")
    assert analysis.AnalysisSettings(warmup_traces=3, consensus_tau=0.8).consensus_warning(10) is None
    assert "cannot be reached" in analysis.AnalysisSettings(warmup_traces=3, consensus_tau=0.95).consensus_warning(10)
    # in the sweep (budget 8): tau 0.6 rows are flagged, tau 0.8 rows are not (here the traces split)
    traces, prompts = random_partition()
    sweep = analysis.PartitionAnalysis(traces, prompts, "heuristic", analysis.AnalysisSettings(
        group_window=4, sweep_taus=(0.6, 0.8))).percentile_sweep()
    online = sweep[sweep["policy"] == "deepconf_online"]
    assert online.loc[online["tau"] == 0.6, "degenerate"].str.contains("fixed_n=3").all()
    assert (online.loc[online["tau"] == 0.8, "degenerate"] == "").all()
    assert (online.loc[online["tau"] == 0.8, "share_stopped_at_warmup"] < 1).all()
