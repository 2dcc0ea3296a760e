"""The slow rule of conftest.py, on a tiny generated test file run by a pytest of its own: an unmarked
test that needs the demo model, materializes, starts a process, builds a model or takes over 2 s fails
and says "mark it @pytest.mark.slow"; the same test marked slow passes."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs pytest in a subprocess

CONFTEST = Path(__file__).with_name("conftest.py")

GENERATED = '''
import subprocess
import sys
import time

import dagster
import pytest


def test_fast():
    assert sum(range(10)) == 45


def test_unmarked_model_fixture(demo_model_dir):
    raise AssertionError("not reached: the rule fails the test at set-up, before the model is built")


def test_unmarked_fixture_through_another(generator):
    raise AssertionError("not reached")


def test_unmarked_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.slow
def test_marked_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_unmarked_materialize():
    @dagster.asset
    def one():
        return 1

    assert dagster.materialize([one]).success


def test_unmarked_model_build(monkeypatch):
    from resources import demo_model, model_registry

    monkeypatch.setitem(demo_model.TRAINING, "steps", 1)  # a tiny recipe: never taken from or put in the cache
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 40)
    assert demo_model.is_built(model_registry.resolve_model_dir("demo"))


def test_unmarked_sleep():
    time.sleep(2.3)


@pytest.mark.slow
def test_marked_sleep():
    time.sleep(2.3)
'''


def _run(tmp_path: Path, *args: str, **env: str) -> dict[str, tuple[str, str]]:
    """{test name: (outcome, message)} of the generated file under a copy of conftest.py."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_generated.py").write_text(GENERATED)
    report = tmp_path / f"report{len(list(tmp_path.glob('report*.xml')))}.xml"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DEEPCONF_TEST_"))}
    environment.update(DEEPCONF_TEST_MODEL_CACHE=str(tmp_path / "model-cache"), **env)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--basetemp={tmp_path / 'base'}",
         f"--junitxml={report}", "--rootdir", str(tmp_path), *args, str(tmp_path / "test_generated.py")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), done.stdout + done.stderr
    results = {}
    for case in ET.parse(report).iter("testcase"):
        problem = next((case.find(kind) for kind in ("failure", "error") if case.find(kind) is not None), None)
        outcome = "skipped" if case.find("skipped") is not None else "failed" if problem is not None else "passed"
        message = "" if problem is None else (problem.get("message") or "") + (problem.text or "")
        results[case.get("name")] = (outcome, message)
    return results


def test_unmarked_slow_work_fails_and_says_mark_it_slow(tmp_path):
    results = _run(tmp_path, DEEPCONF_TEST_CLOCK="1")
    assert results["test_fast"][0] == "passed"
    for name, says in [("test_unmarked_model_fixture", "fixture demo_model_dir"),
                       ("test_unmarked_fixture_through_another", "demo_model_dir, generator"),
                       ("test_unmarked_subprocess", "subprocess.Popen"),
                       ("test_unmarked_materialize", "dagster.materialize"),
                       ("test_unmarked_model_build", "resolve_model_dir"),
                       ("test_unmarked_sleep", "took")]:
        outcome, message = results[name]
        assert outcome == "failed" and "mark it @pytest.mark.slow" in message and says in message, (name, message)
    assert results["test_marked_subprocess"] == ("passed", "")
    assert results["test_marked_sleep"] == ("passed", "")
    # the tiny model was built in the session's storage, and the shared cache was left alone
    assert not (tmp_path / "model-cache").exists() or not any((tmp_path / "model-cache").rglob("*.safetensors"))


def test_the_clock_rule_is_off_unless_asked_for(tmp_path):
    results = _run(tmp_path, "-k", "sleep or subprocess")
    assert results["test_unmarked_sleep"] == ("passed", "")
    assert results["test_unmarked_subprocess"][0] == "failed"  # only the clock is turned off
