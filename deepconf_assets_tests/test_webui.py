"""The path a user takes: `dagster dev` on localhost, a run launched through the GraphQL API, the
asset graph, an asset's inline figure and the HTML report looked at in headless Chromium."""

import re
import time
from pathlib import Path

import pandas as pd
import pytest
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By

from deepconf_assets.assets.figures import FIGURES
from deepconf_assets.definitions import ASSETS
from deepconf_assets_tests.services import (  # noqa: F401 (chromium is a fixture)
    ARTIFACTS, REPO, DagsterDev, chromium, listening_addresses, service_environment, wait_for,
)

pytestmark = pytest.mark.slow

PARTITION = "xstest|demo"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


@pytest.fixture(scope="module")
def ui(demo_model_dir, tmp_path_factory):
    env = service_environment(tmp_path_factory.mktemp("webui"), {"demo": demo_model_dir},
                              (REPO / "storage" / "dagster.yaml").read_text())
    with DagsterDev(env, "dagster-dev-webui", host=None) as dev:  # the default bind address, as users start it
        yield dev


LOGS = """
query Logs($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection { events { __typename
      ... on MessageEvent { message stepKey timestamp }
      ... on ExecutionStepFailureEvent { error { message } } } }
  }
}"""
TERMINATE = """
mutation Terminate($id: String!) { terminateRun(runId: $id) { __typename ... on PythonError { message } } }"""


def launch_experiment(dev: DagsterDev, partition: str, run_config: dict, assets: tuple[str, ...] = (),
                      dimensions: str | None = None) -> str:
    """Launch experiment_job for `partition` as the launchpad does (`assets`: only these; `dimensions`: the
    per-dimension tags' key, when a client sets them apart from `partition`)."""
    benchmark, model = (dimensions or partition).split("|")
    selector = {"repositoryLocationName": "deepconf_assets", "repositoryName": "__repository__",
                "pipelineName": "experiment_job"}
    if assets:
        selector["assetSelection"] = [{"path": [name]} for name in assets]
    params = {
        "selector": selector,
        "mode": "default",
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition},
                                       {"key": "dagster/partition/benchmark", "value": benchmark},
                                       {"key": "dagster/partition/model", "value": model}]},
    }
    result = dev.graphql(LAUNCH, {"params": params})["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def run_status(dev: DagsterDev, run_id: str) -> str:
    return dev.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]


def wait_until_done(dev: DagsterDev, run_id: str, timeout: float = 600, interval: float = 3) -> str:
    return wait_for(lambda: (s := run_status(dev, run_id)) in {"SUCCESS", "FAILURE", "CANCELED"} and s,
                    timeout, f"run {run_id}", interval=interval)


def run_messages(dev: DagsterDev, run_id: str) -> str:
    events = dev.graphql(LOGS, {"id": run_id})["logsForRun"]["events"]
    return "\n".join(e.get("message") or "" for e in events) + "\n".join(
        e["error"]["message"] for e in events if e.get("error"))


@pytest.fixture(scope="module")
def launched_run(ui):
    run_id = launch_experiment(ui, PARTITION, {"ops": {"traces": {"config": {"max_prompts": 120}}}})
    assert wait_until_done(ui, run_id) == "SUCCESS", ui.log_path.read_text()[-4000:]
    return run_id


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


SHOW_MARKDOWN = "//*[normalize-space(text())='[Show Markdown]']"


def show_markdown_of(entry: str) -> str:
    """XPath of the [Show Markdown] button in the row of metadata entry `entry` (the asset page's table)."""
    return f"//tr[td[1][normalize-space()='{entry}']]{SHOW_MARKDOWN}"


def skip_first_visit_dialog(driver) -> None:
    """Dismiss Dagster's first-visit newsletter dialog, which may open late and cover the page."""
    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()


def open_page(driver, url: str, ready, what: str, screenshot: str, click: str = ""):
    """Load a UI page, dismiss the first-visit newsletter dialog, click what a user would click (`click`:
    an XPath), wait until `ready(driver)` holds, and keep a screenshot either way."""
    driver.get(url)

    def check():
        skip_first_visit_dialog(driver)
        if click and not ready(driver):
            for element in driver.find_elements(By.XPATH, click)[:1]:
                try:
                    element.click()
                except ElementClickInterceptedException:  # a dialog's backdrop still covers the page: next poll
                    return False
        return ready(driver)

    try:
        return wait_for(check, 120, what)
    finally:
        time.sleep(2)  # let the layout settle
        driver.save_screenshot(str(ARTIFACTS / screenshot))


def test_webserver_listens_on_loopback_only(ui):
    assert listening_addresses(ui.port) == {"127.0.0.1"}


def test_graphql_launch_materializes_the_partition(ui, launched_run):
    storage = ui.env["DEEPCONF_STORAGE_DIR"]
    traces = pd.read_parquet(f"{storage}/assets/traces/xstest/demo.parquet")
    assert traces["instance_id"].nunique() == 120
    assert (Path(storage) / "assets" / "report" / "xstest" / "demo.html").exists()


def orientation_item(to: str) -> str:
    """XPath of the graph context menu's item that changes the orientation `to` ('vertical', 'horizontal')."""
    text = f"Change graph to {to} orientation"
    return f"//*[contains(normalize-space(.), '{text}') and not(*[contains(normalize-space(.), '{text}')])]"


def change_orientation(driver, to: str) -> None:
    """Right-click the graph's background (its bottom-left corner, clear of nodes) and pick the orientation."""
    from selenium.webdriver.common.action_chains import ActionChains

    def menu_item():
        items = driver.find_elements(By.XPATH, orientation_item(to))
        if items:
            return items
        skip_first_visit_dialog(driver)
        viewport = driver.find_element(By.CSS_SELECTOR, "[data-svg-viewport]")
        ActionChains(driver).move_to_element_with_offset(
            viewport, -viewport.size["width"] // 2 + 12, viewport.size["height"] // 2 - 12).context_click().perform()
        return driver.find_elements(By.XPATH, orientation_item(to))

    wait_for(menu_item, 60, "the graph's context menu", interval=1)[0].click()


def lineage_labels(driver) -> list[str]:
    """The texts of the lineage's leaf elements (node names among them) in the current view."""
    return driver.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => !e.childElementCount && e.textContent.trim()"
        " && e.getBoundingClientRect().width > 0).map(e => e.textContent.trim());")


def names_in_view(driver) -> set[str]:
    """The lineage's texts a person sees without panning: wholly inside the graph's viewport, and on top at
    both ends (not under the toolbar that overlays the graph's top edge)."""
    return set(driver.execute_script(
        "const v = document.querySelector('[data-svg-viewport]').getBoundingClientRect();"
        "const onTop = (e, x, y) => { const hit = document.elementFromPoint(x, y);"
        " return hit && (hit === e || e.contains(hit) || hit.contains(e)); };"
        "return [...document.querySelectorAll('[data-svg-viewport] *')].filter(e => !e.childElementCount"
        " && e.textContent.trim()).filter(e => { const r = e.getBoundingClientRect(), y = (r.top + r.bottom) / 2;"
        " return r.width > 0 && r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom"
        " && onTop(e, r.left + 1, y) && onTop(e, r.right - 1, y); }).map(e => e.textContent.trim());"))


def test_asset_graph_in_the_browser(ui, launched_run, chromium):
    # in the first view at 1,920 x 1,080 (Dagster's horizontal default): the flow's start, from the raw file every
    # experiment asset depends on (its version makes them stale), through the labels; no name is cut (Dagster
    # cuts past 18 characters)
    names = ("raw_benchmark_file", "benchmark_prompts", "traces", "labels_heuristic", "labels_xstest_rule")
    lineage = f"{ui.url}/locations/deepconf_assets/asset-groups/experiment/lineage"
    text = open_page(chromium, lineage, lambda d: all(n in (t := page_text(d)) for n in names) and t,
                     "the experiment lineage", "ui-asset-graph.png")
    cut = [label for label in lineage_labels(chromium) if "…" in label and not label.startswith("Materialize")]
    assert not cut, cut
    assert "Materialize all" in text
    # the README's route to the whole flow on one screen: right-click the graph, vertical orientation (the
    # browser remembers it). From the next visit every experiment asset's name is in view, whole.
    experiment = {a.key.to_user_string() for a in ASSETS
                  if getattr(a, "group_names_by_key", {}).get(a.key) == "experiment"}
    change_orientation(chromium, "vertical")
    chromium.refresh()  # the next visit opens in the orientation the browser remembers, fitted to the screen
    try:
        wait_for(lambda: "report" in page_text(chromium), 60, "the vertical lineage", interval=1)
        time.sleep(2)  # the layout settles
        seen = wait_for(lambda: experiment <= (v := names_in_view(chromium)) and v, 30,
                        "every experiment asset in the vertical view", interval=1)
    except TimeoutError:
        seen = names_in_view(chromium)
    finally:
        chromium.save_screenshot(str(ARTIFACTS / "ui-asset-graph-vertical.png"))
    try:
        assert experiment <= seen, sorted(experiment - seen)  # the raw file's link, another group, sits above
        assert not [n for n in seen if "…" in n]
    finally:  # back to Dagster's default for the other browser tests
        change_orientation(chromium, "horizontal")
    # the README's route for one partition or a backfill: the group's Materialize button opens the partition picker
    for button in chromium.find_elements(By.XPATH, "//button[starts-with(normalize-space(), 'Materialize all')]"):
        button.click()
        break
    dialog = wait_for(lambda: "Partition selection" in (t := page_text(chromium)) and t, 60, "the partition picker")
    chromium.save_screenshot(str(ARTIFACTS / "ui-materialize-dialog.png"))
    assert re.search(r"Launch runs to materialize \d+ assets", dialog)
    assert "benchmark" in dialog and "model" in dialog  # one picker per partition dimension (README, The web UI)


def test_inline_figure_and_metric_on_the_asset_page(ui, launched_run, chromium):
    def figure_shown(driver):
        images = driver.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png;base64,']")
        return [i for i in images if i.size["width"] > 100]

    open_page(chromium, f"{ui.url}/assets/figures?partition={PARTITION}", figure_shown,
              "the inline confusion-matrix figure", "ui-asset-figure.png", click=show_markdown_of("confusion_matrix"))
    # the figure with the most panels, in its pop-up: its natural width fits the pop-up's width
    images = open_page(chromium, f"{ui.url}/assets/figures?partition={PARTITION}", figure_shown,
                       "the percentile-curves figure in its pop-up", "ui-asset-figure-popup.png",
                       click=show_markdown_of("percentile_curves"))
    fits = chromium.execute_script(
        "const img = arguments[0]; const box = img.closest('[role=dialog]') || img.parentElement;"
        "return [img.naturalWidth, box.clientWidth];", images[0])
    assert 300 < fits[0] <= fits[1], fits
    text = open_page(chromium, f"{ui.url}/assets/predictions?partition={PARTITION}",
                     lambda d: "fixed_n=all" in (t := page_text(d)) and t, "predictions metadata",
                     "ui-asset-metrics.png", click=SHOW_MARKDOWN)
    assert "accuracy" in text
    # key, timestamp, value: 450 XSTest prompts, 120 generated (max_prompts)
    assert re.search(r"prompts_without_traces\n[^\n]*\n330\n", text), text[text.find("prompts_without"):][:200]


def test_hypothesis_answer_pop_up_fits_the_screen(ui, launched_run, chromium):
    def answer_shown(driver):
        dialogs = driver.find_elements(By.CSS_SELECTOR, "[role=dialog]")
        return dialogs and "Holm p" in dialogs[0].text and dialogs[0]

    dialog = open_page(chromium, f"{ui.url}/assets/hypothesis_test?partition={PARTITION}", answer_shown,
                       "the hypothesis answer in its pop-up", "ui-hypothesis-popup.png", click=show_markdown_of("answer"))
    width, height, scroll_width, bottom = chromium.execute_script(
        "const d = arguments[0];"
        "return [d.clientWidth, window.innerHeight, Math.max(...[...d.querySelectorAll('*')].map(e => e.scrollWidth"
        " - e.clientWidth)), d.getBoundingClientRect().bottom];", dialog)
    assert scroll_width <= 1 and bottom <= height, (width, height, scroll_width, bottom)  # no sideways scroll, on screen
    assert re.search(r"verdict", dialog.text, re.IGNORECASE) and "95% CI" in dialog.text, dialog.text[:400]


def test_traces_step_shows_model_progress_within_30_seconds(ui, launched_run):
    events = ui.graphql(LOGS, {"id": launched_run})["logsForRun"]["events"]
    started = next(float(e["timestamp"]) for e in events
                   if e["__typename"] == "ExecutionStepStartEvent" and e.get("stepKey") == "traces")
    model = [float(e["timestamp"]) for e in events if e.get("stepKey") == "traces" and e["__typename"] == "LogMessageEvent"
             and re.search(r"loading 'demo'|building the demo", e.get("message") or "")]
    assert model and (model[0] - started) / 1000 < 30, (started, model)  # GraphQL timestamps are in ms


def test_report_in_the_browser(ui, launched_run, chromium):
    path = f"{ui.env['DEEPCONF_STORAGE_DIR']}/assets/report/xstest/demo.html"
    chromium.get(f"file://{path}")
    # the first screen at 1,920 x 1,080: the answer table, the savings line and the verdict with its numbers
    first = page_text(chromium)
    assert first.index("uncertain compliance: correct of n") < first.index("Savings: ") < first.index("Verdict (")
    below = chromium.execute_script(
        "return [...document.querySelectorAll('p, li, table')].filter(e => /^(Savings|Verdict) /.test(e.innerText)"
        " && e.getBoundingClientRect().bottom > window.innerHeight).map(e => e.innerText.slice(0, 60));")
    assert not below, below
    chromium.save_screenshot(str(ARTIFACTS / "report-xstest-demo-first-screen.png"))
    chromium.execute_script("document.querySelectorAll('details').forEach(d => d.open = true);")  # wide sections
    wide = chromium.execute_script(
        "const page = document.documentElement.clientWidth; return [...document.querySelectorAll('table')]"
        ".filter(t => t.getBoundingClientRect().right > page + 1 || t.scrollWidth > t.clientWidth + 1)"
        ".map(t => t.innerText.slice(0, 60)).concat(document.documentElement.scrollWidth > page ? ['page'] : []);")
    assert not wide, wide  # no table wider than the page, and no sideways scroll
    text = page_text(chromium)
    assert "DeepConf safety report: xstest|demo" in text
    assert "Positive class = harmful prompt" in text and "accuracy" in text
    # citable: provenance, CIs on the headline, the numbers read in sentences, the partial run said
    for item in ("Provenance", "report run", "code version", "traces generated / reused from shards",
                 "120 of 450", "What these numbers say", "Partial run: 120 of 450 prompts"):
        assert item in text, item
    assert re.search(r"accuracy \d+\.\d% \(95% CI \d+\.\d%–\d+\.\d%, n=120\)", text), text[:600]
    assert "AUROC" in text and "<NA>" not in text and not re.search(r"\bnan\b", text, re.IGNORECASE)
    images = chromium.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(FIGURES) and all(i.get_property("naturalWidth") > 300 for i in images)
    height = chromium.execute_script("return document.body.scrollHeight")
    chromium.set_window_size(1400, min(height + 100, 16000))
    chromium.save_screenshot(str(ARTIFACTS / "report-xstest-demo.png"))


@pytest.mark.parametrize("partition", ["xstest|qwen3-9b", "toxic|demo"])
def test_an_unknown_partition_launched_through_graphql_is_refused_with_the_valid_keys(ui, partition):
    # the CLI refuses an unknown key before the run; a GraphQL launch reaches the first asset, which refuses it
    run_id = launch_experiment(ui, partition, {})
    assert wait_until_done(ui, run_id, timeout=120, interval=1) == "FAILURE"
    messages = run_messages(ui, run_id)
    assert f"partition '{partition}' does not exist" in messages and "xstest|demo" in messages
    assert "qwen3-8b" in messages and "wildguardmix|qwen3-0.6b" in messages  # the valid keys are listed
    assert "STEP_UP_FOR_RETRY" not in messages and not (Path(ui.env["DEEPCONF_STORAGE_DIR"]) / "shards" / "toxic").exists()


def test_a_graphql_launch_whose_partition_tags_disagree_is_refused(ui):
    run_id = launch_experiment(ui, "xstest|demo", {}, dimensions="harmbench|demo-small")
    assert wait_until_done(ui, run_id, timeout=120, interval=1) == "FAILURE"
    messages = run_messages(ui, run_id)
    assert "the run's tags name two partitions: dagster/partition='xstest|demo'" in messages
    assert "'harmbench|demo-small'" in messages and "STEP_UP_FOR_RETRY" not in messages
    assert not (Path(ui.env["DEEPCONF_STORAGE_DIR"]) / "assets" / "benchmark_prompts" / "harmbench").exists()


def test_cancel_from_the_ui_stops_the_run_and_the_next_run_resumes(ui):
    config = {"ops": {"traces": {"config": {"traces_per_prompt": 4, "max_new_tokens": 192, "max_prompts": 100}}},
              "resources": {"generator": {"config": {"batch_sequences": 64}}}}
    shards = Path(ui.env["DEEPCONF_STORAGE_DIR"]) / "shards" / "xstest" / "demo"
    before = len(list(shards.glob("*.parquet")))
    run_id = launch_experiment(ui, PARTITION, config, assets=("benchmark_prompts", "traces"))
    wait_for(lambda: len(list(shards.glob("*.parquet"))) >= before + 2, 300, "two new shards", interval=0.2)
    sent = time.monotonic()
    assert ui.graphql(TERMINATE, {"id": run_id})["terminateRun"]["__typename"] == "TerminateRunSuccess"
    assert wait_until_done(ui, run_id, timeout=60, interval=0.5) == "CANCELED"
    assert time.monotonic() - sent < 15
    kept = len(list(shards.glob("*.parquet")))
    time.sleep(3)
    assert len(list(shards.glob("*.parquet"))) == kept  # generation stopped with the run
    resumed = launch_experiment(ui, PARTITION, config, assets=("benchmark_prompts", "traces"))
    assert wait_until_done(ui, resumed) == "SUCCESS", ui.log_path.read_text()[-4000:]
    found = re.search(r"(\d+) of 400 traces found in the shard store", run_messages(ui, resumed))
    assert found and int(found.group(1)) >= 64 * 2, found
