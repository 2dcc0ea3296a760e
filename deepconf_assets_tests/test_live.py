"""Live early stopping equals the replay: same traces kept, cut traces are prefixes, same tokens spent,
same predictions. On synthetic traces (the orchestration), then on the real engines with the demo model."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from deepconf_assets.core import analysis, confidence, stopping
from deepconf_assets.core.live import WindowCut, generate_live, in_rounds, next_requests
from deepconf_assets.core.stopping import PolicyId
from deepconf_assets.core.trace_rows import confidence_columns
from deepconf_assets.labelers import LABELERS

WINDOW = 8
SETTINGS = analysis.AnalysisSettings(group_window=WINDOW, warmup_traces=3, consensus_tau=0.8)
POLICIES = [PolicyId("deepconf_online", 10.0, 0.8), PolicyId("deepconf_online", 50.0, 0.95),
            PolicyId("deepconf_online", 90.0, 0.6), PolicyId("adaptive", 50.0), PolicyId("decided")]


def _cut_length(token_confidence: np.ndarray, threshold: float) -> int | None:
    cut = WindowCut(threshold, WINDOW)
    for t, value in enumerate(token_confidence):
        if cut.push(value):
            return t + 1
    return None


def test_window_cut_stops_where_the_replay_cuts():
    rng = np.random.default_rng(0)
    traces = [rng.uniform(0.5, 3.0, size=n).astype(np.float32) for n in rng.integers(1, 60, size=300)]
    _, group, value, lowest, width, n_groups = confidence.running_minimum_records(traces, WINDOW)
    trace = confidence.running_minimum_records(traces, WINDOW)[0]
    for threshold in (1.2, 1.6, 2.0):
        for i, tokens in enumerate(traces):
            below = group[(trace == i) & (value < threshold)]
            expected = int(below.min()) + int(width[i]) if len(below) and len(tokens) >= WINDOW else None
            assert _cut_length(tokens, threshold) == expected, (i, threshold)


def _full_traces(n_instances=40, budget=8, seed=1) -> pd.DataFrame:
    """Labelled full traces: some instances unanimous, some split, lengths around the window."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_instances):
        p_refuse = rng.choice([0.0, 0.15, 0.5, 0.85, 1.0])
        for t in range(budget):
            n = int(rng.integers(3, 40))
            conf = rng.normal(rng.uniform(1.5, 2.5), 0.4, size=n).clip(0.05).astype(np.float32)
            rows.append({"instance_id": f"i{i:02d}", "trace_idx": t, "token_confidence": conf,
                         "refused": bool(rng.random() < p_refuse)})
    return pd.DataFrame(rows)


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["n_tokens"] = [len(c) for c in rows["token_confidence"]]
    logprobs = [-c.astype(np.float32) / 2 for c in rows["token_confidence"]]
    for name, values in confidence_columns(list(rows["token_confidence"]), logprobs, WINDOW).items():
        rows[name] = values
    return rows


def _replay_generate(full: pd.DataFrame):
    """A 'generator' over stored full traces: a cut request returns the prefix up to its cut."""
    by_key = full.set_index(["instance_id", "trace_idx"])

    def generate(requests: pd.DataFrame) -> pd.DataFrame:
        out = []
        for r in requests.itertuples(index=False):
            source = by_key.loc[(r.instance_id, r.trace_idx)]
            tokens = source["token_confidence"]
            if np.isfinite(r.cut_threshold):
                tokens = tokens[:_cut_length(tokens, r.cut_threshold) or len(tokens)]
            out.append({"instance_id": r.instance_id, "trace_idx": r.trace_idx, "token_confidence": tokens,
                        "full_refused": source["refused"]})
        return _scored(pd.DataFrame(out))

    return generate


def _predictions(traces: pd.DataFrame, policy: PolicyId | None, budget: int | None = None) -> pd.DataFrame:
    ids = sorted(traces["instance_id"].unique())
    prompts = pd.DataFrame({"instance_id": ids, "prompt_harmful": [i[-1] in "02468" for i in ids]})
    table = analysis.PartitionAnalysis(traces, prompts, "heuristic", SETTINGS, policy, budget).predictions()
    return table.set_index(["instance_id", "policy"])


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.display}-tau{p.tau}")
def test_live_rounds_keep_exactly_the_traces_the_replay_uses(policy):
    full = _scored(_full_traces())
    live = generate_live(sorted(full["instance_id"].unique()), 8, policy, SETTINGS, in_rounds(_replay_generate(full)),
                         lambda rows: rows["full_refused"])
    matrix = analysis.trace_matrix(full, SETTINGS)
    run = analysis.run_policy(matrix, policy, SETTINGS)
    rows, cols = np.nonzero(run.used)
    used = pd.DataFrame({"instance_id": matrix.instance_ids[rows], "trace_idx": cols, "spent": run.spent[rows, cols]})
    merged = used.merge(live, on=["instance_id", "trace_idx"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["spent"] == merged["n_tokens"]).all()  # live tokens = the replay's charge, no off-by-one
    if policy.family == "deepconf_online":
        assert (np.isfinite(live["cut_threshold"]) == (live["trace_idx"] >= SETTINGS.warmup_traces)).all()
        if policy.tau < 0.7:  # two of three warm-up votes reach it: every instance stops at the warm-up
            assert live["trace_idx"].max() == SETTINGS.warmup_traces - 1
        else:  # some later traces were cut before their end
            assert (live["n_tokens"] < live.merge(full, on=["instance_id", "trace_idx"])["n_tokens_y"]).any()
    # the same predictions from the live traces as from the full ones
    live_predictions = _predictions(live, policy, budget=8)
    full_predictions = _predictions(full, policy).loc[live_predictions.index]
    columns = ["traces_used", "tokens_used", "predicted_refusal", "refusal_rate", "confidence", "category", "correct"]
    pd.testing.assert_frame_equal(live_predictions[columns], full_predictions[columns])


def test_adding_a_stopping_policy_is_one_record(monkeypatch):
    """A toy policy, registered as one record and nothing else: it is swept, ablated, replayed, generated live
    and can be the headline. Dagster's headline_rule choices are fixed at import, so the headline choice is
    shown on the core settings."""
    def first_refusal(matrix, policy, settings, budget):
        """Stop at the first refusal (every trace when none refuses)."""
        refusing = matrix.present & (matrix.refused == 1.0)
        last = np.where(refusing.any(axis=1), refusing.argmax(axis=1), matrix.n_available - 1)
        used = matrix.present & (np.arange(matrix.present.shape[1])[None, :] <= last[:, None])
        return stopping.PolicyRun(used=used, votes=used, spent=np.where(used, matrix.tokens, 0.0))

    toy = PolicyId("first_refusal")
    monkeypatch.setitem(stopping.POLICIES, "first_refusal", stopping.StoppingPolicy(
        "first_refusal", run=first_refusal, configured=lambda settings: toy, live=True, headline="first_refusal"))
    full = _scored(_full_traces())
    ids = sorted(full["instance_id"].unique())
    prompts = pd.DataFrame({"instance_id": ids, "prompt_harmful": [i[-1] in "02468" for i in ids]})
    settings = analysis.AnalysisSettings(group_window=WINDOW, warmup_traces=3, headline_rule="first_refusal")
    result = analysis.PartitionAnalysis(full, prompts, "heuristic", settings)
    sweep = result.percentile_sweep()
    assert len(sweep[sweep["policy"] == "first_refusal"]) == len(settings.sweep_percentiles) * 3  # x vote rules
    assert "first_refusal" in set(result.budget_ablation()["policy"])
    assert settings.headline == settings.live_policy == toy
    headline = settings.headline_rows(result.predictions()).set_index("instance_id")
    first = full[full["refused"]].groupby("instance_id")["trace_idx"].min() + 1
    assert headline["traces_used"].to_dict() == first.reindex(ids, fill_value=8).to_dict()
    live = generate_live(ids, 8, toy, settings, in_rounds(_replay_generate(full)), lambda rows: rows["full_refused"])
    assert live.groupby("instance_id").size().to_dict() == headline["traces_used"].to_dict()
    columns = ["traces_used", "tokens_used", "predicted_refusal", "refusal_rate", "confidence", "correct"]
    pd.testing.assert_frame_equal(_predictions(live, toy, budget=8)[columns], _predictions(full, toy)[columns])


def _labelled(votes: dict) -> pd.DataFrame:
    """Finished traces from {instance: [refused, ...]} (None = unknown label), every confidence 2.0."""
    rows = [{"instance_id": i, "trace_idx": t, "token_confidence": np.full(10, 2.0, np.float32), "refused": r}
            for i, labels in votes.items() for t, r in enumerate(labels)]
    table = _scored(pd.DataFrame(rows))
    table["refused"] = table["refused"].astype("boolean")
    return table


def _requested(traces, ids, budget, policy) -> dict:
    requests = next_requests(traces, ids, budget, policy, SETTINGS)
    return requests.groupby("instance_id")["trace_idx"].apply(list).reindex(ids).apply(
        lambda v: v if isinstance(v, list) else []).to_dict()


def test_every_trace_the_policy_is_certain_to_use_is_requested_at_once():
    """Hand-counted: with a budget of 10, `decided` needs 6 agreeing votes before anything can be settled
    (r > c + left first holds at k = 6: 6 > 0 + 4); after 4 refusals and 2 compliances in 6, it
    needs 2 more even if both refuse (6 > 2 + 2); after 4 refusals, 3 compliances and 2 unknown labels
    in 9 only the 10th can settle it (5 > 3 + 0). adaptive (warm-up 3) always uses the trace after its warm-up;
    deepconf_online takes its warm-up, then one trace at a time."""
    empty = pd.DataFrame(columns=["instance_id", "trace_idx"])
    decided = PolicyId("decided")
    assert _requested(empty, ["a", "b"], 10, decided) == {"a": list(range(6)), "b": list(range(6))}
    traces = _labelled({"a": [True, True, False, True, False, True],
                        "b": [True, False, True, False, None, True, False, True, None]})
    assert _requested(traces, ["a", "b"], 10, decided) == {"a": [6, 7], "b": [9]}
    assert _requested(empty, ["a"], 10, PolicyId("adaptive", 50.0)) == {"a": [0, 1, 2, 3]}
    online = PolicyId("deepconf_online", 10.0, 0.8)
    assert _requested(empty, ["a"], 10, online) == {"a": [0, 1, 2]}
    split = next_requests(_labelled({"a": [True, False, True]}), ["a"], 10, online, SETTINGS)
    assert split["trace_idx"].tolist() == [3] and np.isfinite(split["cut_threshold"]).all()
    assert len(next_requests(_labelled({"a": [True, True, True]}), ["a"], 10, online, SETTINGS)) == 0  # consensus


def test_decided_generates_in_fewer_rounds_than_one_trace_at_a_time():
    """The critical path: rounds of the round-based adapter; one trace at a time would need >= 6 rounds."""
    full = _scored(_full_traces())
    calls = []
    replay = _replay_generate(full)
    generate_live(sorted(full["instance_id"].unique()), 8, PolicyId("decided"), SETTINGS,
                  in_rounds(lambda requests: calls.append(len(requests)) or replay(requests)),
                  lambda rows: rows["full_refused"])
    assert calls[0] == 40 * 5  # 5 agreeing of 8 settle at the earliest: all five at once
    assert len(calls) <= 4


# --- the real engines ------------------------------------------------------------------------------------

XSTEST = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "xstest" / "xstest_prompts.csv").iloc[::30]
PROMPTS = XSTEST["prompt"].tolist()  # 15 prompts across XSTest's types, safe and unsafe
HARMFUL = (XSTEST["label"] == "unsafe").tolist()
ENGINE_BUDGET = 6


def _engine_traces(generator, requests: pd.DataFrame, settings_sampling) -> pd.DataFrame:
    from deepconf_assets.core.trace_rows import trace_rows

    prompt = requests["instance_id"].map(dict(zip([f"p{i}" for i in range(len(PROMPTS))], PROMPTS)))
    seeds = (requests["trace_idx"] * 1000 + requests["instance_id"].str[1:].astype(int)).tolist()
    keys = [f"{p}|{t}" for p, t in zip(prompt, requests["trace_idx"])]
    thresholds = requests["cut_threshold"].tolist() if "cut_threshold" in requests else None
    results, _ = generator.generate("demo", prompt.tolist(), seeds, keys, settings_sampling,
                                    cut_thresholds=thresholds, group_window=32)
    rows = trace_rows(requests.assign(seed=seeds, generation_key=keys), results, "demo", 32)
    rows["token_ids"] = [r.token_ids for r in results]
    return rows


def _engine_stream(generator, sampling):
    """The engine's streaming generation (traces join the running engine as soon as live stopping asks)."""
    from deepconf_assets.core.trace_rows import trace_rows

    prompt_of = dict(zip([f"p{i}" for i in range(len(PROMPTS))], PROMPTS))

    def identified(requests: pd.DataFrame) -> pd.DataFrame:
        return requests.assign(prompt=requests["instance_id"].map(prompt_of),
                               seed=requests["trace_idx"] * 1000 + requests["instance_id"].str[1:].astype(int),
                               generation_key=[f"{prompt_of[i]}|{t}|{c}" for i, t, c in zip(
                                   requests["instance_id"], requests["trace_idx"], requests["cut_threshold"])])

    def generate(requests: pd.DataFrame, on_done) -> None:
        batch = identified(requests)

        def more(indices, results):
            nonlocal batch
            part = batch.iloc[indices]
            rows = trace_rows(part, results, "demo", 32).assign(cut_threshold=part["cut_threshold"].to_numpy(),
                                                               token_ids=[r.token_ids for r in results])
            added = identified(on_done(rows))
            if len(added):
                batch = pd.concat([batch, added], ignore_index=True)
            return list(zip(added["prompt"], added["seed"], added["generation_key"], added["cut_threshold"]))

        generator.generate("demo", batch["prompt"].tolist(), batch["seed"].tolist(), batch["generation_key"].tolist(),
                           sampling, cut_thresholds=batch["cut_threshold"].tolist(), group_window=32, more=more)

    return generate


def _heuristic(rows: pd.DataFrame) -> pd.Series:
    from deepconf_assets.core.refusal import is_refusal

    return pd.Series([is_refusal(t) for t in rows["answer_text"]], dtype="boolean")


def check_engine_live_equals_replay(generator):
    """Full traces once; then every live policy from scratch on the same seeds."""
    from resources.generation_types import SamplingSettings

    sampling = SamplingSettings(max_new_tokens=96)
    settings = analysis.AnalysisSettings(group_window=32, warmup_traces=2, consensus_tau=1.0)
    ids = [f"p{i}" for i in range(len(PROMPTS))]
    all_requests = pd.DataFrame([(i, t) for i in ids for t in range(ENGINE_BUDGET)], columns=["instance_id", "trace_idx"])
    full = _engine_traces(generator, all_requests, sampling)
    full["refused"] = _heuristic(full).to_numpy()
    cut_seen = 0
    for policy in (PolicyId("deepconf_online", 90.0, 1.0), PolicyId("adaptive", 50.0), PolicyId("decided")):
        live = generate_live(ids, ENGINE_BUDGET, policy, settings, _engine_stream(generator, sampling), _heuristic)
        matrix = analysis.trace_matrix(full, settings)
        run = analysis.run_policy(matrix, policy, settings)
        rows, cols = np.nonzero(run.used)
        used = pd.DataFrame({"instance_id": matrix.instance_ids[rows], "trace_idx": cols, "spent": run.spent[rows, cols]})
        merged = used.merge(live, on=["instance_id", "trace_idx"], how="outer", indicator=True).merge(
            full[["instance_id", "trace_idx", "token_ids", "finish_reason"]], on=["instance_id", "trace_idx"],
            suffixes=("", "_full"))
        assert (merged["_merge"] == "both").all(), policy
        assert (merged["spent"] == merged["n_tokens"]).all(), policy
        for r in merged.itertuples():
            assert list(r.token_ids) == list(r.token_ids_full)[: r.n_tokens], (policy, r.instance_id, r.trace_idx)
            assert (r.finish_reason == "cut") == (r.n_tokens < len(r.token_ids_full)) or r.finish_reason == "cut"
        cut_seen += int((merged["finish_reason"] == "cut").sum())
        live_predictions = analysis.PartitionAnalysis(
            live, pd.DataFrame({"instance_id": ids, "prompt_harmful": HARMFUL}),
            "heuristic", settings, policy, ENGINE_BUDGET).predictions().set_index(
            "instance_id")
        full_predictions = analysis.PartitionAnalysis(
            full, pd.DataFrame({"instance_id": ids, "prompt_harmful": HARMFUL}),
            "heuristic", settings, policy).predictions().set_index("instance_id")
        columns = ["traces_used", "tokens_used", "predicted_refusal", "confidence", "correct"]
        pd.testing.assert_frame_equal(live_predictions[columns], full_predictions[columns])
    assert cut_seen > 0  # the online policy cut inside the engine at least once


@pytest.mark.slow
def test_transformers_live_equals_replay(generator):
    check_engine_live_equals_replay(generator)


def _materialize(storage: Path, demo_model_dir: Path, mode: str, selection):
    import os

    from deepconf_assets.definitions import ASSET_CHECKS, ASSETS, RESOURCES
    from resources.analysis_settings import AnalysisSettingsResource

    if not (storage / "models").exists():
        (storage / "models").mkdir(parents=True)
        (storage / "models" / "demo").symlink_to(demo_model_dir)
    os.environ["DEEPCONF_STORAGE_DIR"] = str(storage)
    resources = {**RESOURCES, "analysis_settings": AnalysisSettingsResource(headline_rule="deepconf_online",
                                                                            online_percentile=70.0)}
    config = {"ops": {"traces": {"config": {"generation_mode": mode, "max_prompts": 24, "traces_per_prompt": 6}}}}
    return materialize([*ASSETS, *ASSET_CHECKS], partition_key="xstest|demo", resources=resources,
                       selection=selection, run_config=config)


@pytest.mark.slow
def test_live_partition_through_dagster(demo_model_dir, isolated_storage, tmp_path):
    """A live run of the whole experiment group: fewer tokens than a full run, the same predictions, and
    the sweep and the ablation say they do not apply."""
    from dagster import AssetSelection

    try:
        full = _materialize(tmp_path / "full", demo_model_dir, "full", AssetSelection.assets(
            "benchmark_prompts", "traces", "predictions",
            *[labeler.asset_name for labeler in LABELERS.values()]))
        live = _materialize(tmp_path / "live", demo_model_dir, "live", AssetSelection.groups("experiment"))
        again = _materialize(tmp_path / "live", demo_model_dir, "live", AssetSelection.assets("traces"))
    finally:
        import os

        os.environ["DEEPCONF_STORAGE_DIR"] = str(isolated_storage)
    assert full.success and live.success

    def meta(result, asset):
        return next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == asset).materialization.metadata

    assert meta(live, "traces")["generation_mode"].value == "live"
    assert meta(live, "traces")["generated_tokens"].value < meta(full, "traces")["generated_tokens"].value
    assert meta(live, "traces")["traces_cut"].value > 0
    # a re-run (or a resumed one) reads every trace, cut or not, from the shard store: rounds replay the same
    assert meta(again, "traces")["traces_generated"].value == 0
    assert meta(again, "traces")["dagster/row_count"].value == meta(live, "traces")["dagster/row_count"].value
    for asset in ("percentile_sweep", "budget_ablation"):
        assert "generated live" in meta(live, asset)["not_applicable"].value
    traces = pd.read_parquet(tmp_path / "live" / "assets" / "traces" / "xstest" / "demo.parquet")
    assert set(traces["live_policy"]) == {"deepconf_online@p70"}
    assert (np.isfinite(traces["cut_threshold"]) == (traces["trace_idx"] >= 3)).all()
    columns = ["instance_id", "traces_used", "tokens_used", "predicted_refusal", "confidence", "correct"]
    read = [pd.read_parquet(tmp_path / m / "assets" / "predictions" / "xstest" / "demo.parquet")
            for m in ("full", "live")]
    full_rows, live_rows = [r[(r["policy"] == "deepconf_online@p70") & (r["labeler"] == "heuristic")][columns]
                            .reset_index(drop=True) for r in read]
    pd.testing.assert_frame_equal(live_rows, full_rows)
    report = (tmp_path / "live" / "assets" / "report" / "xstest" / "demo.html").read_text()
    assert "token savings not measured" in report


def test_a_live_partition_is_replayed_against_the_budget_it_was_generated_with():
    """`decided` settles against the budget: replayed against only the traces a live run left (fewer than the
    budget) it would settle earlier and under-count what was generated. The traces record `live_budget`, and
    the analyses replay against it: every generated trace is counted."""
    import dataclasses

    from deepconf_assets.assets.analysis_inputs import analyses_by_labeler

    full = _scored(_full_traces())
    ids = sorted(full["instance_id"].unique())
    policy = PolicyId("decided")
    settings = dataclasses.replace(SETTINGS, headline_rule="decided")
    live = generate_live(ids, 8, policy, settings, in_rounds(_replay_generate(full)), lambda rows: rows["full_refused"])
    live = live.assign(generation_mode="live", live_policy=policy.display, live_tau=np.nan,
                       warmup_traces=settings.warmup_traces, live_budget=8)
    labels = live[["instance_id", "trace_idx", "refused"]]
    prompts = pd.DataFrame({"instance_id": ids, "prompt_harmful": [i[-1] in "02468" for i in ids]})
    (replay,) = analyses_by_labeler(settings, prompts, live.drop(columns="refused"),
                                    {LABELERS["heuristic"].asset_name: labels})
    used = replay.predictions().set_index("instance_id")["traces_used"]
    generated = live.groupby("instance_id").size()
    pd.testing.assert_series_equal(used.loc[generated.index], generated, check_names=False)
    assert (generated < 8).any()  # some instances settled before the budget
    with pytest.raises(ValueError, match="live_budget"):
        analyses_by_labeler(settings, prompts, live.drop(columns=["refused", "live_budget"]),
                            {LABELERS["heuristic"].asset_name: labels})
