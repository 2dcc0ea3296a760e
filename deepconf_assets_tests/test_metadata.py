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
