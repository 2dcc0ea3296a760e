"""The answer on one screen, at the top of the report and in `hypothesis_test`'s metadata.

  * `hypothesis_summary`: one row per policy: n and accuracy of the uncertain and the confident
    compliances, their difference with its bootstrap 95% CI, the Holm-corrected Fisher p and the
    combined verdict (core.hypothesis);
  * `savings_sentence`: what the headline policy saves against every trace in full (fixed_n=all) and
    what it costs in accuracy, paired on the same prompts: the difference with Newcombe's paired 95% CI
    and McNemar's exact p (core.paired), or "identical by construction" where the policy decides as
    fixed_n=all by definition;
  * `pareto_sentences`: the Pareto-efficient policies, each frontier step and each dominated policy tested
    paired, so a frontier that rests on a prompt or two says so.
Sentences about numbers are worded from claims (core.claims).

Proportions are shown as percentages with one decimal, differences in percentage points, p-values as
"< 0.001" or three significant digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepconf_assets.core import analysis, claims, metrics
from deepconf_assets.core.claims import Claim
from deepconf_assets.core.formats import fmt_p, fmt_pct, fmt_pp
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


def _paired_claim(rows: pd.DataFrame, policy: str, reference: str, quantity: str, above: str, below: str,
                  by_construction: str | None = None) -> Claim:
    """Accuracy of `policy` minus `reference` on the prompts both decided (rows of one labeler): Newcombe's
    paired 95% CI and McNemar's exact p. A difference declared identical by construction is checked: any
    prompt the two decide differently is an error, never a reported number."""
    a, b = rows[rows["policy"] == policy], rows[rows["policy"] == reference]
    paired = a.merge(b, on="instance_id", suffixes=("", "_ref"))
    paired = paired[paired["correct"].notna() & paired["correct_ref"].notna()]
    right, right_ref = paired["correct"].astype(bool), paired["correct_ref"].astype(bool)
    table = paired_table(right, right_ref)
    if by_construction and (table[0][1] or table[1][0]):
        raise ValueError(f"{policy} and {reference} should decide every prompt alike ({by_construction}), but "
                         f"{table[0][1] + table[1][0]} of {len(paired)} prompts differ")
    low, high = newcombe_paired_ci(table[0][0], table[0][1], table[1][0], table[1][1])
    difference = right.mean() - right_ref.mean() if len(paired) else float("nan")
    return Claim(quantity.format(a=fmt_pct(right.mean()), b=fmt_pct(right_ref.mean())), difference, "pp", null=0.0,
                 ci=(low, high), test="McNemar exact p", p=mcnemar_exact_p(table), n=len(paired), above=above,
                 below=below, by_construction=by_construction, undefined_why="no prompt decided by both")


def savings_sentence(predictions: pd.DataFrame, labeler: str, policy: str,
                     identical_because: str | None = None) -> str:
    """What `policy` saves against fixed_n=all and what it costs in accuracy, on the prompts both decided.
    `identical_because`: why the policy decides every prompt as fixed_n=all does, when it does by construction
    (AnalysisSettings.identical_to_every_trace); then nothing is tested, and a difference is an error."""
    rows = analysis.with_traces(predictions)
    rows = rows[rows["labeler"] == labeler]
    if policy == analysis.ALL_TRACES:
        return f"The headline policy is {policy}: every trace in full, so nothing is saved."
    chosen, full = rows[rows["policy"] == policy], rows[rows["policy"] == analysis.ALL_TRACES]
    if full.empty:
        return (f"Savings of {policy} not measured: generated live, so no full run exists to compare with; "
                f"it used {chosen['traces_used'].mean():.2f} traces per prompt." if len(chosen) else
                f"No rows of {policy} for {labeler} labels.")
    tokens, tokens_full = float(chosen["tokens_used"].sum()), float(full["tokens_used"].sum())
    saved = 1.0 - tokens / tokens_full if tokens_full else float("nan")
    change = _paired_claim(rows, policy, analysis.ALL_TRACES,
                           "accuracy {a} against {b} with every trace, a change of",
                           above=f"{policy} is more accurate than every trace in full",
                           below=f"{policy} loses accuracy against every trace in full",
                           by_construction=identical_because)
    return (f"{policy} uses {chosen['traces_used'].mean():.2f} traces per prompt (fixed_n=all: "
            f"{full['traces_used'].mean():.2f}) and saves {fmt_pct(saved)} of the tokens; {claims.say(change)}.")


def pareto_claims(predictions: pd.DataFrame, labeler: str, frontier: pd.DataFrame,
                  identical: dict[str, str] | None = None) -> tuple[list[str], list[Claim]]:
    """The Pareto-efficient policies on point estimates (accuracy against tokens; `frontier`: policy,
    tokens_used, accuracy, pareto_efficient), cheapest first, and the paired claims behind the frontier: each
    efficient policy against the next cheaper efficient one, each dominated policy against its cheapest
    dominator (Newcombe CI, McNemar exact p on the same prompts). `identical`: {policy: why} for the policies
    that decide as fixed_n=all by construction (AnalysisSettings.identical_to_every_trace); such a pair is
    said to be identical by construction, not tested."""
    identical = identical or {}

    def by_construction(a: str, b: str) -> str | None:
        return identical.get(a) if b == analysis.ALL_TRACES else identical.get(b) if a == analysis.ALL_TRACES else None

    rows = analysis.with_traces(predictions)
    rows = rows[rows["labeler"] == labeler]
    ordered = frontier.sort_values(["tokens_used", "accuracy"], ascending=[True, False])
    efficient = ordered[ordered["pareto_efficient"]]
    made = []
    for cheaper, policy in zip(efficient["policy"], efficient["policy"].iloc[1:]):
        made.append(_paired_claim(rows, policy, cheaper, f"{policy} against {cheaper} (more tokens; {{a}} against "
                                  f"{{b}}), a difference of", above=f"{policy}'s extra tokens buy accuracy",
                                  below=f"{cheaper} is more accurate",
                                  by_construction=by_construction(policy, cheaper)))
    for r in ordered[~ordered["pareto_efficient"] & ordered["accuracy"].notna()].itertuples(index=False):
        dominators = efficient[(efficient["tokens_used"] <= r.tokens_used) & (efficient["accuracy"] >= r.accuracy)]
        if len(dominators):
            by = dominators.iloc[0]["policy"]
            made.append(_paired_claim(rows, r.policy, by, f"dominated: {r.policy} against {by} (no fewer tokens; "
                                      f"{{a}} against {{b}}), a difference of", above=f"{r.policy} is more accurate",
                                      below=f"{by} is more accurate with fewer tokens",
                                      by_construction=by_construction(r.policy, by)))
    return list(efficient["policy"]), made


def pareto_sentences(predictions: pd.DataFrame, labeler: str, frontier: pd.DataFrame,
                     identical: dict[str, str] | None = None) -> tuple[str, str]:
    """(brief, full) from one set of `pareto_claims`: brief names the Pareto-efficient policies and how many
    of the paired differences behind the frontier are established (for the headline); full gives every paired
    claim, so a frontier that rests on a prompt or two reads "no evidence either way"."""
    efficient, made = pareto_claims(predictions, labeler, frontier, identical)
    if not efficient:
        none = f"No policy of {labeler} labels has an accuracy, so none is Pareto-efficient."
        return none, none
    lead = f"Pareto-efficient on point estimates (accuracy against tokens, {labeler} labels)"
    established = sum(claims.status(c) == claims.ESTABLISHED for c in made)
    brief = f"{lead}: {', '.join(efficient)}" + ("." if not made else "; " + (
        f"none of the {len(made)} paired accuracy differences behind the frontier is established (McNemar "
        f"exact p < {claims.ALPHA:g}): it rests on differences within noise." if not established else
        f"{established} of the {len(made)} paired accuracy differences behind the frontier "
        f"{'is' if established == 1 else 'are'} established (McNemar exact p < {claims.ALPHA:g}), the others "
        f"are within noise."))
    steps = [f"{efficient[0]} (fewest tokens of the efficient ones)", *(claims.say(c) for c in made)]
    return brief, f"{lead}, paired on the same prompts: {'; '.join(steps)}."
