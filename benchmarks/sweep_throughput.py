"""Study throughput: trials per hour with 1 and 2 workers, and the trial-epochs pruning saves.

1. The same 6-point grid (VAE, β in {0.5, ..., 4}; 2 epochs on 2,000 real images with the usual
   evaluation: FID of 1,000 samples, IW bound with K = 10, every figure) with 1 worker, then with
   2 workers sharing the machine's cores; trials per hour and their ratio.
2. A 20-trial TPE search (latent size, β, warm-up, free bits; 8 epochs on 3,000 images, no FID)
   with the median pruner against the same search without pruning: the trial-epochs each
   trained, the share pruning saves, and the best validation -ELBO each found.
3. Training grouped against alone: the VAE runs of the 3-seed β sweep (β in {0.1, ..., 8} × seeds
   42-44: 21 runs, 784-400-20, one epoch on the full training split with its validation), trained
   one after another with `train.fit`, then as groups of `--group` members with `group.fit_group`;
   runs per hour of training and their ratio, in fp32 and in bf16.
4. The β sweep as a study, grouped (the default) against `--no-group`: its grid (β in {0.1, ..., 8}
   and the AE, 784-400-20, full training split, every metric: FID of 10,000 samples, IW bound,
   figures) with one seed and 2 epochs (`--sweep-epochs`), in fp32 and bf16; runs per hour and the
   ratio, the FID reference trained beforehand.
5. Whether the evaluation tail would gain from stacking a group's members (issue 22, item 4): its
   two batched passes, the domain CNN's FID features (500 images a batch) and the IW bound's
   decoder (2,000 codes of a 784-400-20 decoder a batch), for 8 members one after another against
   all 8 in one call (one batch of 4,000 images; one batched product per layer); the ratio of times.
Parts 1, 2 and 4 each use a fresh temporary store. Run: `make bench`; `--part grouped` for parts 3
to 5, `--part tail` for part 5 alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from training_share import timed_paths

from toolkit.config import IMAGE_SIDE, RunConfig
from toolkit.data import load_splits
from toolkit.evaluate import IW_ROWS
from toolkit.fid import BATCH as FID_BATCH
from toolkit.fid import CnnFeatures, DomainCNN
from toolkit.models import build, default_device
from toolkit.store import writing
from toolkit.studies import QUICK, Execution, Study, run_study

GRID = {f"beta{beta:g}": {"beta": beta} for beta in (0.5, 0.75, 1, 1.5, 2, 4)}
SEARCH_BASE = RunConfig(epochs=8, limit=3000, fid="off", iw_samples=0, patience=0)


def search_space(trial):
    return {
        "latent_dim": trial.suggest_int("latent_dim", 2, 32, log=True),
        "beta": trial.suggest_float("beta", 0.1, 8, log=True),
        "warmup_epochs": trial.suggest_int("warmup_epochs", 0, 3),
        "free_bits": trial.suggest_float("free_bits", 0.0, 0.5),
    }


def in_fresh_store(work):
    """Run `work(storage_url)` against an empty MLflow store and Optuna storage."""
    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the per-trial lines
                return work(f"sqlite:///{tmp}/optuna.db")
        finally:
            os.environ.pop("MLFLOW_TRACKING_URI")
            if previous:
                os.environ["MLFLOW_TRACKING_URI"] = previous


def trials_per_hour(workers: int, data_dir: str | None) -> float:
    def work(storage):
        study = Study("throughput", replace(RunConfig(), **QUICK), grid=GRID, pruner="none")
        run_study(study, Execution(storage, workers=1, data_dir=data_dir))  # warm: FID reference, caches
        timed = replace(study, name="throughput-timed")
        start = time.perf_counter()
        run_study(timed, Execution(storage, workers=workers, data_dir=data_dir))
        return len(GRID) / (time.perf_counter() - start) * 3600

    return in_fresh_store(work)


def search_cost(pruner: str, data_dir: str | None) -> tuple[int, int, float]:
    """(epochs trained over all trials, pruned trials, best validation -ELBO) of the 20-trial search."""

    def work(storage):
        study = Study(f"search-{pruner}", SEARCH_BASE, space=search_space, trials=20, pruner=pruner)
        optuna_study = run_study(study, Execution(storage, data_dir=data_dir))
        finished = optuna_study.get_trials()
        mlflow_client = writing.writer()
        epochs = sum(len(mlflow_client.get_metric_history(t.user_attrs["mlflow_run_id"], "val/loss")) for t in finished)
        return epochs, sum(t.state == optuna.trial.TrialState.PRUNED for t in finished), optuna_study.best_value

    return in_fresh_store(work)


BETA_SWEEP = [(beta, seed) for beta in (0.1, 0.25, 0.5, 1, 2, 4, 8) for seed in (42, 43, 44)]


def grouped_against_alone(data_dir: str | None, precision: str, group: int) -> tuple[float, float]:
    """Runs per hour of training (one epoch each) of the β sweep's VAE runs: alone, then grouped,
    in turns of `group` runs (`training_share.timed_paths`)."""
    configs = [replace(RunConfig(epochs=1, precision=precision), beta=b, seed=s) for b, s in BETA_SWEEP]
    splits = load_splits("fashion-mnist", data_dir, None, default_device())
    turns = [configs[first : first + group] for first in range(0, len(configs), group)]
    seconds = [(timed_paths(turn, splits, warm=i == 0), len(turn)) for i, turn in enumerate(turns)]
    alone, grouped = (sum(found[path] * n for found, n in seconds) for path in ("alone", "grouped"))
    return len(configs) / alone * 3600, len(configs) / grouped * 3600


SWEEP = runpy.run_path(str(Path(__file__).parent.parent / "studies" / "beta_sweep.py"))["GRID"]


def sweep_per_hour(data_dir: str | None, precision: str, epochs: int) -> tuple[float, float]:
    """Runs per hour of the β sweep's grid as a study (part 4): with --no-group, then grouped."""
    base = RunConfig(epochs=epochs, precision=precision)

    def work(storage):
        warm = Study("warm", replace(base, **QUICK), grid={"vae": {}}, pruner="none", seeds=1)
        run_study(warm, Execution(storage, data_dir=data_dir))  # the FID reference, trained once per store
        rates = []
        for group in (False, True):
            study = Study(f"sweep-{precision}-{group}", base, grid=SWEEP, pruner="none", seeds=1)
            start = time.perf_counter()
            run_study(study, Execution(storage, data_dir=data_dir, group=group))
            rates.append(len(SWEEP) / (time.perf_counter() - start) * 3600)
        return tuple(rates)

    return in_fresh_store(work)


def median_seconds(work, repeats: int = 7) -> float:
    work()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def stacked_tail(members: int = 8) -> tuple[float, float]:
    """Part 5: how many times faster the FID feature pass and the IW bound's decoder pass are for
    `members` members at once than one after another (below 1: slower)."""
    torch.manual_seed(0)
    network = CnnFeatures(DomainCNN()).eval()
    images = torch.rand(members * FID_BATCH, IMAGE_SIDE**2)
    apart = median_seconds(lambda: [network(chunk) for chunk in images.split(FID_BATCH)])
    together = median_seconds(lambda: network(images))
    models = [build(RunConfig(seed=seed)) for seed in range(members)]
    codes = torch.randn(IW_ROWS, RunConfig.latent_dim)
    layers = [name.removesuffix(".weight") for name, _ in models[0].decoder.named_parameters() if "weight" in name]
    stacked = [
        [torch.stack([m.decoder.get_parameter(f"{layer}.{kind}") for m in models]) for kind in ("weight", "bias")]
        for layer in layers
    ]

    def decode_stacked():
        h = codes.expand(members, *codes.shape)
        for i, (weight, bias) in enumerate(stacked):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            h = torch.relu(h) if i < len(stacked) - 1 else h
        return h

    decode_apart = median_seconds(lambda: [m.decode(codes) for m in models])
    return apart / together, decode_apart / median_seconds(decode_stacked)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--part", choices=("all", "workers", "grouped", "tail"), default="all")
    parser.add_argument("--group", type=int, default=7, help="members per group in part 3")
    parser.add_argument("--sweep-epochs", type=int, default=2, help="epochs of each run in part 4")
    args = parser.parse_args()
    if args.part in ("all", "grouped", "tail"):
        features, decoder = stacked_tail()
        print(
            "evaluation tail, 8 members in one call against one after another: "
            f"FID features {features:.2f}x, IW bound decoder {decoder:.2f}x"
        )
    if args.part == "tail":
        return
    if args.part in ("all", "grouped"):
        for precision in ("fp32", "bf16"):
            alone, grouped = grouped_against_alone(args.data_dir, precision, args.group)
            print(
                f"{precision}: runs per hour of training (1 epoch, 21 β-sweep VAE runs): alone {alone:,.0f}, "
                f"in groups of {args.group} {grouped:,.0f} ({grouped / alone:.2f}x)"
            )
        for precision in ("fp32", "bf16"):
            alone, grouped = sweep_per_hour(args.data_dir, precision, args.sweep_epochs)
            print(
                f"{precision}: runs per hour of the β sweep study ({len(SWEEP)} runs, {args.sweep_epochs} epochs, "
                "every metric): "
                f"--no-group {alone:,.0f}, grouped {grouped:,.0f} ({grouped / alone:.2f}x)"
            )
    if args.part == "grouped":
        return
    one, two = (trials_per_hour(workers, args.data_dir) for workers in (1, 2))
    (pruned_epochs, pruned, pruned_best), (full_epochs, _, full_best) = (
        search_cost(p, args.data_dir) for p in ("median", "none")
    )
    print(f"trials per hour, 1 worker:  {one:7.0f}")
    print(f"trials per hour, 2 workers: {two:7.0f}  ({two / one:.2f}x)")
    print(
        f"20-trial TPE search, trial-epochs: no pruning {full_epochs}, median pruner {pruned_epochs} "
        f"({pruned} trials pruned): pruning saves {1 - pruned_epochs / full_epochs:.0%}"
    )
    print(f"best validation -ELBO found: no pruning {full_best:.2f}, median pruner {pruned_best:.2f}")


if __name__ == "__main__":
    main()
