"""`toolkit evaluate` in process: a run gains what it lacks from its logged model, nothing it has changes."""

from conftest import TINY
from mlflow import MlflowClient

from toolkit import names
from toolkit.pipeline import train_run
from toolkit.reevaluate import evaluate_run
from toolkit.store import reading


def figure_names(run_id: str) -> set[str]:
    return {path.removeprefix(f"{names.FIGURES}/") for path in reading.artifact_paths(run_id, names.FIGURES)}


def test_a_run_trained_without_figures_gains_them_all_from_evaluate_and_keeps_its_metrics(tiny_data, store):
    run_id = train_run(TINY, data_dir=tiny_data, quiet=True).run_id
    client = MlflowClient(store)
    before = client.get_run(run_id).data
    assert before.params["figures"] == "off" and figure_names(run_id) == set()
    assert {names.IMAGES_NPZ, names.KL_PER_DIM_JSON} <= {a.path for a in client.list_artifacts(run_id)}

    assert evaluate_run(run_id, tiny_data) == []  # every metric was there
    drawn = figure_names(run_id)
    assert {f"{name}.png" for name in (names.TRAVERSALS, names.KL_HEATMAP, names.LOSS_CURVES)} <= drawn
    assert client.get_run(run_id).data.metrics == before.metrics
    assert evaluate_run(run_id, tiny_data) == [] and figure_names(run_id) == drawn  # nothing drawn twice
