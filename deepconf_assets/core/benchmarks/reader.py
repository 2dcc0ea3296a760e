"""The strict reader every benchmark file goes through (`BenchmarkSpec.load`, gold label files)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from deepconf_assets.core.benchmarks.contract import BenchmarkFileError


def read_raw_file(path: Path) -> pd.DataFrame:
    """A benchmark file as a table: parquet as stored, CSV as strings with "" read as missing.

    CSV is read strictly, because a lenient parser guesses: a stray quote would silently join or cut
    prompts, a row with a missing or an extra field would shift or drop a value, and a repeated column
    name would pick one of two columns. Each of these is an error naming the file, the line and the field.
    """
    if path.suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise BenchmarkFileError(f"{path}: cannot be read ({exc})") from None
        _distinct_columns(list(map(str, raw.columns)), path)
        return raw
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchmarkFileError(f"{path}: cannot be read ({exc})") from None
    return _strict_csv(data, path)


def _distinct_columns(header: list[str], path: Path) -> None:
    """Column names must differ in more than case and surrounding spaces: ` label` beside `label` would
    leave one of them silently unread."""
    seen: dict[str, tuple[int, str]] = {}
    for position, name in enumerate(header, start=1):
        key = name.strip().casefold()
        if key in seen:
            first, first_name = seen[key]
            how = "appears twice" if name == first_name else f"and {first_name!r} differ only in case or spaces"
            raise BenchmarkFileError(
                f"{path}: line 1: column name {name!r} {how} (columns {first} and {position}); "
                f"which one holds the data is ambiguous: rename or remove one"
            )
        seen[key] = (position, name)


def _strict_csv(data: bytes, path: Path) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first column name
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BenchmarkFileError(
            f"{path}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x}); save the file as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    line = 0  # the last line read; a record starts on the line after it
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            if not record:  # a blank line holds no row
                continue
            if header is None:
                header = record
                _distinct_columns(header, path)
                continue
            if len(record) != len(header):
                field = header[len(record)] if len(record) < len(header) else f"(extra field {len(header) + 1})"
                raise BenchmarkFileError(
                    f"{path}: data row {len(rows) + 1} (line {start}), field {field!r}: {len(record)} fields where "
                    f"the header has {len(header)}; a missing or extra comma (or an unquoted comma in a text) "
                    f"makes the columns ambiguous"
                )
            rows.append(record)
    except csv.Error as exc:
        raise BenchmarkFileError(
            f"{path}: data row {len(rows) + 1} (from line {line + 1}): {exc}. A quoted field must end at its "
            f"closing quote, and a quote inside it is written twice (\"\")"
        ) from None
    if header is None:
        raise BenchmarkFileError(f"{path}: empty file (no header row)")
    table = pd.DataFrame(rows, columns=header, dtype=object)
    return table.mask(table == "")
