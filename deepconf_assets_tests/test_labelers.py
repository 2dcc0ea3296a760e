"""The labeler registry: each registered labeler is an asset, a row of validation and comparison, and a
labeler of every analysis; adding one is one module."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from deepconf_assets.labelers import LABELERS, LabelerContext, RefusalLabeler

REPO = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
"""A toy labeler: every response is a refusal, with probability 0.9."""
import pandas as pd
from deepconf_assets.labelers import RefusalLabeler

LABELER = RefusalLabeler(
    name="toy_always_refuses", description="Says every answer refused.",
    label=lambda prompts, responses, context: pd.DataFrame({"refused": [True] * len(responses), "p_refusal": 0.9}),
)
'''

TOY_RUN = '''
import json, sys
import pandas as pd
from dagster import AssetSelection, materialize
from deepconf_assets import definitions as d
from deepconf_assets.paths import assets_dir

keys = {k.to_user_string() for k in d.defs.resolve_asset_graph().get_all_asset_keys()}
run_config = {"ops": {"traces": {"config": {"max_prompts": 12, "traces_per_prompt": 2}}},
              "resources": {"analysis_settings": {"config": {"headline_labeler": "toy_always_refuses"}}}}
result = materialize([*d.ASSETS, *d.ASSET_CHECKS], partition_key="xstest|demo-small", resources=d.RESOURCES,
                     selection=AssetSelection.groups("experiment"), run_config=run_config)
root = assets_dir()
read = lambda name: pd.read_parquet(root / name / "xstest" / "demo-small.parquet")
predictions = read("predictions")
full = predictions[(predictions["policy"] == "fixed_n=all") & predictions["has_traces"]]
toy = full[full["labeler"] == "toy_always_refuses"]
print(json.dumps({
    "success": result.success,
    "asset": "labels_toy_always_refuses" in keys,
    "labels_refused": bool(read("labels_toy_always_refuses")["refused"].all()),
    "labelers": sorted(predictions["labeler"].unique()),
    "toy_always_predicts_refusal": bool(toy["predicted_refusal"].all()) and len(toy) == 12,
    "comparison": read("labeler_comparison").set_index("labeler")["status"].to_dict(),
    "validation": read("labeler_validation").set_index("labeler")["recall"].to_dict(),
    "headline": result.asset_materializations_for_node("report")[0].metadata["headline"].value,
}))
'''


def test_registry_holds_the_shipped_labelers():
    assert {"heuristic", "wildguard", "xstest_rule"} <= set(LABELERS)
    assert LABELERS["wildguard"].needs_gpu and not LABELERS["heuristic"].needs_gpu


@pytest.mark.parametrize("name, text, refused", [
    ("heuristic", "I'm sorry, but I can't help with that.", True),
    ("heuristic", "Sure! Knead the dough and bake it.", False),
    ("xstest_rule", "I cannot do that.", True),
    ("xstest_rule", "Here is how. I cannot guarantee it works.", False),
])
def test_pure_labelers_through_the_one_interface(name, text, refused):
    labels = LABELERS[name].run(["a prompt"], [text], LabelerContext())
    assert list(labels.columns[:2]) == ["refused", "p_refusal"]
    assert str(labels["refused"].dtype) == "boolean" and bool(labels["refused"].iloc[0]) is refused


def test_a_labeler_returning_the_wrong_rows_fails_loudly():
    broken = RefusalLabeler("broken", "", label=lambda p, r, c: pd.DataFrame({"refused": [True]}))
    with pytest.raises(ValueError, match="returned 1 rows for 2 responses"):
        broken.run(["a", "b"], ["x", "y"], LabelerContext())


@pytest.mark.slow
def test_adding_a_labeler_is_one_module(isolated_storage, tmp_path):
    """A toy labeler in its own module, nothing else changed: it becomes an asset, a labeler of every
    analysis, a row of validation and comparison, and can be the headline labeler."""
    (tmp_path / "toy_labeler.py").write_text(TOY_MODULE)
    storage = tmp_path / "storage"  # its own asset files (the session's built models are shared)
    (isolated_storage / "models").mkdir(exist_ok=True)
    storage.mkdir()
    (storage / "models").symlink_to(isolated_storage / "models")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               DEEPCONF_LABELER_MODULES="toy_labeler", DEEPCONF_STORAGE_DIR=str(storage))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(TOY_RUN)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["success"] and out["asset"] and out["labels_refused"]
    # every registered labeler is compared; those that ran here (all without a GPU, and the toy) predict
    assert set(out["comparison"]) == {*LABELERS, "toy_always_refuses"}
    ran = sorted(name for name, status in out["comparison"].items() if status == "ok")
    assert out["labelers"] == ran
    assert {"toy_always_refuses", *(name for name, labeler in LABELERS.items() if not labeler.needs_gpu)} <= set(ran)
    assert out["toy_always_predicts_refusal"]
    assert out["validation"]["toy_always_refuses"] == 1.0  # says "refusal" to every XSTest completion
    assert "toy_always_refuses labels" in out["headline"]
