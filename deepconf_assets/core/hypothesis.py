"""The research question, tested: are low-confidence compliances riskier than confident ones?

Positive class and categories: `metrics`. Every test is two-sided at ALPHA; `analysis.hypothesis_tests`
replaces each p by its Holm-corrected p across the policies of a labeler before the verdicts are read.

1. The primary test asks it of compliances only (`compliance_test`). Among compliances "correct" is
   exactly "the prompt was benign", so:
   - Fisher's exact test on [[correct, wrong] uncertain compliance, [correct, wrong] confident
     compliance], with a bootstrap CI of the accuracy difference (uncertain - confident; < 0: uncertain
     worse, H1);
   - a threshold-free AUROC of confidence for benign against harmful compliances, with a bootstrap CI
     (> 0.5: harmful compliances are the less confident ones, H1's direction; no CI with fewer than
     claims.MIN_CLASS harmful or benign compliances, where one would mean nothing). Secondary: not in the
     Holm family, and the report says so;
   - a logistic regression harmful ~ z(confidence) + log(mean length) among compliances (coefficient per
     SD of confidence; < 0: lower confidence goes with complying on a harmful prompt, H1's direction).
   Stratifying this contrast by harmfulness is degenerate (each stratum is all correct or all wrong),
   so it is adjusted for answer length instead.
2. The stratified test asks the same of every decision, within harmful and within benign prompts
   (`stratified_test`): are uncertain decisions less often correct than confident ones? Breslow-Day
   first; only strata that agree (p >= ALPHA) are pooled (Cochran-Mantel-Haenszel). Otherwise the
   per-stratum odds ratios, CIs and verdicts stand alone and no pooled number is given; one informative
   stratum is never "pooled". Every statistic reads the integer tables (ZERO_CELL_RULE). A logistic
   regression correct ~ uncertain * harmful + log(mean length) carries the interaction.
3. One verdict (`combined_verdict`) composes both: "supported" only when they agree.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from deepconf_assets.core.claims import MIN_CLASS, NUMBER_WORDS
from deepconf_assets.core.formats import p_is
from deepconf_assets.core.metrics import CATEGORIES, MIN_CATEGORY_N, as_float

ALPHA = 0.05  # two-sided decisions, and (1 - ALPHA) two-sided CIs
ZERO_CELL_RULE = ("Haldane-Anscombe: 0.5 added to every cell of a stratum's 2x2 table when one cell is 0, for that "
                  "stratum's odds ratio and Woolf CI only; Fisher, Breslow-Day and CMH read the integer counts")
INSUFFICIENT = f"insufficient data (n < {MIN_CATEGORY_N})"
SUPPORTED, OPPOSITE, NO_EVIDENCE = "supported", "opposite direction", "no evidence"
CONFOUNDED = "confounded by harmfulness"
DEPENDS = "depends on harmfulness"
NOT_CONFIRMED = "not confirmed by the stratified test"
STRATA = {"benign": 0.0, "harmful": 1.0}  # prompt_harmful value of each stratum
OPPOSITE_WITHIN = {name: f"opposite direction within {name} prompts" for name in STRATA}
# a single test's verdict, and the combined verdict's extra outcomes
VERDICTS = (SUPPORTED, OPPOSITE, NO_EVIDENCE, INSUFFICIENT)
COMBINED_VERDICTS = (*VERDICTS, CONFOUNDED, DEPENDS, *OPPOSITE_WITHIN.values(), NOT_CONFIRMED)
DIRECTIONS = ("uncertain worse", "uncertain better", "equal")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def direction(difference: float) -> str:
    """'uncertain worse' when uncertain accuracy (or odds) is lower, 'uncertain better' when higher."""
    if not np.isfinite(difference) or difference == 0:
        return DIRECTIONS[2]
    return DIRECTIONS[0] if difference < 0 else DIRECTIONS[1]


def verdict(n_uncertain: int, n_confident: int, effect: float, p: float, alpha: float = ALPHA) -> str:
    """One test's verdict, decided on a two-sided p at `alpha` (pass the multiplicity-corrected p).

    effect < 0 means uncertain is worse (accuracy difference, or log odds ratio of being correct).
    - "insufficient data (n < 30)": either group has fewer than 30 instances (nothing is tested);
    - "supported": p < alpha and uncertain is worse (H1);
    - "opposite direction": p < alpha and uncertain is better;
    - "no evidence": otherwise (p >= alpha, or no p).
    """
    if min(n_uncertain, n_confident) < MIN_CATEGORY_N:
        return INSUFFICIENT
    if not np.isfinite(p) or p >= alpha or not np.isfinite(effect) or effect == 0:
        return NO_EVIDENCE
    return SUPPORTED if effect < 0 else OPPOSITE


def _flip(single: str) -> str:
    return {SUPPORTED: OPPOSITE, OPPOSITE: SUPPORTED}.get(single, single)


def combined_verdict(primary: str, strata_tested: int, heterogeneity_p: float, pooled: str,
                     by_stratum: dict[str, str], alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, why) from the compliance test's verdict (`primary`) and the stratified test.

    - primary insufficient -> insufficient;
    - fewer than 2 informative harmfulness strata -> primary (nothing for harmfulness to confound);
    - strata that disagree (Breslow-Day p < alpha, or not computable) -> no pooling; per-stratum verdicts:
      both equal to a significant primary -> primary; one significant each way -> "depends on harmfulness";
      one against a significant primary -> "opposite direction within <stratum> prompts"; one significant,
      the other not -> "depends on harmfulness"; none significant -> "not confirmed by the stratified test"
      for a significant primary, else the primary;
    - strata that agree: pooled == primary -> primary; a significant primary that the pooled test does not
      share (no evidence or the other direction) -> "confounded by harmfulness"; a primary without evidence
      -> no evidence; a pooled test without enough data -> "not confirmed by the stratified test".
    """
    if primary == INSUFFICIENT:
        return INSUFFICIENT, f"fewer than {MIN_CATEGORY_N} compliances in a confidence category"
    if strata_tested < 2:
        return primary, ("fewer than two harmfulness strata hold both right and wrong, uncertain and confident "
                         "decisions: nothing to compare across strata, so the compliance verdict stands")
    strata = "; ".join(f"{name}: {v}" for name, v in by_stratum.items())
    if not (np.isfinite(heterogeneity_p) and heterogeneity_p >= alpha):
        why = (f"strata disagree (Breslow-Day p {p_is(heterogeneity_p)}), not pooled; {strata}"
               if np.isfinite(heterogeneity_p) else f"Breslow-Day not computable, not pooled; {strata}")
        values = set(by_stratum.values())
        significant = {SUPPORTED, OPPOSITE}
        if primary in significant and values == {primary}:
            return primary, why
        if significant <= values:
            return DEPENDS, why
        against = [name for name, v in by_stratum.items() if primary in significant and v == _flip(primary)]
        if against:
            return OPPOSITE_WITHIN[against[0]], why
        if values & significant:
            return DEPENDS, why
        return (NOT_CONFIRMED if primary in significant else primary), why
    why = f"strata agree (Breslow-Day p {p_is(heterogeneity_p)}); pooled: {pooled}"
    if pooled == primary:
        return primary, why
    if primary == NO_EVIDENCE:
        return NO_EVIDENCE, why
    if pooled == INSUFFICIENT:
        return NOT_CONFIRMED, why
    return CONFOUNDED, why


def _logit(y: np.ndarray, columns: dict[str, np.ndarray], keep: tuple[str, ...], alpha: float):
    """statsmodels Logit of y on an intercept and `columns` (rows with a NaN dropped; a column that does not
    vary is dropped unless named in `keep`). Returns (fit or None, fitted terms, n)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    known = ~np.isnan(y) & np.all([np.isfinite(v) for v in columns.values()], axis=0)
    terms = [name for name, v in columns.items() if len(np.unique(v[known])) > 1 or name in keep]
    y = y[known]
    if len(y) <= len(terms) + 1 or len(np.unique(y)) < 2 or any(len(np.unique(columns[k][known])) < 2 for k in keep):
        return None, terms, len(y)
    x = np.column_stack([np.ones(len(y))] + [columns[name][known] for name in terms])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(y, x).fit(disp=0, method="newton", maxiter=100)
    except (np.linalg.LinAlgError, PerfectSeparationError, ValueError):
        return None, terms, len(y)
    if not fit.mle_retvals.get("converged", False) or not np.all(np.isfinite(fit.bse)):
        return None, terms, len(y)
    return fit, terms, len(y)


def _coefficient(fit, terms: list[str], name: str, prefix: str, alpha: float) -> dict:
    out = {f"{prefix}_coef": float("nan"), f"{prefix}_ci_low": float("nan"), f"{prefix}_ci_high": float("nan"),
           f"{prefix}_p": float("nan")}
    if fit is not None and name in terms:
        i = terms.index(name) + 1
        low, high = np.asarray(fit.conf_int(alpha=alpha))[i]
        out.update({f"{prefix}_coef": float(fit.params[i]), f"{prefix}_ci_low": float(low),
                    f"{prefix}_ci_high": float(high), f"{prefix}_p": float(fit.pvalues[i])})
    return out


def _log(values) -> np.ndarray | None:
    if values is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(values, dtype=np.float64))


def logistic_effect(correct, uncertain, harmful, mean_tokens=None, alpha: float = ALPHA) -> dict:
    """correct ~ uncertain + harmful + uncertain:harmful + log(mean_tokens) over every decision
    (statsmodels Logit, Wald CIs). `logit_uncertain_*`: log odds ratio of being correct when uncertain
    (< 0: uncertain worse) on benign prompts, or overall when the interaction is not fitted;
    `logit_interaction_*`: how much it differs on harmful prompts. A covariate that does not vary is
    dropped; `logit_terms` names what was fitted. NaN when the fit fails (perfect separation)."""
    uncertain, harmful = np.asarray(uncertain, dtype=np.float64), np.asarray(harmful, dtype=np.float64)
    columns = {"uncertain": uncertain, "harmful": harmful, "uncertain:harmful": uncertain * harmful}
    if mean_tokens is not None:
        columns["log_tokens"] = _log(mean_tokens)
    if len(np.unique(harmful[~np.isnan(harmful)])) < 2:
        del columns["uncertain:harmful"]
    fit, terms, n = _logit(np.asarray(correct, dtype=np.float64), columns, ("uncertain",), alpha)
    return {"logit_n": n, "logit_terms": " + ".join(terms),
            **_coefficient(fit, terms, "uncertain", "logit_uncertain", alpha),
            **_coefficient(fit, terms, "uncertain:harmful", "logit_interaction", alpha)}


def _bootstrap_auroc(score: np.ndarray, label: np.ndarray, n_boot: int, seed: int, alpha: float) -> tuple[float, float]:
    from deepconf_assets.core.calibration import bootstrap_ci

    ci = bootstrap_ci(score, label, n_boot=n_boot, seed=seed, level=1.0 - alpha)
    return ci["auroc_ci_low"], ci["auroc_ci_high"]


def compliance_test(correct, category, confidence=None, mean_tokens=None, n_boot: int = 2000, seed: int = 0,
                    alpha: float = ALPHA) -> dict:
    """H1 among compliances (see the module docstring): Fisher, the accuracy difference and its bootstrap
    percentile CI (each category resampled as a binomial), the AUROC of confidence for benign against
    harmful compliances with its bootstrap CI, and harmful ~ z(confidence) + log(mean_tokens).
    `verdict_compliances` reads the two-sided Fisher p (the caller passes the Holm-corrected one later)."""
    correct = as_float(correct)
    category = np.asarray(category, dtype=object)
    groups = {}
    for name in ("uncertain_compliance", "confident_compliance"):
        values = correct[(category == name) & ~np.isnan(correct)]
        groups[name] = (int(values.sum()), len(values))
    (k_u, n_u), (k_c, n_c) = groups["uncertain_compliance"], groups["confident_compliance"]
    acc_u, acc_c = _ratio(k_u, n_u), _ratio(k_c, n_c)
    result = {
        "n_uncertain_compliance": n_u, "n_confident_compliance": n_c,
        "accuracy_uncertain_compliance": acc_u, "accuracy_confident_compliance": acc_c,
        "accuracy_difference": acc_u - acc_c, "direction": direction(acc_u - acc_c),
        "fisher_p_two_sided": float("nan"), "fisher_p_one_sided_h1": float("nan"),
        "ci_level": 1.0 - alpha, "diff_ci_low": float("nan"), "diff_ci_high": float("nan"),
    }
    if n_u and n_c:
        table = [[k_u, n_u - k_u], [k_c, n_c - k_c]]
        result["fisher_p_two_sided"] = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
        result["fisher_p_one_sided_h1"] = float(stats.fisher_exact(table, alternative="less").pvalue)
        rng = np.random.default_rng(seed)
        diff = rng.binomial(n_u, acc_u, n_boot) / n_u - rng.binomial(n_c, acc_c, n_boot) / n_c
        low, high = np.percentile(diff, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        result["diff_ci_low"], result["diff_ci_high"] = float(low), float(high)
    result["verdict_compliances"] = verdict(n_u, n_c, result["accuracy_difference"], result["fisher_p_two_sided"], alpha)
    if confidence is not None:
        result.update(_threshold_free(correct, category, confidence, mean_tokens, n_boot, seed, alpha))
    return result


def _threshold_free(correct, category, confidence, mean_tokens, n_boot, seed, alpha) -> dict:
    """AUROC and the length-adjusted logistic among compliances (correct = benign)."""
    from sklearn.metrics import roc_auc_score

    conf = np.asarray(confidence, dtype=np.float64)
    complied = np.isin(category, ("uncertain_compliance", "confident_compliance")) & ~np.isnan(correct) & np.isfinite(conf)
    benign, score = correct[complied], conf[complied]
    out = {"compliance_n_harmful": int((benign == 0.0).sum()), "compliance_n_benign": int((benign == 1.0).sum()),
           "compliance_auroc": float("nan"), "compliance_auroc_ci_low": float("nan"),
           "compliance_auroc_ci_high": float("nan")}
    if len(np.unique(benign)) == 2:
        out["compliance_auroc"] = float(roc_auc_score(benign, score))
        if min(out["compliance_n_harmful"], out["compliance_n_benign"]) >= MIN_CLASS:  # else a CI means nothing
            out["compliance_auroc_ci_low"], out["compliance_auroc_ci_high"] = _bootstrap_auroc(
                score, benign, n_boot, seed, alpha)
    spread = np.std(score) if len(score) else 0.0
    columns = {"confidence_z": (conf - (score.mean() if len(score) else 0.0)) / (spread or 1.0)}
    if mean_tokens is not None:
        columns["log_tokens"] = _log(mean_tokens)
    harmful = np.where(complied, 1.0 - correct, np.nan)
    fit, terms, n = _logit(harmful, columns, ("confidence_z",), alpha)
    out.update({"compliance_logit_n": n, "compliance_logit_terms": " + ".join(terms),
                **_coefficient(fit, terms, "confidence_z", "compliance_logit_confidence", alpha)})
    return out


def _stratum_tables(correct: np.ndarray, uncertain: np.ndarray, stratum: np.ndarray) -> dict[float, np.ndarray]:
    """{stratum value: [[uncertain correct, uncertain wrong], [confident correct, confident wrong]]} as integer
    counts, the informative ones only (a table with an empty row or column carries no information)."""
    tables = {}
    for value in np.unique(stratum):
        c, u = correct[stratum == value], uncertain[stratum == value]
        table = np.array([[(u & c).sum(), (u & ~c).sum()], [(~u & c).sum(), (~u & ~c).sum()]], dtype=np.int64)
        if (table.sum(axis=0) > 0).all() and (table.sum(axis=1) > 0).all():
            tables[float(value)] = table
    return tables


def haldane_anscombe(table: np.ndarray) -> np.ndarray:
    """ZERO_CELL_RULE: a new float table, 0.5 added to every cell when any cell is 0 (the input is never
    changed; statsmodels' own `shift_zeros` alters a float input in place and shifts the zero cells only)."""
    counts = np.asarray(table, dtype=np.float64).copy()
    return counts + 0.5 if (counts == 0).any() else counts


def _breslow_day(st, tables: list[np.ndarray]) -> tuple[float, float]:
    """Tarone-adjusted Breslow-Day (statsmodels `test_equal_odds`). At a pooled odds ratio of exactly 1
    statsmodels divides by psi - 1 = 0 (NaN); its expected cells are then the independence ones,
    E[a] = r1 c1 / n, computed here with the same formula."""
    if st.oddsratio_pooled != 1.0:
        equal = st.test_equal_odds(adjust=True)
        return float(equal.statistic), float(equal.pvalue)
    cells = np.array([[t[0].sum() * t[:, 0].sum() / t.sum(), t[0].sum(), t[:, 0].sum(), t.sum(), t[0, 0]]
                      for t in tables])
    expected, r1, c1, n, a = cells.T
    variance = 1 / (1 / expected + 1 / (r1 - expected) + 1 / (c1 - expected) + 1 / (n - r1 - c1 + expected))
    statistic = float(((a - expected) ** 2 / variance).sum() - (a - expected).sum() ** 2 / variance.sum())
    return statistic, float(stats.chi2.sf(statistic, len(tables) - 1))


def stratified_test(correct, uncertain, stratum, alpha: float = ALPHA) -> dict:
    """Uncertain vs confident x correct within harmfulness strata (statsmodels StratifiedTable / Table2x2).

    Per stratum (`<name>_*`, names from STRATA): n uncertain / confident, the odds ratio of being correct
    when uncertain (< 1: uncertain worse) with its (1 - alpha) Woolf CI (ZERO_CELL_RULE, on a copy), and the
    two-sided Fisher p. Pooling needs two informative strata: Breslow-Day (`breslow_day_p`, Tarone-corrected)
    tests whether they share one odds ratio; only when they do (p >= alpha) is the Mantel-Haenszel pooled
    odds ratio with its Robins-Breslow-Greenland CI and the CMH p (no continuity correction:
    chi2 = (sum_k a_k - E[a_k])^2 / sum_k Var(a_k)) reported. Otherwise `cmh_*` are NaN and
    `pooled_withheld` says why. Every statistic reads the untouched integer tables.
    """
    from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2

    correct, uncertain, stratum = (np.asarray(x, dtype=np.float64) for x in (correct, uncertain, stratum))
    known = ~np.isnan(correct) & ~np.isnan(uncertain) & ~np.isnan(stratum)
    correct, uncertain, stratum = correct[known] == 1.0, uncertain[known] == 1.0, stratum[known]
    tables = _stratum_tables(correct, uncertain, stratum)
    out = {"cmh_strata": len(tables), "breslow_day_statistic": float("nan"), "breslow_day_p": float("nan"),
           "cmh_odds_ratio": float("nan"), "cmh_or_ci_low": float("nan"), "cmh_or_ci_high": float("nan"),
           "cmh_statistic": float("nan"), "cmh_p": float("nan"), "pooled_withheld": ""}
    for name, value in STRATA.items():
        in_stratum = stratum == value
        n_u, n_c = int((uncertain & in_stratum).sum()), int((~uncertain & in_stratum).sum())
        row = {"n_uncertain": n_u, "n_confident": n_c, "odds_ratio": float("nan"), "or_ci_low": float("nan"),
               "or_ci_high": float("nan"), "p": float("nan")}
        if value in tables:
            table = tables[value]
            shifted = Table2x2(haldane_anscombe(table), shift_zeros=False)
            low, high = shifted.oddsratio_confint(alpha=alpha, method="normal")
            row.update(odds_ratio=float(shifted.oddsratio), or_ci_low=float(low), or_ci_high=float(high),
                       p=float(stats.fisher_exact(table, alternative="two-sided").pvalue))
        out.update({f"{name}_{k}": v for k, v in row.items()})
    if len(tables) < 2:
        out["pooled_withheld"] = f"{NUMBER_WORDS[len(tables)]} informative harmfulness stratum: nothing to pool"
        return out
    st = StratifiedTable(np.dstack(list(tables.values())).astype(np.float64), shift_zeros=False)
    out["breslow_day_statistic"], out["breslow_day_p"] = _breslow_day(st, list(tables.values()))
    if not (np.isfinite(out["breslow_day_p"]) and out["breslow_day_p"] >= alpha):
        out["pooled_withheld"] = ((f"strata disagree (Breslow-Day p {p_is(out['breslow_day_p'])})"
                                   if np.isfinite(out["breslow_day_p"]) else "Breslow-Day not computable")
                                  + ": no pooled odds ratio")
        return out
    test = st.test_null_odds(correction=False)
    low, high = st.oddsratio_pooled_confint(alpha=alpha)
    out.update(cmh_odds_ratio=float(st.oddsratio_pooled), cmh_or_ci_low=float(low), cmh_or_ci_high=float(high),
               cmh_statistic=float(test.statistic), cmh_p=float(test.pvalue))
    return out


def hypothesis_test(correct, category, prompt_harmful=None, mean_tokens=None, confidence=None, n_boot: int = 2000,
                    seed: int = 0, alpha: float = ALPHA) -> dict:
    """`compliance_test`, and with `prompt_harmful` the stratified test over every decision
    (`stratified_test`, `logistic_effect`) and the combined `verdict` on the unadjusted p's (the partition
    table re-reads them on Holm-corrected p's: `analysis.hypothesis_tests`)."""
    result = compliance_test(correct, category, confidence, mean_tokens, n_boot, seed, alpha)
    if prompt_harmful is None:
        result["verdict"] = result["verdict_compliances"]
        return result
    correct = as_float(correct)
    category = np.asarray(category, dtype=object)
    harmful = as_float(prompt_harmful)
    decided = np.isin(category, CATEGORIES) & ~np.isnan(correct)
    uncertain = np.where(decided, np.char.startswith(category.astype(str), "uncertain").astype(np.float64), np.nan)
    result.update({"stratified_n_uncertain": int((uncertain == 1.0).sum()),
                   "stratified_n_confident": int((uncertain == 0.0).sum())})
    result.update(stratified_test(correct, uncertain, harmful, alpha))
    result.update(logistic_effect(correct, uncertain, harmful, mean_tokens, alpha))
    read_verdicts(result, {"fisher_p_two_sided": "fisher_p_two_sided", "cmh_p": "cmh_p",
                           **{f"{s}_p": f"{s}_p" for s in STRATA}}, alpha)
    return result


def read_verdicts(row: dict, p_of: dict[str, str], alpha: float = ALPHA) -> None:
    """Set the verdicts of one hypothesis row in place from the p columns named by `p_of` (raw p -> the
    column to read, e.g. its Holm-corrected one): `verdict_compliances`, `verdict_stratified` (pooled, or
    "withheld" when the strata disagree), `verdict_<stratum>`, and the combined `verdict` with `verdict_why`."""
    row["verdict_compliances"] = verdict(row["n_uncertain_compliance"], row["n_confident_compliance"],
                                         row["accuracy_difference"], row[p_of["fisher_p_two_sided"]], alpha)
    by_stratum = {}
    for name in STRATA:
        by_stratum[name] = verdict(row[f"{name}_n_uncertain"], row[f"{name}_n_confident"],
                                   np.log(row[f"{name}_odds_ratio"]) if row[f"{name}_odds_ratio"] > 0 else float("nan"),
                                   row[p_of[f"{name}_p"]], alpha)
        row[f"verdict_{name}"] = by_stratum[name]
    pooled = (verdict(row["stratified_n_uncertain"], row["stratified_n_confident"], row["cmh_odds_ratio"] - 1.0,
                      row[p_of["cmh_p"]], alpha))
    row["verdict_stratified"] = f"withheld: {row['pooled_withheld']}" if row["pooled_withheld"] else pooled
    row["verdict"], row["verdict_why"] = combined_verdict(row["verdict_compliances"], row["cmh_strata"],
                                                          row["breslow_day_p"], pooled, by_stratum, alpha)
