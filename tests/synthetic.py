"""A store of runs made up without training: the params a RunConfig logs, the final and per-epoch
metrics a test chooses, the tags a study's child runs carry. For the reports' statistics, which
need numbers, not models."""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param

from toolkit.config import RunConfig
from toolkit.store import writing


def fake_study(
    name: str, runs: list[tuple[RunConfig, dict[str, float]]], status: str = "FINISHED", tags: list[dict] = ()
) -> str:
    """An experiment `name` with a parent run and one child per (config, final metrics): every
    test metric also gets a per-epoch validation history over `config.epochs` epochs ending at its
    final value, `best_epoch` and `epochs_trained` are the last epoch, and the run converged (early
    stopping ended it at that epoch) unless `metrics` says otherwise. The i-th child also gets
    `tags[i]` where given. Returns the parent's id."""
    client = writing.writer()
    experiment = writing.experiment_id(name)
    parent = client.create_run(experiment, run_name=name, tags={"study": name}).info.run_id
    for trial, (config, metrics) in enumerate(runs):
        run = client.create_run(
            experiment,
            run_name=f"{config.model}-seed{config.seed}",
            tags={
                "study": name,
                "trial": str(trial),
                "mlflow.parentRunId": parent,
                "train_images": "54000",
                "machine/cpu": "a test CPU",
                "machine/threads": "2",
                "machine/torch": "2.14.1",
                "nll_iw_precision": "fp32",
                "git_commit": "0" * 40,
                "git_dirty": "False",
                "fid/fmnist-cnn/extractor_hash": "0123456789abcdef",
                **(tags[trial] if trial < len(tags) else {}),
            },
        ).info.run_id
        now = int(time.time() * 1000)
        epochs = config.epochs
        final = {"best_epoch": epochs, "epochs_trained": epochs, "converged": 1.0, **metrics}
        history = [
            Metric(f"val/{key.removeprefix('test/')}", value + epochs - epoch, now, epoch)
            for key, value in metrics.items()
            if key.startswith("test/") and "kl_dim" not in key
            for epoch in range(1, epochs + 1)
        ]
        client.log_batch(
            run,
            params=[Param(k, v) for k, v in config.to_params().items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in final.items()] + history,
        )
        client.set_terminated(run, status)
    client.set_terminated(parent, "FINISHED")
    return parent
