"""Claims: every generated sentence about a number is worded from one of these, by one rule table.

A `Claim` holds what a sentence may say of one quantity: its value, the value of no effect (`null`), its CI,
the test and p behind it, n, whether it is primary or secondary, and what each side of the null means.
`status` decides, by the rules below in order, what can be said; `say` words it from `WORDING`. So a sentence
cannot state a direction its value does not have, call a CI exclusive of the null when it includes it, pool
fewer than two strata, or give a CI where a class is too small for one to mean anything.

Rules (first match wins):
  by construction  `by_construction` set: the value is what it is by definition; no test, no CI.
  nothing pooled   a pooled statistic over fewer than 2 strata.
  not estimable    an undefined value, or a class smaller than MIN_CLASS (a rank statistic or a bootstrap
                   CI resting on fewer than 5 wrong decisions, say, means nothing).
  not tested       `not_tested` set (e.g. n < 30): the value and CI, no direction.
  described        no null: a description (a rate with its CI), no direction.
  established      p < alpha (the p given, e.g. Holm-corrected), or with no p a CI that excludes the null:
                   the direction of the value's side of the null.
  leans            p >= alpha but the CI excludes the null: the direction, "not established".
  no evidence      otherwise: "no evidence either way", and no direction.
A secondary claim (`primary=False`) always says so, and that it is uncorrected across its `family`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deepconf_assets.core.formats import fmt_pct, fmt_pp, p_is, undefined

ALPHA = 0.05
MIN_CLASS = 5  # fewer in the smaller class: a rank statistic's bootstrap CI (or its side of the null) is not estimable

BY_CONSTRUCTION, NOTHING_POOLED, NOT_ESTIMABLE = "by construction", "nothing pooled", "not estimable"
DESCRIBED, NOT_TESTED, ESTABLISHED = "described", "not tested", "established"
LEANS, NO_EVIDENCE = "leans", "no evidence"
NUMBER_WORDS = {0: "no", 1: "one"}  # "one informative stratum"


def _number(value: float, unit: str) -> str:
    """A value in its unit: pp (a difference of proportions), pct (a proportion), or2 (2 decimals: odds
    ratios), else 3 decimals."""
    if undefined(value):
        return "—"
    if unit == "pp":
        return fmt_pp(value)
    if unit == "pct":
        return fmt_pct(value)
    return f"{float(value):.2f}" if unit == "or2" else f"{float(value):.3f}"


@dataclass(frozen=True)
class Claim:
    quantity: str  # what is measured, e.g. "the accuracy difference, uncertain minus confident compliances"
    value: float
    unit: str = "number"  # pp | pct | or2 | number (see _number)
    null: float | None = None  # the value of no effect (0 for a difference, 0.5 for an AUROC, 1 for an odds ratio)
    ci: tuple[float, float] | None = None  # 95% CI
    test: str | None = None  # the test behind `p`, e.g. "Holm-corrected Fisher p"
    p: float | None = None
    n: int | None = None  # observations behind the value
    smaller_class: tuple[int, str] | None = None  # (count, name) of the rarer class, e.g. (1, "wrong decisions")
    above: str = ""  # what a value above the null means
    below: str = ""  # what a value below the null means
    primary: bool = True
    family: str = ""  # a secondary claim is uncorrected across this, e.g. "the 6 policies"
    by_construction: str | None = None  # why the value is what it is by definition
    pooled_strata: int | None = None  # a pooled statistic: how many strata it pools
    not_tested: str | None = None  # why no test was run
    undefined_why: str = "undefined on these data"  # why an undefined value is undefined
    alpha: float = ALPHA

    @property
    def side(self) -> int:
        """+1 above the null, -1 below, 0 on it (or no null, or undefined)."""
        if self.null is None or undefined(self.value) or self.value == self.null:
            return 0
        return 1 if self.value > self.null else -1

    @property
    def has_ci(self) -> bool:
        return self.ci is not None and not undefined(self.ci[0]) and not undefined(self.ci[1])

    @property
    def ci_excludes_null(self) -> bool:
        return self.has_ci and self.null is not None and not (self.ci[0] <= self.null <= self.ci[1])

    @property
    def significant(self) -> bool:
        return self.p is not None and not undefined(self.p) and self.p < self.alpha

    @property
    def direction(self) -> str:
        return {1: self.above, -1: self.below}.get(self.side, "")


def status(claim: Claim) -> str:
    """Which rule of the module docstring applies (first match)."""
    if claim.by_construction:
        return BY_CONSTRUCTION
    if claim.pooled_strata is not None and claim.pooled_strata < 2:
        return NOTHING_POOLED
    if undefined(claim.value) or (claim.smaller_class is not None and claim.smaller_class[0] < MIN_CLASS):
        return NOT_ESTIMABLE
    if claim.not_tested:
        return NOT_TESTED
    if claim.null is None:
        return DESCRIBED
    if claim.side != 0 and (claim.significant or (claim.p is None and claim.ci_excludes_null)):
        return ESTABLISHED
    if claim.side != 0 and claim.ci_excludes_null:
        return LEANS
    return NO_EVIDENCE


def _ci(claim: Claim) -> str:
    if not claim.has_ci:
        return ""
    sep = " to " if claim.unit == "pp" else "–"
    return f"95% CI {_number(claim.ci[0], claim.unit)}{sep}{_number(claim.ci[1], claim.unit)}"


def _support(claim: Claim) -> str:
    """'95% CI …, Holm p = …, n = …' (what is known)."""
    parts = [_ci(claim)]
    if claim.p is not None and not undefined(claim.p):
        parts.append(f"{claim.test or 'p'} {p_is(claim.p)}")
    if claim.n is not None:
        parts.append(f"n = {int(claim.n):,}")
    return ", ".join(part for part in parts if part)


def _why(claim: Claim, rule: str) -> str:
    """The reason a by-construction, not-estimable or not-tested claim gives."""
    if rule == BY_CONSTRUCTION:
        return claim.by_construction
    if rule == NOT_TESTED:
        return claim.not_tested
    if rule != NOT_ESTIMABLE:
        return ""
    if undefined(claim.value):
        return claim.undefined_why
    count, name = claim.smaller_class
    return f"too few {name}: {count:,}, where a CI needs at least {MIN_CLASS}"


def _null(claim: Claim) -> str:
    return f"{claim.null:g}"


# How each status is worded; {v} the value, {s} its support (CI, test, n), {d} its direction, {null} the null.
WORDING = {
    BY_CONSTRUCTION: "{q} {v}, identical by construction ({why}), so nothing is tested",
    NOTHING_POOLED: "{q}: nothing pooled ({k} informative stratum)",
    NOT_ESTIMABLE: "{q}: not estimable ({why})",
    DESCRIBED: "{q} {v}{s_paren}",
    NOT_TESTED: "{q} {v}{s_paren}: not tested ({why})",
    ESTABLISHED: "{q} {v} ({s}{excl}): {d}",
    LEANS: "{q} {v} ({s}; the CI excludes {null}, the test does not reject it): not established, though the "
           "estimate leans one way ({d})",
    NO_EVIDENCE: "{q} {v}{s_paren}: no evidence either way",
}


def say(claim: Claim) -> str:
    """The claim as one clause (no final full stop), worded by WORDING for its `status`."""
    rule = status(claim)
    support = _support(claim if rule != NOT_TESTED else replace(claim, p=None))
    text = WORDING[rule].format(
        q=claim.quantity, v=_number(claim.value, claim.unit), s=support, s_paren=f" ({support})" if support else "",
        d=claim.direction, null=_null(claim) if claim.null is not None else "", why=_why(claim, rule),
        k=NUMBER_WORDS.get(claim.pooled_strata, claim.pooled_strata),
        excl=f"; the CI excludes {_null(claim)}" if claim.ci_excludes_null else "")
    if not claim.primary and rule not in (BY_CONSTRUCTION, NOTHING_POOLED):
        family = f" across {claim.family}" if claim.family else ""
        text = f"secondary, uncorrected{family}: {text}"
    return text


def sentence(claims: list[Claim], lead: str = "") -> str:
    """Clauses joined with '; ', after `lead` and a colon, ending in a full stop (names keep their case)."""
    body = "; ".join(say(c) for c in claims)
    if lead:
        return f"{lead}: {body}." if body else f"{lead}."
    return f"{body}." if body else ""

