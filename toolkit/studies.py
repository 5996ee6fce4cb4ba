"""Optuna studies whose trials are tracked runs: one MLflow parent run per study, one child per trial.

A study is declared (`Study`: the fixed settings and either a grid or a search space) and run by
`main`, which every script in `studies/` calls. What this module adds to Optuna:

- storage in `mlruns/optuna.db` by default (never MLflow's database: both use Alembic's
  `alembic_version` table), any Optuna storage URL with `--storage`; rerunning resumes;
- grid points are queued once and popped atomically, so no point is evaluated twice, even by
  workers on several machines;
- crash safety: a trial whose worker died (its heartbeat went stale, or its process is gone on
  this host) is marked FAIL, its MLflow run FAILED, and its configuration queued again; Ctrl-C
  does the same, so an interrupted trial is retried on the next run;
- pruning on the validation objective; a pruned trial's run ends KILLED with its partial metrics.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import sqlalchemy
from optuna.trial import TrialState

from toolkit import ToolkitError, command, stop_on_signals, tracking
from toolkit.config import DATASETS, VAE_ONLY, RunConfig
from toolkit.data import find_files
from toolkit.pipeline import train_run
from toolkit.tracking import RunStopped

HEARTBEAT_S, GRACE_S = 10, 30
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOST = socket.gethostname()
QUICK = {"epochs": 2, "limit": 2000, "fid_samples": 1000, "iw_samples": 10}  # --quick: a smoke run
PRUNERS = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
           "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=2),
           "none": optuna.pruners.NopPruner}

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


def default_storage() -> str:
    return f"sqlite:///{(tracking.STORE_DIR / 'optuna.db').resolve()}"


def open_study(study: Study, settings: Settings) -> optuna.Study:
    url = settings.storage or default_storage()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.create_study(
            storage=_storage(url), study_name=study.name, load_if_exists=True, pruner=PRUNERS[study.pruner](),
            directions=["minimize", "minimize"] if study.multi_objective else ["minimize"],
            sampler=optuna.samplers.TPESampler(seed=study.base.seed, multivariate=True))
    except Exception as exc:  # a bad URL or an unreachable server fails deep inside SQLAlchemy
        raise ToolkitError(f"cannot open the Optuna storage {url!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); check --storage") from None


def _storage(url: str, attempts: int = 3) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`, with our heartbeat. Processes that create a fresh database at the
    same moment race on its schema (an error on a table or on alembic_version): they try again."""
    sqlite = url.startswith("sqlite")
    for attempt in range(attempts):
        try:
            with _no_experimental_warnings():  # the heartbeat arguments are marked experimental
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
                    heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, heartbeat_stale_trial_callback=_abandoned)
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    if sqlite:
        _begin_immediate(storage.engine)
    return storage


def _begin_immediate(engine: sqlalchemy.Engine):
    """Make every SQLite transaction take the write lock when it begins. pysqlite otherwise begins
    one only at the first write, so Optuna's read-then-update of a waiting trial could hand one
    grid point to two workers."""
    @sqlalchemy.event.listens_for(engine, "connect")
    def no_implicit_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners would keep the old behaviour


def run_study(study: Study, settings: Settings) -> optuna.Study:
    """Run (or resume) `study` to completion with `settings.workers` processes; returns it."""
    find_files(study.base.dataset, settings.data_dir)  # missing data stops the study, not each trial
    optuna_study = open_study(study, settings)
    _check_settings(optuna_study, study)
    if study.grid:
        for label in study.grid:
            optuna_study.enqueue_trial({"point": label}, skip_if_exists=True)
    parent_id = _parent_run_id(optuna_study, study)
    with tracking.continue_run(parent_id) as parent:
        if settings.workers == 1:
            work(study, settings)
        else:
            _run_workers(study, settings)
        summary = summary_table(study, parent_id)
        parent.log_text(summary, "summary.md")
    print(summary)
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
    while (trial := _next_trial(optuna_study, study)) is not None:
        _run_trial(optuna_study, trial, study, settings, parent_id)


def _next_trial(optuna_study: optuna.Study, study: Study) -> optuna.Trial | None:
    """A queued trial (a grid point or a retry), or for a search a new one while short of the target."""
    _fail_abandoned(optuna_study)
    for waiting in optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not optuna_study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it
        if study.grid and (earlier := _duplicate_of(optuna_study, waiting)) is not None:
            optuna_study._storage.set_trial_user_attr(waiting._trial_id, "duplicate_of", earlier)
            optuna_study._storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
            continue
        return optuna.Trial(optuna_study, waiting._trial_id)
    if study.grid:
        return None
    while _trials_under_way(optuna_study) < study.trials:
        with warnings.catch_warnings():  # the heartbeat is recorded by `_Heartbeat`, not by Study.optimize
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
            trial = optuna_study.ask()
        if _trials_under_way(optuna_study, before=trial.number) < study.trials:
            return trial
        trial.set_user_attr("surplus", True)  # another worker asked at the same moment and filled the budget
        optuna_study.tell(trial, state=TrialState.FAIL)
    return None


def _trials_under_way(optuna_study: optuna.Study, before: int | None = None) -> int:
    """Trials finished or running (numbered below `before`, when given): what counts towards a search's budget."""
    taken = optuna_study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    return sum(before is None or trial.number < before for trial in taken)


def _configured_params(trial: optuna.trial.FrozenTrial) -> dict:
    """The trial's params: those it suggested, or while it waits in the queue those it was enqueued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def _grid_point(trial: optuna.trial.FrozenTrial) -> str | None:
    return _configured_params(trial).get("point")


def _duplicate_of(optuna_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of an earlier trial, not failed, of the same grid point. Two machines that queue
    a grid at the same moment can both add a point (Optuna's skip_if_exists checks, then inserts);
    the earliest copy is the one that runs."""
    point = _grid_point(trial)
    return next((other.number for other in optuna_study.get_trials(deepcopy=False)
                 if other.number < trial.number and other.state != TrialState.FAIL and _grid_point(other) == point),
                None)


def _run_trial(optuna_study, trial: optuna.Trial, study: Study, settings: Settings, parent_id: str):
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    heartbeat, start = _Heartbeat(optuna_study, trial), time.perf_counter()
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
        optuna_study.tell(trial, state=TrialState.FAIL)
        _retry(optuna_study, optuna_study._storage.get_trial(trial._trial_id))
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


class _Heartbeat:
    """Records the trial's heartbeat every HEARTBEAT_S seconds while it runs."""

    def __init__(self, optuna_study: optuna.Study, trial: optuna.Trial):
        self.storage, self.trial_id, self.stopped = optuna_study._storage, trial._trial_id, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self):
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stopped.wait(HEARTBEAT_S):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join()


def _fail_abandoned(optuna_study: optuna.Study):
    """Fail the running trials whose worker is gone: a stale heartbeat (any machine; Optuna then
    calls `_abandoned`) or, without waiting for the grace period, a dead process on this host."""
    with _no_experimental_warnings():
        optuna.storages.fail_stale_trials(optuna_study)
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("host") == HOST and not _alive(trial.user_attrs.get("pid")):
            try:
                if optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    _abandoned(optuna_study, trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue


@contextmanager
def _no_experimental_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True  # not started yet: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(optuna_study: optuna.Study, trial: optuna.trial.FrozenTrial):
    """A trial whose worker died: its MLflow run ends FAILED and its configuration is queued again."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        mlflow_client = tracking.client()
        if mlflow_client.get_run(run_id).info.status == "RUNNING":
            tracking.Run(mlflow_client, run_id).end(
                "FAILED", f"the worker of trial {trial.number} died (host {trial.user_attrs.get('host')}); "
                "its configuration was queued again")
    _retry(optuna_study, trial)


def _retry(optuna_study: optuna.Study, trial: optuna.trial.FrozenTrial):
    """Queue the trial's configuration again (a grid point's label, or a search's sampled values)."""
    retry_of = trial.user_attrs.get("retry_of", trial.number)
    optuna_study.enqueue_trial(_configured_params(trial), user_attrs={"retry_of": retry_of})


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


SUMMARY_METRICS = ("test/neg_elbo", "test/nll_iw", "test/recon", "test/kl", "test/active_units", "test/mse")


def summary_table(study: Study, parent_id: str) -> str:
    """A markdown table of the study's child runs: what varied, their state and their test numbers."""
    mlflow_client = tracking.client()
    runs = mlflow_client.search_runs([tracking.experiment_id(mlflow_client, study.name)],
                                     f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=10_000)
    runs = sorted(runs, key=lambda run: int(run.data.tags["trial"]))
    varied = sorted({k for run in runs for k, v in run.data.params.items()
                     if any(other.data.params.get(k) != v for other in runs)})
    fids = sorted({k for run in runs for k in run.data.metrics if k.startswith("fid/")})
    header = ["trial", "status", *varied, *SUMMARY_METRICS, *fids]
    rows = [[run.data.tags["trial"], run.info.status, *(_param(run, k) for k in varied),
             *(_number(run.data.metrics.get(k)) for k in (*SUMMARY_METRICS, *fids))] for run in runs]
    lines = [header, ["---"] * len(header), *rows]
    table = "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)
    return f"## {study.name}\n\n{table}\n{_fid_floors(mlflow_client, runs)}"


def _fid_floors(mlflow_client, runs) -> str:
    """One line per FID extractor the runs used: its real-vs-real floor, the scale of its scores."""
    references = {(k.split("/")[1], v) for run in runs for k, v in run.data.tags.items()
                  if k.startswith("fid/") and k.endswith("/reference_run")}
    lines = []
    for name, run_id in sorted(references):
        floor = mlflow_client.get_run(run_id).data.metrics.get(f"fid/{name}/real_floor")
        caveat = "" if name == "inception" else "; a domain-CNN FID, not an Inception FID"
        lines.append(f"\nFID {name}: real-vs-real floor {_number(floor)} (reference run {run_id}){caveat}")
    return "".join(lines)


def _param(run, name: str) -> str:
    """A run's param for the table; blank where the model ignores it (β of an AE)."""
    return "" if run.data.params.get("model") == "ae" and name in VAE_ONLY else run.data.params.get(name, "")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def main(study: Study, argv=None):
    """The command line every study script shares."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help=f"per trial (default {study.base.epochs})")
    if not study.grid:
        parser.add_argument("--trials", type=int, default=None,
                            help=f"finished trials to aim for (default {study.trials}, 3 with --quick)")
        parser.add_argument("--multi-objective", action="store_true",
                            help="minimise (validation reconstruction, FID of samples) and report the Pareto front")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in mlruns/optuna.db)")
    parser.add_argument("--workers", type=int, default=1, help="processes on this machine, sharing its cores")
    parser.add_argument("--dataset", default=study.base.dataset, help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--seed", type=int, default=study.base.seed)
    parser.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    parser.add_argument("--pruner", default=study.pruner, choices=sorted(PRUNERS))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 epochs on 2,000 images" + ("" if study.grid else ", 3 trials"))
    parser.add_argument("--name", default=None, help="study name (default: derived from the script and settings)")
    args = parser.parse_args(argv)
    with command("finished trials are kept; rerun the same command to resume"):
        study = configure(study, args)
        if args.workers < 1:
            raise ToolkitError(f"workers: must be >= 1, got {args.workers}")
        optuna_study = run_study(study, Settings(args.storage, args.workers, args.data_dir))
    if study.multi_objective:
        print(pareto_front(optuna_study))
    print(f"MLflow experiment '{study.name}' (browse with `toolkit ui`): the table above is summary.md of its "
          f"parent run {optuna_study.user_attrs['mlflow_parent_run_id']}; "
          f"Optuna study '{study.name}' in {args.storage or default_storage()}")


def configure(study: Study, args) -> Study:
    """The declared study with the command line's settings; its name tells studies with other settings apart."""
    overrides = {"dataset": args.dataset, "seed": args.seed, **(QUICK if args.quick else {}),
                 **({"epochs": args.epochs} if args.epochs is not None else {})}
    name = args.name or "-".join([study.name, *([args.dataset] if args.dataset != RunConfig.dataset else []),
                                  *(["quick"] if args.quick else [])])
    return dataclasses.replace(
        study, name=name, base=dataclasses.replace(study.base, **overrides), pruner=args.pruner,
        trials=getattr(args, "trials", None) or (3 if args.quick else study.trials),
        multi_objective=getattr(args, "multi_objective", False))


def pareto_front(optuna_study: optuna.Study) -> str:
    lines = ["Pareto front (validation reconstruction, FID of samples):"]
    for trial in sorted(optuna_study.best_trials, key=lambda t: t.values[0]):
        lines.append(f"  trial {trial.number}: recon {trial.values[0]:.2f}, FID {trial.values[1]:.3g}, {trial.params}")
    return "\n".join(lines)
