"""Optuna studies whose trials are tracked runs: one MLflow parent run per study, one child per trial.

A study is declared (`Study`: the fixed settings, either a grid or a search space, and the kind of
report that fits it) and run by `run_study`; the study scripts reach it through `cli.study_main`.
What this module adds to Optuna:

- storage in `mlruns/optuna.db` by default (never MLflow's database: both use Alembic's
  `alembic_version` table), any Optuna storage URL with `--storage`; rerunning resumes;
- the queue of `trial_queue`: grid points popped atomically, dead workers' trials retried; an
  abandoned trial's MLflow run ends FAILED, and Ctrl-C queues the interrupted trial again too;
- one objective for every trial, named in the study: validation reconstruction when the study has
  AE trials (an AE has no ELBO), validation negative ELBO otherwise;
- seeds as a dimension: every grid point runs with the same `seeds` seed values (one trial each,
  its seed an Optuna param), every search trial trains them one after another and reports their
  mean, so that any two settings can be compared seed by seed; rerunning a grid with more seeds
  runs only the seeds it lacks;
- grid points recorded as their real settings (Optuna params `model`, `beta`, ...), so that
  optuna-dashboard's importances and slice plots speak of them; the point's label is the trial's
  user attribute `point`;
- pruning on the validation objective; a pruned trial's run ends KILLED with its partial metrics;
- runs named and described for the MLflow UI: each trial's name carries the settings that differ
  from the study's fixed ones, the parent run describes the study and ends with its summary table.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from toolkit import ToolkitError, masked, names, trial_queue
from toolkit.commands import interrupts_held, stop_on_signals
from toolkit.config import RunConfig, physical_memory
from toolkit.data import find_files
from toolkit.machine import end_with_parent
from toolkit.storage_errors import cannot_open_optuna_storage
from toolkit.store import location, reading, writing
from toolkit.store.writing import RunStopped

QUICK = {"epochs": 2, "limit": 2000, "fid_samples": 1000, "iw_samples": 10}  # --quick: a smoke run
PRUNERS = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=2),
    "none": optuna.pruners.NopPruner,
}

GRID_SEEDS, SEARCH_SEEDS = 3, 1  # seeds per grid point, per search trial, unless a study says otherwise
# The showcase studies (studies/*.py but the search) train every run until its validation loss stops
# improving. At 30 epochs the reference VAE and AE were still improving by about 0.1 nats an epoch
# (best epoch 28 to 30 in all 18 runs of 30 epochs), falling roughly as 1/epoch², so that a run is
# expected to go 10 epochs without a new best (a change below the ~0.1-nat wobble of its validation
# loss from epoch to epoch) after 60 to 150 epochs. 300 epochs is then a limit rarely reached, and
# the reports count and mark the runs that reach it. Five seeds: a paired difference is resolved
# when its mean exceeds t(n-1) / √n = 1.24 standard deviations of the seeds' differences, against
# 2.48 with three seeds (`make demo` runs three).
SHOWCASE = {"epochs": 300, "patience": 10}
SHOWCASE_SEEDS = 5
OBJECTIVE_NAMES = {
    names.VAL_NEG_ELBO: "validation negative ELBO (nats)",
    names.VAL_RECON: "validation reconstruction (nats)",
}

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Study:
    """A study declaration: the settings every trial shares and what varies between trials."""

    name: str
    base: RunConfig = RunConfig()
    grid: dict[str, dict] | None = None  # label -> RunConfig overrides; each point runs once per seed
    space: Callable[[optuna.Trial], dict] | None = None  # a search: overrides suggested per trial
    trials: int = 20  # finished trials a search aims for
    seeds: int | None = None  # seeds per grid point or search trial (GRID_SEEDS, SEARCH_SEEDS by default)
    pruner: str = "median"
    multi_objective: bool = False  # minimise (validation reconstruction, FID of samples); no pruning
    report: str = "study"  # the kind of report written at the end (toolkit.reports.KINDS)
    description: str = ""  # what the study asks, for the MLflow UI (the study scripts pass their docstring)

    def objective(self) -> str:
        """The validation metric every trial reports: reconstruction when some trials are AEs
        (an AE has no ELBO, and trials must be compared on one number), else negative ELBO. A
        search whose space varies the model should set its base model to "ae"."""
        models = {self.base.model, *(point.get("model", self.base.model) for point in (self.grid or {}).values())}
        return names.VAL_RECON if "ae" in models else names.VAL_NEG_ELBO

    def objective_names(self) -> list[str]:
        if self.multi_objective:
            return [OBJECTIVE_NAMES[names.VAL_RECON], "FID of samples"]
        return [OBJECTIVE_NAMES[self.objective()]]

    def seed_values(self) -> list[int]:
        """The seeds every grid point or search trial runs: `base.seed` and the ones after it, the
        same at every point, so settings can be compared seed by seed."""
        count = self.seeds or (GRID_SEEDS if self.grid else SEARCH_SEEDS)
        return [self.base.seed + i for i in range(count)]


# A worker's own memory beside its run's (`RunConfig.memory_bytes`): Python, torch, the dataset and
# the FID extractor. `toolkit train` of one epoch on 5,000 images peaked at 1.6 GB resident (FID CNN
# trained in a new store included).
WORKER_BYTES = 3 * 2**29


@dataclass(frozen=True)
class Execution:
    """Where and how a study runs: what the command line of every study script sets."""

    storage: str | None = None
    workers: int = 1
    data_dir: str | None = None
    group: bool = True  # grid runs of one shape train together (`group_size`); False: each alone


# Members per group at most. Measured on the 2-core CPU, one epoch of the β sweep's 21 VAE runs
# (what part 3 of benchmarks/sweep_throughput.py times, with --group 3, 7 or 21): they train 1.04x
# as fast as alone in groups of 3, 1.21x in groups of 7 and 1.27x all together (fp32; bf16 1.07x,
# 1.29x, 1.34x). Beyond 8 the gain is small, and a worker's queue is shared with other workers in
# groups of this size.
MAX_GROUP = 8


def group_size(study: Study, execution: Execution) -> int:
    """How many queued grid points a worker takes at a time to train together: MAX_GROUP, fewer
    where the machine's memory (shared by the workers) holds fewer members beside the worker and
    one run's evaluation; 1 for a search (its trials follow one another) or with `--no-group`."""
    if not (execution.group and study.grid):
        return 1
    room = physical_memory() // execution.workers - WORKER_BYTES - study.base.memory_bytes()
    return max(1, min(MAX_GROUP, room // study.base.training_bytes()))


def check_workers(workers: int, config: RunConfig):
    """A run the machine can hold, at most one worker per core, and no more than the machine's memory
    holds (each worker holds its own copy of the data and its model: WORKER_BYTES and the run's
    `memory_bytes`)."""
    config.check_memory()
    cores = os.cpu_count() or 1
    if workers > cores:
        raise ToolkitError(f"workers: this machine has {cores} cores, so at most {cores} workers; got {workers}")
    each = WORKER_BYTES + config.memory_bytes()
    if workers * each > physical_memory():
        fit = max(1, physical_memory() // each)
        raise ToolkitError(
            f"workers: {workers} workers need about {workers * each / 2**30:,.1f} GiB, more than this "
            f"machine's {physical_memory() / 2**30:,.1f} GiB of memory; use at most {fit}"
        )


def open_study(study: Study, execution: Execution) -> optuna.Study:
    url = execution.storage or location.optuna_storage()
    try:
        if (database := location.sqlite_path(url)) is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        return trial_queue.open_queue(
            study.name,
            url,
            study.objective_names(),
            PRUNERS[study.pruner](),
            optuna.samplers.TPESampler(seed=study.base.seed, multivariate=True),
            on_abandoned=_end_abandoned_run,
        )
    except Exception as exc:  # a bad URL or an unreachable server fails deep inside SQLAlchemy
        raise cannot_open_optuna_storage(url, exc) from None


def run_and_report(study: Study, execution: Execution, out: str | None = None):
    """Run (or resume) `study`, then write its report (into `out`, by default reports/<name>), keep
    it under the parent run's artifacts and make its main table the parent's description. Returns
    the report, the path of its README and the parent run's id."""
    from toolkit.reports import write_report

    parent = run_study(study, execution).user_attrs[names.PARENT_RUN_ATTR]
    doc, path = write_report(study.report, study.name, parent, out, study.name, execution.storage)
    writing.log_directory(parent, path.parent, names.REPORT)
    writing.set_note(
        parent,
        f"{describe(study)}\n\n{doc.main_table}\n\nThe whole report is under this run's artifacts, in "
        f"`{names.REPORT}/README.md`.",
    )
    return doc, path, parent


def run_study(study: Study, execution: Execution) -> optuna.Study:
    """Run (or resume) `study` to completion with `execution.workers` processes; returns it."""
    find_files(study.base.dataset, execution.data_dir)  # missing data stops the study, not each trial
    database = location.sqlite_path(execution.storage) if execution.storage else None
    if database is not None and not database.is_file():
        print(
            f"note: {masked(execution.storage)} does not exist yet: a new Optuna storage is made there", file=sys.stderr
        )
    optuna_study = open_study(study, execution)
    _check_settings(optuna_study, study)
    if study.grid:
        enqueue_grid(optuna_study, study)
    with writing.continue_run(_parent_run_id(optuna_study, study)):
        if execution.workers == 1:
            run_worker(study, execution)
        else:
            _run_workers(study, execution)
    return optuna_study


def enqueue_grid(optuna_study: optuna.Study, study: Study):
    """Queue every (grid point, seed) the study has no trial of, in any state (a diverged one is not
    run again): a rerun with more seeds adds only theirs. A trial recorded without a seed (made
    before seeds were a dimension) counts as the first seed."""
    first = study.seed_values()[0]
    have = {
        (trial.user_attrs.get(names.POINT), trial_queue.configured_params(trial).get("seed", first))
        for trial in optuna_study.get_trials(deepcopy=False)
    }
    for label, params in grid_params(study).items():
        for seed in study.seed_values():
            if (label, seed) not in have:
                trial_queue.enqueue_point(optuna_study, label, {**params, "seed": seed})


def _run_workers(study: Study, execution: Execution):
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // execution.workers)
    processes = [
        context.Process(target=_worker, args=(study, execution, threads, os.getpid())) for _ in range(execution.workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    stopped = [process.exitcode for process in processes if process.exitcode != 0]
    if stopped:  # killed (SIGKILL, out of memory) or failed: what they left is done here
        print(
            f"note: {len(stopped)} of {execution.workers} workers stopped (exit status "
            f"{', '.join(map(str, stopped))}); this process finishes the study, resuming their trials",
            file=sys.stderr,
        )
        run_worker(study, execution)


def _worker(study: Study, execution: Execution, threads: int, parent: int):
    """A worker process: `run_worker`, ended (its trial queued again, as on Ctrl-C) when its parent dies."""
    end_with_parent(parent)
    run_worker(study, execution, threads)


def run_worker(study: Study, execution: Execution, threads: int | None = None):
    """One worker: take trials until the study is done, up to `group_size` grid points at a time."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    stop_on_signals()
    optuna_study = open_study(study, execution)
    parent_id = optuna_study.user_attrs[names.PARENT_RUN_ATTR]
    size = group_size(study, execution)
    while taken := _take(optuna_study, study, size, execution.workers):
        _run_taken(optuna_study, taken, study, execution, parent_id)


def _take(optuna_study: optuna.Study, study: Study, size: int, workers: int) -> list[optuna.Trial]:
    """Up to `size` queued trials (grid points, retries), no more than this worker's share of those
    waiting (one in `workers`, so that this machine's workers all get some), or a new search
    trial; none when the study is done. Ctrl-C meanwhile queues again those already taken."""
    if size > 1:
        waiting = len(optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        size = max(1, min(size, -(-waiting // workers)))
    taken = []
    try:
        while len(taken) < size:
            with interrupts_held():  # a trial taken from the queue is in `taken` before Ctrl-C acts
                trial = trial_queue.next_trial(optuna_study, bool(study.grid), study.trials)
                taken += [trial] if trial else []
            if trial is None:
                break
    except KeyboardInterrupt:
        _requeue_running(optuna_study, taken)
        raise
    return taken


def _run_taken(optuna_study: optuna.Study, taken: list, study: Study, execution: Execution, parent_id: str):
    """Run the trials taken, those whose runs share a shape together (`_batches`), each keeping its
    heartbeat while it waits and runs. On Ctrl-C the trials not yet ended are queued again, each
    resuming the runs it started."""
    heartbeats = []
    try:
        heartbeats = [trial_queue.trial_heartbeat(optuna_study, trial) for trial in taken]
        for batch in _batches(taken, study):
            if len(batch) == 1:
                _run_trial(optuna_study, next(iter(batch)), study, execution, parent_id)
            else:
                _run_group(optuna_study, batch, study, execution, parent_id)
    except KeyboardInterrupt:
        _requeue_running(optuna_study, taken)
        raise
    finally:
        for heartbeat in heartbeats:
            heartbeat.stop()


def _requeue_running(optuna_study: optuna.Study, trials: list):
    """Queue again, as on Ctrl-C, those of `trials` still RUNNING (not told their end, nor queued
    again by the batch they ran in), each resuming the runs it has (`_resumable`)."""
    running = {t.number for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for trial in trials:
        if trial.number in running:
            trial_queue.requeue_interrupted(optuna_study, trial, _resumable(trial))


def _batches(trials: list, study: Study) -> list[dict]:
    """The trials grouped by what their runs share (`group.group_key`), each batch a dict of trial
    to its run's config; a trial whose run trains alone (a conv model, a setting its config
    refuses) is a batch of its own, its config left to `_run_trial`."""
    if len(trials) == 1:
        return [{trials[0]: None}]
    from toolkit.group import group_key

    batches: dict = {}
    for trial in trials:
        try:
            config = _trial_configs(trial, study)[0]
        except ToolkitError:
            config = None
        key = None if config is None else group_key(config)
        batches.setdefault(("alone", trial.number) if key is None else key, {})[trial] = config
    return list(batches.values())


def _trial_configs(trial: optuna.Trial, study: Study) -> list[RunConfig]:
    """The configs of a trial's runs: its grid point's seed, or every seed of a search trial."""
    overrides = trial_overrides(trial, study)
    seeds = [overrides["seed"]] if study.grid else study.seed_values()
    return [dataclasses.replace(study.base, **{**overrides, "seed": seed}) for seed in seeds]


def _run_trial(optuna_study, trial: optuna.Trial, study: Study, execution: Execution, parent_id: str):
    """One trial, its seeds' runs trained one after another."""
    from toolkit.pipeline import train_run  # torch, sklearn, matplotlib: a refused command answers first

    start, runs = time.perf_counter(), dict(trial.user_attrs.get(names.RUN_IDS, {}))  # seed -> MLflow run
    try:
        configs = _trial_configs(trial, study)
        means, results = SeedMeans(trial, study), []
        for config in configs:
            callbacks = [] if study.multi_objective else [means.reporter(len(results))]
            r = _request(trial, study, parent_id, config, runs, callbacks)
            results.append(
                train_run(
                    r.config,
                    r.experiment,
                    execution.data_dir,
                    quiet=True,
                    tags=r.tags,
                    callbacks=r.callbacks,
                    on_start=r.on_start,
                    name=r.name,
                    note=r.note,
                    resume=r.resume,
                )
            )
            if len(results) < len(configs) and not study.multi_objective:
                means.finished(results[-1], runs[str(config.seed)])
    except (RunStopped, ToolkitError) as exc:
        _tell(optuna_study, trial, study, exc, start)
    else:
        _tell(optuna_study, trial, study, (configs, results), start)


def _run_group(optuna_study, batch: dict, study: Study, execution: Execution, parent_id: str):
    """Grid trials whose runs share a shape (`group.group_key`; `batch`: trial -> its run's config),
    trained together (`pipeline.train_group`); each trial ends as its own run did. An error no
    trial run alone would survive ends the worker once every other trial is told its end."""
    from toolkit.pipeline import train_group

    start, trials = time.perf_counter(), list(batch)
    runs = {trial.number: dict(trial.user_attrs.get(names.RUN_IDS, {})) for trial in trials}
    requests = [
        _request(
            trial,
            study,
            parent_id,
            batch[trial],
            runs[trial.number],
            [] if study.multi_objective else [SeedMeans(trial, study).reporter(0)],
        )
        for trial in trials
    ]
    outcomes = train_group(requests, execution.data_dir)  # on Ctrl-C `_run_taken` queues the trials again
    unexpected = None
    for trial, outcome in zip(trials, outcomes):
        if isinstance(outcome, (RunStopped, ToolkitError)):
            _tell(optuna_study, trial, study, outcome, start, len(trials))
        elif isinstance(outcome, BaseException):
            unexpected = unexpected or outcome  # as for a trial alone: left RUNNING, retried once this worker is gone
        else:
            _tell(optuna_study, trial, study, ([batch[trial]], [outcome]), start, len(trials))
    if unexpected is not None:
        raise unexpected


def _tell(optuna_study, trial: optuna.Trial, study: Study, outcome, start: float, group: int = 1):
    """Tell Optuna how a trial ended and print it: `outcome` is (its configs, their RunResults), or
    the RunStopped that pruned it, or the ToolkitError that failed it (a bad configuration or a
    diverged run: recorded, not retried). `group`: the trials it trained with, itself included."""
    if isinstance(outcome, RunStopped):
        finished = optuna_study.tell(trial, state=TrialState.PRUNED)
    elif isinstance(outcome, ToolkitError):
        trial.set_user_attr(names.ERROR, masked(outcome))
        finished = optuna_study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number} failed: {masked(outcome)}", file=sys.stderr)
    else:
        finished = optuna_study.tell(trial, _trial_values(trial, study, *outcome))
    seconds = time.perf_counter() - start
    together = f", trained in a group of {group}" if group > 1 else ""
    print(
        f"{study.name}: trial {trial.number} {trial.params} {finished.state.name} in {seconds:.0f} s{together}",
        flush=True,
    )


def _request(trial: optuna.Trial, study: Study, parent_id: str, config: RunConfig, runs: dict[str, str], callbacks):
    """The run of one seed of a trial (`pipeline.RunRequest`): trained anew, resumed, or its
    finished result taken; its run recorded in `runs` as soon as it starts."""
    from toolkit.pipeline import RunRequest, run_name

    seed = str(config.seed)
    point = trial.user_attrs.get(names.POINT)
    note = (
        f"Trial {trial.number} of study `{study.name}`"
        + (f", grid point `{point}`" if point else "")
        + f", seed {seed}. "
    )

    def started(run_id: str):
        runs[seed] = run_id
        trial.set_user_attr(names.RUN_IDS, dict(runs))
        if len(runs) == 1:
            trial.set_user_attr(names.RUN_ID, run_id)

    return RunRequest(
        config,
        study.name,
        {names.STUDY: study.name, names.TRIAL: str(trial.number), names.PARENT_RUN: parent_id},
        callbacks,
        started,
        run_name(config, study.base),
        note,
        trial.user_attrs.get(names.RESUME, {}).get(seed),
    )


def _trial_values(trial: optuna.Trial, study: Study, configs: list[RunConfig], results) -> float | list[float]:
    """The trial's objective(s): the mean over its seeds, their values and spread kept as user attributes."""
    per_seed = [
        (r.best[names.VAL_RECON], _fid_of_samples(r.final)) if study.multi_objective else (r.best[study.objective()],)
        for r in results
    ]
    columns = list(zip(*per_seed))  # one per objective
    if len(results) > 1:
        shown = [v if study.multi_objective else v[0] for v in per_seed]
        trial.set_user_attr(names.BY_SEED, {str(c.seed): v for c, v in zip(configs, shown)})
        spread = [statistics.stdev(column) for column in columns]
        trial.set_user_attr(names.SEED_SD, spread if study.multi_objective else spread[0])
    means = [statistics.fmean(column) for column in columns]
    return means if study.multi_objective else means[0]


class SeedMeans:
    """What a trial reports to its pruner, its seeds trained one after another: at epoch e of its
    k-th seed, as step (k - 1) · epochs + e, the mean objective at epoch e over its first k seeds
    (a seed that stopped before epoch e counts with its final value). Every trial trains its seeds
    in the same order, so the pruner compares means over as many seeds at the same epoch; with
    one seed a step is an epoch, as in any Optuna study."""

    def __init__(self, trial: optuna.Trial, study: Study):
        self.trial, self.key, self.epochs = trial, study.objective(), study.base.epochs
        self.done: list[tuple[list[float], float]] = []  # finished seeds: objective per epoch, final value

    def reporter(self, seed_index: int):
        def report(epoch: int, metrics: dict[str, float]):
            earlier = [curve[epoch - 1] if epoch <= len(curve) else final for curve, final in self.done]
            mean = (sum(earlier) + metrics[self.key]) / (len(earlier) + 1)
            self.trial.report(mean, seed_index * self.epochs + epoch)
            if self.trial.should_prune():
                raise RunStopped(f"trial {self.trial.number} pruned at epoch {epoch} of seed {seed_index + 1}")

        return report

    def finished(self, result, run_id: str):
        history = reading.metric_histories([run_id], [self.key]).sort_values("step")
        self.done.append((list(history["value"]), result.best[self.key]))


def trial_overrides(trial: optuna.Trial, study: Study) -> dict:
    """The RunConfig fields the trial sets: its grid point's (each also suggested, so that Optuna
    records it as a param) or those its search space suggests."""
    if not study.grid:
        return study.space(trial)
    spread = grid_params(study)
    for name, value in spread[trial.user_attrs[names.POINT]].items():
        _suggest(trial, name, value, [point[name] for point in spread.values() if name in point])
    seeds, queued = study.seed_values(), trial_queue.queued_params(trial)
    seed = (
        trial.suggest_int("seed", seeds[0], max(seeds[-1], queued["seed"])) if "seed" in queued else seeds[0]
    )  # no seed recorded: a trial made before seeds were a dimension
    return {**study.grid[trial.user_attrs[names.POINT]], "seed": seed}


def varied_settings(study: Study) -> set[str]:
    """The RunConfig fields the study's trials set: every grid point's, or those its search space
    suggests to one trial of a throwaway in-memory study (a field suggested only under some
    condition may be missed)."""
    if study.grid:
        return {name for point in study.grid.values() for name in point}
    return set(study.space(optuna.create_study().ask()))


def grid_params(study: Study) -> dict[str, dict]:
    """Each grid point's overrides as Optuna param values (layer sizes as '256,128')."""
    return {
        label: {
            name: ",".join(map(str, value)) if isinstance(value, tuple) else value for name, value in overrides.items()
        }
        for label, overrides in study.grid.items()
    }


def _suggest(trial: optuna.Trial, name: str, value, values: list):
    """Record a grid point's setting as an Optuna param whose distribution spans the grid's
    values: numbers as numbers (on a log scale when they span a factor of 10 or more), so that
    plots put them on an axis, anything else as a category."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    low, high = (min(values), max(values)) if numbers else (None, None)
    if not numbers or low == high:
        trial.suggest_categorical(name, sorted(set(values), key=str))
    elif all(isinstance(v, int) for v in values):
        trial.suggest_int(name, low, high, log=low > 0 and high >= 10 * low)
    else:
        trial.suggest_float(name, low, high, log=low > 0 and high >= 10 * low)


def _fid_of_samples(final: dict[str, float]) -> float:
    """The FID of the model's own samples: the VAE's prior's, the AE's fitted Gaussian's."""
    found = [
        value
        for kind in (names.SAMPLES, names.SAMPLES_GAUSSIAN)
        for key, value in final.items()
        if (fid := names.parse_fid(key)) and fid.kind == kind
    ]
    if not found:
        raise ToolkitError("the multi-objective search needs FID; do not turn it off")
    return found[0]


def _end_abandoned_run(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial whose worker died: its MLflow run, if still RUNNING, ends FAILED saying so. The
    retry resumes that run where it has a checkpoint."""
    for run_id in trial.user_attrs.get(names.RUN_IDS, {}).values():
        if reading.existing_run(run_id).status == "RUNNING":
            writing.Run(run_id).end(
                "FAILED",
                f"the worker of trial {trial.number} died (host {trial.user_attrs.get(names.HOST)}); "
                "its configuration was queued again",
            )
    return _resumable(trial)


def _resumable(trial: optuna.Trial | optuna.trial.FrozenTrial) -> dict:
    """The user attribute that makes a retried trial resume its seeds' runs ({seed: run id}): the
    runs it was itself to resume and those it started (as its user attributes record them), where
    they kept a checkpoint (a run stopped in its first epoch starts over) or finished (the retry
    takes their result). So a retry stopped before its runs went on (still queued in its worker's
    group, or preparing its data) passes them on, not lost."""
    attrs = trial.user_attrs
    runs = {**attrs.get(names.RESUME, {}), **attrs.get(names.RUN_IDS, {})}
    kept = {
        seed: run_id
        for seed, run_id in runs.items()
        if reading.existing_run(run_id).status == "FINISHED" or reading.checkpoint_paths(run_id)
    }
    return {names.RESUME: kept} if kept else {}


def _parent_run_id(optuna_study: optuna.Study, study: Study) -> str:
    """The study's MLflow parent run: created on the first run, found again on a resume. Processes
    of one machine that start the study together take turns (the store lock), so one creates it;
    machines sharing a tracking server can still race if they create it in the same instant."""
    with location.store_lock():
        return _parent_run_id_unlocked(optuna_study, study)


def _parent_run_id_unlocked(optuna_study: optuna.Study, study: Study) -> str:
    if names.PARENT_RUN_ATTR not in optuna_study.user_attrs:
        run = writing.new_run(
            study.name, study.name, {names.STUDY: study.name, names.NOTE: describe(study)}, describe(study)
        )
        run.log_params(study_params(study))
        optuna_study.set_user_attr(names.PARENT_RUN_ATTR, run.run_id)
        if optuna_study.user_attrs[names.PARENT_RUN_ATTR] != run.run_id:  # another machine was faster
            run.delete()
    return optuna_study.user_attrs[names.PARENT_RUN_ATTR]


def describe(study: Study) -> str:
    """The study in a few lines of markdown: the MLflow description of its experiment and parent run."""
    seeds = study.seed_values()
    seeds_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    if study.grid:
        labels = ", ".join(f"`{label}`" for label in study.grid)
        design = f"A grid of {len(study.grid)} points ({labels}), each run with {seeds_text}."
    else:
        design = (
            f"A TPE search aiming for {study.trials} finished trials, pruner {study.pruner}; each trial "
            f"trains {seeds_text} and scores their mean."
        )
    objectives = " and ".join(study.objective_names())
    return (
        f"**Study `{study.name}`.** {study.description.strip()}\n\n{design} Minimises {objectives}. "
        f"Fixed settings: {study.base.describe()}. Each trial is a child run named by the settings "
        "that differ from these."
    )


def study_params(study: Study) -> dict[str, str]:
    """The parent run's params: the study's design, not a model's settings (those differ by trial)."""
    size = {"grid_points": len(study.grid)} if study.grid else {"trials": study.trials}
    return {
        "design": "grid" if study.grid else "search",
        **size,
        "objective": ", ".join(study.objective_names()),
        "pruner": "none" if study.multi_objective else study.pruner,
        "dataset": study.base.dataset,
        "epochs": study.base.epochs,
    }


def _check_settings(optuna_study: optuna.Study, study: Study):
    """A resumed study must keep its fixed settings, or its trials would not be comparable."""
    if any("point" in trial.params for trial in optuna_study.get_trials(deepcopy=False)):
        raise ToolkitError(
            f"study {study.name!r} was made by an earlier toolkit, which recorded grid points as one "
            "param 'point'; pass --name to start it anew with the settings as params"
        )
    if any("seed" in point for point in (study.grid or {}).values()):
        raise ToolkitError(
            f"study {study.name!r}: a grid point sets seed; leave it out: --seeds N runs every point with N seeds"
        )
    if not study.grid:
        _check_search_seeds(optuna_study, study)
    stored = optuna_study.user_attrs.get(names.BASE)
    current = study.base.to_params()
    if stored is None:
        optuna_study.set_user_attr(names.BASE, current)
        return
    stored = RunConfig.from_params(stored).to_params()  # a setting added since takes its default
    changed = [f"{k} {stored.get(k)} -> {v}" for k, v in current.items() if stored.get(k) != v]
    if changed:
        raise ToolkitError(
            f"study {study.name!r} already exists with other settings ({'; '.join(changed)}); "
            "rerun with its settings to resume it, or pass --name to start a new study"
        )


def _check_search_seeds(optuna_study: optuna.Study, study: Study):
    """A search's trials are scored by their mean over seeds: all of them over as many. (A grid
    may grow: its seeds are trials of their own.)"""
    count, stored = len(study.seed_values()), optuna_study.user_attrs.get(names.SEEDS)
    if stored is None:
        optuna_study.set_user_attr(names.SEEDS, count)
    elif stored != count:
        raise ToolkitError(
            f"study {study.name!r} is a search whose trials train {stored} seed(s) each; rerun it "
            f"with --seeds {stored}, or pass --name to start a search with {count}"
        )
