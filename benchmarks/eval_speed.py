"""The evaluation tail, step by step: everything a run does after its last epoch.

First the tail as a user meets it: a real `toolkit train` process (the reference VAE, a few epochs)
into a throwaway store, its tail read from MLflow's timestamps, from the last epoch's metrics to
the run's end (the FID feature CNN is trained beforehand, once, as on any machine's first run).
Then in process: the reference VAE (784-400-20, Bernoulli) is trained for a few epochs on the real
Fashion-MNIST and `pipeline.evaluate_and_log` runs exactly as in `toolkit train`, with each of
its steps timed; the difference between the two is what the process pays on first use. Then
the importance-weighted bound alone on every test image: its FLOP count, its achieved rate, and
the compute bound measured in this same process (the decoder's largest matrix product, fp32, at its
best batch), and beside it the estimates a run logs from a subset (`--iw-images`); and FID's
domain CNN against pytorch-fid's Inception on the same samples. Target on the 2-core machine,
idle: the whole tail at most 8 s. Run: `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import torch
import torchvision
from mlflow import MlflowClient
from pytorch_fid import inception

from toolkit import evaluate, fid, figures, names, pipeline
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.models import build
from toolkit.samplers import NormalPrior, generate
from toolkit.store import writing
from toolkit.train import fit

TAIL_TARGET_S = 8.0
STEPS = {
    pipeline: (
        "elbo_metrics",
        "iw_nll",
        "latent_metrics",
        "generation_samplers",
        "sample_metrics",
        "figure_images",
        "images_npz",
    ),
    figures: (
        "reconstructions",
        "samples",
        "interpolation",
        "latent_pca",
        "latent_tsne",
        "kl_bars",
        "kl_heatmap",
        "traversals",
        "nearest_training",
        "loss_curves",
    ),
}
TOOLKIT = str(Path(sys.executable).parent / "toolkit")


class Stopwatch:
    """Seconds spent in named functions, accumulated over calls."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, owner, name: str, label: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start

        return original, timed

    @contextlib.contextmanager
    def watching(self, targets: list[tuple[object, str, str]]):
        """Time every (owner, attribute, label) while inside."""
        originals = []
        for owner, name, label in targets:
            original, timed = self.wrap(owner, name, label)
            originals.append((owner, name, original))
            setattr(owner, name, timed)
        try:
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def tail_seconds(run, model, config, splits, references, result) -> tuple[float, dict[str, float]]:
    """The whole of `evaluate_and_log` and its steps."""
    watch = Stopwatch()
    targets = [
        (module, name, name if module is pipeline else f"figure: {name}")
        for module, names in STEPS.items()
        for name in names
    ]
    targets += [
        (run, "log_model", "log the model"),
        (run, "log_figure", "render + log figures"),
        (run, "log_json", "log json"),
        (run, "log_bytes", "log images.npz"),
    ]
    with watch.watching(targets):
        start = time.perf_counter()
        pipeline.evaluate_and_log(run, model, config, splits, references, result)
        total = time.perf_counter() - start
    return total, dict(watch.seconds)


def command_tail(data_dir: str | None, epochs: int, repeats: int = 3) -> tuple[list[float], list[float]]:
    """Seconds from the last epoch's `val/loss` to the run's end of `repeats` real `toolkit train`
    processes of the reference VAE, each in a fresh store (the FID CNN's weights cached before the
    first), and each process's whole wall time: what moves out of the tail must not come back before it."""
    tails, wall = [], []
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
        with mock.patch.dict(os.environ, env):  # the CNN, trained once into this store
            fid.references("fashion-mnist", load_splits("fashion-mnist", data_dir), "auto", None)
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [
                    TOOLKIT,
                    "train",
                    "--epochs",
                    str(epochs),
                    "--experiment",
                    "tail",
                    "--quiet",
                    *(["--data-dir", data_dir] if data_dir else []),
                ],
                check=True,
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
            )
            wall.append(time.perf_counter() - start)
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        for run in client.search_runs([client.get_experiment_by_name("tail").experiment_id]):
            last = max(m.timestamp for m in client.get_metric_history(run.info.run_id, "val/loss"))
            tails.append((run.info.end_time - last) / 1000)
    return tails, wall


def decoder_flops(model, samples: int, images: int) -> float:
    """FLOPs (2 per multiply-add) of the decoder's linear layers over samples x images codes."""
    linear = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    return 2.0 * samples * images * sum(m.in_features * m.out_features for m in linear)


def matmul_rate(rows: int, inner: int, cols: int, repeats: int = 5) -> float:
    """The best FLOP/s of an fp32 (rows x inner) @ (inner x cols) product on this machine."""
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * inner * cols / best


def untrained_inception() -> fid.Extractor:
    """pytorch-fid's InceptionV3 with random weights (the real weights are a download): the same cost."""
    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kw: None),
        mock.patch.object(torchvision.models.inception.Inception3, "load_state_dict", lambda *args, **kw: None),
    ):
        network = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return fid.Extractor("inception", fid.GreyInception(network), "untrained")


def fid_seconds(extractor: fid.Extractor, vae, test_images, n: int) -> float:
    """Seconds to score n samples of `vae` against n test images' statistics."""
    statistics = extractor.statistics(test_images[:n])
    start = time.perf_counter()
    fid.frechet_distance(extractor.statistics(generate(vae, NormalPrior(vae.latent_dim), n)), statistics)
    return time.perf_counter() - start


def compare_extractors(vae, test_images, n: int, inception_images: int = 200):
    """FID of n samples with the domain CNN against pytorch-fid's Inception (timed on a few hundred
    images and scaled to n): why the CNN is the default on a CPU."""
    cnn_s = fid_seconds(fid.Extractor("fmnist-cnn", fid.CnnFeatures(fid.DomainCNN()), "untrained"), vae, test_images, n)
    inception_s = fid_seconds(untrained_inception(), vae, test_images, inception_images) * n / inception_images
    print(
        f"FID of {n:,} samples: fmnist-cnn {cnn_s:.1f} s, inception {inception_s:.0f} s (scaled from "
        f"{inception_images} images) -> the domain CNN is {inception_s / cnn_s:.0f}x faster"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3, help="training before the tail (the weights shape t-SNE)")
    parser.add_argument("--repeats", type=int, default=3, help="real `toolkit train` processes timed")
    args = parser.parse_args()
    tails, wall = command_tail(args.data_dir, args.epochs, args.repeats)
    tail = statistics.median(tails)
    print(
        f"evaluation tail of `toolkit train` (the reference VAE, {args.epochs} epochs), last epoch's metrics to the "
        f"run's end, seconds: {', '.join(f'{t:.2f}' for t in sorted(tails))}; median {tail:.2f}, target "
        f"{TAIL_TARGET_S:g} s: {'met' if tail <= TAIL_TARGET_S else 'MISSED'} ({TAIL_TARGET_S / tail:.2f}x); "
        f"the whole process, seconds: {', '.join(f'{t:.1f}' for t in sorted(wall))}, "
        f"median {statistics.median(wall):.1f}"
    )
    config = RunConfig(epochs=args.epochs, patience=0)
    splits = load_splits(config.dataset, args.data_dir, device=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        references, _ = fid.references(config.dataset, splits, config.fid, None)
        model = build(config, torch.device("cpu"))
        result = fit(model, splits, config, quiet=True)
        with writing.start_run("eval-speed", "vae", {}) as run:
            total, steps = tail_seconds(run, model, config, splits, references, result)
    print(
        f"evaluation tail of the reference VAE ({config.iw_samples} importance samples, {config.fid_samples:,} "
        f"FID samples, {len(splits.test):,} test images), seconds:"
    )
    for label, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {label:28s} {seconds:6.2f}")
    print(f"  {'(other)':28s} {total - sum(steps.values()):6.2f}")
    print(
        f"  {'total':28s} {total:6.2f}   target {TAIL_TARGET_S:g} s: {'met' if total <= TAIL_TARGET_S else 'MISSED'} "
        f"({TAIL_TARGET_S / total:.2f}x)"
    )

    flops = decoder_flops(model, config.iw_samples, len(splits.test))
    widest = max((m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)), key=lambda m: m.weight.numel())
    peak = matmul_rate(config.iw_samples * 100, widest.in_features, widest.out_features)
    bound_s = flops / peak
    print(
        f"IW bound, K = {config.iw_samples}: {flops / 1e12:.3f} TFLOP of decoder products; fp32 matmul peak here "
        f"{peak / 1e9:.0f} GFLOP/s -> fp32 compute bound {bound_s:.2f} s"
    )
    every = len(splits.test)
    fast_here = evaluate.fast_bf16(torch.device("cpu"))  # else bf16 is emulated here and a run uses fp32
    for name, fast in (("fp32", False), ("as run", True))[: 1 + fast_here]:
        with mock.patch.object(evaluate, "fast_bf16", lambda device, fast=fast: fast):
            start = time.perf_counter()
            bound = evaluate.iw_nll(model, splits.test, config.likelihood, config.iw_samples, every)
            seconds = time.perf_counter() - start
        print(
            f"  {name:7s} {bound.precision}, every test image: {bound.nats:.4f} nats in {seconds:5.2f} s = "
            f"{flops / seconds / 1e9:4.0f} GFLOP/s, {seconds / bound_s:.2f}x the fp32 compute bound"
        )
    neg_elbo = evaluate.elbo_metrics(model, splits.test, config)[names.NEG_ELBO]
    for images in sorted({500, config.iw_images}):
        start = time.perf_counter()
        estimate = evaluate.iw_nll(model, splits.test, config.likelihood, config.iw_samples, images, neg_elbo)
        seconds = time.perf_counter() - start
        print(
            f"  as run, estimated from {images:,} images: {estimate.nats:.4f} ± {estimate.standard_error:.4f} "
            f"nats (off by {estimate.nats - bound.nats:+.4f}) in {seconds:5.2f} s"
        )
    compare_extractors(model, splits.test.images, config.fid_samples)


if __name__ == "__main__":
    main()
