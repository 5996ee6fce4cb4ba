"""The tracking store: `mlruns/mlflow.db` (SQLite) plus `mlruns/artifacts/`, or whatever
`MLFLOW_TRACKING_URI` names (an `mlflow server` for many machines); the studies' Optuna storage
beside it; and reading it back: runs as one DataFrame, metric histories, artifacts, models."""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import unquote

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from toolkit import UI_HOST, UI_PORT, ToolkitError, interrupts_held, names, path_in
from toolkit.config import RunConfig
from toolkit.machine import HOST, PROCESS_TABLE, Heartbeat, file_lock, process_alive
from toolkit.storage_errors import cannot_open_store

STORE_DIR = Path("mlruns")
RUN_ID = re.compile(r"[0-9a-f]{32}")
EXPERIMENT_NAME_MAX = 256  # MLflow's experiments.name column, VARCHAR(256) on PostgreSQL (its own check allows 500)
HEARTBEAT_S, STALE_S = 60, 600  # how often it says so; how long a run of another machine may be silent
TRAIN_NOTE = "Runs of `toolkit train`; each run's description gives its settings."
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading cached references is routine
# MLflow logs every database error with its traceback before raising it; the error reaches the
# command line anyway, as one line when it is the machine's (a full disk) and whole when a bug.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def optuna_storage() -> str:
    """The studies' default Optuna storage: its own SQLite file in the store directory (never
    MLflow's database: both use Alembic's `alembic_version` table)."""
    return f"sqlite:///{(STORE_DIR / 'optuna.db').resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (MLflow's or Optuna's), None for any other URL."""
    return Path(unquote(url.removeprefix("sqlite:///"))) if url.startswith("sqlite:///") else None


def existing_optuna_storage(url: str | None) -> str:
    """The Optuna storage to read (`url`, default the store's own): a local file that is not there
    is an error, not a new storage."""
    url = url or optuna_storage()
    if (database := sqlite_path(url)) is not None and not database.is_file():
        raise ToolkitError(f"no Optuna storage at {url} yet: run a study first (make demo), or pass --storage URL")
    return url


def artifact_root(uri: str) -> Path | None:
    """Artifacts of a local SQLite store go beside the database; a server chooses its own."""
    database = sqlite_path(uri)
    return None if database is None else database.resolve().parent / "artifacts"


def client() -> MlflowClient:
    uri = tracking_uri()
    _opened(uri)
    return MlflowClient(uri)


@contextmanager
def store_lock():
    """While held, no other process of this machine opens the local store for the first time,
    creates a study's parent run or a FID reference in it. A no-op for a tracking server, which
    serialises its own writes."""
    root = artifact_root(tracking_uri())
    if root is None:
        yield
        return
    with file_lock(root.parent / ".lock"):
        yield


@functools.cache
def _opened(uri: str) -> None:
    """Open the store once per process: under the store lock, so that two processes starting on a
    fresh store do not both create (or migrate) its tables, which breaks the database for good;
    then end the runs that processes of this machine left RUNNING when they died."""
    if artifact_root(uri):
        artifact_root(uri).mkdir(parents=True, exist_ok=True)
    with store_lock():
        if artifact_root(uri):
            _relocate(artifact_root(uri).parent)
        try:
            mlflow_client = MlflowClient(uri)
            experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
        except Exception as exc:  # a wrong URI fails deep inside SQLAlchemy; say which setting to fix
            raise cannot_open_store(uri, exc) from None
        _end_orphans(mlflow_client, experiments)


# Where MLflow's database records absolute artifact paths, for `_relocate`.
PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def _relocate(directory: Path):
    """Point a local store that was moved or copied to `directory` at its own artifacts. MLflow
    records absolute artifact paths and has no call to change them, so they are rewritten here, in
    its database (the one place the toolkit writes MLflow's schema): without this a copy would write
    new artifacts into the original's folder, and a moved store would lose its artifacts."""
    database = directory / "mlflow.db"
    if not database.is_file() or database.stat().st_size == 0:
        return
    with closing(sqlite3.connect(database, timeout=60)) as db, db:
        try:
            old = _recorded_directory(db)
        except sqlite3.DatabaseError:
            return  # not a store yet, or a damaged one: opening it says which
        if old is None or old == str(directory):
            return
        columns = {table: {row[1] for row in db.execute(f"pragma table_info({table})")} for table, _ in PATH_COLUMNS}
        for table, column in PATH_COLUMNS:
            if column in columns[table]:
                db.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) where substr({column}, 1, ?) = ?",
                    (str(directory), len(old) + 1, len(old) + 1, old + "/"),
                )
    print(f"note: this store was at {old}; its artifact locations now point to {directory}", file=sys.stderr)


def _recorded_directory(db: sqlite3.Connection) -> str | None:
    """The store directory the database's experiments were made in: the toolkit puts the artifacts
    of experiment NAME in <store directory>/artifacts/NAME."""
    for name, location in db.execute("select name, artifact_location from experiments"):
        suffix = f"/artifacts/{name}"
        if location and location.endswith(suffix):
            return location.removesuffix(suffix)
    return None


def _end_orphans(mlflow_client: MlflowClient, experiments: list[str]):
    """Mark FAILED the RUNNING runs whose process is gone (killed with SIGKILL, out of memory,
    power cut), and say so in one line: on this machine a process that no longer exists, on
    another one a heartbeat older than STALE_S. Runs of other machines without a heartbeat (made by
    an older toolkit) are left alone."""
    running = (
        mlflow_client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000) if experiments else []
    )
    orphans = {run.info.run_id: (run, why) for run in running if (why := _orphaned(run.data.tags))}
    for run, why in orphans.values():
        Run(mlflow_client, run.info.run_id).end("FAILED", f"{why} while the run was RUNNING")
    if orphans:
        listed = ", ".join(f"{run.info.run_name} ({run.info.run_id[:8]})" for run, _ in list(orphans.values())[:5])
        more = f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
        print(
            f"note: marked {len(orphans)} run(s) FAILED whose process had died: {listed}{more}; "
            "`toolkit train --resume RUN_ID` continues one (a study resumes its own when rerun)",
            file=sys.stderr,
        )


def _orphaned(tags: dict[str, str]) -> str | None:
    """Why a RUNNING run with these tags has no process left, or None when it may still have one:
    its pid is looked up only in the process table it was started in (a host name alone does not
    name one: containers and cloned machines share them), any other run is judged by its heartbeat."""
    host, pid = tags.get(names.HOST), tags.get(names.PID, "0")
    if PROCESS_TABLE is not None and tags.get(names.PROCESS_TABLE) == PROCESS_TABLE:
        return None if process_alive(int(pid)) else f"its process {pid} on {host} died"
    silent = time.time() - float(tags.get(names.HEARTBEAT, "inf"))
    return f"its process {pid} on {host} sent no heartbeat for {silent / 60:.0f} minutes" if silent > STALE_S else None


def run_heartbeat(mlflow_client: MlflowClient, run_id: str) -> Heartbeat:
    """While a run is open, its tag `heartbeat` (seconds since the epoch) is renewed every
    HEARTBEAT_S seconds, so that other machines sharing the store can tell a dead run from a live one."""
    return Heartbeat(
        lambda: mlflow_client.set_tag(run_id, names.HEARTBEAT, f"{time.time():.0f}"), HEARTBEAT_S, (Exception,)
    )


def process_tags() -> dict[str, str]:
    """The tags that tell which process a run belongs to, for `_end_orphans`."""
    return {
        names.HOST: HOST,
        names.PID: str(os.getpid()),
        **({names.PROCESS_TABLE: PROCESS_TABLE} if PROCESS_TABLE else {}),
    }


def use_store_globally():
    """Point MLflow's global (fluent) API at the store. Logging a model, resolving `runs:/…/model`
    and `mlflow.search_runs` go through it, and parts of them ignore a `tracking_uri` argument
    (a `runs:/` download looks the run up in the global store)."""
    mlflow.set_tracking_uri(tracking_uri())


def ui_url() -> str:
    """The MLflow UI of the store: the tracking server itself, or `toolkit ui` for a local store."""
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://{UI_HOST}:{UI_PORT}"


def run_url(experiment: str, run_id: str) -> str:
    return f"{ui_url()}/#/experiments/{experiment}/runs/{run_id}"


def new_experiment_location(name: str) -> str | None:
    """Where a new experiment `name` keeps its artifacts (None: a tracking server chooses), the name
    refused in one line when MLflow could not hold it or when it leads outside the store (`path_in`)."""
    if not name.strip() or len(name) > EXPERIMENT_NAME_MAX:
        raise ToolkitError(
            f"experiment {name[:40]!r}: a name needs 1 to {EXPERIMENT_NAME_MAX} characters, not only spaces"
        )
    root = artifact_root(tracking_uri())
    return str(path_in(root, name, "experiment")) if root else None


def experiment_id(mlflow_client: MlflowClient, name: str, description: str = TRAIN_NOTE) -> str:
    """The id of the experiment `name`, created with `description` when it does not exist yet."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise ToolkitError(
            f"experiment {name!r} was deleted in MLflow: restore it (mlflow experiments restore "
            f"--experiment-id {found.experiment_id}) or choose another --experiment"
        )
    if found is not None:
        return found.experiment_id
    location = new_experiment_location(name)
    tags = {names.NOTE: description, "mlflow.experimentKind": "custom_model_development"}
    try:
        return mlflow_client.create_experiment(name, artifact_location=location, tags=tags)
    except Exception:  # another worker created it first
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_tags() -> dict[str, str]:
    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return {
        names.GIT_COMMIT: commit,
        "mlflow.source.git.commit": commit,
        # changed tracked files other than the committed reports, which the study scripts rewrite
        names.GIT_DIRTY: str(
            bool(git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)reports"))
        ),
    }


def _whole(write):
    """A write to the store that Ctrl-C or SIGTERM does not cut in half (`interrupts_held`)."""

    @functools.wraps(write)
    def held(*args, **kwargs):
        with interrupts_held():
            return write(*args, **kwargs)

    return held


class Run:
    """One MLflow run, written through the client (no global 'active run' state); each write
    whole, an interrupt taking effect after it."""

    def __init__(self, mlflow_client: MlflowClient, run_id: str):
        self.client, self.run_id = mlflow_client, run_id

    @_whole
    def log_params(self, params: dict[str, str]):
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    @_whole
    def log_metrics(self, metrics: dict[str, float], step: int = 0):
        """All metrics of one step in a single call."""
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_epoch(self, epoch: int, metrics: dict[str, float]):
        """Trainer callback: the epoch's metrics, with the epoch as the step."""
        self.log_metrics(metrics, step=epoch)

    @_whole
    def set_tags(self, tags: dict[str, str]):
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_whole
    def log_figure(self, fig, name: str):
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, fig, f"{names.FIGURES}/{name}.png")
        plt.close(fig)

    @_whole
    def log_json(self, data, name: str):
        self.client.log_dict(self.run_id, data, name)

    @_whole
    def log_text(self, text: str, name: str):
        self.client.log_text(self.run_id, text, name)

    @_whole
    def log_bytes(self, data: bytes, path: str):
        """`data` as the artifact `path` (e.g. `images.npz` or `checkpoint/epoch-0003.pt`)."""
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(data)
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), folder or None)

    @_whole
    def save_checkpoint(self, state: dict):
        """Keep a training state (`train.training_state`) as `checkpoint/epoch-NNNN.pt`, then remove
        the older ones: a process killed while writing leaves the previous checkpoint whole."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.log_bytes(buffer.getvalue(), f"{names.CHECKPOINTS}/epoch-{len(state['history']):04d}.pt")
        for older in checkpoint_paths(self.client, self.run_id)[1:]:
            self._artifacts.delete_artifacts(older)

    @_whole
    def drop_checkpoints(self):
        """Remove the run's checkpoints: once it has finished its logged model is what remains."""
        self._artifacts.delete_artifacts(names.CHECKPOINTS)

    @functools.cached_property
    def _artifacts(self):
        """The run's artifact repository, for deleting: MLflow's client has no public call for that."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri)

    def logged_steps(self, key: str) -> int:
        """The highest step logged for the metric `key`, 0 when none."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)

    @_whole
    def end(self, status: str, reason: str | None = None):
        """Mark the run FINISHED, FAILED or KILLED; a reason for ending otherwise is kept as the
        tag `end_reason`, for reports and the UI."""
        if reason:
            self.client.set_tag(self.run_id, names.END_REASON, reason[:1000])
        elif status == "FINISHED" and names.END_REASON in self.client.get_run(self.run_id).data.tags:
            self.client.delete_tag(
                self.run_id, names.END_REASON
            )  # an earlier end (resumed since, or judged dead) was not the last
        self.client.set_terminated(self.run_id, status)

    @_whole
    def log_model(self, model, config: RunConfig):
        """Log the model as an MLflow PyTorch model named `model` (it appears under the run's
        Logged models, for the UI and the registry), with what `load_model` reads beside it in
        `extra_files/`: the RunConfig as typed JSON and the weights as a state dict. A resumed run
        keeps the model it had logged before it was stopped, or replaces one whose logging was cut short."""
        import mlflow.pytorch
        import torch  # here, not at the top: reading the store (reports) needs no torch

        experiment = self.client.get_run(self.run_id).info.experiment_id
        for earlier in self.client.search_logged_models([experiment], f"source_run_id = '{self.run_id}'"):
            if earlier.status == LoggedModelStatus.READY:
                return  # logged whole before the run was interrupted; a resumed run's model is the same
            self.client.delete_logged_model(earlier.model_id)  # cut short: logged anew
        logged = self.client.create_logged_model(
            experiment, name="model", source_run_id=self.run_id, model_type=config.model, params=config.to_params()
        )
        use_store_globally()
        with tempfile.TemporaryDirectory() as tmp, _quiet("mlflow.pytorch"):
            (Path(tmp) / names.CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=1))
            torch.save(model.state_dict(), Path(tmp) / names.WEIGHTS_FILE)
            mlflow.pytorch.log_model(
                model,
                name="model",
                run_id=self.run_id,
                model_id=logged.model_id,
                serialization_format="pickle",
                extra_files=[str(Path(tmp) / name) for name in (names.CONFIG_FILE, names.WEIGHTS_FILE)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )


@contextmanager
def _quiet(logger: str):
    """Silence one logger's warnings: mlflow.pytorch warns on every pickled model, which the
    toolkit's models are (its pt2 alternative would trace the sampling in `forward`)."""
    import logging

    level = logging.getLogger(logger).level
    logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger(logger).setLevel(level)


class RunStopped(Exception):
    """Raised inside a run to end it early on purpose (a pruned trial): the run ends KILLED."""


@contextmanager
def start_run(experiment: str, run_name: str, tags: dict[str, str] | None = None):
    """Yield a new `Run`; it ends FINISHED, KILLED (Ctrl-C, SIGTERM, RunStopped) or FAILED (any other error)."""
    mlflow_client = client()
    with interrupts_held():
        run = mlflow_client.create_run(
            experiment_id(mlflow_client, experiment),
            run_name=run_name,
            tags={**git_tags(), **process_tags(), **(tags or {})},
        )
    with _ending(Run(mlflow_client, run.info.run_id)) as handle:
        yield handle


@contextmanager
def continue_run(run_id: str, tags: dict[str, str] | None = None):
    """Yield an existing run, RUNNING again, that ends like one from `start_run` (a resumed study's
    parent, a resumed training run); why it ended before is forgotten."""
    mlflow_client = client()
    mlflow_client.update_run(run_id, status="RUNNING")
    if names.END_REASON in mlflow_client.get_run(run_id).data.tags:
        mlflow_client.delete_tag(run_id, names.END_REASON)
    mlflow_client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**(tags or {}), **process_tags()}.items()])
    with _ending(Run(mlflow_client, run_id)) as handle:
        yield handle


@contextmanager
def _ending(handle: Run):
    beating = run_heartbeat(handle.client, handle.run_id)
    try:
        yield handle
    except KeyboardInterrupt as exc:
        handle.end("KILLED", f"interrupted ({str(exc) or 'Ctrl-C'})")
        raise
    except RunStopped as exc:
        handle.end("KILLED", str(exc))
        raise
    except BaseException as exc:
        handle.end("FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    finally:
        beating.stop()
    handle.end("FINISHED")


def load_model(run_id: str, device=None):
    """The model a run logged, with its weights, in eval mode, and its RunConfig: built from the
    typed config and loaded from the state dict with `weights_only=True`, so nothing in the store
    runs code here (the pickled MLflow model beside them is never unpickled). Runs logged before
    models were MLflow models have the same two files as plain artifacts under `model/`."""
    import torch  # here, not at the top: reading the store (reports) needs no torch

    from toolkit.models import build, default_device

    existing_run(run_id)  # the store opened as commands open it: a moved or copied one reads its own files
    use_store_globally()  # a logged model's files are found through the global store (see there)
    for folder in ("model/extra_files", "model"):
        try:
            config_json = read_artifact(run_id, f"{folder}/{names.CONFIG_FILE}")
        except ArtifactMissing:
            continue
        try:
            weights = read_artifact(run_id, f"{folder}/{names.WEIGHTS_FILE}")
        except ArtifactMissing:
            raise ToolkitError(
                f"run {run_id} logged its model only as a pickle, which the toolkit does not load "
                "(unpickling runs whatever code the file holds); retrain the run, or load it with "
                "mlflow.pytorch.load_model(..., weights_only=False) if you trust everyone who can "
                "write to the store"
            ) from None
        try:
            config = RunConfig.from_params(json.loads(config_json))
            device = device or default_device()
            model = build(config, device)
            model.load_state_dict(torch.load(io.BytesIO(weights), map_location=device, weights_only=True))
        except (ValueError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise ToolkitError(
                f"run {run_id}: its model files are damaged or not a toolkit model's "
                f"({type(exc).__name__}); retrain the run"
            ) from None
        return model.eval(), config
    raise ToolkitError(
        f"run {run_id} has no model in the store: it has not finished (or was stopped before "
        f"logging it); `toolkit train --resume {run_id}` finishes it"
    )


def existing_store():
    """For what only reads the store: a local store that is not there is an error, not a new store."""
    root = artifact_root(tracking_uri())
    if root is not None and not (root.parent / "mlflow.db").is_file():
        raise ToolkitError(
            f"no tracking store at {root.parent / 'mlflow.db'}: run from the directory that holds "
            "mlruns/, or set MLFLOW_TRACKING_URI to the store"
        )


def existing_experiment(name: str):
    """The experiment called `name`, or a ToolkitError naming the experiments the store does have."""
    existing_store()
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        known = sorted(e.name for e in mlflow_client.search_experiments() if e.name != "Default")
        raise ToolkitError(
            f"no experiment {name!r} in the store {tracking_uri()}; it has: {', '.join(known) or 'none'}"
        )
    return found


def load_runs(experiment: str, parent: str | None = None) -> pd.DataFrame:
    """Every run of an experiment (only the children of `parent`, when given) as one DataFrame:
    run_id, status, start_time, params.*, metrics.* (final values), tags.*. `mlflow.search_runs`
    pages through the store, so there is no cap on the number of runs."""
    found = existing_experiment(experiment)
    use_store_globally()
    query = f"tags.`{names.PARENT_RUN}` = '{checked_run_id(parent, '--parent')}'" if parent else ""
    return mlflow.search_runs([found.experiment_id], query, max_results=None)


def checked_run_id(run_id: str, what: str) -> str:
    """A run id a user gave, refused unless it is one (32 hexadecimal digits): ids go into search
    filters, which are strings, so nothing else may reach them."""
    if not RUN_ID.fullmatch(run_id):
        raise ToolkitError(f"{what} {run_id!r}: not a run id (32 hexadecimal digits, as the MLflow UI shows them)")
    return run_id


def existing_run(run_id: str):
    """The MLflow run `run_id`, or a ToolkitError naming the store that lacks it."""
    checked_run_id(run_id, "run")
    existing_store()
    try:
        return client().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise ToolkitError(f"no run {run_id} in the store {tracking_uri()}") from None


def final_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of one run."""
    return existing_run(run_id).data.metrics


def metric_histories(run_ids, keys) -> pd.DataFrame:
    """The per-step values of `keys` for each run, long form: run_id, key, step, value."""
    mlflow_client = client()
    rows = [
        (run_id, key, m.step, m.value)
        for run_id in run_ids
        for key in keys
        for m in mlflow_client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def log_directory(run_id: str, directory: Path, artifact_path: str):
    """Log a directory's files as artifacts of a run, e.g. a study's report on its parent run."""
    client().log_artifacts(run_id, str(directory), artifact_path)


def set_note(run_id: str, text: str):
    """Replace the description MLflow shows for a run (cut to the 8,000 characters a tag holds)."""
    client().set_tag(run_id, names.NOTE, text if len(text) <= 8000 else text[:7990] + "\n\n(cut)")


class ArtifactMissing(ToolkitError):
    """A run has no artifact at the path asked for."""


def read_artifact(run_id: str, path: str) -> bytes:
    """The bytes of one artifact of a run."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client().download_artifacts(run_id, path, tmp)).read_bytes()
        except Exception as exc:
            raise ArtifactMissing(f"run {run_id} has no artifact {path} ({type(exc).__name__})") from None


def checkpoint_paths(mlflow_client: MlflowClient, run_id: str) -> list[str]:
    """The run's checkpoint artifacts, newest first."""
    return sorted((f.path for f in mlflow_client.list_artifacts(run_id, names.CHECKPOINTS)), reverse=True)


def load_checkpoint(run_id: str) -> dict:
    """The newest readable training state a run kept (an older one if the newest was cut short)."""
    import torch

    paths = checkpoint_paths(client(), run_id)
    for path in paths:
        try:
            return torch.load(io.BytesIO(read_artifact(run_id, path)), map_location="cpu", weights_only=True)
        except (ArtifactMissing, RuntimeError, EOFError, OSError, pickle.UnpicklingError):
            continue  # cut short, damaged, or not a training state (never unpickled): the one before it
    if paths:
        raise ToolkitError(
            f"run {run_id}: none of its checkpoints ({', '.join(paths)}) can be read: they are damaged "
            "or not training states; train it anew"
        )
    raise ToolkitError(
        f"run {run_id} has no checkpoint to resume from: it finished, was pruned, stopped before "
        "its first epoch ended, or was made before runs kept checkpoints"
    )
