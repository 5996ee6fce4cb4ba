"""The MLflow UI (`toolkit ui`) and optuna-dashboard (`toolkit dashboard`) as a researcher meets
them: real servers on a store holding a finished quick study, driven in Debian's Chromium by
Playwright. Every server is started in its own process group and stopped by it.

Screenshots go to a temporary directory, or to TOOLKIT_SCREENSHOTS. With TOOLKIT_UI_STORE (a
directory holding `mlruns/`) and TOOLKIT_UI_STUDY the same checks run on that store instead of a
fresh one: `make ui-screenshots` uses this to photograph the demo's β sweep for the README.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import optuna
import pytest
from conftest import GRID_STUDY, GRID_STUDY_NAME, free_port, serving, write_idx_set
from PIL import Image

pytestmark = pytest.mark.slow  # a real browser on a real MLflow UI

CHROMIUM = "/usr/bin/chromium"
BIN = Path(sys.executable).parent
STUDY = os.environ.get("TOOLKIT_UI_STUDY", GRID_STUDY_NAME)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory whose `mlruns/` holds a finished quick study (`tests/grid_study.py`: four trials on
    a few hundred synthetic images), unless TOOLKIT_UI_STORE names one."""
    if os.environ.get("TOOLKIT_UI_STORE"):
        return Path(os.environ["TOOLKIT_UI_STORE"]).resolve()
    directory = tmp_path_factory.mktemp("ui")
    data = write_idx_set(directory / "tiny", n_train=300, n_test=60)
    subprocess.run(
        [*GRID_STUDY, "--data-dir", str(data)],
        cwd=directory,
        env=server_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return directory


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("TOOLKIT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def server_env() -> dict:
    """The environment of a user with the local store: no tracking URI from the test session."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def start_server(command: list[str], cwd: Path, ready: str, log: Path):
    """Yield (the address, its output so far) of `command` serving on a free port, once `ready` answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        open(log, "w") as out,
        serving(
            [*command, "--port", str(port)],
            base,
            ready,
            timeout=90,
            cwd=cwd,
            env=server_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        ),
    ):
        yield base, log.read_text


@pytest.fixture(scope="module")
def mlflow_ui(workdir, tmp_path_factory):
    yield from start_server([str(BIN / "toolkit"), "ui"], workdir, "/health", tmp_path_factory.mktemp("log") / "ui.log")


@pytest.fixture(scope="module")
def dashboard(workdir, tmp_path_factory):
    yield from start_server(
        [str(BIN / "toolkit"), "dashboard"], workdir, "/api/studies", tmp_path_factory.mktemp("log") / "dashboard.log"
    )


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium (scripts/system-install)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def study_runs(workdir):
    """The study's runs, read from the store directly (what the pages must show)."""
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [run for run in runs if "trial" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, experiment, parent, sorted(children, key=lambda run: int(run.data.tags["trial"]))


def test_the_experiment_opens_on_its_runs_with_the_trials_nested_under_the_parent(
    mlflow_ui, study_runs, page, screenshots
):
    base, output = mlflow_ui
    client, experiment, parent, children = study_runs
    assert f"{STUDY}: {base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" in output()
    page.goto(base + "/#/experiments")
    page.get_by_role("link", name=STUDY, exact=True).click()  # as a user clicks it in the experiment list
    page.wait_for_url(re.compile(rf"#/experiments/{experiment.experiment_id}/runs\?"))
    parent_row = page.locator("[role=row]", has=page.get_by_role("link", name=parent.info.run_name, exact=True))
    expected = {child.info.run_name for child in children}
    assert len(expected) == len(children)  # every trial has a name of its own
    parent_row.get_by_role("button").first.click()  # the parent's expander
    for name in expected:
        page.get_by_role("link", name=name, exact=True).wait_for()
    assert page.get_by_text(f"Study {STUDY}.").first.is_visible()  # the experiment's description
    page.screenshot(path=screenshots / "mlflow-runs.png")


def test_a_run_page_shows_its_description_logged_model_and_per_epoch_validation_loss(
    mlflow_ui, study_runs, page, screenshots
):
    base, _ = mlflow_ui
    client, experiment, _, children = study_runs
    run = children[-1]
    page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
    page.get_by_text(f"Trial {run.data.tags['trial']} of study {STUDY}").wait_for()
    page.get_by_text("Logged models (1)", exact=True).wait_for()
    page.get_by_text("Ready", exact=True).wait_for()  # the logged model's status
    page.screenshot(path=screenshots / "mlflow-run.png", full_page=True)

    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("val/loss")
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot').length === 1 && document.querySelector('.js-plotly-plot').data"
    )
    plotted = page.evaluate("Array.from(document.querySelector('.js-plotly-plot').data[0].x)")
    assert plotted == epochs == list(range(1, len(epochs) + 1))
    page.screenshot(path=screenshots / "mlflow-val-loss.png")


def test_every_figure_of_a_run_loads_as_an_image(mlflow_ui, study_runs, page):
    base, _ = mlflow_ui
    client, experiment, _, children = study_runs
    run_id = children[0].info.run_id
    figures = [f.path for f in client.list_artifacts(run_id, "figures")]
    assert len(figures) >= 8
    for path in figures:
        response = page.request.get(f"{base}/get-artifact", params={"path": path, "run_uuid": run_id})
        assert response.status == 200, path
        Image.open(io.BytesIO(response.body())).verify()
    page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run_id}/artifacts")
    page.get_by_text("figures", exact=True).first.click()
    page.get_by_text("reconstructions.png", exact=True).click()
    page.wait_for_function("Array.from(document.images).some(image => image.naturalWidth > 100)")


def test_the_model_loads_the_mlflow_way(study_runs):
    client, _, _, children = study_runs
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        model = mlflow.pytorch.load_model(f"runs:/{children[0].info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(before)
    assert type(model).__name__ == "VAE" and model.latent_dim == int(children[0].data.params["latent_dim"])


def test_optuna_dashboard_shows_the_study_its_objective_and_the_trials_params(dashboard, workdir, page, screenshots):
    base, output = dashboard
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}")
    [link] = re.findall(rf"^  {STUDY}: (\S+)$", output(), re.MULTILINE)
    page.goto(link + "/trials")
    page.get_by_text(f"{len(study.trials)} Trials", exact=True).wait_for()
    best = study.best_trial
    page.get_by_text(f"Trial {best.number}", exact=True).first.click()
    page.get_by_text(f"Trial {best.number} (trial_id=").first.wait_for()
    for name, value in best.params.items():
        assert page.get_by_text(f"{name} {value}", exact=True).first.is_visible()
    page.screenshot(path=screenshots / "optuna-trials.png")
    page.goto(link + "/analytics")
    page.get_by_text(study.metric_names[0]).first.wait_for()
    page.get_by_text("Slice", exact=True).first.wait_for()
    page.screenshot(path=screenshots / "optuna-analytics.png", full_page=True)


def test_screenshots_are_pictures(screenshots):
    """Runs last: the pages above left their screenshots."""
    shots = sorted(screenshots.glob("*.png"))
    assert [p.name for p in shots] == sorted(
        ["mlflow-runs.png", "mlflow-run.png", "mlflow-val-loss.png", "optuna-trials.png", "optuna-analytics.png"]
    )
    for shot in shots:
        assert Image.open(shot).size[0] >= 1000
