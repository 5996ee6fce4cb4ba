"""Past one machine on the engines the toolkit names: an `mlflow server` backed by PostgreSQL, with
artifacts proxied to a local directory, and the Optuna study in PostgreSQL too, worked by two
worker processes on their own connections. The README's multi-machine recipe is this test."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import optuna
import psycopg2
import pytest
from conftest import GRID_POINTS, GRID_STUDY, GRID_STUDY_NAME, running_mlflow_server, write_idx_set
from mlflow import MlflowClient


@pytest.fixture
def mlflow_on_postgres(postgres, tmp_path):
    """`mlflow server` on its own PostgreSQL database (never Optuna's: both use Alembic's table)."""
    url = postgres.rsplit("/", 1)[0]
    connection = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql") + "/postgres")
    connection.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
    connection.cursor().execute("CREATE DATABASE mlflow")
    connection.close()
    with running_mlflow_server(f"{url}/mlflow", tmp_path / "server-artifacts") as server:
        yield server, tmp_path / "server-artifacts"


def test_a_grid_study_with_two_workers_on_postgresql_and_an_mlflow_server(postgres, mlflow_on_postgres, tmp_path):
    server, artifacts = mlflow_on_postgres
    data = write_idx_set(tmp_path / "tiny", n_train=300, n_test=60)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    result = subprocess.run(
        [
            *GRID_STUDY,
            "--data-dir",
            str(data),
            "--storage",
            postgres,
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]

    trials = optuna.load_study(study_name=GRID_STUDY_NAME, storage=postgres).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len({t.user_attrs["point"] for t in done}) == GRID_POINTS  # every grid point once
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers took trials

    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name(GRID_STUDY_NAME).experiment_id])
    children = [run for run in runs if "trial" in run.data.tags]
    assert Counter(run.info.status for run in children) == {"FINISHED": GRID_POINTS}
    assert {run.info.run_id for run in children} == {t.user_attrs["mlflow_run_id"] for t in done}
    for run in children:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert {"figures", "images.npz"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        [model] = client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")
        assert model.status.name == "READY"
    stored = {path.name for path in artifacts.rglob("*.png")}
    assert "reconstructions.png" in stored  # the files themselves are on the server's side

    [parent] = [run for run in runs if "trial" not in run.data.tags]
    assert "report/README.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    report = (tmp_path / "reports" / GRID_STUDY_NAME / "README.md").read_text()
    assert f"| store | `{server}` |" in report
