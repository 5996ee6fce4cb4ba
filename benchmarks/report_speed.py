"""Report speed: building the β-sweep report from a store of 50 runs, against the time
`mlflow.search_runs` alone takes to read those runs.

The store is made cheaply in a temporary directory: 49 VAE runs (7 values of β x 7 seeds) and one
AE, each with every param of a real run, 20 epochs of synthetic per-epoch metrics (losses and the
KL of 20 latent dimensions), the final test metrics and FIDs, and a real-sized `images.npz`; a
FID reference run holds the extractor's floor. Nothing is trained. Target: the report in under
10 s on a 2-core CPU. Run: `python benchmarks/report_speed.py` (part of `make bench`).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from toolkit.config import RunConfig
from toolkit.reports import write_report
from toolkit.store import location, writing

BETAS = (0.1, 0.25, 0.5, 1, 2, 4, 8)
SEEDS = range(1, 8)
EPOCHS, LATENT = 20, 20
EXPERIMENT, EXTRACTOR = "beta-sweep-synthetic", "fmnist-cnn"
TOOLKIT = str(Path(sys.executable).parent / "toolkit")


def synthetic_store():
    """Log the 50 runs (and a FID reference) into the store MLFLOW_TRACKING_URI names."""
    rng = np.random.default_rng(0)
    with writing.start_run("fid-references", "reference", {"extractor": EXTRACTOR}) as reference:
        reference.log_metrics({f"fid/{EXTRACTOR}/real_floor": 0.62})
    settings = [("vae", beta, seed) for beta in BETAS for seed in SEEDS] + [("ae", 1.0, 1)]
    with writing.start_run(EXPERIMENT, EXPERIMENT, {"study": EXPERIMENT}) as parent:
        for trial, (model, beta, seed) in enumerate(settings):
            config = RunConfig(model=model, beta=beta, seed=seed, epochs=EPOCHS)
            tags = {
                "mlflow.parentRunId": parent.run_id,
                "trial": str(trial),
                "model": model,
                "dataset": config.dataset,
                f"fid/{EXTRACTOR}/extractor_hash": "0" * 16,
                f"fid/{EXTRACTOR}/reference_run": reference.run_id,
            }
            with writing.start_run(EXPERIMENT, f"{model}-beta{beta:g}", tags) as run:
                run.log_params(config.to_params())
                log_synthetic_metrics(run, model == "vae", beta, rng)
                run.log_bytes(images_npz(rng), "images.npz")


def log_synthetic_metrics(run, variational: bool, beta: float, rng):
    rate, distortion = 50 / (1 + 2 * beta), 215 + 6 * np.log1p(beta)
    dims = np.sort(rng.exponential(rate / LATENT, LATENT))[::-1]
    for epoch in range(1, EPOCHS + 1):
        decay = 1 + 0.5 / epoch
        epoch_metrics = {
            f"{split}/{key}": value * decay + rng.normal(0, 0.3)
            for split in ("train", "val")
            for key, value in (("recon", distortion), ("loss", distortion))
        }
        if variational:
            epoch_metrics |= {"train/kl": rate, "val/kl": rate, "beta_eff": beta}
            epoch_metrics |= {f"val/kl_dim/{d:02d}": v for d, v in enumerate(dims)}
        run.log_metrics(epoch_metrics, step=epoch)
    final = {
        "test/recon": distortion + rng.normal(0, 0.3),
        "test/mse": 0.01 + 0.001 * beta,
        f"fid/{EXTRACTOR}/samples": 120 + 10 * abs(np.log(beta)) + rng.normal(0, 2),
        f"fid/{EXTRACTOR}/recon": 25 + 15 * beta,
    }
    if variational:
        final |= {
            "test/kl": rate,
            "test/neg_elbo": rate + distortion,
            "test/nll_iw": rate + distortion - 3,
            "test/active_units": float((dims > 0.05).sum()),
        }
        final |= {f"test/kl_dim/{d:02d}": v for d, v in enumerate(dims)}
    run.log_metrics(final)


def images_npz(rng) -> bytes:
    """Arrays shaped like a run's images.npz (random grey levels: an upper bound on its size)."""
    buffer = io.BytesIO()
    shapes = {
        "originals": 10,
        "reconstructions": 10,
        "samples_normal_prior": 64,
        "samples_laplace_prior": 64,
        "interpolation": 10,
    }
    np.savez_compressed(buffer, **{k: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for k, n in shapes.items()})
    return buffer.getvalue()


def timed(work, repeats: int = 3) -> float:
    """The best of `repeats` wall times of `work()`, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        start = time.perf_counter()
        synthetic_store()
        print(
            f"store of 50 runs ({EPOCHS} epochs of {8 + LATENT} metrics each) logged in "
            f"{time.perf_counter() - start:.1f} s"
        )
        mlflow.set_tracking_uri(location.tracking_uri())
        search = timed(lambda: mlflow.search_runs(experiment_names=[EXPERIMENT], max_results=None))
        report = timed(lambda: write_report("beta-sweep", EXPERIMENT, out=f"{tmp}/report"))
        shown = Path(f"{tmp}/report/README.md").read_text()
        assert shown.count("| VAE | 7 |") == len(BETAS), "the report should have one row of 7 seeds per beta"
        command = timed(
            lambda: subprocess.run(
                [TOOLKIT, "report", "beta-sweep", "--experiment", EXPERIMENT, "--out", f"{tmp}/report"],
                check=True,
                capture_output=True,
            ),
            repeats=1,
        )
        print(f"mlflow.search_runs alone:               {search:6.2f} s")
        print(f"beta-sweep report, in process:          {report:6.2f} s  ({report / search:.1f}x search_runs)")
        print(
            f"`toolkit report beta-sweep` command:    {command:6.2f} s  (with Python start and imports; target < 10 s)"
        )


if __name__ == "__main__":
    main()
