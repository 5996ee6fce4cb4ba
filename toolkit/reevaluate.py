"""`toolkit evaluate`: finished runs gain the evaluation metrics and figures they lack, computed
from the model they logged, without retraining; a metric added to the toolkit later reaches old
runs the same way. Nothing a run has is recomputed into it: its logged metrics and figures stay."""

from __future__ import annotations

import sys

from toolkit import ToolkitError, names
from toolkit.models import default_device
from toolkit.pipeline import evaluation, log_evaluation, prepare
from toolkit.store import location, reading, writing


def evaluate_runs(run_ids: list[str], data_dir=None, fid_weights: str | None = None) -> dict[str, list[str]]:
    """The metric keys each run gained, by run id; each run printed as it is done."""
    added = {}
    for run_id in run_ids:
        added[run_id] = evaluate_run(run_id, data_dir, fid_weights)
        print(
            f"run {run_id}: {len(added[run_id])} metrics added" if added[run_id] else f"run {run_id}: nothing to add",
            file=sys.stderr,
        )
    return added


def experiment_runs(name: str) -> list[str]:
    """The finished training runs of an experiment (not a study's parent or a FID reference)."""
    frame = reading.load_runs(name)
    if frame.empty:
        raise ToolkitError(f"experiment {name!r} has no runs (store {location.tracking_uri()})")
    finished = frame[frame["status"] == "FINISHED"]
    return list(finished.loc[finished["params.model"].notna(), "run_id"]) if "params.model" in finished else []


def evaluate_run(run_id: str, data_dir=None, fid_weights: str | None = None) -> list[str]:
    """Evaluate a FINISHED run's logged model as `toolkit train` would now, and log into the same
    run the metrics it lacks, a figure for each it lacks, and the images and per-dimension KL that
    go with them; tag it with the code version. Returns the metric keys added."""
    found_run = reading.existing_run(run_id)
    if found_run.status != "FINISHED":
        raise ToolkitError(
            f"run {run_id} is {found_run.status}: only a FINISHED run is evaluated "
            f"(`toolkit train --resume {run_id}` finishes an interrupted one)"
        )
    device = default_device()
    model, config = reading.load_model(run_id, device)
    splits, references, _ = prepare(config, data_dir, fid_weights, device)
    found = evaluation(model, config, splits, references)
    logged = found_run.metrics
    added = {key: value for key, value in found.metrics.items() if key not in logged}
    run = writing.Run(run_id)
    figures = {
        path.removeprefix(f"{names.FIGURES}/").removesuffix(".png")
        for path in reading.artifact_paths(run_id, names.FIGURES)
    }
    log_evaluation(run, model, config, splits.test, found, history(run_id, logged), figures)
    run.log_metrics(added)
    run.set_tags({names.EVALUATED_BY: writing.git_tags()[names.GIT_COMMIT]})
    return sorted(added)


def history(run_id: str, logged: dict[str, float]) -> list[dict[str, float]]:
    """A run's per-epoch metrics as the trainer reported them, one dict per epoch."""
    keys = [key for key in logged if not key.startswith(names.FINAL_PREFIXES)]
    frame = reading.metric_histories([run_id], keys)
    return [dict(zip(rows["key"], rows["value"])) for _, rows in frame.groupby("step", sort=True)]
