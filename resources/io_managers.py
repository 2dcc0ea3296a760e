"""Asset storage: parquet tables and PNG figures under `<storage>/assets`.

Layout (Dagster's UPathIOManager): `<asset>/<benchmark>/<model>.<ext>` for `benchmark|model`
partitions, `<asset>/<benchmark>.<ext>` for benchmark-only partitions. Files are written to a
temporary name and renamed, so a killed run never leaves half a file behind. No pickles.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableIOManagerFactory, InputContext, OutputContext, UPathIOManager
from upath import UPath

from deepconf_assets import paths


def _atomic_write(path: UPath, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_bytes(data)
    os.replace(staging, path)


class ParquetIOManager(UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a pandas DataFrame, got {type(obj)}")
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(obj, preserve_index=False), sink)
        _atomic_write(path, sink.getvalue().to_pybytes())

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        return pd.read_parquet(path)


class _BytesIOManager(UPathIOManager):
    """A file per partition holding the bytes an asset returns, checked against the format's magic."""

    magic: bytes = b""

    def dump_to_path(self, context: OutputContext, obj: bytes, path: UPath) -> None:
        if not isinstance(obj, bytes | bytearray) or not bytes(obj).startswith(self.magic):
            raise TypeError(f"{context.asset_key.to_user_string()} must return {self.extension[1:]} bytes")
        _atomic_write(path, bytes(obj))

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return path.read_bytes()


class PngIOManager(_BytesIOManager):
    extension = ".png"
    magic = b"\x89PNG\r\n\x1a\n"


class HtmlIOManager(_BytesIOManager):
    extension = ".html"
    magic = b"<!DOCTYPE html>"


class ParquetIOManagerFactory(ConfigurableIOManagerFactory):
    """base_path: empty = `$DEEPCONF_STORAGE_DIR/assets` (default `storage/assets`), read per run."""

    base_path: str = ""

    def create_io_manager(self, context) -> ParquetIOManager:
        return ParquetIOManager(base_path=UPath(self.base_path or paths.assets_dir()))


class PngIOManagerFactory(ConfigurableIOManagerFactory):
    base_path: str = ""

    def create_io_manager(self, context) -> PngIOManager:
        return PngIOManager(base_path=UPath(self.base_path or paths.assets_dir()))


class HtmlIOManagerFactory(ConfigurableIOManagerFactory):
    base_path: str = ""

    def create_io_manager(self, context) -> HtmlIOManager:
        return HtmlIOManager(base_path=UPath(self.base_path or paths.assets_dir()))
