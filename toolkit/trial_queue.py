"""The Optuna queue behind a study: its storage, atomic pops of queued trials, the heartbeat, and
the retry of trials whose worker died. This is the one module that uses Optuna's storage
internals (`Study._storage`); it knows nothing of MLflow: what happens to an abandoned trial's
tracked run is the `on_abandoned` hook's business.

- Grid points are queued once and popped atomically, so no point is evaluated twice, even by
  workers on several machines.
- A trial whose worker died (its heartbeat went stale, or its process is gone on this host) is
  marked FAIL and its configuration queued again.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from toolkit import names
from toolkit.machine import HOST, Heartbeat, file_lock, process_alive

HEARTBEAT_S, GRACE_S = 10, 30
STORAGE_WAIT_S = 120  # how long a worker waits for an unreachable storage before it gives up
# What Optuna's storage raises while its database server cannot be reached.
UNREACHABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, optuna.exceptions.StorageInternalError)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# Told of a trial whose worker died, before it is queued again; returns user attributes for the retry.
Abandoned = Callable[[FrozenTrial], dict]


def open_queue(
    name: str,
    url: str,
    objectives: list[str],
    pruner: optuna.pruners.BasePruner,
    sampler: optuna.samplers.BaseSampler,
    on_abandoned: Abandoned,
) -> optuna.Study:
    """Create or load the study `name` in the storage at `url`, with our heartbeat; it minimises
    the `objectives`, named so that reports and dashboards can say what they are."""
    optuna_study = optuna.create_study(
        storage=_storage(url, on_abandoned),
        study_name=name,
        load_if_exists=True,
        pruner=pruner,
        directions=["minimize"] * len(objectives),
        sampler=sampler,
    )
    if optuna_study.metric_names is None:  # a study made before objectives were named gets them on its next run
        with _no_experimental_warnings():
            optuna_study.set_metric_names(objectives)
    return optuna_study


def _storage(url: str, on_abandoned: Abandoned, attempts: int = 3) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`, with our heartbeat. Processes that create a fresh database at the
    same moment race on its schema: on one machine (SQLite) they take turns under a file lock
    beside the database; across machines (an error on a table or on alembic_version) they try again."""
    sqlite = url.startswith("sqlite:///")

    def abandoned(optuna_study: optuna.Study, trial: FrozenTrial):
        retry(optuna_study, trial, on_abandoned(trial))

    for attempt in range(attempts):
        try:
            with (
                _no_experimental_warnings(),
                file_lock(Path(url.removeprefix("sqlite:///") + ".lock")) if sqlite else nullcontext(),
            ):
                storage = optuna.storages.RDBStorage(  # a server's restart leaves dead connections: pinged first
                    url,
                    engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=abandoned,
                )
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


def enqueue_point(optuna_study: optuna.Study, label: str, params: dict):
    """Queue a grid point, with its settings as the params the trial will suggest, unless a trial
    with these params is already queued, running or done."""
    optuna_study.enqueue_trial(params, user_attrs={names.POINT: label}, skip_if_exists=True)


def next_trial(optuna_study: optuna.Study, grid: bool, budget: int) -> optuna.Trial | None:
    """A queued trial (a grid point or a retry), or for a search a new one while fewer than
    `budget` trials are finished or running; None when there is nothing left to do. The trial is
    marked as run by this process, so a dead worker is recognised."""
    trial = _pop(optuna_study, grid) or (None if grid else _ask(optuna_study, budget))
    if trial is not None:
        trial.set_user_attr(names.HOST, HOST)
        trial.set_user_attr(names.PID, os.getpid())
    return trial


def _pop(optuna_study: optuna.Study, grid: bool) -> optuna.Trial | None:
    fail_abandoned(optuna_study)
    for waiting in optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not optuna_study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it
        if grid and (earlier := _duplicate_of(optuna_study, waiting)) is not None:
            optuna_study._storage.set_trial_user_attr(waiting._trial_id, "duplicate_of", earlier)
            optuna_study._storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
            continue
        return optuna.Trial(optuna_study, waiting._trial_id)
    return None


def _ask(optuna_study: optuna.Study, budget: int) -> optuna.Trial | None:
    while _trials_under_way(optuna_study) < budget:
        with warnings.catch_warnings():  # the heartbeat is recorded by `heartbeat`, not by Study.optimize
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
            trial = optuna_study.ask()
        if _trials_under_way(optuna_study, before=trial.number) < budget:
            return trial
        trial.set_user_attr(names.SURPLUS, True)  # another worker asked at the same moment and filled the budget
        optuna_study.tell(trial, state=TrialState.FAIL)
    return None


def _trials_under_way(optuna_study: optuna.Study, before: int | None = None) -> int:
    """Trials finished or running (numbered below `before`, when given): what counts towards a search's budget."""
    taken = optuna_study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    return sum(before is None or trial.number < before for trial in taken)


def configured_params(trial: FrozenTrial) -> dict:
    """The trial's params: those it suggested, or while it waits in the queue those it was enqueued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def queued_params(trial: optuna.Trial) -> dict:
    """The params a running trial was enqueued with (a grid point's settings and seed), {} for a sampled one."""
    return trial.study._storage.get_trial(trial._trial_id).system_attrs.get("fixed_params", {})


def _duplicate_of(optuna_study: optuna.Study, trial: FrozenTrial) -> int | None:
    """The number of an earlier trial, not failed, of the same grid point and seed. Two machines
    that queue a grid at the same moment can both add a point (Optuna's skip_if_exists checks,
    then inserts); the earliest copy is the one that runs."""
    point, seed = trial.user_attrs.get(names.POINT), configured_params(trial).get("seed")
    return next(
        (
            other.number
            for other in optuna_study.get_trials(deepcopy=False)
            if other.number < trial.number
            and other.state != TrialState.FAIL
            and other.user_attrs.get(names.POINT) == point
            and configured_params(other).get("seed") == seed
        ),
        None,
    )


def trial_heartbeat(optuna_study: optuna.Study, trial: optuna.Trial) -> Heartbeat:
    """Records the trial's heartbeat every HEARTBEAT_S seconds while it runs; a storage server
    down for a moment misses beats, not the trial."""
    return Heartbeat(lambda: optuna_study._storage.record_heartbeat(trial._trial_id), HEARTBEAT_S, UNREACHABLE)


def patiently(call: Callable, *args, **kwargs):
    """`call(*args, **kwargs)`, tried again while the storage is unreachable (a database server
    restarting), for up to STORAGE_WAIT_S seconds; then its error goes up. Every storage call of a
    worker goes through it: taking a trial, its params and attributes, its reports, telling it."""
    deadline = time.time() + STORAGE_WAIT_S
    while True:
        try:
            return call(*args, **kwargs)
        except UNREACHABLE:
            if time.time() > deadline:
                raise
            time.sleep(2)


def fail_abandoned(optuna_study: optuna.Study):
    """Fail the running trials whose worker is gone: a stale heartbeat (any machine) or, without
    waiting for the grace period, a dead process on this host. Each goes to the storage's
    abandoned-trial callback (the `on_abandoned` hook, then a retry)."""
    with _no_experimental_warnings():
        optuna.storages.fail_stale_trials(optuna_study)
    abandoned = optuna_study._storage.get_heartbeat_stale_trial_callback()
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(names.HOST) == HOST and not process_alive(trial.user_attrs.get(names.PID)):
            try:
                if optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    abandoned(optuna_study, trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue


def stop(optuna_study: optuna.Study, trial: optuna.Trial, carry: dict):
    """End an interrupted trial FAIL and queue its configuration again, to run on the next resume,
    with the user attributes `carry`."""
    optuna_study.tell(trial, state=TrialState.FAIL)
    retry(optuna_study, optuna_study._storage.get_trial(trial._trial_id), carry)


def retry(optuna_study: optuna.Study, trial: FrozenTrial, carry: dict):
    """Queue the trial's configuration again (a grid point, or a search's sampled values), with
    its grid point and the user attributes `carry` (e.g. what the retry resumes from)."""
    kept = {key: trial.user_attrs[key] for key in (names.POINT,) if key in trial.user_attrs}
    optuna_study.enqueue_trial(
        configured_params(trial),
        user_attrs={names.RETRY_OF: trial.user_attrs.get(names.RETRY_OF, trial.number), **kept, **carry},
    )


@contextmanager
def _no_experimental_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
