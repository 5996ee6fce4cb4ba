"""Training against this machine's own peak: how much of the arithmetic the CPU (or GPU) can do each
training path uses, measured in one run.

1. The peak of the training's own products: the largest one, the encoder's first layer (batch x 784
   @ 784 x 400), alone (one run) and stacked `--members` deep (a group), in fp32 and in bf16: the
   best GFLOP/s of repeated timings.
2. Each training path, one epoch of the β sweep's VAE settings (784-400-20, β in {0.1, ..., 8}) on
   the first `--images` training images and the validation split: alone (`train.fit`, one run after
   another) and grouped (`group.fit_group`, the same runs as one stack), in fp32 and in bf16. For
   each, seconds per run-epoch, the GFLOP/s of its matrix products (forward and backward of every
   training step, forward of validation) and that rate's share of the matching peak (alone against
   the one-run peak, grouped against the stacked one, each in its own precision).
The tail after training is timed by benchmarks/eval_speed.py. Prints one table.
Run: python benchmarks/training_share.py [--images N] [--members K]  (`make bench`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch import nn

from toolkit.config import INPUT_DIM, RunConfig
from toolkit.data import load_splits
from toolkit.group import Member, fit_group
from toolkit.machine import cpu_model, fast_bf16
from toolkit.models import build, default_device
from toolkit.train import fit

BETAS = (0.1, 0.25, 0.5, 1, 2, 4, 8)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def peak(members: int, batch: int, hidden: int, dtype: torch.dtype, device, repeats: int = 30) -> float:
    """The best FLOP/s of `members` stacked (batch x 784) @ (784 x hidden) products in `dtype`."""
    a = torch.randn(members, batch, INPUT_DIM, device=device, dtype=dtype)
    b = torch.randn(members, INPUT_DIM, hidden, device=device, dtype=dtype)
    torch.bmm(a, b)  # warm
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.bmm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * members * batch * INPUT_DIM * hidden / best


def epoch_flops(config: RunConfig, train_images: int, val_images: int) -> float:
    """FLOPs of one run-epoch's matrix products: each training example's forward (2 per multiply-add)
    and backward (the weights' gradient, and the input's for every layer but the first), and each
    validation example's forward."""
    layers = [m for m in build(config).modules() if isinstance(m, nn.Linear)]
    products = sum(m.in_features * m.out_features for m in layers)
    first = layers[0].in_features * layers[0].out_features  # no gradient for the images
    return 2.0 * (3 * products - first) * train_images + 2.0 * products * val_images


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_paths(configs: list[RunConfig], splits, warm: bool = True) -> dict[str, float]:
    """Seconds per run-epoch of `configs` trained alone, one after another, and as one group (the
    same runs both ways, so that a drift in the machine's speed falls on both); `warm` first trains
    one run untimed, for the first-call costs of torch and the optimiser."""
    if warm:
        fit(build(configs[0]), splits, configs[0], quiet=True)
    start = time.perf_counter()
    for config in configs:
        fit(build(config), splits, config, quiet=True)
    alone = (time.perf_counter() - start) / len(configs)
    start = time.perf_counter()
    fit_group([Member(config) for config in configs], splits)
    return {"alone": alone, "grouped": (time.perf_counter() - start) / len(configs)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch")
    parser.add_argument("--members", type=int, default=7, help="runs timed alone and as one group")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    device = default_device()
    base = RunConfig(epochs=1, limit=args.images, patience=0)
    configs = [replace(base, beta=BETAS[i % len(BETAS)], seed=42 + i // len(BETAS)) for i in range(args.members)]
    splits = load_splits(base.dataset, args.data_dir, args.images, device)
    flops = epoch_flops(base, len(splits.train), len(splits.val))
    hidden = base.hidden[0]
    print(
        f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
        f"native bf16: {fast_bf16(device)}; {len(splits.train):,} training images, {args.members} runs"
    )
    rows, seconds = [], {}
    for precision, dtype in DTYPES.items():
        peaks = {
            "alone": peak(1, base.batch_size, hidden, dtype, device),
            "grouped": peak(args.members, base.batch_size, hidden, dtype, device),
        }
        found = timed_paths([replace(c, precision=precision) for c in configs], splits)
        for path, s in found.items():
            seconds[path, precision] = s
            rows.append((path, precision, s, flops / s, peaks[path]))
    print(f"\n{'path':8s} {'precision':9s} {'s / run-epoch':>13s} {'GFLOP/s':>8s} {'peak':>7s} {'share':>6s}")
    for path, precision, s, rate, top in rows:
        print(f"{path:8s} {precision:9s} {s:13.3f} {rate / 1e9:8.1f} {top / 1e9:7.1f} {rate / top:6.1%}")
    print(
        f"\ngrouped bf16 against alone fp32: {seconds['alone', 'fp32'] / seconds['grouped', 'bf16']:.2f}x; "
        f"grouped fp32 against alone fp32: {seconds['alone', 'fp32'] / seconds['grouped', 'fp32']:.2f}x"
    )


if __name__ == "__main__":
    main()
