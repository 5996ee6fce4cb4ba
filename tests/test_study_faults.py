"""Faults in the middle of a study, with real processes: one of two workers killed with SIGKILL,
the PostgreSQL server of its Optuna storage stopped and restarted, a report built while two
workers are still writing. Afterwards the store is read back: every grid point finished once,
no run is left RUNNING, nothing finished is lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from conftest import GRID_POINTS, GRID_STUDY, GRID_STUDY_NAME, TOOLKIT, store_client, write_idx_set
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    return tmp_path


@pytest.fixture
def data(tmp_path):
    return str(write_idx_set(tmp_path / "tiny", n_train=3000, n_test=100))


def study(data: str, *extra: str) -> list[str]:
    """The grid study, without the FIDs and figures no test here looks at."""
    return [*GRID_STUDY, "--data-dir", data, "--fid", "off", "--figures", "off", *extra]


def trials(storage: str) -> list:
    """The study's trials, read through a connection that cannot write: opening a storage, Optuna
    creates its tables and version rows where they are missing, which must not race the study
    process to them. None until the study process has made its storage."""
    if storage.startswith("sqlite:///"):
        database = Path(storage.removeprefix("sqlite:///"))
        if not database.is_file():
            return []
        url, engine = f"sqlite:///file:{database}?mode=ro&uri=true", {}
    else:
        url, engine = storage, {"connect_args": {"options": "-c default_transaction_read_only=on"}}
    try:
        read_only = optuna.storages.RDBStorage(url, engine_kwargs=engine, skip_table_creation=True)
    except Exception:  # not made yet, or being made
        return []
    try:
        return optuna.load_study(study_name=GRID_STUDY_NAME, storage=read_only).get_trials()
    except Exception:  # the study is not there yet
        return []
    finally:
        read_only.engine.dispose()


def wait_for(condition, process: subprocess.Popen | None = None, timeout: float = 300, what: str = "a condition"):
    """Until `condition()` holds, and while the study `process` (if one is named) runs: it is
    killed if it ends first or the time runs out, and the failure shows what it printed."""
    deadline = time.time() + timeout
    while time.time() < deadline and (process is None or process.poll() is None):
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    if process is None:
        pytest.fail(f"{what} not reached within {timeout} s")
    status = process.poll()
    process.kill()
    err = (process.communicate()[1] or "") if process.stderr else ""
    happened = f"the study ended (exit status {status})" if status is not None else f"{timeout} s passed"
    pytest.fail(f"{happened} before {what}: {err[-2000:]}")


def a_trial_with_an_epoch(directory: Path, storage: str):
    """A RUNNING trial whose run has logged an epoch and kept its checkpoint (written just after the
    epoch's metrics), as have the runs of every RUNNING trial of its worker (the members of a group
    checkpoint one after another)."""
    running = [t for t in trials(storage) if t.state == TrialState.RUNNING]
    client = store_client(directory)

    def checkpointed(trial) -> bool:
        run_id = trial.user_attrs.get("mlflow_run_id")
        return bool(
            run_id and client.get_metric_history(run_id, "train/loss") and client.list_artifacts(run_id, "checkpoint")
        )

    for trial in running:
        pid = trial.user_attrs.get("pid")
        others = [t for t in running if t.user_attrs.get("pid") == pid]
        if checkpointed(trial) and all(checkpointed(t) for t in others):
            return trial
    return None


def ended(pid: int) -> bool:
    """Whether the process has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def assert_completed_once(directory: Path, storage: str, points: int = GRID_POINTS, started_over: int = 0):
    """Every point finished in one run, none lost. At most `started_over` other runs, each stopped
    before its first checkpoint, whose point began again in a new run (`studies._resumable`)."""
    client = store_client(directory)
    done = trials(storage)
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert len(complete) == points and len({t.user_attrs["point"] for t in complete}) == points
    assert not [t for t in done if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = client.search_runs([client.get_experiment_by_name(GRID_STUDY_NAME).experiment_id])
    children = [run for run in runs if "trial" in run.data.tags and run.info.status == "FINISHED"]
    assert len(children) == points
    assert {t.user_attrs["mlflow_run_id"] for t in complete} == {run.info.run_id for run in children}
    stopped = [run for run in runs if "trial" in run.data.tags and run.info.status != "FINISHED"]
    assert len(stopped) <= started_over
    assert not [run for run in stopped if client.list_artifacts(run.info.run_id, "checkpoint")]
    assert [run.info.status for run in runs if "trial" not in run.data.tags] == ["FINISHED"]  # one parent
    return complete, children


def test_one_of_two_workers_killed_the_other_resumes_its_trial(data, user_dir):
    storage = f"sqlite:///{user_dir / 'mlruns' / 'optuna.db'}"
    process = subprocess.Popen(
        study(data, "--workers", "2"), cwd=user_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim = wait_for(lambda: a_trial_with_an_epoch(user_dir, storage), process, what="a trial's first epoch")
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    assert "note: 1 of 2 workers stopped (exit status -9)" in err
    complete, children = assert_completed_once(user_dir, storage)
    [retry] = [t for t in complete if t.user_attrs.get("retry_of") == victim.number]
    assert retry.user_attrs["resume_runs"] == {"42": victim.user_attrs["mlflow_run_id"]}  # went on from its checkpoint
    steps = [m.step for m in store_client(user_dir).get_metric_history(retry.user_attrs["mlflow_run_id"], "train/loss")]
    assert steps == [1, 2]
    assert (user_dir / "reports" / GRID_STUDY_NAME / "README.md").is_file()


def test_workers_end_when_their_study_process_is_killed_and_the_rerun_finishes_the_study(data, user_dir):
    storage = f"sqlite:///{user_dir / 'mlruns' / 'optuna.db'}"
    process = subprocess.Popen(  # its stderr (and its workers') shown if the study ends first
        study(data, "--workers", "2"), cwd=user_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    worker = wait_for(lambda: a_trial_with_an_epoch(user_dir, storage), process, what="a worker's first epochs")
    worker = worker.user_attrs["pid"]
    process.send_signal(signal.SIGKILL)  # the parent only: as the kernel's OOM killer would
    process.wait()
    wait_for(lambda: ended(worker), timeout=20, what="the orphaned worker's end")  # its queue would take longer
    rerun = subprocess.run(study(data, "--no-report"), cwd=user_dir, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    # the other worker's runs, and any a worker took in the second before it saw its parent gone,
    # may have stopped before their first checkpoint: all but the one point found checkpointed
    assert_completed_once(user_dir, storage, started_over=GRID_POINTS - 1)


def test_the_postgresql_server_stopped_and_restarted_mid_study(data, user_dir, postgres_server):
    postgres, pg_control = postgres_server.url, postgres_server.control
    process = subprocess.Popen(
        study(data, "--storage", postgres, "--no-report"),
        cwd=user_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: a_trial_with_an_epoch(user_dir, postgres), process, what="a trial's first epoch")
    pg_control("stop", "-m", "fast")
    time.sleep(8)  # the trial trains on; its heartbeat, and maybe its end, meet a dead server
    pg_control("start")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    assert_completed_once(user_dir, postgres)


def test_a_report_built_while_two_workers_write(data, user_dir):
    storage = f"sqlite:///{user_dir / 'mlruns' / 'optuna.db'}"
    process = subprocess.Popen(
        study(data, "--workers", "2", "--no-report"),
        cwd=user_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: [t.state for t in trials(storage)].count(TrialState.COMPLETE) >= 2, process, what="two trials")
    client = store_client(user_dir)
    finished_before = {
        run.info.run_id
        for run in client.search_runs(  # the report must show at least these
            [client.get_experiment_by_name(GRID_STUDY_NAME).experiment_id],
            "attributes.status = 'FINISHED' and tags.trial != ''",
        )
    }
    during = subprocess.run(
        [TOOLKIT, "report", "posterior-collapse", "--experiment", GRID_STUDY_NAME, "--out", "during"],
        cwd=user_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]  # the workers did not notice
    assert during.returncode == 0, during.stderr[-2000:]
    report = (user_dir / "during" / "README.md").read_text()
    reported = set(re.findall(r"\[([0-9a-f]{8})\]\(http", report))
    assert len(finished_before) >= 2 and {run_id[:8] for run_id in finished_before} <= reported
    if "| RUNNING |" in report:  # a run still training is listed apart, said to be running, not summarised
        assert "left out of the tables" in report and "still running" in report
    assert_completed_once(user_dir, storage)
