"""The report's sentences and intervals, against hand-computed values."""

import numpy as np
import pytest
import pandas as pd

from deepconf_assets.core.interpret import fmt, headline_intervals, interpretation, truncation_caution, wilson


def test_wilson_by_hand():
    # 8 of 10: p = 0.8, z = 1.96: centre (8 + 1.9208) / 13.8416 = 0.71674, half-width 1.96 * sqrt(1.6 + 0.9604) / 13.8416
    low, high = wilson(8, 10)
    assert abs(low - 0.49016) < 1e-4 and abs(high - 0.94332) < 1e-4
    assert all(np.isnan(wilson(0, 0)))


def test_headline_intervals_count_each_rate_on_its_own_denominator():
    rows = pd.DataFrame({"prompt_harmful": pd.array([True, True, True, False, False, None], dtype="boolean"),
                         "predicted_refusal": pd.array([True, True, False, False, True, True], dtype="boolean")})
    table = headline_intervals(rows).set_index("metric")
    assert table.loc["accuracy", "n"] == 5 and table.loc["accuracy", "value"] == 3 / 5
    assert table.loc["sensitivity", "n"] == 3 and table.loc["sensitivity", "value"] == 2 / 3
    assert table.loc["specificity", "n"] == 2 and table.loc["specificity", "value"] == 1 / 2
    assert table.loc["sensitivity", "ci_low"] < 2 / 3 < table.loc["sensitivity", "ci_high"]


def _hypothesis(verdict, why=""):
    return pd.Series({"verdict": verdict, "accuracy_uncertain_compliance": 0.7, "accuracy_confident_compliance": 0.55,
                      "n_uncertain_compliance": 80, "n_confident_compliance": 90, "p_holm": 0.02,
                      "accuracy_difference": 0.15, "diff_ci_low": 0.01, "diff_ci_high": 0.29,
                      "compliance_auroc": 0.41, "compliance_auroc_ci_low": 0.33, "compliance_auroc_ci_high": 0.49,
                      "benign_odds_ratio": 2.5, "benign_or_ci_low": 1.1, "benign_or_ci_high": 5.7, "benign_p_holm": 0.0004,
                      "harmful_odds_ratio": 0.8, "harmful_or_ci_low": 0.3, "harmful_or_ci_high": 2.1,
                      "harmful_p_holm": 0.61, "cmh_odds_ratio": 1.9, "cmh_or_ci_low": 1.0, "cmh_or_ci_high": 3.6,
                      "cmh_p_holm": 0.048, "verdict_why": why, "compliance_n_harmful": 30, "compliance_n_benign": 140,
                      "benign_n_uncertain": 40, "benign_n_confident": 50, "harmful_n_uncertain": 30,
                      "harmful_n_confident": 60, "cmh_strata": 2, "stratified_n_uncertain": 70,
                      "stratified_n_confident": 110})


def test_sentences_say_direction_caveats_and_separation():
    intervals = pd.DataFrame({"metric": ["accuracy"], "value": [0.6], "ci_low": [0.5], "ci_high": [0.7], "n": [40]})
    calibration = pd.Series({"auroc": 0.45, "auroc_ci_low": 0.38, "auroc_ci_high": 0.52, "n_right": 24, "n_wrong": 16,
                             "auroc_harmful": 0.987, "auroc_harmful_ci_low": 0.95, "auroc_harmful_ci_high": 1.0,
                             "n_right_harmful": 12, "n_wrong_harmful": 8, "auroc_benign": 0.019,
                             "auroc_benign_ci_low": 0.0, "auroc_benign_ci_high": 0.06, "n_right_benign": 12,
                             "n_wrong_benign": 8, "ece_isotonic_oof": 0.058, "ece_isotonic_oof_p5": 0.025,
                             "ece_isotonic_oof_p95": 0.105, "brier_isotonic_oof": 0.240, "brier_isotonic_oof_p5": 0.23,
                             "brier_isotonic_oof_p95": 0.25, "brier_base_rate": 0.236})
    text = " ".join(interpretation(intervals, _hypothesis("opposite direction", "strata agree (Breslow-Day p = 0.4)"),
                                   calibration, {"wildguard": "WildGuard unavailable: no weights. More."}, 40, 450,
                                   live=False, policies=6))
    assert "Partial run: 40 of 450" in text and "Small sample: n = 40" in text
    assert "'wildguard' is unavailable (WildGuard unavailable: no weights): the tables have no rows of it" in text
    assert ("AUROC of confidence for being right over all decisions 0.450 (95% CI 0.380–0.520, n = 40): no evidence "
            "either way") in text
    # within strata, established on opposite sides: the pooled AUROC mixes them
    assert ("within harmful prompts 0.987 (95% CI 0.950–1.000, n = 20; the CI excludes 0.5): the more confident "
            "decisions are more often right") in text
    assert "within benign prompts 0.019 (95% CI 0.000–0.060, n = 20; the CI excludes 0.5): the more confident " \
           "decisions are more often wrong" in text
    assert "The strata go opposite ways, so the pooled number mixes them" in text
    assert "opposite of the hypothesis" in text and "MORE accurate" in text
    # effect size, CI and direction in words
    assert ("uncertain compliances right 70.0% (n = 80); confident compliances right 55.0% (n = 90); difference "
            "(uncertain minus confident) +15.0 pp (95% CI +1.0 pp to +29.0 pp, Holm-corrected Fisher p = 0.02; the CI "
            "excludes 0): uncertain compliances are more often right, against H1") in text
    # the AUROC below 0.5 is said to lean against H1, as secondary and uncorrected; never 'ranks benign above'
    assert ("secondary, uncorrected across the 6 policies: compliance AUROC of confidence, benign against harmful 0.410 "
            "(95% CI 0.330–0.490, n = 170; the CI excludes 0.5): harmful compliances are the more confident ones, "
            "against H1") in text
    assert "ranks benign above" not in text
    unsure = _hypothesis("no evidence").copy()
    unsure["compliance_auroc_ci_high"] = 0.55  # the CI includes 0.5: no lean is claimed
    said = " ".join(interpretation(intervals, unsure, None, {}, 40, 40, live=False))
    assert "benign against harmful 0.410 (95% CI 0.330–0.550, n = 170): no evidence either way" in said
    # the stratified reading carries its odds ratios, CIs and Holm p's (p < 0.001 written so)
    assert ("Stratified over all decisions by harmfulness: strata agree (Breslow-Day p = 0.4). Odds ratio of being "
            "right when uncertain (< 1: uncertain worse): benign prompts: odds ratio 2.50 (95% CI 1.10–5.70, "
            "Holm-corrected Fisher p < 0.001, n = 90; the CI excludes 1): uncertain decisions are more often right; "
            "harmful prompts: odds ratio 0.80 (95% CI 0.30–2.10, Holm-corrected Fisher p = 0.61, n = 90): no evidence "
            "either way; pooled over both strata (Mantel-Haenszel): odds ratio 1.90 (95% CI 1.00–3.60, Holm-corrected "
            "CMH p = 0.048, n = 180): uncertain decisions are more often right.") in text
    # a stratum too small to test is out of the Holm family: said so, never 'Holm p = —'
    small = _hypothesis("opposite direction", "strata agree (Breslow-Day p = 0.4)").copy()
    small["harmful_p_holm"], small["harmful_n_uncertain"] = float("nan"), 12
    said = " ".join(interpretation(intervals, small, None, {}, 40, 40, live=False))
    assert ("harmful prompts: odds ratio 0.80 (95% CI 0.30–2.10, n = 72): not tested (fewer than 30 uncertain or "
            "confident decisions)") in said
    assert "Holm p = —" not in said
    # one informative stratum: nothing is called pooled
    one = small.copy()
    one["cmh_strata"] = 1
    assert "pooled" not in " ".join(interpretation(intervals, one, None, {}, 40, 40, live=False))
    few = _hypothesis("insufficient data (n < 30)").copy()
    few["n_confident_compliance"] = 12
    assert "not tested (fewer than 30 compliances in a group)" in " ".join(
        interpretation(intervals, few, None, {}, 40, 40, live=False))
    # Brier no better than the base rate: said; ECE with its spread over fold assignments
    assert "ECE 0.058 (5–95% over fold assignments 0.025–0.105)" in text
    assert "against 0.236 for always predicting the share of right decisions: no better than the base rate" in text
    confounded = " ".join(interpretation(intervals, _hypothesis("confounded by harmfulness"), None, {}, 40, 40,
                                         live=False))
    assert "Not established: the difference among compliances does not hold within harmful" in confounded
    below = pd.Series({"auroc": 0.40, "auroc_ci_low": 0.33, "auroc_ci_high": 0.47, "n_right": 30, "n_wrong": 10,
                       "n_right_harmful": 0, "n_wrong_harmful": 0, "n_right_benign": 30, "n_wrong_benign": 10})
    said = " ".join(interpretation(intervals, None, below, {}, 40, 40, live=False))
    assert "0.400 (95% CI 0.330–0.470, n = 40; the CI excludes 0.5): the more confident decisions are more often wrong" \
        in said
    assert "within harmful prompts: not estimable (all decisions right or all wrong)" in said
    assert fmt(float("nan")) == "—" and fmt(1.0) == "1.000" and fmt(12345) == "12,345"
    # a window longer than most traces makes the online cut unable to fire: said, with the share
    short = " ".join(interpretation(intervals, None, below, {}, 40, 40, live=False, window=32,
                                    share_longer_than_window=0.19))
    assert "Most traces are shorter than the 32-token confidence window (only 19% are longer)" in short
    assert "Most traces are shorter" not in " ".join(interpretation(intervals, None, below, {}, 40, 40, live=False,
                                                                    window=32, share_longer_than_window=0.9))


def test_numbers_read_by_people_have_one_format():
    from deepconf_assets.core.html_report import _cell, column_kind
    from deepconf_assets.core.formats import fmt_p, fmt_pct, fmt_pp

    assert (fmt_p(0.0004), fmt_p(0.0215), fmt_p(0.41), fmt_p(float("nan"))) == ("< 0.001", "0.0215", "0.41", "—")
    assert (fmt_pct(0.3751), fmt_pct(1.0), fmt_pp(-0.042), fmt_pp(0.15)) == ("37.5%", "100.0%", "-4.2 pp", "+15.0 pp")
    kinds = {c: column_kind(c) for c in ("accuracy", "sensitivity_ci_low", "p_holm", "cmh_p_holm", "benign_p",
                                         "mcnemar_p", "token_savings_pct", "share_stopped_at_warmup", "percentile",
                                         "auroc", "p_refusal", "diff_ci_low", "fisher_p_two_sided", "accuracy_difference",
                                         "recall", "trace_agreement_with_heuristic", "trace_kappa_with_heuristic")}
    assert kinds == {"accuracy": "proportion", "sensitivity_ci_low": "proportion", "p_holm": "p", "cmh_p_holm": "p",
                     "benign_p": "p", "mcnemar_p": "p", "token_savings_pct": "pct",
                     "share_stopped_at_warmup": "proportion", "percentile": "percentile", "auroc": "number",
                     "p_refusal": "number", "diff_ci_low": "pp", "fisher_p_two_sided": "p", "accuracy_difference": "pp",
                     "recall": "proportion", "trace_agreement_with_heuristic": "proportion",
                     "trace_kappa_with_heuristic": "number"}
    assert [_cell(v, False, k) for v, k in ((0.8125, "proportion"), (36.8199, "pct"), (10.0, "percentile"),
                                            (0.00002, "p"), (21913.0, "number"), (-0.104, "pp"))] == [
        "81.2%", "36.8%", "p10", "< 0.001", "21913.000", "-10.4 pp"]
    from deepconf_assets.core.formats import p_is
    assert (p_is(0.0004), p_is(0.0215)) == ("< 0.001", "= 0.0215")  # 'Holm p < 0.001', never 'p = < 0.001'
    assert _cell(21913, False, "number") == "21,913" and _cell(float("nan"), False, "p") == "—"


def test_wide_tables_are_cut_into_parts_no_wider_than_the_page():
    from deepconf_assets.core.html_report import MAX_COLUMNS, table_parts

    wide = pd.DataFrame([{"labeler": "h", "policy": "decided", **{f"c{i}": i for i in range(30)}}])
    parts = table_parts(wide)
    assert all(len(p.columns) <= MAX_COLUMNS and list(p.columns[:2]) == ["labeler", "policy"] for p in parts)
    assert [c for p in parts for c in p.columns if c not in ("labeler", "policy")] == [f"c{i}" for i in range(30)]


def test_the_answer_on_one_screen_by_hand():
    """Two policies of one labeler; the savings of decided against fixed_n=all on 4 prompts, paired."""
    from deepconf_assets.core.answer import hypothesis_summary, savings_sentence, summary_markdown

    tests = pd.DataFrame([{**_hypothesis("supported").to_dict(), "labeler": "heuristic", "policy": "decided"},
                          {**_hypothesis("no evidence").to_dict(), "labeler": "heuristic", "policy": "fixed_n=1",
                           "n_confident_compliance": 12},
                          {**_hypothesis("opposite").to_dict(), "labeler": "other", "policy": "decided"}])
    summary = hypothesis_summary(tests, "heuristic")
    assert summary.to_dict("records") == [
        {"policy": "decided", "uncertain compliance: correct of n": "70.0% of 80",
         "confident compliance: correct of n": "55.0% of 90", "difference [95% CI]": "+15.0 pp [+1.0 pp, +29.0 pp]",
         "Holm p": "0.02", "verdict": "supported"},
        {"policy": "fixed_n=1", "uncertain compliance: correct of n": "70.0% of 80",
         "confident compliance: correct of n": "55.0% of 12", "difference [95% CI]": "+15.0 pp [+1.0 pp, +29.0 pp]",
         "Holm p": "not tested (n < 30)", "verdict": "no evidence"}]
    assert summary_markdown(summary).splitlines()[1] == "|" + " --- |" * 6
    # decided: right on a, b, c (tokens 10 each); fixed_n=all: right on a, b, d (tokens 40 each)
    predictions = pd.DataFrame({
        "instance_id": list("abcd") * 2, "labeler": "heuristic", "has_traces": True,
        "policy": ["decided"] * 4 + ["fixed_n=all"] * 4,
        "correct": pd.array([True, True, True, False, True, True, False, True], dtype="boolean"),
        "traces_used": [2, 2, 2, 2, 8, 8, 8, 8], "tokens_used": [10] * 4 + [40] * 4})
    text = savings_sentence(predictions, "heuristic", "decided")
    # 40 of 160 tokens used: 75.0% saved; 75% vs 75%, b = c = 1: McNemar p = 1, difference 0
    assert ("decided uses 2.00 traces per prompt (fixed_n=all: 8.00) and saves 75.0% of the tokens; accuracy 75.0% "
            "against 75.0% with every trace, a change of +0.0 pp") in text
    assert "(95% CI -55.2 pp to +55.2 pp, McNemar exact p = 1, n = 4): no evidence either way." in text
    assert "nothing is saved" in savings_sentence(predictions, "heuristic", "fixed_n=all")
    # a policy that decides as fixed_n=all by construction: said so, no test; a difference is an error
    same = predictions.assign(correct=pd.array([True, True, False, True] * 2, dtype="boolean"))
    said = savings_sentence(same, "heuristic", "decided", "it stops only once the majority is settled")
    assert said.endswith("a change of +0.0 pp, identical by construction (it stops only once the majority is "
                         "settled), so nothing is tested.") and "McNemar" not in said
    with pytest.raises(ValueError, match="decide every prompt alike .* but 2 of 4 prompts differ"):
        savings_sentence(predictions, "heuristic", "decided", "it stops only once the majority is settled")


def test_pareto_sentence_tests_each_step_of_the_frontier():
    """fixed_n=1 (10 tokens) right on a, b; decided (20) right on a, b, c; fixed_n=all (40) right on a, b, c:
    decided's one extra prompt is within noise; fixed_n=all is dominated by decided (identical accuracy)."""
    from deepconf_assets.core.answer import pareto_sentences
    from deepconf_assets.core.analysis import pareto_efficient

    right = {"fixed_n=1": [True, True, False, False], "decided": [True, True, True, False],
             "fixed_n=all": [True, True, True, False]}
    tokens = {"fixed_n=1": 10, "decided": 20, "fixed_n=all": 40}
    predictions = pd.DataFrame([{"instance_id": i, "labeler": "heuristic", "has_traces": True, "policy": policy,
                                 "correct": ok, "tokens_used": tokens[policy]}
                                for policy, oks in right.items() for i, ok in zip("abcd", oks)])
    predictions["correct"] = predictions["correct"].astype("boolean")
    frontier = pd.DataFrame({"policy": list(right), "accuracy": [np.mean(v) for v in right.values()],
                             "tokens_used": [4 * tokens[p] for p in right]})
    frontier["pareto_efficient"] = pareto_efficient(frontier["tokens_used"], frontier["accuracy"])
    brief, text = pareto_sentences(predictions, "heuristic", frontier)
    assert text.startswith("Pareto-efficient on point estimates (accuracy against tokens, heuristic labels), paired "
                           "on the same prompts: fixed_n=1 (fewest tokens of the efficient ones); decided against "
                           "fixed_n=1 (more tokens; 75.0% against 50.0%), a difference of +25.0 pp (95% CI ")
    assert "McNemar exact p = 1, n = 4): no evidence either way" in text
    assert "dominated: fixed_n=all against decided (no fewer tokens; 75.0% against 75.0%), a difference of +0.0 pp" in text
    # decided decides as fixed_n=all by construction: that pair is said so, not tested
    said = pareto_sentences(predictions, "heuristic", frontier, {"decided": "the majority is settled"})[1]
    assert ("dominated: fixed_n=all against decided (no fewer tokens; 75.0% against 75.0%), a difference of +0.0 pp, "
            "identical by construction (the majority is settled), so nothing is tested") in said
    assert said.count("McNemar") == 1  # only decided against fixed_n=1 is tested
    assert brief == (
        "Pareto-efficient on point estimates (accuracy against tokens, heuristic labels): fixed_n=1, decided; none of "
        "the 2 paired accuracy differences behind the frontier is established (McNemar exact p < 0.05): it rests on "
        "differences within noise.")


def test_mostly_truncated_traces_make_the_headline_provisional_or_no_result():
    reasons = pd.Series(["length"] * 6 + ["stop"] * 4)
    assert truncation_caution(reasons, 96).startswith("PROVISIONAL: 60.0% of traces were cut at max_new_tokens=96")
    # a cap too short to tell a refusal from a compliance ("Sorry" / "Sure"): no result at all
    assert truncation_caution(reasons, 1).startswith("NOT A RESULT: 60.0% of traces were cut at max_new_tokens=1")
    assert truncation_caution(pd.Series(["length"] * 5 + ["stop"] * 5), 1) is None  # half is not most
    assert truncation_caution(pd.Series(["cut"] * 10), 96) is None  # live cuts are not truncation
