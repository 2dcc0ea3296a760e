"""Test session set-up: a throw-away storage root and no hub access.

The demo model is built once per session (about 30 s) into that storage root and shared by every
test that needs it.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_storage(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    saved = {k: os.environ.get(k) for k in ("DEEPCONF_STORAGE_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ["DEEPCONF_STORAGE_DIR"] = str(storage)
    os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach the network
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    yield storage
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def demo_model_dir(isolated_storage) -> Path:
    from resources.model_registry import resolve_model_dir

    return resolve_model_dir("demo")


@pytest.fixture(scope="session")
def generator(demo_model_dir):
    from resources.generation import GenerationResource

    return GenerationResource()
