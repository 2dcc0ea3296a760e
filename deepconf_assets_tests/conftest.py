"""Test session set-up: a throw-away storage root, no hub access, a cache of built demo models, and
the rule that keeps `pytest -m "not slow"` a fast loop.

Demo models (about 30-100 s each to build) are built once per recipe and kept between sessions in
`$DEEPCONF_TEST_MODEL_CACHE/models/<recipe>/<key>` (default `~/.cache/deepconf-tests`;
`DEEPCONF_TEST_MODEL_CACHE=off` builds afresh in every session). `<recipe>` is the recipe version of
resources/demo_model.py (a hash of the recipe and of the synthetic prompts it trains on) plus the
versions of torch, transformers, tokenizers and numpy, so an edit to the recipe or a library upgrade builds a
new model. A session copies the cached model into its own storage root (tests may damage their copy); a
missing one is copied from the committed seed (`model_seed/<recipe>/`, the same build, when the recipe and
library versions match) or else built in the cache first, under a lock file (a second session waits rather than builds
too) and with ensure_demo_model's own build-in-a-temporary-folder-then-rename, so a killed build or two
sessions building at once never leave half a model there. A test that changes the recipe (fewer training
steps) neither reads nor fills the cache. test_demo_model.py's build tests still build from scratch (into
tmp_path, never through the cache).

The slow rule: a test must be marked `@pytest.mark.slow` when it
  * requests the model fixtures (`demo_model_dir`, `generator`, or any fixture depending on them):
    fails at set-up, before anything is built;
  * calls `dagster.materialize` / `materialize_to_memory`, starts a process (`subprocess.Popen`, which
    `subprocess.run` and friends use) or asks for a model to be built (resources.demo_model's
    ensure_demo_model / build_demo_model, resources.gguf_weights.ensure_gguf_model — whether or not the
    cache makes it quick this time): fails after running;
  * takes more than 2 s (set-up and call together), when DEEPCONF_TEST_CLOCK=1: fails after running. This
    clock rule is a backstop for what the probes above cannot see, for the fast loop on a quiet machine
    (`DEEPCONF_TEST_CLOCK=1 pytest -m "not slow"`). It is off by default, because on a shared or loaded
    machine (CI runners) a fast test can be slowed past 2 s by its neighbours; the probes are deterministic.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SLOW_HINT = "mark it @pytest.mark.slow"
MODEL_FIXTURES = frozenset({"demo_model_dir", "generator"})
CLOCK_LIMIT_S = 2.0
CLOCK_ENV = "DEEPCONF_TEST_CLOCK"  # "1": enforce the 2 s clock rule
CACHE_ENV = "DEEPCONF_TEST_MODEL_CACHE"
_USES = pytest.StashKey[list]()
_SETUP_S = pytest.StashKey[float]()
_running: dict = {"item": None}  # the test whose set-up or call is running now
_PRISTINE_RECIPES: dict[str, str] = {}  # each demo variant's recipe as the source defines it (before any test)
# Imported before the first test, so that the 2 s clock does not charge a library's first import (seconds
# on a loaded machine) to whichever fast test happens to call it first; the code imports them lazily.
WARM_IMPORTS = ("statsmodels.api", "statsmodels.stats.multitest", "statsmodels.stats.contingency_tables",
                "sklearn.metrics", "scipy.stats",
                "hypothesis")  # runs its plugins (trio's register_random checks gc referrers): before gc.freeze


# ----------------------------------------------------------------------------- the slow rule


def _is_slow(item) -> bool:
    return item.get_closest_marker("slow") is not None


def _note(what: str) -> None:
    """Record that the running test did something only a slow test may do."""
    item = _running["item"]
    if item is not None and not _is_slow(item):
        item.stash.setdefault(_USES, []).append(what)


def _probe(module, name: str, label: str) -> None:
    original = getattr(module, name)
    if getattr(original, "_deepconf_probe", False):
        return

    @functools.wraps(original)
    def probed(*args, **kwargs):
        _note(label)
        return original(*args, **kwargs)

    probed._deepconf_probe = True
    setattr(module, name, probed)


class _ProbedPopen(subprocess.Popen):
    _deepconf_probe = True

    def __init__(self, args, *rest, **kwargs):
        _note(f"subprocess.Popen({str(args)[:80]})")
        super().__init__(args, *rest, **kwargs)


def _install_probes() -> None:
    """Wrap what makes a test slow. Before the test modules are imported, so that their
    `from dagster import materialize` gets the wrapper."""
    import dagster

    from resources import demo_model, gguf_weights

    for variant in demo_model.VARIANTS:
        _PRISTINE_RECIPES.setdefault(variant, _as_json(list(demo_model.variant_recipe(variant))))
    _probe(dagster, "materialize", "dagster.materialize")
    _probe(dagster, "materialize_to_memory", "dagster.materialize_to_memory")
    _probe(demo_model, "build_demo_model", "a demo model build (resources.demo_model.build_demo_model)")
    _probe(gguf_weights, "ensure_gguf_model", "a model build (resources.gguf_weights.ensure_gguf_model)")
    if not getattr(demo_model.ensure_demo_model, "_deepconf_probe", False):
        original = demo_model.ensure_demo_model

        @functools.wraps(original)
        def ensure_demo_model(model_dir, log=None, variant="demo"):
            _note("a demo model build (resources.model_registry.resolve_model_dir / ensure_demo_model)")
            _seed_from_cache(Path(model_dir), variant)
            return original(model_dir, log, variant)

        ensure_demo_model._deepconf_probe = True
        demo_model.ensure_demo_model = ensure_demo_model
    if not getattr(subprocess.Popen, "_deepconf_probe", False):
        subprocess.Popen = _ProbedPopen


def pytest_configure(config):
    if not any(line.startswith("slow:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "slow: builds a model, materializes, starts a process or takes > 2 s")
    _install_probes()


def pytest_collection_finish(session):
    if session.config.option.collectonly or not session.items:
        return
    import importlib

    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # Everything imported and collected so far lives for the whole session: keep it out of the garbage
    # collector's way, or each gc.collect() (statsmodels' multipletests runs one per call, so every
    # analysis.holm) walks torch's and dagster's objects too: 0.2 s a call here, seconds when loaded.
    gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running["item"] = item
    item.stash[_USES] = []
    if not _is_slow(item):
        needs = sorted(MODEL_FIXTURES & set(item.fixturenames))
        if needs:
            pytest.fail(f"{item.nodeid} requests the demo model (fixture {', '.join(needs)}, directly or through "
                        f"another fixture), which takes minutes to build: {SLOW_HINT}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    _running["item"] = item


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    _running["item"] = None  # module fixtures torn down here (services stopped) are not the test's doing


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup":
        item.stash[_SETUP_S] = report.duration
    if call.when != "call" or _is_slow(item) or report.skipped:
        return
    problems = []
    uses = list(dict.fromkeys(item.stash.get(_USES, [])))
    if uses:
        problems.append(f"{item.nodeid} is not marked slow but ran {'; '.join(uses)}: {SLOW_HINT}")
    took = item.stash.get(_SETUP_S, 0.0) + report.duration
    if took > CLOCK_LIMIT_S and os.environ.get(CLOCK_ENV, "") not in ("", "0"):
        problems.append(f"{item.nodeid} is not marked slow but took {took:.1f} s (set-up and call; over "
                        f"{CLOCK_LIMIT_S:.0f} s): make it faster or {SLOW_HINT} ({CLOCK_ENV}=1 enforces this "
                        f"clock rule; leave it unset on a loaded machine)")
    if not problems:
        return
    message = "\n".join(problems)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = message
    else:
        report.sections.append(("slow rule", message))


# ----------------------------------------------------------------------------- demo model cache


# Demo models as this recipe builds them with the libraries CI installs, committed (2.7 MB) so a fresh
# machine copies them into the cache instead of training for a minute and a half. A seed is used only under
# its own key (recipe version and library versions, as the cache's): the build is deterministic
# (test_demo_model.py, which still builds from scratch), so a seed is the model a build would give.
# `python -m deepconf_assets_tests.conftest` refreshes it from the cache after a recipe or library change.
MODEL_SEED = REPO / "deepconf_assets_tests" / "model_seed"


def model_cache_dir() -> Path | None:
    """`<cache>/models/<recipe>` for this recipe and these libraries, or None when the cache is off."""
    from resources import demo_model

    root = os.environ.get(CACHE_ENV, "")
    if root.strip().lower() in ("off", "0", "none", "false"):
        return None
    libraries = ";".join(f"{name}={_version(name)}" for name in ("torch", "transformers", "tokenizers", "numpy"))
    tag = hashlib.sha256(libraries.encode()).hexdigest()[:8]
    return Path(root or "~/.cache/deepconf-tests").expanduser() / "models" / f"{demo_model.RECIPE_VERSION}-{tag}"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def _as_json(recipe) -> str:
    import json

    return json.dumps(recipe, sort_keys=True)


def _manifest_recipe(model_dir: Path) -> str | None:
    import json

    from resources import demo_model

    try:
        manifest = json.loads((model_dir / demo_model.MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return _as_json([manifest.get("architecture"), manifest.get("training")])


def _copy_in(source: Path, target: Path) -> None:
    """Copy a built model folder to `target` through a temporary folder beside it (never half a copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-copy-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        if target.exists() or target.is_symlink():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _seed_from_cache(model_dir: Path, variant: str) -> None:
    """Fill `<storage>/models/<variant>` from the cache, building it there first when missing. Other folders
    (a test's own tmp_path) and recipes a test has changed are left to the build itself."""
    from deepconf_assets import paths
    from resources import demo_model

    cache = model_cache_dir()
    if cache is None or variant not in demo_model.VARIANTS:
        return
    if model_dir.absolute() != (paths.models_dir() / variant).absolute() or demo_model.is_built(model_dir, variant):
        return
    if _as_json(list(demo_model.variant_recipe(variant))) != _PRISTINE_RECIPES.get(variant):
        return  # a test changed the recipe (fewer steps): its model is neither taken from nor put in the cache
    cached = cache / variant
    seed = MODEL_SEED / cache.name / variant
    if not demo_model.is_built(cached, variant) and demo_model.is_built(seed, variant) \
            and _manifest_recipe(seed) == _PRISTINE_RECIPES[variant]:
        _copy_in(seed, cached)  # the committed build of this recipe with these libraries: nothing to train
    if not demo_model.is_built(cached, variant):
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f".{variant}.lock", "w") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)  # a second session waits for the first one's build
            except ImportError:
                pass  # no flock (Windows): both build; ensure_demo_model's rename keeps the cache whole
            for stale in cache.glob(".demo-build-*"):  # left by a session killed mid-build a day ago
                if time.time() - stale.stat().st_mtime > 86400:
                    shutil.rmtree(stale, ignore_errors=True)
            # the unprobed original: building the cache is the fixture's doing, not the test's
            ensure = getattr(demo_model.ensure_demo_model, "__wrapped__", demo_model.ensure_demo_model)
            ensure(cached, print, variant)
    if _manifest_recipe(cached) == _PRISTINE_RECIPES[variant]:
        _copy_in(cached, model_dir)


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

    return resolve_model_dir("demo")  # from the model cache (see the module docstring)


@pytest.fixture(scope="session")
def generator(demo_model_dir):
    from resources.generation import GenerationResource

    return GenerationResource()


def refresh_model_seed() -> None:
    """Replace the committed seed with this machine's cached builds (after a test session built them)."""
    from resources import demo_model

    cache = model_cache_dir()
    shutil.rmtree(MODEL_SEED, ignore_errors=True)
    for variant in demo_model.VARIANTS:
        if cache is not None and demo_model.is_built(cache / variant, variant):
            _copy_in(cache / variant, MODEL_SEED / cache.name / variant)
            print(f"seeded {MODEL_SEED / cache.name / variant}")


if __name__ == "__main__":  # python -m deepconf_assets_tests.conftest
    refresh_model_seed()
