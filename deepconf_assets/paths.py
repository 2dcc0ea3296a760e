"""Where data and outputs live. Read at run time, so the environment of the run decides.

DEEPCONF_DATA_DIR     benchmark files, default <project>/data
DEEPCONF_STORAGE_DIR  everything runs write (asset files, the demo model), default <project>/storage
DEEPCONF_ASSETS_URL   where asset files go instead of <storage>/assets, any fsspec URL
                      (s3://bucket/deepconf/assets with s3fs installed; see deploy/RUNBOOK.md)
"""

from __future__ import annotations

import os
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The checkout when installed from source (editable), else the working directory."""
    return _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").exists() else Path.cwd()


def data_dir() -> Path:
    return Path(os.environ.get("DEEPCONF_DATA_DIR") or project_root() / "data")


def storage_dir() -> Path:
    return Path(os.environ.get("DEEPCONF_STORAGE_DIR") or project_root() / "storage")


def assets_dir() -> Path:
    return storage_dir() / "assets"


def assets_location() -> str:
    """Base path of the IO managers: DEEPCONF_ASSETS_URL, else the local assets folder."""
    return os.environ.get("DEEPCONF_ASSETS_URL") or str(assets_dir())


def models_dir() -> Path:
    return storage_dir() / "models"
