"""The figure registry: the `figures` asset (its inputs, its PNGs, its metadata) and the report's figure
sections all come from `FIGURES`; and the lineage stays legible (one figures node, names the UI never cuts)."""

from dagster import AssetKey

from deepconf_assets.assets import report
from deepconf_assets.assets.analysis_inputs import LABEL_INS
from deepconf_assets.assets.figures import FIGURES, LABELS, Figure, figures_asset
from deepconf_assets.definitions import defs

# Dagster's lineage draws a node zoomed out (below 60 %) with its name cut in the middle past 18
# characters ("insta…_predictions"); the experiment graph is shown zoomed out at 1,920 px.
UNCUT_NAME = 18


def _parents(graph, name: str) -> set[str]:
    return {key.to_user_string() for key in graph.get(AssetKey(name)).parent_keys}


def test_every_registered_figure_is_drawn_by_one_asset_and_is_a_report_section():
    graph = defs.resolve_asset_graph()
    names = [f.name for f in FIGURES]
    assert len(set(names)) == len(names) and len({f.heading for f in FIGURES}) == len(FIGURES)
    inputs = {i for f in FIGURES for i in f.inputs if i != LABELS} | set(LABEL_INS)
    # every experiment asset reads its benchmark's raw file's version
    assert _parents(graph, "figures") == inputs | {"raw_benchmark_file"}
    assert "figures" in _parents(graph, "report")
    assert not [key for key in graph.get_all_asset_keys() if key.to_user_string().startswith("fig_")
                and graph.get(key).group_name == "experiment"]  # no per-figure nodes in the experiment group
    description = graph.get(AssetKey("figures")).description
    assert all(f"{f.name}: {f.description}" in description for f in FIGURES)
    assert report.FIGURES is FIGURES  # the report's sections read the same list


def test_a_new_figure_is_one_record():
    """A toy record adds exactly its inputs, the labels of every labeler included."""
    toy = Figure("toy", "A toy", "A toy figure.", ("traces", LABELS), lambda key, settings, inputs: b"")
    assets_def = figures_asset([toy])
    assert assets_def.key == AssetKey("figures")
    assert {k.to_user_string() for k in assets_def.dependency_keys} == {"traces", *LABEL_INS, "raw_benchmark_file"}


def test_lineage_names_are_never_cut():
    graph = defs.resolve_asset_graph()
    long = [key.to_user_string() for key in graph.get_all_asset_keys()
            if graph.get(key).group_name == "experiment" and len(key.path[-1]) > UNCUT_NAME]
    assert not long, f"cut in the lineage's zoomed-out view: {long}"
    experiment = [key for key in graph.get_all_asset_keys() if graph.get(key).group_name == "experiment"]
    assert len(experiment) <= 16, [k.to_user_string() for k in experiment]  # the data flow, about a dozen nodes
