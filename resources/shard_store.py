"""Shards: finished model outputs on disk, so GPU work is never lost or repeated.

A `ShardStore` is a folder of parquet files with one schema and key columns; each write is one file,
written to a temporary name and renamed when complete (a killed run leaves no half shard). `traces`
holds the folder's lock (`exclusive`) while it generates, so a second run on the same storage waits
and reuses instead of generating everything again; rows written twice anyway (the same outputs;
log-probs equal up to CPU float noise between processes) are read once, the first. Two stores use it:

  * generation shards, `<storage>/shards/<benchmark>/<model>/` (SHARD_SCHEMA): a trace is identified
    by (generation_key, seed); the key hashes model, revision, engine, sampling settings and prompt,
    the seed picks the sample;
  * label caches, e.g. `<storage>/labels/wildguard/` (resources.wildguard_classifier): one row per
    classified (prompt, response), keyed by a hash of the classifier's weights, engine, prompt and response.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Hashable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from deepconf_assets.core.trace_rows import FINISH_REASONS

SHARD_SCHEMA = pa.schema([
    ("generation_key", pa.string()),
    ("seed", pa.int64()),
    ("text", pa.string()),
    ("token_ids", pa.list_(pa.int32())),
    ("token_logprob", pa.list_(pa.float32())),
    ("token_confidence", pa.list_(pa.float32())),
    ("nonfinite_logprobs", pa.int64()),
    ("finish_reason", pa.string()),
])
SHARD_KEY = ("generation_key", "seed")
TraceKey = tuple[str, int]


class ShardStore:
    """Parquet shards of `schema` under `folder`, one row per value of `key_columns`. The defaults
    are the generation shards."""

    def __init__(self, folder: Path, schema: pa.Schema = SHARD_SCHEMA, key_columns: Iterable[str] = SHARD_KEY,
                 kind: str = "generation shard"):
        self.folder = Path(folder)
        self.schema = schema
        self.key_columns = list(key_columns)
        self.kind = kind
        missing = [c for c in self.key_columns if c not in schema.names]
        if missing:
            raise ValueError(f"key columns {missing} are not in the shard schema {schema.names}")

    @contextmanager
    def exclusive(self, log=None, poll_seconds: float = 1.0, say_every: float = 60.0):
        """Hold the folder's lock while reading and writing it: a second run on the same storage (another
        Dagster instance, another machine on a shared volume) waits, then reuses what the first one wrote,
        instead of generating everything a second time beside it. The wait is interruptible."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.folder / ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if log:
                log(f"another run is writing {self.kind}s to {self.folder} (the same storage); waiting for it, "
                    f"then its finished work is reused")
            started = time.monotonic()
            while True:
                try:
                    lock.acquire(timeout=say_every, poll_interval=poll_seconds)
                    break
                except Timeout:
                    if log:
                        log(f"still waiting for the other run's lock on {self.folder} ({time.monotonic() - started:.0f}s)")
        try:
            yield self
        finally:
            lock.release()

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.parquet")) if self.folder.exists() else []

    def _load(self, path: Path, warn) -> pd.DataFrame | None:
        """One shard, or None after moving a damaged one aside to `corrupt/`: unreadable (truncated, not
        parquet, wrong schema) or inconsistent (a missing key, per-token lists of different lengths, an
        unknown finish reason). Its rows are then missing, so they are made again, and nothing is lost."""
        try:
            table = pq.read_table(path, schema=self.schema)
            problem = self._inconsistency(table)
            if problem is None:
                return table.to_pandas()
        except (OSError, pa.ArrowException, ValueError) as exc:
            problem = str(exc)
        aside = self.folder / "corrupt" / path.name
        aside.parent.mkdir(exist_ok=True)
        os.replace(path, aside)
        if warn:
            warn(f"damaged {self.kind} {path} ({problem}) moved to {aside}; its rows will be made again")
        return None

    def _inconsistency(self, table: pa.Table) -> str | None:
        """What makes a readable shard unusable, or None."""
        for name in self.key_columns:
            if table.column(name).null_count:
                return f"{table.column(name).null_count} rows without '{name}'"
        lists = [f.name for f in self.schema if pa.types.is_list(f.type)]
        lengths = [pc.list_value_length(table.column(name)) for name in lists]
        for name, length in zip(lists[1:], lengths[1:]):
            if not pc.all(pc.equal(length, lengths[0])).as_py():
                return f"'{name}' and '{lists[0]}' differ in length"
        if "finish_reason" in self.schema.names:
            unknown = pc.invert(pc.is_in(table.column("finish_reason"), pa.array(FINISH_REASONS)))
            if pc.any(unknown).as_py():
                return f"unknown finish_reason (expected one of {FINISH_REASONS})"
        return None

    def read(self, keys: set[Hashable] | None = None, warn=None) -> pd.DataFrame:
        """Stored rows, one per key (those in `keys` only, when given). A key is a tuple of the key
        columns' values, or the plain value when there is one key column. `warn(message)` hears about
        shards moved aside as unreadable."""
        frames = [frame for frame in (self._load(f, warn) for f in self._files()) if frame is not None]
        if not frames:
            return self.schema.empty_table().to_pandas()
        table = pd.concat(frames, ignore_index=True)
        table = table.drop_duplicates(self.key_columns, keep="first")
        if keys is not None:
            if len(self.key_columns) == 1:
                index = pd.Index(table[self.key_columns[0]])
            else:
                index = pd.MultiIndex.from_frame(table[self.key_columns])
            table = table[index.isin(list(keys))] if keys else table.iloc[:0]
        return table.reset_index(drop=True)

    def write(self, rows: pd.DataFrame) -> Path:
        """Write one shard atomically; raises OSError with the folder named when the disk is full."""
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(rows[self.schema.names], schema=self.schema, preserve_index=False)
        name = f"{uuid.uuid4().hex}.parquet"
        staging = self.folder / f".{name}.tmp"
        try:
            pq.write_table(table, staging)
            os.replace(staging, self.folder / name)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            hint = (" (disk full: free space there or point DEEPCONF_STORAGE_DIR at a larger volume; "
                    "shards already written are kept and reused)") if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OSError(exc.errno, f"cannot write a {self.kind} under {self.folder}: {exc.strerror}{hint}") from exc
        return self.folder / name


def as_shard_rows(keys: list[str], traces: list) -> pd.DataFrame:
    """GeneratedTrace objects (resources.generation) as shard rows."""
    return pd.DataFrame({
        "generation_key": keys,
        "seed": [t.seed for t in traces],
        "text": [t.text for t in traces],
        "token_ids": [np.asarray(t.token_ids, dtype=np.int32) for t in traces],
        "token_logprob": [np.asarray(t.token_logprob, dtype=np.float32) for t in traces],
        "token_confidence": [np.asarray(t.token_confidence, dtype=np.float32) for t in traces],
        "nonfinite_logprobs": [int(t.nonfinite_logprobs) for t in traces],
        "finish_reason": [t.finish_reason for t in traces],
    })
