"""The answer on one screen, at the top of the report and in `hypothesis_test`'s metadata.

  * `hypothesis_summary`: one row per policy: n and accuracy of the uncertain and the confident
    compliances, their difference with its bootstrap 95% CI, the Holm-corrected Fisher p and the
    combined verdict (core.hypothesis);
  * `savings_sentence`: what the headline policy saves against every trace in full (fixed_n=all) and
    what it costs in accuracy, paired on the same prompts: the difference with Newcombe's paired 95% CI
    and McNemar's exact p (core.paired).

Proportions are shown as percentages with one decimal, differences in percentage points, p-values as
"< 0.001" or three significant digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepconf_assets.core import analysis, metrics
from deepconf_assets.core.formats import fmt_p, fmt_pct, fmt_pp, p_is
from deepconf_assets.core.paired import mcnemar_exact_p, newcombe_paired_ci, paired_table


def _group(n: int, accuracy: float) -> str:
    return f"{fmt_pct(accuracy)} of {int(n):,}" if n else "none"


def hypothesis_summary(hypothesis: pd.DataFrame, labeler: str) -> pd.DataFrame:
    """One row per policy of `labeler`: the compliance groups (accuracy of n), the difference uncertain -
    confident [95% CI], the Holm p ('not tested' when a group has fewer than MIN_CATEGORY_N) and the verdict."""
    rows = hypothesis[hypothesis["labeler"] == labeler]
    out = []
    for r in rows.itertuples(index=False):
        tested = min(r.n_uncertain_compliance, r.n_confident_compliance) >= metrics.MIN_CATEGORY_N
        out.append({
            "policy": r.policy,
            "uncertain compliance: correct of n": _group(r.n_uncertain_compliance, r.accuracy_uncertain_compliance),
            "confident compliance: correct of n": _group(r.n_confident_compliance, r.accuracy_confident_compliance),
            "difference [95% CI]": (f"{fmt_pp(r.accuracy_difference)} [{fmt_pp(r.diff_ci_low)}, {fmt_pp(r.diff_ci_high)}]"
                                    if np.isfinite(r.accuracy_difference) else "—"),
            "Holm p": fmt_p(r.p_holm) if tested else f"not tested (n < {metrics.MIN_CATEGORY_N})",
            "verdict": r.verdict,
        })
    return pd.DataFrame(out)


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as a markdown table (for Dagster metadata)."""
    if summary.empty:
        return "no policy was tested"
    cells = [list(summary.columns), *summary.astype(str).values.tolist()]
    lines = ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + " --- |" * len(summary.columns))
    return "\n".join(lines)


def savings_sentence(predictions: pd.DataFrame, labeler: str, policy: str) -> str:
    """What `policy` saves against fixed_n=all and what it costs in accuracy, on the prompts both decided."""
    rows = analysis.with_traces(predictions)
    rows = rows[rows["labeler"] == labeler]
    if policy == analysis.ALL_TRACES:
        return f"The headline policy is {policy}: every trace in full, so nothing is saved."
    chosen, full = rows[rows["policy"] == policy], rows[rows["policy"] == analysis.ALL_TRACES]
    if full.empty:
        return (f"Savings of {policy} not measured: generated live, so no full run exists to compare with; "
                f"it used {chosen['traces_used'].mean():.2f} traces per prompt." if len(chosen) else
                f"No rows of {policy} for {labeler} labels.")
    paired = chosen.merge(full, on="instance_id", suffixes=("", "_full"))
    paired = paired[paired["correct"].notna() & paired["correct_full"].notna()]
    right, right_full = paired["correct"].astype(bool), paired["correct_full"].astype(bool)
    table = paired_table(right, right_full)
    low, high = newcombe_paired_ci(table[0][0], table[0][1], table[1][0], table[1][1])
    tokens, tokens_full = float(chosen["tokens_used"].sum()), float(full["tokens_used"].sum())
    saved = 1.0 - tokens / tokens_full if tokens_full else float("nan")
    return (f"{policy} uses {chosen['traces_used'].mean():.2f} traces per prompt (fixed_n=all: "
            f"{full['traces_used'].mean():.2f}) and saves {fmt_pct(saved)} of the tokens; accuracy "
            f"{fmt_pct(right.mean())} against {fmt_pct(right_full.mean())} with every trace, a change of "
            f"{fmt_pp(right.mean() - right_full.mean())} (paired 95% CI {fmt_pp(low)} to {fmt_pp(high)}, McNemar exact "
            f"p {p_is(mcnemar_exact_p(table))}, n = {len(paired):,} prompts).")
