"""Faults researchers hit, with real processes: commands started at the same instant on a fresh
store, a process killed with SIGKILL, nonsense on the command line. In each case the store is
read back afterwards: nothing finished is lost, nothing is left RUNNING by a dead process."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import GRID_POINTS, GRID_STUDY, GRID_STUDY_NAME, ROOT, TOOLKIT, store_client
from mlflow import MlflowClient

from toolkit.config import RunConfig
from toolkit.store import reading
from toolkit.studies import Execution, Study, run_study

TINY_RUN = [
    *("--epochs", "1", "--latent-dim", "2", "--hidden", "16"),
    *("--fid", "off", "--iw-samples", "0", "--figures", "off", "--quiet"),
]


@pytest.fixture
def user_env(tmp_cwd, monkeypatch):
    """A user's shell in an empty directory: the store will be ./mlruns, created by the commands."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return None


def start_together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    results = []
    for command, process in zip(commands, processes):
        out, err = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


def an_existing_store(directory: Path, empty_store: Path) -> None:
    """A store in `directory` as the toolkit leaves it once made (a copy of `empty_store`)."""
    (directory / "mlruns").mkdir()
    shutil.copyfile(empty_store, directory / "mlruns" / "mlflow.db")


@pytest.mark.slow
def test_three_trains_started_together_on_a_fresh_store_all_finish(tiny_data, user_env, tmp_cwd):
    """Two processes creating a fresh store's tables at once used to break it for good (a stray
    `_alembic_tmp_*` table) or lose one of the runs. (Processes opening an existing store together:
    the two study processes below.)"""
    commands = [[TOOLKIT, "train", "--data-dir", tiny_data, "--seed", str(seed), *TINY_RUN] for seed in (1, 2, 3)]
    results = start_together(commands, tmp_cwd)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-500:] for r in results]
    with sqlite3.connect(tmp_cwd / "mlruns" / "mlflow.db") as db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type = 'table'")]
    assert not [name for name in tables if name.startswith("_alembic_tmp")]
    client = store_client(tmp_cwd)  # the first opening of the store in this process: its schema is checked
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(run.data.params["seed"] for run in runs) == ["1", "2", "3"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    client.set_terminated(client.create_run(runs[0].info.experiment_id).info.run_id)  # the store still works


@pytest.mark.slow
@pytest.mark.parametrize("store_exists", [False, True])
def test_two_study_processes_started_together_share_one_parent_and_one_fid_reference(
    store_exists, tiny_data, user_env, tmp_cwd, empty_store
):
    """Two processes of one study used to create two parent runs (children split between them)
    and train the FID feature CNN twice, on a fresh store or an existing one."""
    if store_exists:
        an_existing_store(tmp_cwd, empty_store)
    command = [*GRID_STUDY, "--data-dir", tiny_data, "--figures", "off", "--no-report"]
    results = start_together([command, command], tmp_cwd)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-500:] for r in results]
    client = store_client(tmp_cwd)
    experiment = client.get_experiment_by_name(GRID_STUDY_NAME).experiment_id
    runs = client.search_runs([experiment])
    parents = [run for run in runs if "trial" not in run.data.tags]
    assert len(parents) == 1
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1 == GRID_POINTS and {run.info.status for run in children} == {"FINISHED"}
    study = optuna.load_study(study_name=GRID_STUDY_NAME, storage=f"sqlite:///{tmp_cwd / 'mlruns' / 'optuna.db'}")
    assert Counter(t.state for t in study.trials)[optuna.trial.TrialState.COMPLETE] == GRID_POINTS
    references = client.search_runs([client.get_experiment_by_name("fid-references").experiment_id])
    assert len(references) == 1


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_marked_failed_by_the_next_command(tiny_data, user_env, tmp_cwd):
    process = subprocess.Popen(
        [
            TOOLKIT,
            "train",
            "--data-dir",
            tiny_data,
            "--experiment",
            "killed",
            "--epochs",
            "500",
            "--latent-dim",
            "2",
            "--hidden",
            "16",
            "--fid",
            "off",
            "--patience",
            "0",
            "--quiet",
        ],
        cwd=tmp_cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # until an epoch is logged
        try:
            client = store_client(tmp_cwd)
            runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
            if runs and client.get_metric_history(runs[0].info.run_id, "val/loss"):
                break
        except Exception:  # the store or the experiment may not exist yet
            pass
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [killed] = runs
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"  # what SIGKILL leaves
    other_host = {"host": "another-machine", "pid": "1"}
    elsewhere = {
        name: client.create_run(killed.info.experiment_id, tags={**other_host, **tags})
        for name, tags in {
            "silent": {"heartbeat": str(time.time() - 1200)},
            "beating": {"heartbeat": str(time.time())},
            "no heartbeat": {},
        }.items()
    }

    after = subprocess.run(
        [TOOLKIT, "train", "--data-dir", tiny_data, *TINY_RUN], cwd=tmp_cwd, capture_output=True, text=True, timeout=300
    )
    assert after.returncode == 0
    [note] = [line for line in after.stderr.splitlines() if "FAILED" in line]
    assert note.startswith("note: marked 2 run(s) FAILED whose process had died") and killed.info.run_id[:8] in note
    ended = client.get_run(killed.info.run_id)
    assert ended.info.status == "FAILED" and f"process {process.pid}" in ended.data.tags["end_reason"]
    assert len(client.get_metric_history(killed.info.run_id, "val/loss")) >= 1  # its epochs are kept
    status = {name: client.get_run(run.info.run_id) for name, run in elsewhere.items()}
    assert status["silent"].info.status == "FAILED"  # another machine's run, silent for 20 minutes
    assert "sent no heartbeat for 20 minutes" in status["silent"].data.tags["end_reason"]
    assert status["beating"].info.status == status["no heartbeat"].info.status == "RUNNING"  # cannot be judged dead
    finished = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])[0]
    assert time.time() - float(finished.data.tags["heartbeat"]) < 300  # runs beat while they are open


@pytest.mark.parametrize(
    "argv, message",
    [
        ([TOOLKIT, "train", "--free-bits", "nan"], "error: free_bits: must be a finite number, got nan"),
        ([TOOLKIT, "train", "--beta", "inf"], "error: beta: must be a finite number, got inf"),
        ([TOOLKIT, "train", "--lr", "inf"], "error: lr: must be a finite number, got inf"),
        ([TOOLKIT, "train", "--seed", str(2**70)], f"error: seed: must be between 0 and 2**32 - 1, got {2**70}"),
        ([sys.executable, str(ROOT / "studies" / "search.py"), "--trials", "0"], "error: trials: must be >= 1, got 0"),
        (
            [sys.executable, str(ROOT / "studies" / "search.py"), "--trials", "-1"],
            "error: trials: must be >= 1, got -1",
        ),
    ],
)
def test_nonsense_is_refused_in_one_line_before_any_run_exists(argv, message, user_env, tmp_cwd):
    result = subprocess.run(argv, cwd=tmp_cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == message
    client = store_client(tmp_cwd)
    runs = client.search_runs(["0"]) if client else []
    assert not runs


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs: room for a store's database, not for a run's figures and model."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_one_line_and_records_why(tiny_data, small_disk, tmp_cwd, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{small_disk / 'mlflow.db'}")
    result = subprocess.run(
        [TOOLKIT, "train", "--data-dir", tiny_data, "--epochs", "1", "--fid", "off", "--quiet"],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert result.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: the disk is full"), errors
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)  # space freed
    again = subprocess.run(
        [TOOLKIT, "train", "--data-dir", tiny_data, *TINY_RUN], cwd=tmp_cwd, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    client = MlflowClient(f"sqlite:///{small_disk / 'mlflow.db'}")
    failed, finished = client.search_runs(
        [client.get_experiment_by_name("fashion-mnist").experiment_id], order_by=["attributes.start_time ASC"]
    )
    assert failed.info.status == "FAILED" and finished.info.status == "FINISHED"  # ended then, or by the next command
    assert len(client.get_metric_history(failed.info.run_id, "val/loss")) == 1  # the epoch it trained is kept


@pytest.mark.parametrize(
    "setup, argv, hint",
    [
        ("mlruns/mlflow.db", [TOOLKIT, "train", *TINY_RUN], "its database file is damaged: move mlflow.db aside"),
        (
            "mlruns/optuna.db",
            [sys.executable, str(ROOT / "studies" / "search.py"), "--quick"],
            "its database file is damaged: move it aside",
        ),
        (
            None,
            [
                sys.executable,
                str(ROOT / "studies" / "search.py"),
                "--quick",
                "--storage",
                "postgresql://nobody@127.0.0.1:9/none",
            ],
            "write postgresql+psycopg2://",
        ),
        (
            None,
            [TOOLKIT, "train", "--fid-weights", "/nonexistent/pt_inception.pth", "--epochs", "1", "--quiet"],
            "Inception weights file /nonexistent/pt_inception.pth (--fid-weights / TOOLKIT_FID_WEIGHTS) does not exist",
        ),
    ],
)
def test_a_damaged_or_mistyped_store_gets_a_hint_that_fits(setup, argv, hint, tiny_data, user_env, tmp_cwd):
    if setup:
        (tmp_cwd / setup).parent.mkdir(parents=True, exist_ok=True)
        (tmp_cwd / setup).write_bytes(b"not a database, whatever its name says" * 100)
    result = subprocess.run([*argv, "--data-dir", tiny_data], cwd=tmp_cwd, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert result.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: ") and hint in errors[0], errors
    assert not (tmp_cwd / "mlruns" / "artifacts" / "fid-references").exists()  # nothing trained before the error


def test_an_ae_trained_on_one_image_still_finishes(tiny_data, user_env, tmp_cwd):
    """Its Gaussian fitted to one code used to fail after training, leaving a FAILED run."""
    result = subprocess.run(
        [TOOLKIT, "train", "--model", "ae", "--limit", "1", "--data-dir", tiny_data, *TINY_RUN],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    client = store_client(tmp_cwd)
    [run] = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["limit"] == "1"


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tiny_data, store):
    study = Study(
        "diverging",
        RunConfig(latent_dim=2, hidden=(16,), epochs=2, fid="off", iw_samples=0),
        grid={"sane": {"lr": 1e-3}, "diverges": {"lr": 1e6}, "sane-too": {"lr": 2e-3}},
        pruner="none",
        seeds=1,
    )
    optuna_study = run_study(study, Execution(f"sqlite:///{Path(tiny_data).parent / 'optuna.db'}", data_dir=tiny_data))
    states = {t.user_attrs["point"]: t for t in optuna_study.trials}
    assert states["sane"].state == states["sane-too"].state == optuna.trial.TrialState.COMPLETE
    diverged = states["diverges"]
    assert diverged.state == optuna.trial.TrialState.FAIL and "non-finite" in diverged.user_attrs["error"]
    client = MlflowClient(store)
    failed = client.get_run(diverged.user_attrs["mlflow_run_id"])
    assert failed.info.status == "FAILED" and "non-finite" in failed.data.tags["end_reason"]
    assert failed.data.tags["group_size"] == "3"  # the three trained together: the diverging one failed alone


def train_with_figures(tiny_data: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TOOLKIT, "train", "--data-dir", tiny_data, *TINY_RUN, "--figures", "all"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_writes_its_own(store: Path, was: Path, tiny_data: str, monkeypatch):
    """A run trained in the store now at `store` (it was at `was`) says so, writes there, and
    finds the earlier run's model and figures there too."""
    again = train_with_figures(tiny_data, store)
    assert again.returncode == 0, again.stderr
    note = f"note: this store was at {was / 'mlruns'}; its artifact locations now point to {store / 'mlruns'}"
    assert note in again.stderr
    client = store_client(store)
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
    assert len(runs) == 2 and all(run.info.artifact_uri.startswith(str(store)) for run in runs)
    for run in runs:  # the old run's model and figures are read from the new place
        assert {"figures", "images.npz"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    monkeypatch.chdir(store)
    assert reading.load_model(runs[-1].info.run_id)[1].latent_dim == 2


@pytest.mark.slow
def test_a_copied_or_moved_store_keeps_its_artifacts_and_writes_its_own(tiny_data, user_env, tmp_cwd, monkeypatch):
    """Experiments used to record absolute artifact paths: a copied store wrote into the
    original's folder, and after a move its models were 'not in the store'. One store is copied,
    then moved."""
    original, copied, moved = tmp_cwd / "project", tmp_cwd / "copied", tmp_cwd / "moved"
    original.mkdir()
    first = train_with_figures(tiny_data, original)
    assert first.returncode == 0, first.stderr
    shutil.copytree(original, copied)
    before = sorted((original / "mlruns" / "artifacts").rglob("*"))
    assert_writes_its_own(copied, original, tiny_data, monkeypatch)
    assert sorted((original / "mlruns" / "artifacts").rglob("*")) == before  # the original is untouched
    shutil.move(original, moved)
    assert_writes_its_own(moved, original, tiny_data, monkeypatch)


@pytest.mark.slow
def test_a_store_the_user_may_not_write_is_one_line_and_keeps_its_runs(tiny_data, user_env, tmp_cwd):
    """A store made by another user, opened by one without the right to write it: 213 lines of
    traceback before. Run as root (CI), the store is given to `nobody` and the command runs
    without root's power to override file permissions (setpriv drops CAP_DAC_OVERRIDE)."""
    subprocess.run(
        [TOOLKIT, "train", "--data-dir", tiny_data, *TINY_RUN],
        cwd=tmp_cwd,
        check=True,
        capture_output=True,
        timeout=300,
    )
    store = tmp_cwd / "mlruns"
    unprivileged = []
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody", str(store)], check=True)
        drop = "-dac_override,-dac_read_search"
        unprivileged = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]
    for path in [store, *store.rglob("*")]:  # owner-writable only: not by this user
        path.chmod(path.stat().st_mode & ~0o022 if os.geteuid() == 0 else path.stat().st_mode & ~0o222)
    result = subprocess.run(
        [*unprivileged, TOOLKIT, "train", "--data-dir", tiny_data, *TINY_RUN],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert result.returncode == 2 and len(errors) == 1, errors
    assert errors[0].startswith("error: ") and "writable" in errors[0] and "MLFLOW_TRACKING_URI" in errors[0], errors
    client = store_client(tmp_cwd)
    [run] = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
    assert run.info.status == "FINISHED"  # the store's runs are untouched


def test_a_database_server_gone_for_good_ends_the_command_in_one_line(capsys):
    """After a study has waited for its storage's server (`trial_queue.PatientStorage`), the driver's
    error reaches the command line: one line saying to rerun, not SQLAlchemy's traceback."""
    import sqlalchemy

    from toolkit.commands import command

    gone = sqlalchemy.exc.OperationalError(
        "UPDATE trials …", {}, Exception('connection to server at "127.0.0.1", port 5432 failed: Connection refused')
    )
    with pytest.raises(SystemExit) as exit_status, command("interrupted"):
        raise gone
    [line] = capsys.readouterr().err.splitlines()
    assert exit_status.value.code == 2
    assert line.startswith("error: the database server does not answer: (") and "rerun the same command" in line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_a_store_write_takes_effect_when_the_write_is_whole(signum, monkeypatch):
    from toolkit.commands import interrupts_held, stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals()
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_held():
                with interrupts_held():  # nested writes: one deferral
                    os.kill(os.getpid(), signum)
                    time.sleep(0.05)
                    steps.append("inner write done")
                steps.append("outer write done")
        assert steps == ["inner write done", "outer write done"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_an_interrupt_during_an_optuna_storage_call_leaves_the_database_unlocked(tmp_path):
    """SIGTERM at random moments of a worker's storage calls, the reads Optuna's cache makes
    included: after each, another connection can take SQLite's write lock at once. (Before, one
    in about twenty left it held: the worker's next call waited two minutes on its own lock.)"""
    import random
    import threading

    from toolkit import trial_queue
    from toolkit.commands import stop_on_signals

    database = tmp_path / "optuna.db"
    optuna_study = optuna.create_study(storage=trial_queue._open_storage(f"sqlite:///{database}", lambda t: {}))
    trial = optuna_study.ask()
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals()
    rng = random.Random(0)
    try:
        for _ in range(150):
            with pytest.raises(KeyboardInterrupt):  # entered first: a loaded machine may deliver the signal at once
                threading.Timer(rng.uniform(0, 0.02), os.kill, (os.getpid(), signal.SIGTERM)).start()
                while True:
                    trial.set_user_attr("x", rng.random())
                    optuna_study.get_trials(deepcopy=False)
            other = sqlite3.connect(database, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # "database is locked" if the interrupted call kept it
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
