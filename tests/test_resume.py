"""Resuming a run: `toolkit train` stopped by SIGINT or SIGKILL during training or during its
evaluation, then `toolkit train --resume RUN_ID`, ends in the same MLflow run with exactly the
metrics of an uninterrupted run, its epochs logged once each and its checkpoints removed."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TOOLKIT, write_idx_set
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

EPOCHS = 4
RUN = [
    "--epochs",
    str(EPOCHS),
    "--latent-dim",
    "2",
    "--hidden",
    "16",
    "--fid",
    "off",
    "--iw-samples",
    "20",
    "--patience",
    "0",
    "--quiet",
]


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory):
    return str(write_idx_set(tmp_path_factory.mktemp("tiny"), n_train=2000, n_test=300))


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory, resume_data):
    """A user's directory whose store (./mlruns) holds the uninterrupted run, experiment `whole`."""
    directory = tmp_path_factory.mktemp("user")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        train(directory, "--data-dir", resume_data, "--experiment", "whole", *RUN)
    return directory


def train(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([TOOLKIT, "train", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 or not check, result.stderr
    return result


def the_run(client: MlflowClient, experiment: str):
    try:
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    except Exception:  # the store or the experiment does not exist yet
        return None
    return runs[0] if runs else None


def reached(client: MlflowClient, run, phase: str) -> bool:
    """Training: two epochs logged. Evaluation: the model logged (its figures are still to come)."""
    if phase == "training":
        return len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2
    return any(
        model.status == LoggedModelStatus.READY
        for model in client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")
    )


def stop_when(process: subprocess.Popen, client: MlflowClient, experiment: str, phase: str, signum: int):
    """Send `signum` once the run has reached `phase`; the run as the process left it."""
    deadline = time.time() + 120
    while time.time() < deadline:
        run = the_run(client, experiment)
        if run and reached(client, run, phase):
            break
        time.sleep(0.05)
    process.send_signal(signum)
    process.wait(timeout=120)
    return client.get_run(run.info.run_id)


def timeless(run) -> dict[str, float]:
    return {key: value for key, value in run.data.metrics.items() if not key.startswith("time/")}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("phase", ["training", "evaluation"])
def test_a_stopped_run_resumes_to_the_metrics_of_an_uninterrupted_one(
    signum, phase, resume_data, uninterrupted_dir, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment = f"stopped-in-{phase}-by-{signal.Signals(signum).name}"
    process = subprocess.Popen(
        [TOOLKIT, "train", "--data-dir", resume_data, "--experiment", experiment, *RUN],
        cwd=uninterrupted_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(f"sqlite:///{uninterrupted_dir / 'mlruns' / 'mlflow.db'}")
    stopped = stop_when(process, client, experiment, phase, signum)
    assert stopped.info.status == ("RUNNING" if signum == signal.SIGKILL else "KILLED")  # not finished: stopped
    if signum == signal.SIGINT:
        assert process.returncode == 130 and "interrupted" in process.stderr.read()
    assert f"--resume {stopped.info.run_id}" in process.stdout.read()  # the start says how to go on

    resumed = train(uninterrupted_dir, "--resume", stopped.info.run_id, "--data-dir", resume_data)
    assert f"run {stopped.info.run_id} finished" in resumed.stdout
    run = client.get_run(stopped.info.run_id)
    whole = the_run(client, "whole")
    assert run.info.status == "FINISHED" and "end_reason" not in run.data.tags
    assert timeless(run) == timeless(whole)  # every metric but the wall times, exactly
    for key in ("train/loss", "val/loss", "val/kl_dim/01"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, EPOCHS + 1))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test/neg_elbo")] == [0]
    assert not client.list_artifacts(run.info.run_id, "checkpoint")  # a finished run keeps its model only
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        a.path for a in client.list_artifacts(whole.info.run_id)
    }
    assert len(client.search_logged_models([run.info.experiment_id])) == 1


def test_resume_refuses_what_it_cannot_do_in_one_line(resume_data, uninterrupted_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = the_run(MlflowClient(f"sqlite:///{uninterrupted_dir / 'mlruns' / 'mlflow.db'}"), "whole").info.run_id
    cases = {
        ("--resume", run_id): f"error: run {run_id} is FINISHED: only a FAILED or KILLED run can be resumed",
        (
            "--resume",
            run_id,
            "--beta",
            "2",
            "--epochs",
            "9",
        ): "error: resume: a resumed run keeps its own settings; drop --beta, --epochs",
        ("--resume", run_id, "--latent-dim=20", "--experiment", "fashion-mnist"):  # defaults, typed: refused too
        "error: resume: a resumed run keeps its own settings; drop --latent-dim, --experiment",
        ("--resume", "0" * 32): f"error: no run {'0' * 32} in the store",
    }
    for argv, message in cases.items():
        result = train(uninterrupted_dir, *argv, "--data-dir", resume_data, check=False)
        assert result.returncode == 2 and result.stderr.strip().startswith(message), result.stderr
