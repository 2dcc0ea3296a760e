"""Asset storage: parquet tables, PNG figures and HTML reports under `<storage>/assets`.

Layout (Dagster's UPathIOManager): `<asset>/<benchmark>/<model>.<ext>` for `benchmark|model`
partitions, `<asset>/<benchmark>.<ext>` for benchmark-only partitions; a set of figures is a folder
in that place, `<asset>/<benchmark>/<model>/<figure>.png`. Files are written to a
temporary name and renamed, so a killed run never leaves half a file behind. No pickles.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableIOManagerFactory, InputContext, MetadataValue, OutputContext, UPathIOManager
from upath import UPath

from deepconf_assets import paths


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def _atomic_write(path: UPath, data: bytes) -> None:
    """Local files: write a temporary sibling and rename it over the target, so a killed worker
    leaves the previous complete file (or none), never half a file. Object stores (s3://, gs://,
    memory://...) publish an object only when its upload completes, so they are written directly.
    A full disk raises StorageFullError naming the file and the setting to change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not _is_local(path):
            path.write_bytes(data)
            return
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            staging.write_bytes(data)
            os.replace(staging, path)
        finally:
            if staging.exists():
                staging.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(
                f"no space left writing {path} ({len(data) / 1e6:.1f} MB): free space there, or point "
                f"DEEPCONF_STORAGE_DIR (or the IO manager's base_path) at a larger volume"
            ) from exc
        raise


class StorageFullError(OSError):
    """The asset store's disk or quota is full."""


class CorruptAssetFileError(ValueError):
    """A stored asset file exists but cannot be read."""


class ParquetIOManager(UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a pandas DataFrame, got {type(obj)}")
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(obj, preserve_index=False), sink)
        _atomic_write(path, sink.getvalue().to_pybytes())

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        try:
            return pd.read_parquet(path)
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise CorruptAssetFileError(
                f"{path}: not a readable parquet file ({exc}); re-materialize "
                f"{context.asset_key.to_user_string()} for this partition to rewrite it"
            ) from exc


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


class PngFolderIOManager(UPathIOManager):
    """A set of figures ({name: PNG bytes}) as a folder per partition, one `<name>.png` per figure; a
    figure no longer in the set is removed, so the folder holds exactly the last set."""

    extension = ""

    def dump_to_path(self, context: OutputContext, obj: dict, path: UPath) -> None:
        if not isinstance(obj, dict) or not all(bytes(png).startswith(PngIOManager.magic) for png in obj.values()):
            raise TypeError(f"{context.asset_key.to_user_string()} must return {{name: png bytes}}")
        for name, png in obj.items():
            _atomic_write(path / f"{name}.png", bytes(png))
        for old in path.glob("*.png"):
            if old.stem not in obj:
                old.unlink()

    def load_from_path(self, context: InputContext, path: UPath) -> dict[str, bytes]:
        if not path.is_dir():
            raise FileNotFoundError(f"no figures at {path}: materialize {context.asset_key.to_user_string()} for "
                                    f"this partition")
        return {png.stem: png.read_bytes() for png in sorted(path.glob("*.png"))}


class HtmlIOManager(_BytesIOManager):
    extension = ".html"
    magic = b"<!DOCTYPE html>"

    def dump_to_path(self, context: OutputContext, obj: bytes, path: UPath) -> None:
        super().dump_to_path(context, obj, path)
        # a link in the asset's metadata: the UI opens it in a new tab (a browser may ask before opening a
        # local file from a web page; the path beside it can be pasted instead)
        link = Path(path).resolve().as_uri() if _is_local(path) else str(path)
        context.add_output_metadata({"open_report": MetadataValue.url(link)})


class _StoreFactory(ConfigurableIOManagerFactory):
    """base_path: empty = $DEEPCONF_ASSETS_URL, else `$DEEPCONF_STORAGE_DIR/assets` (default
    `storage/assets`), read per run. Any fsspec URL works (s3://, gs://, memory://)."""

    base_path: str = ""

    def create_io_manager(self, context) -> UPathIOManager:
        return self.manager_class(base_path=UPath(self.base_path or paths.assets_location()))


class ParquetIOManagerFactory(_StoreFactory):
    manager_class: ClassVar[type] = ParquetIOManager


class PngIOManagerFactory(_StoreFactory):
    manager_class: ClassVar[type] = PngIOManager


class PngFolderIOManagerFactory(_StoreFactory):
    manager_class: ClassVar[type] = PngFolderIOManager


class HtmlIOManagerFactory(_StoreFactory):
    manager_class: ClassVar[type] = HtmlIOManager
