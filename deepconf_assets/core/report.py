"""A self-contained HTML report: tables and PNG figures (embedded as base64), no external files,
scripts or fonts, so it can be mailed or opened from any folder."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepconf_assets.core.plots import CONFIDENCE_NOTE, POSITIVE_CLASS_NOTE

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.wrap { overflow-x: auto; } figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; } .headline { font-size: 1.1em; }
"""


@dataclass(frozen=True)
class Section:
    heading: str
    note: str = ""
    table: pd.DataFrame | None = None
    png: bytes | None = None
    bullets: list[str] | None = None


COUNT_COLUMNS = {"n", "tp", "fp", "fn", "tn", "tokens_used", "holm_m", "cmh_strata", "logit_n"}


def _is_count(column: pd.Series) -> bool:
    """Integer dtype, or whole numbers in a column named as a count (counts with a missing value are float)."""
    if pd.api.types.is_integer_dtype(column):
        return True
    if not pd.api.types.is_float_dtype(column):
        return False
    values = column.dropna()
    named = column.name in COUNT_COLUMNS or str(column.name).startswith(("n_", "traces_", "tokens"))
    return named and len(values) > 0 and bool((values == values.round()).all())


def _cell(value, count: bool) -> str:
    """One number format for every table: counts as integers with separators, every other number to 3
    decimals (1.000, never 1), '—' for a missing or undefined value (an unavailable labeler, a rate
    without cases), booleans as yes/no."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) or (count and isinstance(value, (float, np.floating))):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    return str(value)


def _table_html(df: pd.DataFrame) -> str:
    shown = pd.DataFrame({name: [_cell(v, _is_count(df[name])) for v in df[name].astype(object)] for name in df.columns})
    table = shown.to_html(index=False, border=0)
    return f'<div class="wrap">{table}</div>'


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.heading)}</h2>"]
    if section.note:
        parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
    if section.table is not None:
        parts.append(_table_html(section.table))
    if section.png is not None:
        encoded = base64.b64encode(section.png).decode()
        parts.append(f'<figure><img alt="{html.escape(section.heading)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption class=\"note\">{html.escape(section.heading)}</figcaption></figure>")
    return "\n".join(parts)


def render(title: str, headline: str, sections: list[Section]) -> bytes:
    """UTF-8 HTML document; every text is escaped."""
    body = "\n".join(_section_html(s) for s in sections)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="headline">{html.escape(headline)}</p>'
        f'<p class="note">{html.escape(POSITIVE_CLASS_NOTE)}<br>{html.escape(CONFIDENCE_NOTE)}</p>'
        f"{body}</body></html>\n"
    )
    return document.encode("utf-8")
