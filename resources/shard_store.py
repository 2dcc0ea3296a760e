"""Generation shards: finished traces on disk, so GPU work is never lost or repeated.

`<storage>/shards/<benchmark>/<model>/<unique>.parquet`, one file per generation batch, written to a
temporary name and renamed when complete (a killed run leaves no half shard). A trace is identified
by (generation_key, seed): the key hashes model, revision, engine, sampling settings and prompt, the
seed picks the sample. Two runs writing the same trace at once produce duplicate rows (the same
tokens; log-probs equal up to CPU float noise between processes); reading keeps the first.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
TraceKey = tuple[str, int]


class ShardStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.parquet")) if self.folder.exists() else []

    def read(self, keys: set[TraceKey] | None = None) -> pd.DataFrame:
        """Stored traces (one row per key; those in `keys` only, when given)."""
        files = self._files()
        if not files:
            return SHARD_SCHEMA.empty_table().to_pandas()
        table = pd.concat([pq.read_table(f, schema=SHARD_SCHEMA).to_pandas() for f in files], ignore_index=True)
        table = table.drop_duplicates(["generation_key", "seed"], keep="first")
        if keys is not None:
            wanted = pd.MultiIndex.from_tuples(list(keys), names=["generation_key", "seed"]) if keys else None
            index = pd.MultiIndex.from_frame(table[["generation_key", "seed"]])
            table = table[index.isin(wanted)] if wanted is not None else table.iloc[:0]
        return table.reset_index(drop=True)

    def write(self, rows: pd.DataFrame) -> Path:
        """Write one shard atomically; raises OSError with the folder named when the disk is full."""
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(rows[SHARD_SCHEMA.names], schema=SHARD_SCHEMA, preserve_index=False)
        name = f"{uuid.uuid4().hex}.parquet"
        staging = self.folder / f".{name}.tmp"
        try:
            pq.write_table(table, staging)
            os.replace(staging, self.folder / name)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            hint = (" (disk full: free space there or point DEEPCONF_STORAGE_DIR at a larger volume; "
                    "shards already written are kept and reused)") if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OSError(exc.errno, f"cannot write a generation shard under {self.folder}: {exc.strerror}{hint}") from exc
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
