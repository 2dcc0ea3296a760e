"""The report's sentences and intervals, against hand-computed values."""

import numpy as np
import pandas as pd

from deepconf_assets.core.interpret import fmt, headline_intervals, interpretation, wilson


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


def _hypothesis(verdict):
    return pd.Series({"verdict": verdict, "accuracy_uncertain_compliance": 0.7, "accuracy_confident_compliance": 0.55,
                      "n_uncertain_compliance": 80, "n_confident_compliance": 90, "p_holm": 0.02})


def test_sentences_say_direction_caveats_and_separation():
    intervals = pd.DataFrame({"metric": ["accuracy"], "value": [0.6], "ci_low": [0.5], "ci_high": [0.7], "n": [40]})
    calibration = pd.Series({"auroc": 0.45, "auroc_ci_low": 0.38, "auroc_ci_high": 0.52})
    text = " ".join(interpretation(intervals, _hypothesis("opposite direction"), calibration,
                                   {"wildguard": "WildGuard unavailable: no weights. More."}, 40, 450, live=False,
                                   stratified_verdict="no evidence"))
    assert "Partial run: 40 of 450" in text and "Small sample: n = 40" in text
    assert "'wildguard' is unavailable (WildGuard unavailable: no weights)" in text
    assert "does not separate" in text and "0.380–0.520" in text
    assert "opposite of the hypothesis" in text and "MORE accurate" in text
    assert "does not survive stratification" in text
    below = pd.Series({"auroc": 0.40, "auroc_ci_low": 0.33, "auroc_ci_high": 0.47})
    assert "ranks wrong decisions above right ones" in " ".join(
        interpretation(intervals, None, below, {}, 40, 40, live=False))
    assert fmt(float("nan")) == "—" and fmt(1.0) == "1.000" and fmt(12345) == "12,345"
    # a window longer than most traces makes the online cut unable to fire: said, with the share
    short = " ".join(interpretation(intervals, None, below, {}, 40, 40, live=False, window=32,
                                    share_longer_than_window=0.19))
    assert "Most traces are shorter than the 32-token confidence window (only 19% are longer)" in short
    assert "Most traces are shorter" not in " ".join(interpretation(intervals, None, below, {}, 40, 40, live=False,
                                                                    window=32, share_longer_than_window=0.9))
