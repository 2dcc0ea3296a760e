"""Materialization metadata helpers: what the Dagster UI shows inline."""

from __future__ import annotations

import base64
import math

import numpy as np
import pandas as pd
from dagster import MetadataValue


def _cell(value, width: int = 100):
    if not isinstance(value, str):
        return value
    text = " ".join(value.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "… (full text in the asset's parquet)"


def table(df: pd.DataFrame, floatfmt: str = ".3f", max_rows: int = 40) -> MetadataValue:
    """A markdown table; long or multi-line text is flattened and shortened."""
    shown = df.head(max_rows).map(_cell)
    note = "" if len(df) <= max_rows else f"\n\n_{len(df) - max_rows} more rows in the parquet file._"
    return MetadataValue.md(shown.to_markdown(index=False, floatfmt=floatfmt) + note)


def image(png: bytes, caption: str) -> MetadataValue:
    """Dagster has no image metadata type: a base64 PNG inside markdown renders inline."""
    encoded = base64.b64encode(png).decode()
    return MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})\n\n{caption}")


def percent(value) -> MetadataValue:
    """A percentage as a person reads it: one decimal (36.8, not 36.8199); n/a when undefined."""
    return number(None if value is None else round(float(value), 1))


def number(value) -> MetadataValue:
    """Ints stay ints; NaN (an undefined rate, e.g. specificity without benign prompts) shows n/a."""
    if isinstance(value, (int, np.integer)):
        return MetadataValue.int(int(value))
    if value is None or not math.isfinite(float(value)):
        return MetadataValue.text("n/a")
    return MetadataValue.float(round(float(value), 4))  # 19525.8637, not 19525.863701792532


def settings(analysis_settings) -> dict:
    """The run's analysis settings (core.analysis.AnalysisSettings), so every analysis says what produced it."""
    return {"analysis_settings": MetadataValue.json(analysis_settings.recorded())}
