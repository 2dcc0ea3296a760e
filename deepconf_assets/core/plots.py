"""Headless matplotlib figures returned as PNG bytes. Captions state the positive class and the
confidence definition so a figure read on its own cannot be misread."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

POSITIVE_CLASS_NOTE = "Positive class = harmful prompt (gold); predicted positive = model refused."
CONFIDENCE_NOTE = "Confidence = DeepConf C = -mean top-k log-prob per token (larger = more confident)."


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
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


def percentile_curves_png(sweep: pd.DataFrame, title: str, vote_rule: str = "majority",
                          policies: tuple[str, ...] = ("adaptive", "deepconf_online")) -> bytes:
    """Per policy: safety metrics (%) and token savings (%) against the threshold percentile."""
    fig, axes = plt.subplots(1, len(policies), figsize=(6.2 * len(policies), 4.4), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        data = sweep[(sweep["vote_rule"] == vote_rule) & (sweep["policy"] == policy)].sort_values("percentile")
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
        ax.legend(handles=handles, loc="lower left", fontsize=8)
        ax.set_title(policy, fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(w_pad=3.0)
    fig.text(0.01, -0.12, POSITIVE_CLASS_NOTE + "\n" + CONFIDENCE_NOTE +
             "\ndeepconf_online thresholds the warm-up traces' lowest group confidence.", fontsize=8)
    return _png(fig)


def category_bars_png(categories: pd.DataFrame, threshold_note: str, title: str) -> bytes:
    """Instances and accuracy per confident/uncertain x refusal/compliance category."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(categories))
    bars = ax.bar(x, 100 * categories["accuracy"].fillna(0), color=["#2b7bba", "#e6862d", "#7fb3dd", "#f3c08b"])
    for bar, n, accuracy in zip(bars, categories["n"], categories["accuracy"]):
        label = f"n={int(n)}" + ("" if pd.isna(accuracy) else f"\n{100 * accuracy:.1f}%")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, label, ha="center", fontsize=8)
    ax.set_xticks(x, [c.replace("_", "\n") for c in categories["category"]])
    ax.set_ylabel("accuracy (%) = prediction matches gold label")
    ax.set_ylim(0, 115)
    ax.set_title(title, fontsize=10)
    fig.text(0.01, -0.16, f"{threshold_note}\n{POSITIVE_CLASS_NOTE}\n{CONFIDENCE_NOTE}", fontsize=8)
    return _png(fig)
