"""Model logging: seconds per run to log the model as an MLflow PyTorch model (what runs do now:
a logged model with its MLmodel file, environment and typed config), against writing only the
weights and the config as plain artifacts (what runs did until issue 11).

The 784-400-20 VAE, into a fresh SQLite store in a temporary directory, five runs each; the
median is printed. Target: under 2 s per run on a 2-core CPU. Run: `python
benchmarks/model_logging.py` (part of `make bench`).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toolkit.config import RunConfig
from toolkit.models import build
from toolkit.store import reading, writing

RUNS = 5


def plain_artifacts(run: writing.Run, model, config: RunConfig):
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), Path(tmp) / "weights.pt")
        (Path(tmp) / "config.json").write_text(json.dumps(config.to_json()))
        run.client.log_artifacts(run.run_id, tmp, "model")


def mlflow_model(run: writing.Run, model, config: RunConfig):
    run.log_model(model, config)


def main():
    config = RunConfig()
    model = build(config, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        with writing.start_run("warm-up", "warm-up") as run:  # creates the database, imports MLflow's modules
            mlflow_model(run, model, config)
        medians = {}
        for log in (plain_artifacts, mlflow_model):
            times = []
            for i in range(RUNS):
                with writing.start_run("model-logging", f"{log.__name__}-{i}") as run:
                    start = time.perf_counter()
                    log(run, model, config)
                    times.append(time.perf_counter() - start)
            medians[log.__name__] = statistics.median(times)
            print(
                f"{log.__name__:16s} median {medians[log.__name__]:.3f} s per run  "
                f"(runs: {', '.join(f'{t:.3f}' for t in times)})"
            )
        loaded, _ = reading.load_model(run.run_id, torch.device("cpu"))
        same = all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
        print(
            f"an MLflow model costs {medians['mlflow_model'] / medians['plain_artifacts']:.1f}x the plain "
            f"artifacts, {medians['mlflow_model'] - medians['plain_artifacts']:+.2f} s per run (target: under 2 s: "
            f"{'met' if medians['mlflow_model'] < 2 else 'NOT met'}); loads back identical: {same}"
        )


if __name__ == "__main__":
    main()
