"""Reading the store back: runs as plain records and as one DataFrame, metric histories,
artifacts, checkpoints and models. Every read goes through `location.reader`, so it writes
nothing; nothing read runs code (models and checkpoints load with `weights_only=True`)."""

from __future__ import annotations

import io
import json
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toolkit import ToolkitError, names
from toolkit.config import RunConfig
from toolkit.store import location

RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RunRecord:
    """One run as read from the store, in plain values (no MLflow entity leaves the store layer)."""

    run_id: str
    name: str
    status: str  # RUNNING, FINISHED, FAILED or KILLED
    experiment_id: str
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each
    tags: dict[str, str]

    @classmethod
    def of(cls, run) -> RunRecord:
        info, data = run.info, run.data
        return cls(info.run_id, info.run_name, info.status, info.experiment_id, data.params, data.metrics, data.tags)


class ArtifactMissing(ToolkitError):
    """A run has no artifact at the path asked for."""


def experiments() -> dict[str, str]:
    """{name: experiment id} of the store's experiments but MLflow's Default."""
    location.existing_store()
    return {e.name: e.experiment_id for e in location.reader().search_experiments() if e.name != "Default"}


def existing_experiment_id(name: str) -> str:
    """The id of the experiment called `name`, or a ToolkitError naming the experiments the store does have."""
    location.existing_store()
    found = location.reader().get_experiment_by_name(name)
    if found is None:
        raise ToolkitError(
            f"no experiment {name!r} in the store {location.tracking_uri()}; it has: "
            f"{', '.join(sorted(experiments())) or 'none'}"
        )
    return found.experiment_id


def load_runs(experiment: str, parent: str | None = None) -> pd.DataFrame:
    """Every run of an experiment (only the children of `parent`, when given) as one DataFrame:
    run_id, status, start_time, params.*, metrics.* (final values), tags.*. `mlflow.search_runs`
    pages through the store, so there is no cap on the number of runs."""
    import mlflow

    experiment_id = existing_experiment_id(experiment)
    location.use_store_globally(location.reader())
    query = f"tags.`{names.PARENT_RUN}` = '{checked_run_id(parent, '--parent')}'" if parent else ""
    return mlflow.search_runs([experiment_id], query, max_results=None)


def checked_run_id(run_id: str, what: str) -> str:
    """A run id a user gave, refused unless it is one (32 hexadecimal digits): ids go into search
    filters, which are strings, so nothing else may reach them."""
    if not RUN_ID.fullmatch(run_id):
        raise ToolkitError(f"{what} {run_id!r}: not a run id (32 hexadecimal digits, as the MLflow UI shows them)")
    return run_id


def existing_run(run_id: str) -> RunRecord:
    """The run `run_id`, or a ToolkitError naming the store that lacks it."""
    from mlflow.exceptions import MlflowException

    checked_run_id(run_id, "run")
    location.existing_store()
    try:
        return RunRecord.of(location.reader().get_run(run_id))
    except MlflowException:
        raise ToolkitError(f"no run {run_id} in the store {location.tracking_uri()}") from None


def find_run(experiment: str, query: str) -> RunRecord | None:
    """The earliest run of `experiment` that MLflow's search filter `query` finds, None when none
    does or there is no such experiment yet."""
    reader = location.reader()
    found = reader.get_experiment_by_name(experiment)
    runs = (
        reader.search_runs([found.experiment_id], query, order_by=["attributes.start_time ASC"], max_results=1)
        if found is not None
        else []
    )
    return RunRecord.of(runs[0]) if runs else None


def final_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of one run."""
    return existing_run(run_id).metrics


def metric_histories(run_ids, keys) -> pd.DataFrame:
    """The per-step values of `keys` for each run, long form: run_id, key, step, value."""
    mlflow_client = location.reader()
    rows = [
        (run_id, key, m.step, m.value)
        for run_id in run_ids
        for key in keys
        for m in mlflow_client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def read_artifact(run_id: str, path: str) -> bytes:
    """The bytes of one artifact of a run."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(location.reader().download_artifacts(run_id, path, tmp)).read_bytes()
        except Exception as exc:
            raise ArtifactMissing(f"run {run_id} has no artifact {path} ({type(exc).__name__})") from None


def artifact_paths(run_id: str, folder: str, mlflow_client=None) -> list[str]:
    """The paths of a run's artifacts in `folder`, through `mlflow_client` (default: a reader)."""
    return [f.path for f in (mlflow_client or location.reader()).list_artifacts(run_id, folder)]


def checkpoint_paths(run_id: str, mlflow_client=None) -> list[str]:
    """The run's checkpoint artifacts, newest first."""
    return sorted(artifact_paths(run_id, names.CHECKPOINTS, mlflow_client), reverse=True)


def load_checkpoint(run_id: str) -> dict:
    """The newest readable training state a run kept (an older one if the newest was cut short)."""
    import torch

    paths = checkpoint_paths(run_id)
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


def load_model(run_id: str, device=None):
    """The model a run logged, with its weights, in eval mode, and its RunConfig: built from the
    typed config and loaded from the state dict with `weights_only=True`, so nothing in the store
    runs code here (the pickled MLflow model beside them is never unpickled). Runs logged before
    models were MLflow models have the same two files as plain artifacts under `model/`."""
    import torch  # here, not at the top: reading the store (reports) needs no torch

    from toolkit.models import build, default_device

    existing_run(run_id)
    location.use_store_globally(location.reader())  # a logged model's files are found through it
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
