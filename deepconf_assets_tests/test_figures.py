"""The figure registry: every figure asset, and the report's figure sections, come from `FIGURES`."""

from dagster import AssetKey

from deepconf_assets.assets import report
from deepconf_assets.assets.analysis_inputs import LABEL_INS
from deepconf_assets.assets.figures import FIGURES, LABELS, Figure, figure_asset
from deepconf_assets.definitions import defs


def _deps(assets_def) -> set[str]:
    return {key.to_user_string() for key in assets_def.dependency_keys}


def test_every_registered_figure_is_an_asset_and_a_report_section():
    graph = defs.resolve_asset_graph()
    names = [f.name for f in FIGURES]
    assert len(set(names)) == len(names) and len({f.heading for f in FIGURES}) == len(FIGURES)
    for figure in FIGURES:
        node = graph.get(AssetKey(figure.name))
        expected = ({i for i in figure.inputs if i != LABELS} | (set(LABEL_INS) if LABELS in figure.inputs else set())
                    | {"raw_benchmark_file"})  # every experiment asset reads its benchmark's raw file's version
        assert {k.to_user_string() for k in node.parent_keys} == expected, figure.name
        assert node.description == figure.description
    assert {k.to_user_string() for k in graph.get(AssetKey("report")).parent_keys} >= set(names)


def test_a_new_figure_is_one_record():
    """A toy record becomes an asset reading exactly its inputs, the labels of every labeler included."""
    toy = Figure("fig_toy", "A toy", "A toy figure.", ("traces", LABELS), lambda key, settings, inputs: b"")
    assets_def = figure_asset(toy)
    assert assets_def.key == AssetKey("fig_toy")
    assert _deps(assets_def) == {"traces", *LABEL_INS, "raw_benchmark_file"}
    assert report.FIGURES is FIGURES  # the report's sections read the same list
