"""The Optuna queue behind a study: its storage, atomic pops of queued trials, the heartbeat, and
the retry of trials whose worker died, through Optuna's public API (`ask`, `tell`, `enqueue_trial`,
the storage's heartbeat calls). Two things have none and sit in one small function each:
`_storage_of` (the storage a study was opened on, for its heartbeat) and `_legacy_queued_params`
(the params of trials queued before they were recorded as a user attribute). It knows nothing of
MLflow: what happens to an abandoned trial's tracked run is the `on_abandoned` hook's business.

- Grid points are queued once and popped atomically, so no point is evaluated twice, even by
  workers on several machines.
- A trial whose worker died (its heartbeat went stale, or its process is gone on this host) is
  marked FAIL and its configuration queued again.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from toolkit import names
from toolkit.commands import interrupts_held
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
        storage=_open_storage(url, on_abandoned),
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


def _open_storage(url: str, on_abandoned: Abandoned, attempts: int = 3) -> optuna.storages.RDBStorage:
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
                storage = PatientStorage(  # a server's restart leaves dead connections: pinged first
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


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage, each of its calls on studies and trials tried again while the database
    cannot be reached (a server restarting), for up to STORAGE_WAIT_S seconds; then the error goes
    up. The one place a study waits out its storage: taking a trial, its params, attributes and
    reports, telling it, all go through it. A heartbeat is not waited for (a beat missed while the
    server is away is harmless), nor a call made inside another (the outer one waits). Ctrl-C and
    SIGTERM take effect between calls, not inside one (`commands.interrupts_held`)."""


_WAITING = threading.local()  # whether this thread is inside a patient call already


def _patient(method: Callable) -> Callable:
    @functools.wraps(method)
    def waiting(self, *args, **kwargs):
        if getattr(_WAITING, "active", False):
            return method(self, *args, **kwargs)
        _WAITING.active, deadline = True, time.time() + STORAGE_WAIT_S
        try:
            while True:
                try:
                    with interrupts_held():  # cut short, a call's session could keep the database locked
                        return method(self, *args, **kwargs)
                except UNREACHABLE:
                    if time.time() > deadline:
                        raise
                    time.sleep(2)
        finally:
            _WAITING.active = False

    return waiting


# Optuna's cache in front of an RDBStorage (`optuna.storages._CachedStorage`, which every study on
# one uses) calls these private methods of it directly: they wait and hold interrupts as the public
# ones do. Without them a Ctrl-C landing in a read of the trials left SQLite's write lock held,
# and the worker's next call (queueing its trial again) waited two minutes on its own lock.
_CALLED_BY_THE_CACHE = (
    "_create_new_trial",
    "_set_trial_param",
    "_get_best_trial_id",
    "_get_trials",
    "_get_stale_trial_ids",
)
for _name, _method in vars(optuna.storages.BaseStorage).items():  # its public interface, as RDBStorage implements it
    if callable(_method) and not _name.startswith("_") and _name != "remove_session":
        setattr(PatientStorage, _name, _patient(getattr(optuna.storages.RDBStorage, _name)))
for _name in _CALLED_BY_THE_CACHE:
    setattr(PatientStorage, _name, _patient(getattr(optuna.storages.RDBStorage, _name)))


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
    optuna_study.enqueue_trial(params, user_attrs={names.POINT: label, names.QUEUED: params}, skip_if_exists=True)


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
    """A queued trial, taken with `Study.ask`, which pops the oldest waiting one atomically; None
    when none waits. Where another worker took the last one first, `ask` made a new trial: it is
    failed as surplus. A grid point queued twice (by two machines at once) runs once."""
    fail_abandoned(optuna_study)
    while optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = _asked(optuna_study)
        frozen = _frozen(optuna_study, trial)
        if names.POINT not in trial.user_attrs and not configured_params(frozen):
            trial.set_user_attr(names.SURPLUS, True)  # not a queued one: another worker took the last
            optuna_study.tell(trial, state=TrialState.FAIL)
            return None
        if grid and (earlier := _duplicate_of(optuna_study, frozen)) is not None:
            trial.set_user_attr("duplicate_of", earlier)
            optuna_study.tell(trial, state=TrialState.FAIL)
            continue
        return trial
    return None


def _asked(optuna_study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():  # the heartbeat is recorded by `trial_heartbeat`, not by Study.optimize
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        return optuna_study.ask()


def _frozen(optuna_study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The stored state of a running trial (its user attributes as queued)."""
    [frozen] = [t for t in optuna_study.get_trials(deepcopy=False) if t.number == trial.number]
    return frozen


def _ask(optuna_study: optuna.Study, budget: int) -> optuna.Trial | None:
    while _trials_under_way(optuna_study) < budget:
        trial = _asked(optuna_study)
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
    return trial.params or trial.user_attrs.get(names.QUEUED) or _legacy_queued_params(trial)


def queued_params(trial: optuna.Trial) -> dict:
    """The params a running trial was enqueued with (a grid point's settings and seed), {} for a sampled one."""
    return trial.user_attrs.get(names.QUEUED) or _legacy_queued_params(_frozen(trial.study, trial))


def _legacy_queued_params(trial: FrozenTrial) -> dict:
    """The params of a trial queued before the toolkit recorded them as the user attribute
    `names.QUEUED` (a study begun with an older toolkit and resumed): Optuna keeps the params given
    to `enqueue_trial` in the system attribute `fixed_params`, which it does not document."""
    return trial.system_attrs.get("fixed_params", {})


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
    storage = _storage_of(optuna_study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(optuna_study.study_name), trial.number
    )
    return Heartbeat(lambda: storage.record_heartbeat(trial_id), HEARTBEAT_S, UNREACHABLE)


def _storage_of(optuna_study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on. Optuna records heartbeats itself only inside
    `Study.optimize`, which a study's workers do not use (they ask and tell); it has no public
    way from a study to its storage."""
    return optuna_study._storage


def fail_abandoned(optuna_study: optuna.Study):
    """Fail the running trials whose worker is gone: a stale heartbeat (any machine) or, without
    waiting for the grace period, a dead process on this host. Each goes to the storage's
    abandoned-trial callback (the `on_abandoned` hook, then a retry)."""
    with _no_experimental_warnings():
        optuna.storages.fail_stale_trials(optuna_study)
    abandoned = _storage_of(optuna_study).get_heartbeat_stale_trial_callback()
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(names.HOST) == HOST and not process_alive(trial.user_attrs.get(names.PID)):
            try:
                abandoned(optuna_study, optuna_study.tell(trial.number, state=TrialState.FAIL))
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # finished meanwhile, or failed by another worker first


def requeue_interrupted(optuna_study: optuna.Study, trial: optuna.Trial, retry_attrs: dict):
    """End an interrupted trial FAIL and queue its configuration again, to run on the next resume,
    with the user attributes `retry_attrs`."""
    retry(optuna_study, optuna_study.tell(trial, state=TrialState.FAIL), retry_attrs)


def retry(optuna_study: optuna.Study, trial: FrozenTrial, retry_attrs: dict):
    """Queue the trial's configuration again (a grid point, or a search's sampled values), with
    its grid point and the user attributes `retry_attrs` (e.g. what the retry resumes from)."""
    kept = {key: trial.user_attrs[key] for key in (names.POINT,) if key in trial.user_attrs}
    optuna_study.enqueue_trial(
        configured_params(trial),
        user_attrs={
            names.RETRY_OF: trial.user_attrs.get(names.RETRY_OF, trial.number),
            names.QUEUED: configured_params(trial),
            **kept,
            **retry_attrs,
        },
    )


@contextmanager
def _no_experimental_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
