"""What a hostile member of a group sharing one store can write into it, and what reaches the
others: no code run, no payload in a report, no path outside its folder, no secret printed."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import mlflow.pytorch
import pytest
import torch

from toolkit import ToolkitError, names
from toolkit.config import RunConfig
from toolkit.models import build
from toolkit.store import reading, writing

CONFIG = RunConfig(model="vae", latent_dim=3, hidden=(16,))


class Payload:
    """Unpickled, it creates the file `marker`: the proof that loading ran code from the store."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def logged_model_run(tmp_path) -> tuple[str, Path]:
    """A run with a toolkit model logged, and the folder of that model's files in the store."""
    mlflow_client = writing.writer()
    run_id = mlflow_client.create_run(writing.experiment_id("shared")).info.run_id
    writing.Run(run_id, mlflow_client).log_model(build(CONFIG, torch.device("cpu")), CONFIG)
    [folder] = (tmp_path / "store" / "artifacts").glob("shared/models/*/artifacts")
    return run_id, folder


def test_a_pickled_model_replaced_in_the_store_runs_no_code_when_loaded(store, tmp_path):
    run_id, folder = logged_model_run(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(Payload(marker)))
    model, config = reading.load_model(run_id, torch.device("cpu"))
    assert config == CONFIG and not model.training and not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 (any error will do) what MLflow's own loader does with it: it runs the payload
        mlflow.pytorch.load_model(str(folder), weights_only=False)
    assert marker.exists()


def test_weights_replaced_by_a_pickle_are_refused_in_one_line_without_running_it(store, tmp_path):
    run_id, folder = logged_model_run(tmp_path)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)
    (folder / "extra_files" / names.WEIGHTS_FILE).write_bytes(buffer.getvalue())
    with pytest.raises(ToolkitError, match=f"run {run_id}: its model files are damaged") as error:
        reading.load_model(run_id, torch.device("cpu"))
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_model_logged_only_as_a_pickle_is_refused_saying_why(store, tmp_path):
    run_id, folder = logged_model_run(tmp_path)
    (folder / "extra_files" / names.WEIGHTS_FILE).unlink()
    with pytest.raises(ToolkitError, match="only as a pickle, which the toolkit does not load"):
        reading.load_model(run_id, torch.device("cpu"))


# Strings a member of the group can put into the shared store, each trying to get out of its cell.
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "a|b\n\n# heading",
    "**winner**",
    "`code` and \\ backslash",
    "![i](http://evil/x.png)",
]


def hostile_store() -> str:
    """An AE-vs-VAE experiment whose name, run names, tags and a failed run's end reason carry PAYLOADS."""
    from synthetic import fake_study

    name = "ae-vs-vae " + PAYLOADS[1]
    runs = [
        (
            RunConfig(model=model, seed=seed),
            {"test/recon": 200.0 + seed % 3 + (model == "vae"), "fid/fmnist-cnn/samples": 90.0 + seed % 2},
        )
        for model in ("vae", "ae")
        for seed in (42, 43, 44)
    ]
    parent = fake_study(name, runs)
    mlflow_client = writing.writer()
    experiment = mlflow_client.get_experiment_by_name(name).experiment_id
    for run, payload in zip(mlflow_client.search_runs([experiment], "tags.trial != ''"), PAYLOADS):
        mlflow_client.set_tag(run.info.run_id, "mlflow.runName", payload)
        mlflow_client.set_tag(run.info.run_id, "data_dir", payload)
        mlflow_client.set_tag(run.info.run_id, "machine/cpu", payload)
    failed = mlflow_client.create_run(
        experiment,
        run_name=PAYLOADS[2],
        tags={"mlflow.parentRunId": parent, "trial": "9", names.END_REASON: " ".join(PAYLOADS)},
    ).info.run_id
    mlflow_client.set_terminated(failed, "FAILED")
    return name


def test_a_report_shows_what_the_store_holds_as_text_and_carries_none_of_it_out(store, tmp_path):
    from markdown_it import MarkdownIt

    from toolkit.reports import write_report

    _, readme = write_report("ae-vs-vae", hostile_store(), out=tmp_path / "report")
    markdown = readme.read_text()
    html = MarkdownIt("commonmark").enable("table").render(markdown)  # raw HTML allowed, as a README renderer
    assert "<script" not in html and "onerror" not in html.replace("onerror=alert(1)&gt;", "")
    assert not [
        href
        for href in re.findall(r'href="([^"]*)"', html)  # the UI, headings, the report's own files
        if not href.startswith(("http://127.0.0.1", "#")) and not (href.endswith((".csv", ".pdf")) and "/" not in href)
    ]
    assert not [src for src in re.findall(r'src="([^"]*)"', html) if "/" in src]  # only the report's own PNGs
    assert html.count("<h1>") == 1 and "<strong>winner</strong>" not in html
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    tables = MarkdownIt("commonmark").enable("table").parse(markdown)
    assert sum(t.type == "tr_open" for t in tables) == len([r for r in rows if not r.startswith("| ---")])
    shown = [line for line in html.splitlines() if "alert(1)&lt;/script&gt;" in line]
    assert shown  # the payloads are there to be read, as text


@pytest.mark.parametrize("name", ["../outside", "a/../../outside", "/tmp/outside", "..", " "])
def test_an_experiment_name_that_leaves_the_store_is_refused_before_anything_is_created(store, tmp_path, name):
    mlflow_client = writing.writer()
    with pytest.raises(ToolkitError, match="experiment") as error:
        writing.experiment_id(name)
    assert "\n" not in str(error.value) and mlflow_client.get_experiment_by_name(name) is None
    assert not (tmp_path / "outside").exists() and not Path("/tmp/outside").exists()


def test_a_report_named_after_an_experiment_that_leaves_reports_is_refused(store, tmp_cwd):
    from toolkit.reports import write_report

    with pytest.raises(ToolkitError, match="leads outside reports/"):
        write_report("ae-vs-vae", "../../outside")
    assert not (tmp_cwd.parent / "outside").exists() and not (tmp_cwd / "reports").exists()


def test_a_storage_password_is_masked_in_the_study_report_and_its_rebuild_command(store, postgres, tmp_path):
    import optuna

    from toolkit.reports import write_report

    url = postgres.replace("postgres@", "postgres:hunter2@")  # the server trusts local users: any password works
    optuna_study = optuna.create_study(study_name="secret-study", storage=url)
    for x in (1.0, 2.0, 3.0):
        optuna_study.enqueue_trial({"x": x})
        optuna_study.optimize(lambda trial: trial.suggest_float("x", 0, 4) ** 2, n_trials=1)
    _, readme = write_report("study", out=tmp_path / "report", study_name="secret-study", storage=url)
    written = b"".join(path.read_bytes() for path in readme.parent.iterdir())
    assert b"hunter2" not in written and "postgres:***@127.0.0.1" in readme.read_text()


def test_a_storage_password_is_masked_in_the_error_when_its_server_does_not_answer(cli_env, tmp_path):
    import subprocess
    import sys

    url = "postgresql+psycopg2://bob:hunter2@127.0.0.1:9/none"
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "report", "study", "--study", "s", "--storage", url],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "hunter2" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1 and "bob:***@127.0.0.1" in result.stderr


@pytest.mark.slow
def test_a_live_run_of_another_container_with_this_host_name_is_not_taken_for_dead(store, cli_env, tmp_path):
    import subprocess
    import sys
    import time

    from toolkit.machine import HOST

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer exists in this process table
    mlflow_client = writing.writer()
    experiment = writing.experiment_id("shared")
    tags = {"host": HOST, "pid": str(gone.pid), "heartbeat": str(time.time())}
    runs = {
        "other container": {**tags, names.PROCESS_TABLE: "another-boot/pid:[4026531836]"},
        "before the tag": tags,
        "this table": {**writing.process_tags(), **tags},
    }
    ids = {name: mlflow_client.create_run(experiment, tags=run_tags).info.run_id for name, run_tags in runs.items()}

    def command(*argv):
        run = [sys.executable, "-m", "toolkit.cli", *argv]
        subprocess.run(run, env=cli_env, cwd=tmp_path, capture_output=True, timeout=120)
        return {name: mlflow_client.get_run(run_id).info.status for name, run_id in ids.items()}

    assert set(command("report", "ae-vs-vae", "--experiment", "shared").values()) == {
        "RUNNING"
    }  # reading writes nothing
    status = command("train", "--resume", ids["other container"])  # a command that writes: refused, as the run is live
    assert status == {"other container": "RUNNING", "before the tag": "RUNNING", "this table": "FAILED"}
    live = writing.Run(ids["other container"], mlflow_client)
    live.end("FAILED", "judged dead by a stale heartbeat")
    live.end("FINISHED")  # it was alive after all
    assert names.END_REASON not in mlflow_client.get_run(ids["other container"]).data.tags


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "beta-sweep", "--experiment", "nope"],
        ["train", "--resume", "0" * 32],
        ["report", "study", "--study", "nope"],
    ],
)
def test_a_read_only_command_where_there_is_no_store_creates_none(tmp_path, argv):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: no ")
    assert os.listdir(tmp_path) == []


def test_a_latent_size_whose_evaluation_the_machine_cannot_hold_is_refused_before_any_work(tmp_cwd):
    import os
    import subprocess
    import sys

    from toolkit.config import physical_memory

    latent = physical_memory() // (100 * 100 * 4 * 4) + 1  # the IW bound's 100 x 100 codes alone exceed the memory
    assert RunConfig(model="vae", latent_dim=latent, iw_samples=0).training_bytes() < physical_memory()
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "train", "--latent-dim", str(latent)],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: latent_dim: {latent} makes a VAE whose evaluation needs about")
    assert os.listdir(tmp_cwd) == []


def test_experiment_names_mlflow_cannot_hold_or_has_deleted_are_refused_in_one_line(store):
    mlflow_client = writing.writer()
    with pytest.raises(ToolkitError, match="a name needs 1 to 256 characters"):
        writing.experiment_id("x" * 300)
    deleted = writing.experiment_id("gone")
    mlflow_client.delete_experiment(deleted)
    with pytest.raises(ToolkitError, match=f"experiment 'gone' was deleted in MLflow: restore it .*{deleted}"):
        writing.experiment_id("gone")


def test_a_parent_that_is_not_a_run_id_never_reaches_the_search_filter(store, tmp_path):
    from toolkit.reports import write_report

    hostile_store()
    with pytest.raises(ToolkitError, match="--parent .*: not a run id"):
        write_report("ae-vs-vae", "ae-vs-vae " + PAYLOADS[1], parent="x' or tags.trial != '", out=tmp_path / "r")


def test_a_damaged_images_file_leaves_its_images_out_of_the_report_saying_so(store, tmp_path, capsys):
    from toolkit.reports import write_report

    name = hostile_store()
    mlflow_client = writing.writer()
    experiment = mlflow_client.get_experiment_by_name(name).experiment_id
    (tmp_path / "images.npz").write_bytes(b"PK\x03\x04 not a zip")
    for run in mlflow_client.search_runs([experiment], "tags.trial != ''"):
        mlflow_client.log_artifact(run.info.run_id, str(tmp_path / "images.npz"))
    _, readme = write_report("ae-vs-vae", name, out=tmp_path / "r")
    assert readme.is_file() and "images.npz cannot be read (BadZipFile)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["ui", "dashboard"])
def test_a_server_on_a_port_already_taken_is_refused_before_any_link_is_printed(store, cli_env, tmp_path, command):
    import socket
    import subprocess
    import sys

    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=storage)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "toolkit.cli",
                command,
                "--port",
                str(port),
                *(["--storage", storage] if command == "dashboard" else []),
            ],
            env=cli_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: port {port} on 127.0.0.1 is taken")


@pytest.mark.slow
def test_a_tracking_server_gone_during_training_says_to_resume_the_run_not_to_rerun_the_command(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import running_mlflow_server, write_idx_set

    data = write_idx_set(tmp_path / "data", n_train=3000, n_test=100)
    with running_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as url:
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        training = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "toolkit.cli",
                "train",
                "--data-dir",
                str(data),
                "--epochs",
                "50",
                "--patience",
                "0",
                "--fid",
                "off",
                "--quiet",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = training.stdout.readline()
        assert started.startswith("run ") and "started" in started
    _, err = training.communicate(timeout=300)  # the server is gone, for good
    assert training.returncode == 2 and err.count("\n") == 1, err[-2000:]
    assert "does not answer" in err and "toolkit train --resume RUN_ID" in err


@pytest.mark.parametrize(
    "name, message",
    [("", "a name needs 1 to 256 characters"), ("x" * 300, "1 to 256"), ("../elsewhere", "leads outside")],
)
def test_an_experiment_name_train_cannot_use_is_refused_before_the_data_is_read(tmp_cwd, name, message):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "train", "--experiment", name, "--data-dir", "no-such-dir"],
        cwd=tmp_cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert os.listdir(tmp_cwd) == []


def test_a_checkpoint_replaced_by_a_pickle_is_passed_over_for_the_one_before_and_runs_no_code(store, tmp_path):
    mlflow_client = writing.writer()
    run = writing.Run(mlflow_client.create_run(writing.experiment_id("x")).info.run_id, mlflow_client)
    buffer = io.BytesIO()
    torch.save({"history": [{"val/loss": 1.0}]}, buffer)
    run.log_bytes(buffer.getvalue(), f"{names.CHECKPOINTS}/epoch-0001.pt")
    marker = tmp_path / "pwned"
    run.log_bytes(pickle.dumps(Payload(marker)), f"{names.CHECKPOINTS}/epoch-0002.pt")  # the newest
    assert reading.load_checkpoint(run.run_id) == {"history": [{"val/loss": 1.0}]} and not marker.exists()
    only = mlflow_client.create_run(run.client.get_run(run.run_id).info.experiment_id).info.run_id
    writing.Run(only, mlflow_client).log_bytes(pickle.dumps(Payload(marker)), f"{names.CHECKPOINTS}/epoch-0001.pt")
    with pytest.raises(ToolkitError, match="none of its checkpoints .* can be read"):
        reading.load_checkpoint(only)
    assert not marker.exists()


@pytest.mark.slow
def test_the_dashboard_prints_its_links_and_no_server_log(cli_env, tmp_path):
    import subprocess
    import sys
    import urllib.request

    import optuna
    from conftest import free_port, serving

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=storage)
    port = free_port()
    argv = [sys.executable, "-m", "toolkit.cli", "dashboard", "--storage", storage, "--port", str(port)]
    with serving(
        argv,
        f"http://127.0.0.1:{port}",
        ready="/",
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        for page in ("/", "/dashboard/studies/1", "/api/studies"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10).read()
    lines = process.stdout.read().splitlines()
    assert lines == [
        f"optuna-dashboard on http://127.0.0.1:{port} (storage {storage}); Ctrl-C stops it",
        f"  s: http://127.0.0.1:{port}/dashboard/studies/1",
    ], lines


def test_load_model_on_a_copied_store_reads_the_copy_not_the_original(store, tmp_path, monkeypatch):
    import shutil

    run_id, _ = logged_model_run(tmp_path)
    shutil.copytree(tmp_path / "store", tmp_path / "copy")
    shutil.move(tmp_path / "store", tmp_path / "original-gone")  # its files are no longer where it recorded them
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'copy' / 'mlflow.db'}")
    model, config = reading.load_model(run_id, torch.device("cpu"))
    assert config == CONFIG and not model.training


def test_workers_are_bounded_by_the_machines_cores_and_memory():
    import os

    from toolkit.config import physical_memory
    from toolkit.studies import check_workers

    cores = os.cpu_count() or 1
    with pytest.raises(ToolkitError, match=f"workers: this machine has {cores} cores, so at most {cores} workers"):
        check_workers(cores + 1, RunConfig())
    per_unit = RunConfig(hidden=(2,)).training_bytes() - RunConfig(hidden=(1,)).training_bytes()
    large = RunConfig(hidden=(int(0.6 * physical_memory()) // per_unit,))  # one fits, two do not
    check_workers(1, large)
    if cores >= 2:
        with pytest.raises(ToolkitError, match="workers: 2 workers need about .* GiB, more than .*; use at most 1"):
            check_workers(2, large)
