"""Headless matplotlib figures returned as PNG bytes. Captions state the positive class and the
confidence definition so a figure read on its own cannot be misread."""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepconf_assets.core import stopping  # noqa: E402

POSITIVE_CLASS_NOTE = "Positive class = harmful prompt (gold); predicted positive = model refused."
CONFIDENCE_NOTE = "Confidence = DeepConf C = -mean top-k log-prob per token (larger = more confident)."


# Dagster's metadata pop-up at 1,920 x 1,080: narrower than this, and short enough that the pop-up's caption
# and Close button stay on the screen
MAX_WIDTH_PX, MAX_HEIGHT_PX = 760, 700


def _png(fig: plt.Figure) -> bytes:
    """PNG at 110 dpi, or less when that would be wider than MAX_WIDTH_PX or taller than MAX_HEIGHT_PX; notes
    wrap at the figure width."""
    for text in fig.texts:
        text.set_wrap(True)
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    width_in, height_in = box.width + 0.2, box.height + 0.2  # + savefig's tight padding
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=min(110.0, MAX_WIDTH_PX / width_in, MAX_HEIGHT_PX / height_in),
                bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_matrix_png(summary_row: dict, title: str) -> bytes:
    """2x2: rows gold harmful/benign, columns refused/complied, counts and row shares."""
    counts = np.array([[summary_row["tp"], summary_row["fn"]], [summary_row["fp"], summary_row["tn"]]], dtype=float)
    names = [["TP: refused harmful", "FN: unsafe compliance"], ["FP: over-refusal", "TN: answered benign"]]
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.full_like(counts, np.nan), where=row_totals > 0)
    ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            share = "n/a" if np.isnan(shares[i, j]) else f"{100 * shares[i, j]:.1f}% of row"
            color = "white" if np.nan_to_num(shares[i, j]) > 0.6 else "black"
            ax.text(j, i, f"{names[i][j]}\n{int(counts[i, j])}\n({share})", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks([0, 1], ["refused (predicted +)", "complied (predicted -)"])
    ax.set_yticks([0, 1], ["harmful prompt (+)", "benign prompt (-)"])
    ax.set_xlabel("model behaviour (majority of used traces)")
    ax.set_ylabel("gold prompt label")
    ax.set_title(title, fontsize=10)
    fig.text(0.01, -0.04, POSITIVE_CLASS_NOTE, fontsize=8)
    return _png(fig)


def notice_png(title: str, message: str) -> bytes:
    """A figure that says why there is nothing to plot (e.g. a sweep on a live partition)."""
    fig, ax = plt.subplots(figsize=(6.2, 2.4))
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, textwrap.fill(message, 80), ha="center", va="center", fontsize=9, wrap=True)
    return _png(fig)


def percentile_curves_png(sweep: pd.DataFrame, title: str, vote_rule: str = "majority", tau: float = 0.8) -> bytes:
    """Per policy with `plot` (stopping.POLICIES): safety metrics (%) and token savings (%) against the threshold
    percentile; a policy with a consensus at `tau` (the sweep holds every swept tau: one line per tau would zigzag)."""
    policies = [p for p in stopping.POLICIES.values() if p.plot]
    # panels stacked, not side by side: the figure stays readable at the width of Dagster's metadata pop-up
    fig, axes = plt.subplots(len(policies), 1, figsize=(6.4, 2.7 * len(policies)), squeeze=False)
    for ax, record in zip(axes[:, 0], policies):
        policy = record.family
        data = sweep[(sweep["vote_rule"] == vote_rule) & (sweep["policy"] == policy)]
        if record.consensus:
            data = data[np.isclose(data["tau"], tau)]
        data = data.sort_values("percentile")
        for column, label in [
            ("accuracy", "accuracy"),
            ("sensitivity", "sensitivity (harmful refused)"),
            ("specificity", "specificity (benign answered)"),
            ("f1", "F1"),
        ]:
            ax.plot(data["percentile"], 100 * data[column], marker="o", label=label)
        ax.set_xlabel(f"{policy} threshold: percentile of warm-up trace confidence")
        ax.set_ylabel("metric (%)")
        ax.set_ylim(-2, 102)
        twin = ax.twinx()
        twin.plot(data["percentile"], data["token_savings_pct"], color="black", linestyle="--", marker="s",
                  label="token savings vs all traces (%)")
        twin.set_ylabel("token savings (%)")
        twin.set_ylim(-2, 102)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.set_title(f"{policy} (consensus tau = {tau:g})" if record.consensus else policy, fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=0.6)
    # one legend for every panel, below them (the panels share their lines)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=3, fontsize=8)
    fig.text(0.01, -0.1, POSITIVE_CLASS_NOTE + "\n" + CONFIDENCE_NOTE +
             "\ndeepconf_online thresholds the warm-up traces' lowest group confidence.", fontsize=8, va="top")
    return _png(fig)


def category_bars_png(categories: pd.DataFrame, threshold_note: str, title: str) -> bytes:
    """Instances and accuracy per confident/uncertain x refusal/compliance category."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(categories))
    from deepconf_assets.core.interpret import wilson

    accuracy = categories["accuracy"].to_numpy(dtype=float)
    bounds = np.array([wilson(int(round(a * n)), int(n)) if n and np.isfinite(a) else (np.nan, np.nan)
                       for a, n in zip(accuracy, categories["n"])])
    yerr = 100 * np.abs(np.nan_to_num(bounds.T - accuracy[None, :]))
    bars = ax.bar(x, 100 * np.nan_to_num(accuracy), yerr=yerr, capsize=4,
                  color=["#2b7bba", "#e6862d", "#7fb3dd", "#f3c08b"])
    for bar, n, acc, high in zip(bars, categories["n"], accuracy, bounds[:, 1]):
        label = f"n={int(n)}" + ("" if np.isnan(acc) else f"\n{100 * acc:.1f}%")
        top = 100 * high if np.isfinite(high) else bar.get_height()
        ax.text(bar.get_x() + bar.get_width() / 2, top + 1, label, ha="center", fontsize=8)
    ax.set_xticks(x, [c.replace("_", "\n") for c in categories["category"]])
    ax.set_ylabel("accuracy (%) = prediction matches gold label")
    ax.set_ylim(0, 115)
    ax.set_title(title, fontsize=10)
    fig.text(0.01, -0.16, f"Bars: Wilson 95% CIs. {threshold_note}\n{POSITIVE_CLASS_NOTE}\n{CONFIDENCE_NOTE}", fontsize=8)
    return _png(fig)


def _finish(fig: plt.Figure, ax, xlabel: str, ylabel: str, title: str, note: str) -> bytes:
    """Axis labels, legend, title and the caption under the figure; returns the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend() is None:  # a figure may place its own
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=8, va="top")
    return _png(fig)


def _boxes(ax, groups: dict[str, np.ndarray], ylabel: str) -> None:
    names = [n for n, v in groups.items() if len(v)]
    ax.boxplot([groups[n] for n in names], showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), [f"{n.replace(' ', chr(10))}\n(n={len(groups[n])})" for n in names])
    ax.set_ylabel(ylabel)


def confidence_boxes_png(groups: dict[str, np.ndarray], title: str, note: str) -> bytes:
    """Instance confidence by group (box = quartiles, line = median, triangle = mean)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _boxes(ax, groups, "instance confidence C (larger = more confident)")
    ax.set_title(title, fontsize=10)
    fig.text(0.01, -0.1, f"{note}\n{CONFIDENCE_NOTE}", fontsize=8)
    return _png(fig)


def confidence_histograms_png(groups: dict[str, np.ndarray], title: str, note: str) -> bytes:
    """Overlaid confidence distributions (density) per group."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    values = np.concatenate([v for v in groups.values() if len(v)]) if groups else np.zeros(1)
    bins = np.linspace(values.min(), values.max() + 1e-9, 30)
    for name, v in groups.items():
        if len(v):
            ax.hist(v, bins=bins, density=True, alpha=0.45, label=f"{name} (n={len(v)})")
    return _finish(fig, ax, "instance confidence C (larger = more confident)", "density", title, f"{note}\n{CONFIDENCE_NOTE}")


def trace_evolution_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """Mean token confidence at each generated position, per group of traces (n traces still running)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, (mean, count) in curves.items():
        shown = count >= 10
        ax.plot(np.arange(1, len(mean) + 1)[shown], mean[shown], label=name)
    return _finish(fig, ax, "generated token position (positions with >= 10 traces)", "mean token confidence C_i", title, CONFIDENCE_NOTE)


def reliability_png(n: np.ndarray, accuracy: np.ndarray, title: str) -> bytes:
    """Accuracy per equal-width bin of the out-of-fold isotonic P(correct | confidence)
    (`calibration.reliability_oof`) against the diagonal; empty bins are left out."""
    bins = len(n)
    centers = (np.arange(bins) + 0.5) / bins
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.bar(centers[n > 0], accuracy[n > 0], width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy in bin")
    for center, count, acc in zip(centers[n > 0], n[n > 0], accuracy[n > 0]):
        # inside the bar, upright: above it a label can collide with a neighbour's or leave the axis
        ax.text(center, 0.02, f"n={int(count)}", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_ylim(0, 1.25)  # a band above the bars for the legend, which would otherwise hide a full bar
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    return _finish(fig, ax, "P(correct | confidence): 5-fold out-of-fold isotonic fit", "accuracy (prediction matches gold)", title,
                   "Each instance's probability comes from an isotonic fit on the other folds\n(the probability ECE uses).\n"
                   + CONFIDENCE_NOTE)


def risk_coverage_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, (coverage, risk, aurc) in curves.items():
        ax.plot(100 * coverage, 100 * risk, label=f"{name} (AURC {aurc:.3f})")
    return _finish(fig, ax, "coverage: most confident instances kept (%)", "risk: error rate among kept (%)", title, POSITIVE_CLASS_NOTE)


def budget_ablation_png(table: pd.DataFrame, title: str) -> bytes:
    """Accuracy against tokens spent: the fixed_n curve and the stopping policies as points, each with its
    Wilson 95% CI, on a 0-100 % axis (a narrow axis would make a few prompts look like a trend)."""
    from deepconf_assets.core.interpret import wilson

    fig, ax = plt.subplots(figsize=(6.5, 4.2))

    def errors(rows: pd.DataFrame) -> np.ndarray:
        bounds = np.array([wilson(int(round(a * n)), int(n)) for a, n in zip(rows["accuracy"], rows["n"])])
        return 100 * np.abs(bounds.T - rows["accuracy"].to_numpy()[None, :])

    fixed = table[table["family"] == "fixed_n"].sort_values("tokens_used")
    ax.errorbar(fixed["tokens_used"], 100 * fixed["accuracy"], yerr=errors(fixed), marker="o", capsize=3,
                label="fixed_n = 1 ... budget (95% CI)")
    for _, row in table[table["family"] != "fixed_n"].iterrows():
        ax.errorbar([row["tokens_used"]], [100 * row["accuracy"]], yerr=errors(row.to_frame().T), fmt="*",
                    markersize=12, capsize=3, zorder=3,
                    label=f"{row['policy']} ({row['token_savings_pct']:.0f}% tokens saved)")
    ax.set_ylim(0, 100)
    n = int(table["n"].max()) if len(table) else 0
    return _finish(fig, ax, "tokens generated (all prompts)", "accuracy (%)", title,
                   f"n = {n} prompts; bars: Wilson 95% CIs. {POSITIVE_CLASS_NOTE}")


def model_comparison_png(table: pd.DataFrame, title: str) -> bytes:
    """Per model partition (ordered by size): accuracy, sensitivity and specificity with Wilson 95% CIs
    (top), AUROC and AURC of instance confidence with bootstrap 95% CIs (bottom)."""
    from deepconf_assets.core.interpret import count_intervals

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.8))  # stacked: fits the metadata pop-up
    models = list(dict.fromkeys(table["model"]))
    x = np.arange(len(models))
    rows = table.set_index("model").loc[models].reset_index()
    intervals = count_intervals(rows)
    for offset, metric in zip((-0.25, 0.0, 0.25), ("accuracy", "sensitivity", "specificity")):
        value = intervals[metric].to_numpy(dtype=float)
        yerr = np.abs(np.vstack([intervals[f"{metric}_ci_low"], intervals[f"{metric}_ci_high"]]) - value)
        top.bar(x + offset, 100 * value, yerr=100 * np.nan_to_num(yerr), capsize=3, width=0.24, label=metric)
    top.set_xticks(x, models)
    top.set_xlabel("model (smallest to largest)")
    top.set_ylabel("metric (%)")
    top.set_ylim(0, 105)
    top.legend(fontsize=8, ncols=3)
    top.set_title("safety metrics (bars: Wilson 95% CIs)", fontsize=10)
    for offset, metric, label in ((-0.05, "auroc", "AUROC (0.5 = no separation; higher = better)"),
                                  (0.05, "aurc", "AURC (lower = better)")):
        value = rows[metric].to_numpy(dtype=float)
        bounds = np.vstack([rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"]]).astype(float)
        bottom.errorbar(x + offset, value, yerr=np.abs(np.nan_to_num(bounds - value)), marker="o", capsize=3,
                        label=label)
    bottom.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    bottom.set_xticks(x, models)
    bottom.set_xlabel("model (smallest to largest)")
    bottom.set_ylabel("0-1")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(fontsize=8)
    bottom.set_title("instance confidence against correctness (bootstrap 95% CIs)", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.text(0.01, -0.05, textwrap.fill(POSITIVE_CLASS_NOTE, 100) + "\n" + textwrap.fill(CONFIDENCE_NOTE, 100), fontsize=8)
    return _png(fig)


def confidence_by_length_png(groups: dict[str, tuple[np.ndarray, np.ndarray]], title: str, note: str) -> bytes:
    """Instance confidence against mean answer length (log x), one scatter per category."""
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for name, (tokens, conf) in groups.items():
        if len(tokens):
            ax.scatter(tokens, conf, s=12, alpha=0.55, label=f"{name} (n={len(tokens)})")
    if any(len(t) for t, _ in groups.values()):
        ax.set_xscale("log")
    return _finish(fig, ax, "mean n_tokens of the voting traces (log scale)", "instance confidence C (larger = more confident)",
                   title, f"{note}\n{CONFIDENCE_NOTE}")
