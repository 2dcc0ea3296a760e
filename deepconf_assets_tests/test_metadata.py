"""Numbers as a person reads them in the UI's metadata: hand-checked values."""

import math

import numpy as np

from deepconf_assets import metadata


def test_p_values_keep_three_significant_digits_so_a_small_p_never_reads_as_zero():
    assert metadata.p_value(0.004912964620970083).value == 0.00491
    assert metadata.p_value(3.21234e-6).value == 3.21e-06  # 4 decimals would show 0.0
    assert metadata.p_value(1.0).value == 1.0
    assert metadata.p_value(float("nan")).text == "n/a" and metadata.p_value(None).text == "n/a"


def test_percentages_have_one_decimal_and_counts_stay_integers():
    assert metadata.percent(36.8199).value == 36.8
    assert metadata.number(np.int64(21913)).value == 21913
    assert metadata.number(19525.863701792532).value == 19525.8637
    assert metadata.number(math.inf).text == "n/a"


def test_scalar_metadata_says_its_unit_in_its_name():
    shown = metadata.numbers({"accuracy": 0.61556, "diff_ci_low": -0.0213, "p_holm": 0.0000412, "n": 450,
                              "token_savings_pct": 34.6612, "compliance_auroc": 0.41049})
    assert {name: value.value for name, value in shown.items()} == {
        "accuracy_pct": 61.6, "diff_ci_low_pp": -2.1, "p_holm": 4.12e-05, "n": 450, "token_savings_pct": 34.7,
        "compliance_auroc": 0.4105}
