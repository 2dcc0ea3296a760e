"""Every figure of core/plots.py on a small made-up table: a PNG comes back, no wider than Dagster's
metadata pop-up, and empty groups do not break it. Fast (no model, no materialization)."""

import struct

import numpy as np
import pandas as pd
import pytest

from deepconf_assets.core import plots

RNG = np.random.default_rng(0)
CATEGORIES = ["confident_refusal", "uncertain_refusal", "confident_compliance", "uncertain_compliance"]


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def _sweep() -> pd.DataFrame:
    rows = [{"vote_rule": "majority", "policy": policy, "tau": tau, "percentile": p, "accuracy": 0.8,
             "sensitivity": 0.7, "specificity": 0.9, "f1": 0.75, "token_savings_pct": p / 2}
            for policy in ("adaptive", "deepconf_online") for tau in (0.8, 0.95) for p in (10, 50, 90)]
    return pd.DataFrame(rows)


def _comparison() -> pd.DataFrame:
    rows = []
    for model, (tp, fn, fp, tn) in {"demo-small": (10, 5, 3, 12), "demo": (13, 2, 4, 11)}.items():
        row = {"model": model, "tp": tp, "fn": fn, "fp": fp, "tn": tn, "n": tp + fn + fp + tn}
        for metric, value in (("auroc", 0.6), ("aurc", 0.3)):
            row.update({metric: value, f"{metric}_ci_low": value - 0.1, f"{metric}_ci_high": value + 0.1})
        rows.append(row)
    return pd.DataFrame(rows)


FIGURES = {
    "confusion_matrix": lambda: plots.confusion_matrix_png({"tp": 5, "fn": 1, "fp": 0, "tn": 0}, "t"),
    "notice": lambda: plots.notice_png("t", "nothing to plot on a live partition " * 5),
    "percentile_curves": lambda: plots.percentile_curves_png(_sweep(), "t"),
    "category_bars": lambda: plots.category_bars_png(
        pd.DataFrame({"category": CATEGORIES, "n": [10, 0, 7, 3], "accuracy": [0.9, np.nan, 0.5, 1.0]}), "note", "t"),
    "confidence_boxes": lambda: plots.confidence_boxes_png(
        {"correct": RNG.normal(5, 1, 30), "wrong": RNG.normal(4, 1, 8), "empty": np.zeros(0)}, "t", "note"),
    "confidence_histograms": lambda: plots.confidence_histograms_png(
        {"a": RNG.normal(5, 1, 30), "b": np.zeros(0)}, "t", "note"),
    "trace_evolution": lambda: plots.trace_evolution_png(
        {"refusals": (RNG.normal(5, 1, 50), np.arange(50, 0, -1)), "answers": (RNG.normal(4, 1, 20), np.full(20, 3))},
        "t"),
    "reliability": lambda: plots.reliability_png(np.array([0, 3, 10, 5, 0]), np.array([0, 0.3, 0.6, 0.9, 0]), "t"),
    "risk_coverage": lambda: plots.risk_coverage_png(
        {"conf_mean": (np.linspace(0.1, 1, 10), np.linspace(0.0, 0.3, 10), 0.12)}, "t"),
    "budget_ablation": lambda: plots.budget_ablation_png(pd.DataFrame({
        "family": ["fixed_n", "fixed_n", "fixed_n", "adaptive"], "policy": ["n=1", "n=4", "n=10", "adaptive"],
        "tokens_used": [100, 400, 1000, 450], "accuracy": [0.6, 0.7, 0.75, 0.74], "n": [40] * 4,
        "token_savings_pct": [90.0, 60.0, 0.0, 55.0]}), "t"),
    "model_comparison": lambda: plots.model_comparison_png(_comparison(), "t"),
    "confidence_by_length": lambda: plots.confidence_by_length_png(
        {"confident_refusal": (RNG.uniform(20, 300, 15), RNG.normal(5, 1, 15)), "empty": (np.zeros(0), np.zeros(0))},
        "t", "note"),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_png_that_fits_the_metadata_popup(name):
    width, height = _size(FIGURES[name]())
    # +1: savefig rounds the tight box up
    assert 0 < width <= plots.MAX_WIDTH_PX + 1 and 0 < height <= plots.MAX_HEIGHT_PX + 1, (name, width, height)
