"""The study engine: parent and child runs, resume, pruning, crash safety, workers, PostgreSQL."""

import ast
import io
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import GRID_POINTS, GRID_STUDY, GRID_STUDY_NAME, ROOT, TINY
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from toolkit import ToolkitError, names, studies, trial_queue
from toolkit.config import RunConfig
from toolkit.pipeline import run_name
from toolkit.reports import build_report
from toolkit.store import reading, writing
from toolkit.studies import Execution, Study, run_study

GRID6 = {f"beta{beta:g}": {"beta": beta} for beta in (0.5, 1, 2, 4, 8, 16)}


def latent_space(trial):
    return {"latent_dim": trial.suggest_int("latent_dim", 2, 4)}


@pytest.fixture
def storage(tmp_path, store):
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def children(name: str) -> list:
    mlflow_client = writing.writer()
    return mlflow_client.search_runs([writing.experiment_id(name)], "tags.trial != ''")


def parents(name: str) -> list:
    mlflow_client = writing.writer()
    return [run for run in mlflow_client.search_runs([writing.experiment_id(name)]) if "trial" not in run.data.tags]


def trials(name: str, storage: str):
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def test_a_three_trial_study_logs_a_parent_with_three_children_and_a_rerun_adds_nothing(tiny_data, storage):
    study = Study("three", TINY, space=latent_space, trials=3, pruner="none")
    run_study(study, Execution(storage, data_dir=tiny_data))
    [parent] = parents("three")
    runs = children("three")
    assert parent.info.status == "FINISHED" and len(runs) == 3
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.data.tags["study"] == "three"
        assert run.data.params["latent_dim"] in {"2", "3", "4"} and run.data.params["epochs"] == "1"
        assert "val/loss" in run.data.metrics and "test/recon" in run.data.metrics
    finished = trials("three", storage)
    assert [t.state for t in finished] == [TrialState.COMPLETE] * 3
    assert {t.user_attrs["mlflow_run_id"] for t in finished} == {run.info.run_id for run in runs}

    run_study(study, Execution(storage, data_dir=tiny_data))
    assert len(children("three")) == 3 and len(trials("three", storage)) == 3 and len(parents("three")) == 1
    assert optuna.load_study(study_name="three", storage=storage).metric_names == ["validation negative ELBO (nats)"]


def test_a_grid_records_its_settings_as_params_and_compares_ae_and_vae_on_reconstruction(tiny_data, storage):
    grid = {
        "ae": {"model": "ae"},
        "vae-beta0.5": {"model": "vae", "beta": 0.5},
        "vae-beta4": {"model": "vae", "beta": 4},
    }
    study = Study("mixed", TINY, grid=grid, pruner="none", description="Which reconstructs better?", seeds=1)
    optuna_study = run_study(study, Execution(storage, data_dir=tiny_data))
    assert optuna_study.metric_names == ["validation reconstruction (nats)"]
    done = {t.user_attrs["point"]: t for t in optuna_study.get_trials()}
    assert done["ae"].params == {"model": "ae", "seed": 42}
    assert done["vae-beta4"].params == {"model": "vae", "beta": 4.0, "seed": 42}
    assert done["vae-beta4"].distributions["beta"] == FloatDistribution(0.5, 4)  # a factor 8: a linear axis
    runs = {run.info.run_id: run for run in children("mixed")}
    for label, trial in done.items():
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert trial.value == pytest.approx(run.data.metrics["val/recon"])  # one epoch: the best is the last
        assert run.data.tags[names.NOTE].startswith(
            f"Trial {trial.number} of study `mixed`, grid point `{label}`, seed 42."
        )
    assert sorted(run.info.run_name for run in runs.values()) == ["ae-z2", "vae-z2-beta0.5", "vae-z2-beta4"]
    [ae] = [run for run in runs.values() if run.data.params["model"] == "ae"]
    assert not {"beta", "warmup_epochs", "free_bits", "iw_samples"} & set(ae.data.params)
    [parent] = parents("mixed")
    assert parent.data.params["design"] == "grid" and not {"model", "beta", "latent_dim"} & set(parent.data.params)
    assert "Which reconstructs better?" in parent.data.tags[names.NOTE]
    assert "Not every trial has `beta`" in build_report("study", study_name="mixed", storage=storage).markdown()


def test_trial_names_carry_the_settings_that_differ_from_the_study():
    base = RunConfig(likelihood="gaussian")
    assert run_name(replace(base, warmup_epochs=10, free_bits=0.05), base) == "vae-z20-beta1-warmup10-fb0.05"
    assert run_name(replace(base, model="ae", seed=3, hidden=(256, 128)), base) == "ae-z20-h256x128-seed3"
    assert run_name(base, base) == "vae-z20-beta1"


def test_a_multi_objective_search_minimises_reconstruction_and_fid_and_its_report_tables_the_front(tiny_data, storage):
    base = replace(TINY, fid="auto", fid_samples=200)  # the FID CNN is trained on the 300 tiny images
    study = Study("pareto", base, space=latent_space, trials=3, pruner="none", multi_objective=True)
    optuna_study = run_study(study, Execution(storage, data_dir=tiny_data))
    runs = {run.info.run_id: run.data.metrics for run in children("pareto")}
    for trial in optuna_study.get_trials():
        metrics = runs[trial.user_attrs["mlflow_run_id"]]
        assert trial.values[1] == pytest.approx(metrics["fid/fmnist-cnn/samples"])
        assert trial.values[0] == pytest.approx(metrics["val/recon"])  # one epoch: the best is the last
    front = pd.read_csv(
        io.BytesIO(build_report("study", study_name="pareto", storage=storage).files["pareto_front.csv"])
    )
    best = sorted(optuna_study.best_trials, key=lambda t: t.values)
    assert list(front["trial"]) == [t.number for t in best]
    assert list(front["FID of samples"]) == pytest.approx([t.values[1] for t in best])


def test_resuming_with_other_settings_is_refused_naming_them(tiny_data, storage):
    study = Study("fixed", TINY, grid={"only": {}}, pruner="none", seeds=1)
    run_study(study, Execution(storage, data_dir=tiny_data))
    with pytest.raises(ToolkitError, match="epochs 1 -> 2"):
        run_study(
            Study("fixed", replace(TINY, epochs=2), grid={"only": {}}, seeds=1), Execution(storage, data_dir=tiny_data)
        )


def test_an_unreachable_storage_is_a_clear_error(tiny_data, store):
    hint = "does not answer: start it, or check the host and port in --storage"
    with pytest.raises(ToolkitError, match=f"cannot open the Optuna storage.*{hint}"):
        run_study(
            Study("x", TINY, grid={"only": {}}, seeds=1),
            Execution("postgresql+psycopg2://nobody@127.0.0.1:9/none", data_dir=tiny_data),
        )


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_a_pruned_trial_keeps_its_partial_metrics_and_ends_killed(tiny_data, storage, monkeypatch):
    monkeypatch.setitem(studies.PRUNERS, "always", AlwaysPrune)
    study = Study("pruned", replace(TINY, epochs=5), space=latent_space, trials=1, pruner="always")
    run_study(study, Execution(storage, data_dir=tiny_data))
    [trial] = trials("pruned", storage)
    [run] = children("pruned")
    assert trial.state == TrialState.PRUNED and run.info.status == "KILLED"
    history = writing.writer().get_metric_history(run.info.run_id, "val/loss")
    assert [m.step for m in history] == [1]
    assert "test/recon" not in run.data.metrics


@pytest.mark.slow
def test_two_workers_finish_a_six_point_grid_each_point_once(tiny_data, storage):
    study = Study("grid", replace(TINY, epochs=8, hidden=(400,)), grid=GRID6, pruner="none", seeds=1)
    run_study(study, Execution(storage, workers=2, data_dir=tiny_data))
    done = trials("grid", storage)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 6
    assert sorted(t.user_attrs["point"] for t in done) == sorted(GRID6)
    assert all(t.params == {"beta": GRID6[t.user_attrs["point"]]["beta"], "seed": 42} for t in done)
    assert all(t.distributions["beta"] == FloatDistribution(0.5, 16, log=True) for t in done)
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers took trials
    runs = children("grid")
    assert sorted(float(run.data.params["beta"]) for run in runs) == sorted(p["beta"] for p in GRID6.values())
    assert all(run.info.status == "FINISHED" for run in runs)
    assert max(int(run.data.tags[names.GROUP_SIZE]) for run in runs if names.GROUP_SIZE in run.data.tags) >= 2


def test_a_grid_trains_its_points_together_to_the_numbers_of_its_runs_alone(tiny_data, storage):
    """By default the grid's points (one MLP shape; mixed β, warm-up and free bits) train as one
    group; with `group=False` (`--no-group`) one after another. Every run's per-epoch and final
    metrics agree within test_group's tolerance."""
    grid = {
        "beta0.5": {"beta": 0.5},
        "beta4-warmup": {"beta": 4.0, "warmup_epochs": 2},
        "beta1-fb": {"beta": 1.0, "free_bits": 0.25},
    }
    base = replace(TINY, epochs=3, latent_dim=4, hidden=(32,))
    run_study(Study("together", base, grid=grid, pruner="none", seeds=1), Execution(storage, data_dir=tiny_data))
    run_study(
        Study("alone", base, grid=grid, pruner="none", seeds=1), Execution(storage, data_dir=tiny_data, group=False)
    )
    together = {run.data.params["beta"]: run for run in children("together")}
    alone = {run.data.params["beta"]: run for run in children("alone")}
    assert {run.data.tags[names.GROUP_SIZE] for run in together.values()} == {"3"}
    assert not any(names.GROUP_SIZE in run.data.tags for run in alone.values())
    client = writing.writer()
    for beta, run in alone.items():
        grouped = together[beta]
        scale = abs(run.data.metrics[names.VAL_LOSS])
        for key, value in run.data.metrics.items():
            if not key.startswith("time/"):
                assert grouped.data.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-4 * scale), key
        curves = [[m.value for m in client.get_metric_history(r.info.run_id, names.VAL_LOSS)] for r in (grouped, run)]
        assert curves[0] == pytest.approx(curves[1], rel=1e-4)


def take_concurrently(study: Study, storage: str, workers: int = 6) -> list:
    """Trials taken by `workers` threads, each opening the study on its own connection like a worker
    process on a fresh storage, and taking trials until the study has none left (left running)."""
    taken, errors = [], []

    def take_all():
        try:
            optuna_study = studies.open_study(study, Execution(storage))
            while (trial := trial_queue.next_trial(optuna_study, bool(study.grid), study.trials)) is not None:
                taken.append(trial)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take_all) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return taken


@pytest.mark.parametrize("backend", ["storage", "postgres"])
def test_concurrent_workers_run_each_queued_grid_point_once(backend, request, store):
    """pysqlite starts a transaction only at the first write, which once let two workers read a
    grid point as waiting and both take it; and two machines queueing one grid at the same moment
    can add a point twice."""
    storage = request.getfixturevalue(backend)
    study = Study("race", TINY, grid={f"beta{i}": {"beta": i + 1.0} for i in range(30)}, pruner="none", seeds=1)
    queue = studies.open_study(study, Execution(storage))
    for label in [*study.grid, *study.grid]:  # as if two machines had queued the grid together
        queue.enqueue_trial(study.grid[label], user_attrs={"point": label})
    taken = take_concurrently(study, storage)
    assert sorted(trial.user_attrs["point"] for trial in taken) == sorted(study.grid)
    duplicates = [t for t in trials("race", storage) if "duplicate_of" in t.user_attrs]
    assert len(duplicates) == 30 and all(t.state == TrialState.FAIL for t in duplicates)


def test_concurrent_workers_start_exactly_the_trials_a_search_asks_for(storage, monkeypatch):
    ask = optuna.Study.ask

    def slow_ask(self, *args, **kwargs):  # every worker sees the budget unfilled, then asks
        time.sleep(0.2)
        return ask(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "ask", slow_ask)
    study = Study("budget", TINY, space=latent_space, trials=10, pruner="none")
    taken = take_concurrently(study, storage)
    assert len(taken) == 10
    surplus = [t for t in trials("budget", storage) if t.number not in {trial.number for trial in taken}]
    assert surplus and all(t.state == TrialState.FAIL and t.user_attrs["surplus"] for t in surplus)


def study_command(script: str, data: str, storage: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "studies" / script), "--quick", "--data-dir", data, "--storage", storage, *extra]


def wait_for_a_running_trial(name: str, timeout: float = 180, checkpointed: bool = False, runs: int = 1):
    """Until `runs` trials' runs are under way (each has logged an epoch) and, if `checkpointed`,
    have kept their first checkpoint (which is written just after the epoch's metrics)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = [run for run in children(name) if run.info.status == "RUNNING" and run.data.metrics]
            if checkpointed:
                running = [run for run in running if reading.checkpoint_paths(run.info.run_id)]
            if len(running) >= runs:
                return
        except Exception:  # the experiment may not exist yet
            pass
        time.sleep(0.5)
    pytest.fail(f"no trial of {name} started within {timeout} s")


def assert_grid_completed_once(name: str, storage: str, points: int):
    done = trials(name, storage)
    states = Counter(t.state for t in done)
    assert states[TrialState.COMPLETE] == points and states[TrialState.RUNNING] == states[TrialState.WAITING] == 0
    assert len({t.user_attrs["point"] for t in done if t.state == TrialState.COMPLETE}) == points
    runs = children(name)
    assert Counter(run.info.status for run in runs)["FINISHED"] == points
    assert not [run for run in runs + parents(name) if run.info.status == "RUNNING"]
    return done, runs


@pytest.mark.slow
def test_a_grouped_study_killed_during_training_resumes_every_member_to_completion(
    tiny_data, storage, cli_env, tmp_path
):
    """The grid's four points train as one group: killed with SIGKILL once every member has kept
    a checkpoint, each member's trial is retried and goes on from its own run's checkpoint."""
    command = [*GRID_STUDY, "--data-dir", tiny_data, "--storage", storage, "--fid", "off", "--figures", "off"]
    command += ["--epochs", "4"]  # the moment every member has checkpointed lasts three epochs, not one
    process = subprocess.Popen(command, env=cli_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_a_running_trial(GRID_STUDY_NAME, checkpointed=True, runs=GRID_POINTS)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = [t for t in trials(GRID_STUDY_NAME, storage) if t.state == TrialState.RUNNING]
    assert len(killed) >= 2  # members of one group, under way together (the first may have ended)

    resumed = subprocess.run(
        [*command, "--no-report"], env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done, runs = assert_grid_completed_once(GRID_STUDY_NAME, storage, GRID_POINTS)
    client = writing.writer()
    for victim in killed:
        [failed] = [t for t in done if t.number == victim.number]
        assert failed.state == TrialState.FAIL
        retried = [t for t in done if t.user_attrs.get("retry_of") == failed.number]
        assert [t.user_attrs["point"] for t in retried] == [failed.user_attrs["point"]]
        assert [t.params for t in retried] == [failed.params]
        [retry] = retried  # went on from the killed run's checkpoint, in the same MLflow run
        assert retry.user_attrs["resume_runs"] == {"42": retry.user_attrs["mlflow_run_id"]}
        assert retry.user_attrs["mlflow_run_id"] == failed.user_attrs["mlflow_run_id"]
        run = client.get_run(retry.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["trial"] == str(retry.number)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4]
    assert parents(GRID_STUDY_NAME)[0].info.status == "FINISHED"


def test_retries_stopped_before_their_runs_went_on_pass_on_the_runs_they_resume(tiny_data, storage, monkeypatch):
    """Ctrl-C (or a worker ended with its parent) while a worker holds retries it has not yet
    trained, one batch preparing its group, the other still waiting its turn: each is queued
    again resuming the run it was given, not starting its point over."""
    grid = {"a": {"beta": 1.0}, "b": {"beta": 2.0}, "c": {"latent_dim": 3}}  # a and b train as one group
    execution = Execution(storage, data_dir=tiny_data)
    source = run_study(Study("source", TINY, grid=grid, pruner="none", seeds=1), execution)
    runs = {t.user_attrs["point"]: t.user_attrs["mlflow_run_id"] for t in source.get_trials()}  # finished
    study = Study("requeued", TINY, grid=grid, pruner="none", seeds=1)
    optuna_study = studies.open_study(study, execution)
    studies.enqueue_grid(optuna_study, study)
    parent = studies._parent_run_id(optuna_study, study)
    for trial in studies._take(optuna_study, study, 3, 1):  # stopped once its run had finished
        trial_queue.requeue_interrupted(optuna_study, trial, {names.RESUME: {"42": runs[trial.user_attrs["point"]]}})

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("toolkit.pipeline.train_group", stopped)
    monkeypatch.setattr("toolkit.pipeline.train_run", stopped)
    retries = studies._take(optuna_study, study, 3, 1)
    assert [len(batch) for batch in studies._batches(retries, study)] == [2, 1]
    with pytest.raises(KeyboardInterrupt):
        studies._run_taken(optuna_study, retries, study, execution, parent)
    queued = optuna_study.get_trials(states=(TrialState.WAITING,))
    assert {t.user_attrs["point"]: t.user_attrs[names.RESUME] for t in queued} == {
        point: {"42": run_id} for point, run_id in runs.items()
    }


def test_a_worker_stopped_while_it_takes_its_group_queues_again_every_trial_it_took(tiny_data, storage, monkeypatch):
    """SIGTERM just after the queue hands a worker its second trial (before the worker has it): the
    interrupt waits until the trial is the worker's, and both trials taken go back to the queue."""
    from toolkit.commands import stop_on_signals

    study = Study("taking", TINY, grid={"a": {"beta": 1.0}, "b": {"beta": 2.0}, "c": {"beta": 4.0}}, seeds=1)
    optuna_study = studies.open_study(study, Execution(storage, data_dir=tiny_data))
    studies.enqueue_grid(optuna_study, study)
    popped, pop = [], trial_queue.next_trial

    def next_trial(*args):
        popped.append(pop(*args))
        if len(popped) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # lands while the trial is on its way to the worker
        return popped[-1]

    monkeypatch.setattr(trial_queue, "next_trial", next_trial)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            studies._take(optuna_study, study, 3, 1)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert len(popped) == 2
    states = Counter(t.state for t in optuna_study.get_trials())
    assert states == {TrialState.FAIL: 2, TrialState.WAITING: 3}  # two queued again, one never taken


def test_two_machines_join_one_study_through_postgresql(tiny_data, postgres, cli_env, tmp_path):
    command = [*GRID_STUDY, "--data-dir", tiny_data, "--storage", postgres, "--name", "shared-grid", "--fid", "off"]
    command.append("--no-group")  # one point at a time: the first machine would take the whole grid as one group
    pipes = {"env": cli_env, "cwd": tmp_path, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    machines = [subprocess.Popen(command, **pipes)]
    wait_for_a_running_trial("shared-grid")  # the second machine joins a study under way
    machines.append(subprocess.Popen([*command, "--no-report"], **pipes))  # and leaves the report to the first
    outputs = [machine.communicate(timeout=600) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], [err[-2000:] for _, err in outputs]
    later = "its report was not written (`toolkit report posterior-collapse --experiment shared-grid --storage"
    assert later in outputs[1][0] and "report: reports/shared-grid/README.md" in outputs[0][0]
    done, _ = assert_grid_completed_once("shared-grid", postgres, GRID_POINTS)
    assert len(done) == GRID_POINTS
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both took trials


def test_the_beta_sweep_command_on_real_fashion_mnist(real_subset, storage, cli_env, tmp_path):
    """The flagship command, --quick, on 3,000 real images: eight finished runs that trace the
    rate-distortion trade-off, its table printed, and its report written and logged on the parent run."""
    result = subprocess.run(
        study_command("beta_sweep.py", str(real_subset), storage, "--figures", "off"),
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    runs = children("beta-sweep-quick")
    assert sorted(run.info.status for run in runs) == ["FINISHED"] * 8
    vae = {float(run.data.params["beta"]): run.data.metrics for run in runs if run.data.params["model"] == "vae"}
    assert sorted(vae) == [0.1, 0.25, 0.5, 1, 2, 4, 8]
    assert vae[0.1]["test/kl"] > vae[1]["test/kl"] > vae[8]["test/kl"]
    assert vae[0.1]["test/recon"] < vae[1]["test/recon"] < vae[8]["test/recon"]
    for run in runs:  # every model's fitted samplers, and the VAE's prior
        prior = {"samples"} if run.data.params["model"] == "vae" else set()
        kinds = {"samples_fitted_gaussian", "samples_gmm"} | prior
        assert {f"fid/fmnist-cnn/{kind}" for kind in kinds} <= set(run.data.metrics)
    assert result.stdout.count("| VAE |") == 7 and result.stdout.count("| AE |") == 1
    assert result.stdout.count("COMPLETE in") == 8 and result.stdout.count("trained in a group of 7") == 7
    assert sorted(run.data.tags.get("group_size", "alone") for run in runs) == ["7"] * 7 + ["alone"]
    readme = tmp_path / "reports" / "beta-sweep-quick" / "README.md"
    assert f"report: {Path('reports') / 'beta-sweep-quick' / 'README.md'}" in result.stdout
    text = readme.read_text()
    assert "rate_distortion.png" in text and "real-vs-real floor" in text and "not Inception FIDs" in text
    [parent] = parents("beta-sweep-quick")
    logged = {a.path for a in writing.writer().list_artifacts(parent.info.run_id, "report")}
    assert {"report/README.md", "report/results.csv", "report/rate_distortion.png"} <= logged


def test_every_grid_point_runs_the_same_seeds_and_more_seeds_later_run_only_the_missing_ones(tiny_data, storage):
    grid = {"vae": {"model": "vae"}, "ae": {"model": "ae"}}
    run_study(Study("seeded", TINY, grid=grid, pruner="none", seeds=2), Execution(storage, data_dir=tiny_data))
    first = {run.info.run_id: run for run in children("seeded")}
    seeds = {(run.data.params["model"], run.data.params["seed"]) for run in first.values()}
    assert seeds == {(m, s) for m in ("vae", "ae") for s in ("42", "43")} and len(first) == 4
    optuna_study = run_study(
        Study("seeded", TINY, grid=grid, pruner="none", seeds=3), Execution(storage, data_dir=tiny_data)
    )
    runs = {run.info.run_id: run for run in children("seeded")}
    assert set(first) < set(runs) and len(runs) == 6  # the four runs kept, one more seed per point
    assert {(r.data.params["model"], r.data.params["seed"]) for i, r in runs.items() if i not in first} == {
        ("vae", "44"),
        ("ae", "44"),
    }
    assert sorted(t.params["seed"] for t in optuna_study.get_trials()) == [42, 42, 43, 43, 44, 44]
    assert all(t.state == TrialState.COMPLETE for t in optuna_study.get_trials())
    with pytest.raises(ToolkitError, match="a grid point sets seed; leave it out"):
        run_study(Study("seeded", TINY, grid={"one": {"seed": 3}}, seeds=1), Execution(storage, data_dir=tiny_data))


def test_a_search_trial_scores_the_mean_of_its_seeds_and_prunes_on_running_means(tiny_data, storage):
    study = Study("seeded-search", replace(TINY, epochs=2), space=latent_space, trials=2, pruner="none", seeds=3)
    optuna_study = run_study(study, Execution(storage, data_dir=tiny_data))
    runs = {run.info.run_id: run for run in children("seeded-search")}
    assert len(runs) == 6
    client = writing.writer()
    for trial in optuna_study.get_trials():
        by_seed = trial.user_attrs["mlflow_run_ids"]
        assert sorted(by_seed) == ["42", "43", "44"] and trial.user_attrs["mlflow_run_id"] == by_seed["42"]
        curves = {
            seed: [m.value for m in sorted(client.get_metric_history(run_id, "val/neg_elbo"), key=lambda m: m.step)]
            for seed, run_id in by_seed.items()
        }
        best = {
            seed: curves[seed][int(runs[run_id].data.metrics["best_epoch"]) - 1] for seed, run_id in by_seed.items()
        }
        assert trial.value == pytest.approx(sum(best.values()) / 3)
        assert trial.user_attrs["objective_by_seed"] == pytest.approx(best)
        assert trial.user_attrs["objective_sd"] == pytest.approx(float(pd.Series(list(best.values())).std()))
        for k in range(3):  # step (k - 1) · epochs + e: the mean over the first k seeds
            for epoch in (1, 2):
                earlier = [curves[s][epoch - 1] for s in ["42", "43", "44"][: k + 1]]
                assert trial.intermediate_values[k * 2 + epoch] == pytest.approx(sum(earlier) / len(earlier))
        assert {runs[run_id].data.params["latent_dim"] for run_id in by_seed.values()} == {
            str(trial.params["latent_dim"])
        }
    with pytest.raises(ToolkitError, match="a search whose trials train 3 seed\\(s\\) each; rerun it with --seeds 3"):
        run_study(replace(study, seeds=1), Execution(storage, data_dir=tiny_data))


def test_a_storage_call_waits_while_the_database_cannot_be_reached_then_gives_up(tmp_path, monkeypatch):
    """A server restarting: each call on the storage is tried again (every 2 s, here at once) until
    it answers, or until STORAGE_WAIT_S has passed; no call site wraps its calls."""
    import sqlalchemy
    from optuna.study import StudyDirection

    storage = trial_queue.PatientStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "restarting")
    refusals = [0]

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def refuse(*_):
        if refusals[0]:
            refusals[0] -= 1
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    clock = [0.0]
    monkeypatch.setattr(trial_queue.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(trial_queue.time, "time", lambda: clock[0])
    refusals[0] = 3
    assert storage.get_study_name_from_id(study_id) == "restarting" and clock[0] == 6  # three refusals waited out
    refusals[0] = 10**6
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get_study_name_from_id(study_id)
    assert trial_queue.STORAGE_WAIT_S < clock[0] <= trial_queue.STORAGE_WAIT_S + 8


@pytest.mark.parametrize("script", sorted(path.name for path in (ROOT / "studies").glob("*.py")))
def test_every_study_script_declares_its_study_and_answers_help_with_its_docstring(script, monkeypatch, capsys):
    """The study machinery is tested on tests/grid_study.py, and `make demo` runs beta_sweep.py on
    real data; each script's own declaration must build and its command line answer."""
    path = ROOT / "studies" / script
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(path), run_name="__main__")
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    summary = ast.get_docstring(ast.parse(path.read_text())).split("\n")[0]
    assert "--quick" in shown and summary in shown
