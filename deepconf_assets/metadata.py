"""Materialization metadata helpers: what the Dagster UI shows inline."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
from dagster import MetadataValue

from deepconf_assets.core import html_report
from deepconf_assets.core.formats import undefined as _undefined


def _flat(text: str, width: int = 100) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "… (full text in the asset's parquet)"


def table(df: pd.DataFrame, max_rows: int = 40) -> MetadataValue:
    """A markdown table in the report's one format (core.html_report.formatted: percentages, p-values, counts,
    p10); long or multi-line text is flattened and shortened, saying where the full text is."""
    shown = html_report.formatted(df.head(max_rows)).map(_flat)
    align = ["left" if df[c].dtype == object or c in html_report.KEY_COLUMNS else "right" for c in df.columns]
    note = "" if len(df) <= max_rows else f"\n\n_{len(df) - max_rows} more rows in the parquet file._"
    return MetadataValue.md(shown.to_markdown(index=False, colalign=align, disable_numparse=True) + note)


def image(png: bytes, caption: str) -> MetadataValue:
    """Dagster has no image metadata type: a base64 PNG inside markdown renders inline."""
    encoded = base64.b64encode(png).decode()
    return MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})\n\n{caption}")


def percent(value) -> MetadataValue:
    """A percentage as a person reads it: one decimal (36.8, not 36.8199); n/a when undefined."""
    return number(None if value is None else round(float(value), 1))


def p_value(value) -> MetadataValue:
    """A p-value to three significant digits (0.00491, 3.2e-06): rounding to decimals would show a small p as 0."""
    if _undefined(value):
        return MetadataValue.text("n/a")
    return MetadataValue.float(float(f"{float(value):.3g}"))


def numbers(values: dict) -> dict:
    """Scalar metadata named and shown as a person reads it, by the report's column kinds
    (core.html_report.column_kind): a proportion becomes `<name>_pct` (a difference `<name>_pp`) in percent with
    one decimal, a p-value keeps 3 significant digits, a percentage one decimal, any other number `number`."""
    shown = {}
    for name, value in values.items():
        kind = html_report.column_kind(name)
        if kind in ("proportion", "pp"):
            shown[name + ("_pp" if kind == "pp" else "_pct")] = percent(None if value is None else 100.0 * float(value))
        else:
            shown[name] = {"p": p_value, "pct": percent}.get(kind, number)(value)
    return shown


def number(value) -> MetadataValue:
    """Ints stay ints; NaN (an undefined rate, e.g. specificity without benign prompts) shows n/a."""
    if isinstance(value, (int, np.integer)):
        return MetadataValue.int(int(value))
    if _undefined(value):
        return MetadataValue.text("n/a")
    return MetadataValue.float(round(float(value), 4))  # 19525.8637, not 19525.863701792532


def settings(analysis_settings) -> dict:
    """The run's analysis settings (core.analysis.AnalysisSettings), so every analysis says what produced it."""
    return {"analysis_settings": MetadataValue.json(analysis_settings.recorded())}
