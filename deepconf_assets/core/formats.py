"""How a number reads in a sentence: p-values ('< 0.001', else three significant digits), proportions as
percentages, differences in percentage points; '—' for an undefined value. The report's tables
(core.html_report), its sentences (core.interpret, core.answer, core.hypothesis) and the UI's metadata read
numbers through these, so a p-value or a rate looks the same everywhere."""

from __future__ import annotations

import math

import pandas as pd


def undefined(value) -> bool:
    """None, pandas' NA, NaN or an infinity: a number that cannot be shown."""
    return value is None or value is pd.NA or not math.isfinite(float(value))


def fmt_p(value) -> str:
    """A p-value as a person reads it: '< 0.001', else three significant digits (0.00352, 0.0215, 0.41);
    '—' when undefined."""
    if undefined(value):
        return "—"
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3g}"


def p_is(value) -> str:
    """A p-value after its name: f"Holm p {p_is(p)}" reads 'Holm p = 0.012' or 'Holm p < 0.001'."""
    text = fmt_p(value)
    return text if text.startswith("<") else f"= {text}"


def fmt_pct(proportion, digits: int = 1) -> str:
    """A proportion (0..1) as a percentage with one decimal ('37.5%'); '—' when undefined."""
    if undefined(proportion):
        return "—"
    return f"{100.0 * float(proportion):.{digits}f}%"


def fmt_pp(difference, digits: int = 1) -> str:
    """A difference of proportions in percentage points, signed ('+4.2 pp'); '—' when undefined."""
    if undefined(difference):
        return "—"
    return f"{100.0 * float(difference):+.{digits}f} pp"
