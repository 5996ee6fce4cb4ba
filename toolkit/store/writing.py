"""Opening the store to write, and the run writer: a run's params, metrics, tags, figures,
artifacts, checkpoints and model, written through MLflow's client, and its life from start to an
end that says why."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from toolkit import ToolkitError, names, path_in
from toolkit.commands import interrupts_held
from toolkit.config import RunConfig
from toolkit.machine import HOST, PROCESS_TABLE, Heartbeat
from toolkit.storage_errors import cannot_open_store
from toolkit.store import location, maintenance
from toolkit.store.reading import RunRecord, checkpoint_paths, existing_run

EXPERIMENT_NAME_MAX = 256  # MLflow's experiments.name column, VARCHAR(256) on PostgreSQL (its own check allows 500)
HEARTBEAT_S = 60  # how often an open run says it is alive (maintenance.STALE_S: when it counts as dead)
TRAIN_NOTE = "Runs of `toolkit train`; each run's description gives its settings."


def writer():
    """A client that writes the store, opened once per process with its maintenance done (`_opened`)."""
    uri = location.tracking_uri()
    _opened(uri)
    return MlflowClient(uri)


@functools.cache
def _opened(uri: str) -> None:
    """Open the store to write, once per process: under the store lock, so that two processes
    starting on a fresh store do not both create (or migrate) its tables, which breaks the
    database for good; a moved or copied store pointed at its own files; then the runs that
    processes of this machine left RUNNING when they died ended FAILED."""
    root = location.artifact_root(uri)
    if root:
        root.mkdir(parents=True, exist_ok=True)
    with location.store_lock():
        if root:
            maintenance.relocate(root.parent)
        try:
            mlflow_client = MlflowClient(uri)
            ended = maintenance.orphans(mlflow_client)
        except Exception as exc:  # a wrong URI fails deep inside SQLAlchemy; say which setting to fix
            raise cannot_open_store(uri, exc) from None
        for run_id, (_, why) in ended.items():
            Run(run_id, mlflow_client).end("FAILED", f"{why} while the run was RUNNING")
        maintenance.say_ended(ended)
    location.WRITING.add(uri)


def run_heartbeat(mlflow_client: MlflowClient, run_id: str) -> Heartbeat:
    """While a run is open, its tag `heartbeat` (seconds since the epoch) is renewed every
    HEARTBEAT_S seconds, so that other machines sharing the store can tell a dead run from a live one."""
    return Heartbeat(
        lambda: mlflow_client.set_tag(run_id, names.HEARTBEAT, f"{time.time():.0f}"), HEARTBEAT_S, (Exception,)
    )


def process_tags() -> dict[str, str]:
    """The tags that tell which process a run belongs to, for `maintenance.orphans`."""
    return {
        names.HOST: HOST,
        names.PID: str(os.getpid()),
        **({names.PROCESS_TABLE: PROCESS_TABLE} if PROCESS_TABLE else {}),
    }


def new_experiment_location(name: str) -> str | None:
    """Where a new experiment `name` keeps its artifacts (None: a tracking server chooses), the name
    refused in one line when MLflow could not hold it or when it leads outside the store (`path_in`)."""
    if not name.strip() or len(name) > EXPERIMENT_NAME_MAX:
        raise ToolkitError(
            f"experiment {name[:40]!r}: a name needs 1 to {EXPERIMENT_NAME_MAX} characters, not only spaces"
        )
    root = location.artifact_root(location.tracking_uri())
    return str(path_in(root, name, "experiment")) if root else None


def experiment_id(name: str, description: str = TRAIN_NOTE) -> str:
    """The id of the experiment `name`, created with `description` when it does not exist yet."""
    mlflow_client = writer()
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise ToolkitError(
            f"experiment {name!r} was deleted in MLflow: restore it (mlflow experiments restore "
            f"--experiment-id {found.experiment_id}) or choose another --experiment"
        )
    if found is not None:
        return found.experiment_id
    folder = new_experiment_location(name)
    tags = {names.NOTE: description, "mlflow.experimentKind": "custom_model_development"}
    try:
        return mlflow_client.create_experiment(name, artifact_location=folder, tags=tags)
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


def model_requirements() -> list[str]:
    """The pip requirements a logged model names: the torch it was trained with."""
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}"]


def prepare_model_logging() -> None:
    """Start what `Run.log_model` would otherwise begin with, in a background thread while the run
    trains: MLflow checks a model's requirements against the installed packages through a map of
    every installed distribution's modules, built once per process (0.4-0.5 s of file reads on the
    2-core machine, while training leaves a core partly idle). MLflow has no public call to build it
    early; `warn_dependency_requirement_mismatches` is the check `log_model` makes, here given the
    same requirements, and the one place the toolkit reaches into `mlflow.utils`."""
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    threading.Thread(target=warn_dependency_requirement_mismatches, args=(model_requirements(),), daemon=True).start()


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

    def __init__(self, run_id: str, mlflow_client: MlflowClient | None = None):
        self.run_id, self.client = run_id, mlflow_client or writer()

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
        """Keep a training state (`train.Progress.state()`) as `checkpoint/epoch-NNNN.pt`, then remove
        the older ones: a process killed while writing leaves the previous checkpoint whole."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.log_bytes(buffer.getvalue(), f"{names.CHECKPOINTS}/epoch-{len(state['history']):04d}.pt")
        for older in checkpoint_paths(self.run_id, self.client)[1:]:
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
    def delete(self):
        """Delete the run (MLflow keeps it in its trash until `mlflow gc`)."""
        self.client.delete_run(self.run_id)

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
        location.use_store_globally(self.client)
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
                pip_requirements=model_requirements(),
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
def start_run(experiment: str, run_name: str, tags: dict[str, str] | None = None, description: str = TRAIN_NOTE):
    """Yield a new `Run` (of `experiment`, created with `description` if new); it ends FINISHED,
    KILLED (Ctrl-C, SIGTERM, RunStopped) or FAILED (any other error)."""
    with interrupts_held():
        run = new_run(experiment, run_name, {**process_tags(), **(tags or {})}, description)
    with _ending(run) as handle:
        yield handle


def new_run(experiment: str, run_name: str, tags: dict[str, str], description: str = TRAIN_NOTE) -> Run:
    """A new run of `experiment` (created with `description` if new), tagged with the code's
    version and `tags`, left RUNNING: `start_run` ends it, a study's parent is continued (`continue_run`)."""
    mlflow_client = writer()
    experiment = experiment_id(experiment, description)
    run = mlflow_client.create_run(experiment, run_name=run_name, tags={**git_tags(), **tags})
    return Run(run.info.run_id, mlflow_client)


def resumable_run(run_id: str) -> RunRecord:
    """The run `run_id` if it can be resumed (FAILED or KILLED), else a ToolkitError saying why. The
    store is opened to write first, so that a run whose process died is FAILED by then."""
    existing_run(run_id)  # an id the store lacks is refused before anything is written
    writer()
    run = existing_run(run_id)
    if run.status not in ("FAILED", "KILLED"):
        where = f" (process {run.tags.get('pid')} on {run.tags.get('host')})" if run.status == "RUNNING" else ""
        raise ToolkitError(f"run {run_id} is {run.status}{where}: only a FAILED or KILLED run can be resumed")
    return run


@contextmanager
def continue_run(run_id: str, tags: dict[str, str] | None = None):
    """Yield an existing run, RUNNING again, that ends like one from `start_run` (a resumed study's
    parent, a resumed training run); why it ended before is forgotten."""
    mlflow_client = writer()
    mlflow_client.update_run(run_id, status="RUNNING")
    if names.END_REASON in mlflow_client.get_run(run_id).data.tags:
        mlflow_client.delete_tag(run_id, names.END_REASON)
    mlflow_client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**(tags or {}), **process_tags()}.items()])
    with _ending(Run(run_id, mlflow_client)) as handle:
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


def log_directory(run_id: str, directory: Path, artifact_path: str):
    """Log a directory's files as artifacts of a run, e.g. a study's report on its parent run."""
    writer().log_artifacts(run_id, str(directory), artifact_path)


def set_note(run_id: str, text: str):
    """Replace the description MLflow shows for a run (cut to the 8,000 characters a tag holds)."""
    writer().set_tag(run_id, names.NOTE, text if len(text) <= 8000 else text[:7990] + "\n\n(cut)")
