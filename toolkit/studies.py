"""Optuna studies whose trials are tracked runs: one MLflow parent run per study, one child per trial.

A study is declared (`Study`: the fixed settings, either a grid or a search space, and the kind of
report that fits it) and run by `run_study`; the study scripts reach it through `cli.study_main`.
What this module adds to Optuna:

- storage in `mlruns/optuna.db` by default (never MLflow's database: both use Alembic's
  `alembic_version` table), any Optuna storage URL with `--storage`; rerunning resumes;
- the queue of `trial_queue`: grid points popped atomically, dead workers' trials retried; an
  abandoned trial's MLflow run ends FAILED, and Ctrl-C queues the interrupted trial again too;
- pruning on the validation objective; a pruned trial's run ends KILLED with its partial metrics.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from toolkit import ToolkitError, stop_on_signals, tracking, trial_queue
from toolkit.config import RunConfig
from toolkit.data import find_files
from toolkit.pipeline import train_run
from toolkit.tracking import RunStopped

QUICK = {"epochs": 2, "limit": 2000, "fid_samples": 1000, "iw_samples": 10}  # --quick: a smoke run
PRUNERS = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
           "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=2),
           "none": optuna.pruners.NopPruner}

OBJECTIVES = {False: ["validation objective (−ELBO for a VAE, reconstruction for an AE; nats)"],
              True: ["validation reconstruction (nats)", "FID of samples"]}  # by Study.multi_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Study:
    """A study declaration: the settings every trial shares and what varies between trials."""

    name: str
    base: RunConfig = RunConfig()
    grid: dict[str, dict] | None = None  # label -> RunConfig overrides; each point runs once
    space: Callable[[optuna.Trial], dict] | None = None  # a search: overrides suggested per trial
    trials: int = 20  # finished trials a search aims for
    pruner: str = "median"
    multi_objective: bool = False  # minimise (validation reconstruction, FID of samples); no pruning
    report: str = "study"  # the kind of report written at the end (toolkit.reports.KINDS)


@dataclass(frozen=True)
class Settings:
    """Where and how a study runs: what the command line of every study script sets."""

    storage: str | None = None
    workers: int = 1
    data_dir: str | None = None


def objective_value(metrics: dict[str, float]) -> float:
    """The validation number trials are compared on: -ELBO for a VAE (comparable across beta and
    free bits, unlike the training loss), reconstruction for an AE."""
    return metrics.get("val/neg_elbo", metrics["val/recon"])


def open_study(study: Study, settings: Settings) -> optuna.Study:
    url = settings.storage or tracking.optuna_storage()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return trial_queue.open_study(
            study.name, url, OBJECTIVES[study.multi_objective],
            PRUNERS[study.pruner](), optuna.samplers.TPESampler(seed=study.base.seed, multivariate=True),
            on_abandoned=_end_abandoned_run)
    except Exception as exc:  # a bad URL or an unreachable server fails deep inside SQLAlchemy
        raise ToolkitError(f"cannot open the Optuna storage {url!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); check --storage") from None


def run_study(study: Study, settings: Settings) -> optuna.Study:
    """Run (or resume) `study` to completion with `settings.workers` processes; returns it."""
    find_files(study.base.dataset, settings.data_dir)  # missing data stops the study, not each trial
    optuna_study = open_study(study, settings)
    _check_settings(optuna_study, study)
    if study.grid:
        for label in study.grid:
            optuna_study.enqueue_trial({"point": label}, skip_if_exists=True)
    with tracking.continue_run(_parent_run_id(optuna_study, study)):
        if settings.workers == 1:
            work(study, settings)
        else:
            _run_workers(study, settings)
    return optuna_study


def _run_workers(study: Study, settings: Settings):
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    processes = [context.Process(target=work, args=(study, settings, threads)) for _ in range(settings.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode != 0 for process in processes):
        raise ToolkitError(f"{sum(p.exitcode != 0 for p in processes)} of {settings.workers} workers failed; "
                           "rerun the same command to resume")


def work(study: Study, settings: Settings, threads: int | None = None):
    """One worker: take trials until the study is done."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    stop_on_signals()
    optuna_study = open_study(study, settings)
    parent_id = optuna_study.user_attrs["mlflow_parent_run_id"]
    while (trial := trial_queue.next_trial(optuna_study, bool(study.grid), study.trials)) is not None:
        _run_trial(optuna_study, trial, study, settings, parent_id)


def _run_trial(optuna_study, trial: optuna.Trial, study: Study, settings: Settings, parent_id: str):
    heartbeat, start = trial_queue.Heartbeat(optuna_study, trial), time.perf_counter()
    try:
        config = dataclasses.replace(study.base, **trial_overrides(trial, study))
        result = train_run(config, study.name, settings.data_dir, quiet=True,
                           tags={"study": study.name, "trial": str(trial.number), "mlflow.parentRunId": parent_id},
                           callbacks=[] if study.multi_objective else [_pruning_callback(trial)],
                           on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id))
    except RunStopped:
        finished = optuna_study.tell(trial, state=TrialState.PRUNED)
    except ToolkitError as exc:  # a bad configuration or a diverged run: recorded, not retried
        trial.set_user_attr("error", str(exc))
        finished = optuna_study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number} failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        trial_queue.stop(optuna_study, trial)
        raise
    else:
        values = [result.best["val/recon"], _fid_of_samples(result.final)] if study.multi_objective \
            else objective_value(result.best)
        finished = optuna_study.tell(trial, values)
    finally:
        heartbeat.stop()
    seconds = time.perf_counter() - start
    print(f"{study.name}: trial {trial.number} {trial.params} {finished.state.name} in {seconds:.0f} s", flush=True)


def trial_overrides(trial: optuna.Trial, study: Study) -> dict:
    if study.grid:
        return study.grid[trial.suggest_categorical("point", list(study.grid))]
    return study.space(trial)


def _fid_of_samples(final: dict[str, float]) -> float:
    found = [value for key, value in final.items() if key.startswith("fid/") and key.endswith("/samples")]
    if not found:
        raise ToolkitError("the multi-objective search needs FID; do not turn it off")
    return found[0]


def _pruning_callback(trial: optuna.Trial):
    def report(epoch: int, metrics: dict[str, float]):
        trial.report(objective_value(metrics), epoch)
        if trial.should_prune():
            raise RunStopped(f"trial {trial.number} pruned at epoch {epoch}")
    return report


def _end_abandoned_run(trial: optuna.trial.FrozenTrial):
    """A trial whose worker died: its MLflow run, if still RUNNING, ends FAILED saying so."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        mlflow_client = tracking.client()
        if mlflow_client.get_run(run_id).info.status == "RUNNING":
            tracking.Run(mlflow_client, run_id).end(
                "FAILED", f"the worker of trial {trial.number} died (host {trial.user_attrs.get('host')}); "
                "its configuration was queued again")


def _parent_run_id(optuna_study: optuna.Study, study: Study) -> str:
    """The study's MLflow parent run: created on the first run, found again on a resume."""
    if "mlflow_parent_run_id" not in optuna_study.user_attrs:
        mlflow_client = tracking.client()
        run = mlflow_client.create_run(tracking.experiment_id(mlflow_client, study.name), run_name=study.name,
                                       tags={**tracking.git_tags(), "study": study.name})
        tracking.Run(mlflow_client, run.info.run_id).log_params(study.base.to_params())
        optuna_study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
        if optuna_study.user_attrs["mlflow_parent_run_id"] != run.info.run_id:  # another machine was faster
            mlflow_client.delete_run(run.info.run_id)
    return optuna_study.user_attrs["mlflow_parent_run_id"]


def _check_settings(optuna_study: optuna.Study, study: Study):
    """A resumed study must keep its fixed settings, or its trials would not be comparable."""
    stored = optuna_study.user_attrs.get("base")
    current = study.base.to_params()
    if stored is None:
        optuna_study.set_user_attr("base", current)
        return
    changed = [f"{k} {stored.get(k)} -> {v}" for k, v in current.items() if stored.get(k) != v]
    if changed:
        raise ToolkitError(f"study {study.name!r} already exists with other settings ({'; '.join(changed)}); "
                           "rerun with its settings to resume it, or pass --name to start a new study")
