"""A self-contained HTML report: tables and PNG figures (embedded as base64), no external files,
scripts or fonts, so it can be mailed or opened from any folder."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepconf_assets.core.formats import fmt_p, fmt_pct, fmt_pp
from deepconf_assets.core.plots import CONFIDENCE_NOTE, POSITIVE_CLASS_NOTE

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.3em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; margin-top: 1.2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; overflow-wrap: anywhere; }
td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; max-width: 32em; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: bold; font-size: 1.05em; padding: 0.3em 0; }
details > div { max-height: 80vh; overflow: auto; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; } .headline { font-size: 1.05em; } .answer td, .answer th { font-size: 1.05em; }
"""

MAX_COLUMNS = 9  # a wider table is shown in parts of at most this many columns, its key columns repeated


@dataclass(frozen=True)
class Section:
    """A heading with a note, bullet sentences, a table and/or a PNG. `collapsed`: shown closed (click to open)."""

    heading: str
    note: str = ""
    table: pd.DataFrame | None = None
    png: bytes | None = None
    bullets: list[str] | None = None
    collapsed: bool = False


COUNT_COLUMNS = {"n", "tp", "fp", "fn", "tn", "tokens_used", "holm_m", "cmh_strata", "logit_n"}
# Read as proportions (0..1) and shown as percentages; columns named *_pct are percentages already.
PROPORTION_COLUMNS = {"rate", "accuracy", "sensitivity", "specificity", "precision", "recall", "f1", "refusal_rate",
                      "unsafe_compliance_rate", "over_refusal_rate", "agreement", "accuracy_a", "accuracy_b"}
# Differences of proportions, shown in percentage points: these and *_difference (diff_ci_low/high: of the
# accuracy difference).
DIFFERENCE_COLUMNS = {"diff", "difference"}
# what identifies a row: a table split for width repeats every one of these in each part
KEY_COLUMNS = ("labeler", "policy", "model", "model_a", "model_b", "metric", "item", "vote_rule", "percentile",
               "category")


def _is_count(column: pd.Series) -> bool:
    """Integer dtype, or whole numbers in a column named as a count (counts with a missing value are float)."""
    if pd.api.types.is_integer_dtype(column):
        return True
    if not pd.api.types.is_float_dtype(column):
        return False
    values = column.dropna()
    named = column.name in COUNT_COLUMNS or str(column.name).startswith(("n_", "traces_", "tokens"))
    return named and len(values) > 0 and bool((values == values.round()).all())


def column_kind(name: str) -> str:
    """How a column's numbers are read: p (p-values), proportion, pp (a difference of proportions), pct (a
    percentage already), percentile, or number."""
    name = str(name)
    if name == "p" or name.endswith(("_p", "_p_holm", "p_holm", "_p_two_sided", "_p_one_sided_h1")) or "_p_" in name \
            and name.startswith(("fisher", "cmh", "breslow")):
        return "p"
    if name.endswith("_pct"):
        return "pct"
    base = name.removesuffix("_ci_low").removesuffix("_ci_high")
    if base in DIFFERENCE_COLUMNS or base.endswith("_difference"):
        return "pp"
    if base in PROPORTION_COLUMNS or base.startswith(("accuracy_", "share_", "agreement")) or base.endswith("_share") \
            or "_agreement_" in base:
        return "proportion"
    if name == "percentile":
        return "percentile"
    return "number"


def _cell(value, count: bool, kind: str = "number") -> str:
    """One format for every table: counts as integers with separators; proportions as percentages with one
    decimal; p-values as '< 0.001' or 3 significant digits; percentiles as 'p10'; other numbers to 3
    decimals; '—' for a missing or undefined value; booleans as yes/no."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and kind != "percentile" or (count and isinstance(value, (float, np.floating))):
        return f"{int(value):,}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        if kind == "p":
            return fmt_p(value)
        if kind == "proportion":
            return fmt_pct(value)
        if kind == "pp":
            return fmt_pp(value)
        if kind == "pct":
            return f"{value:.1f}%"
        if kind == "percentile":
            return f"p{value:g}"
        return f"{value:.3f}"
    return str(value)


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every cell as a person reads it (`_cell`): the report's tables and the UI's metadata tables."""
    return pd.DataFrame({column: [_cell(value, _is_count(df[column]), column_kind(column))
                                  for value in df[column].astype(object)] for column in df.columns},
                        columns=df.columns)


def _table_html(df: pd.DataFrame, css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in formatted(df).itertuples(index=False):
        cells = [('<td class="text">' if len(text) > 24 else "<td>") + html.escape(text) + "</td>" for text in row]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>")


def table_parts(df: pd.DataFrame) -> list[pd.DataFrame]:
    """`df` in parts of at most MAX_COLUMNS columns besides its key columns (KEY_COLUMNS, or the first column),
    every part starting with all of them, so no table is wider than the page and every row stays named."""
    if len(df.columns) <= MAX_COLUMNS:
        return [df]
    keys = [c for c in df.columns if c in KEY_COLUMNS] or [df.columns[0]]
    rest = [c for c in df.columns if c not in keys]
    width = max(1, MAX_COLUMNS - len(keys))
    return [df[keys + rest[i:i + width]] for i in range(0, len(rest), width)]


def _section_html(section: Section) -> str:
    parts = []
    if section.note:
        parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
    if section.table is not None:
        parts.extend(_table_html(part) for part in table_parts(section.table))
    if section.png is not None:
        encoded = base64.b64encode(section.png).decode()
        parts.append(f'<figure><img alt="{html.escape(section.heading)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption class=\"note\">{html.escape(section.heading)}</figcaption></figure>")
    inner = "\n".join(parts)
    if section.collapsed:
        return f"<details><summary>{html.escape(section.heading)}</summary><div>{inner}</div></details>"
    return f"<h2>{html.escape(section.heading)}</h2>\n{inner}"


def render(title: str, headline: str, sections: list[Section], answer: pd.DataFrame | None = None,
           answer_lines: list[str] = ()) -> bytes:
    """UTF-8 HTML document; every text is escaped. The first screen: the title, `answer` (a small table, the
    hypothesis per policy) and `answer_lines` (the savings, the verdict), then the headline; the sections
    follow, wide ones collapsed."""
    top = ""
    if answer is not None:
        top += _table_html(answer, "answer")
    top += "".join(f'<p class="headline">{html.escape(line)}</p>' for line in answer_lines)
    body = "\n".join(_section_html(s) for s in sections)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{top}"
        f'<p class="note">{html.escape(headline)}</p>'
        f'<p class="note">{html.escape(POSITIVE_CLASS_NOTE)}<br>{html.escape(CONFIDENCE_NOTE)}</p>'
        f"{body}</body></html>\n"
    )
    return document.encode("utf-8")
