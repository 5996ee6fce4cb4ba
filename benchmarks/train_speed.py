"""Training speed: the toolkit's trainer against the reference notebooks' loop, against a plain loop over
the same net for each model and architecture (MLP and conv), and the cost of MLflow logging.

The comparison with the reference notebooks trains the reference VAE (784-400-20, Bernoulli, Adam 1e-3, batch 128) for 2
epochs on the real Fashion-MNIST in this one process and evaluates once per epoch (the toolkit on
its 6k validation split, the notebooks' loop on the 10k test set, as they did). Run: `make bench`.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets, transforms

from toolkit.config import ARCHITECTURES, MODELS, RunConfig
from toolkit.data import FILES, find_files, load_splits
from toolkit.models import build
from toolkit.store.writing import start_run
from toolkit.train import fit


class SeedVAE(nn.Module):
    """The reference notebooks' model: sigmoid output, BCE summed over the batch."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def notebook_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def notebook_loop(root: Path, epochs: int) -> float:
    """Examples per second of the reference notebooks' loop: torchvision dataset, DataLoader, ToTensor."""
    torch.manual_seed(0)
    train = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    test = datasets.FashionMNIST(str(root), train=False, download=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train, batch_size=128, shuffle=True)
    test_loader = DataLoader(test, batch_size=128)
    model = SeedVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, _ in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = notebook_loss(recon, x, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, _ in test_loader:
                recon, mu, logvar = model(x)
                notebook_loss(recon, x, mu, logvar)
    return epochs * len(train) / (time.perf_counter() - start)


def toolkit_epoch_seconds(splits, config, callbacks=()) -> float:
    model = build(config, torch.device("cpu"))
    start = time.perf_counter()
    fit(model, splits, config, callbacks, quiet=True)
    return (time.perf_counter() - start) / config.epochs


def plain_loop(splits, config, epochs: int) -> float:
    """Examples per second of the textbook loop over the same model (`models.build`): a
    DataLoader over a TensorDataset, BCE and KL written out, Adam, one validation pass an epoch."""
    model = build(config, torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train = DataLoader(TensorDataset(splits.train.images), batch_size=config.batch_size, shuffle=True)
    val = DataLoader(TensorDataset(splits.val.images), batch_size=config.batch_size)

    def loss(x):
        out = model(x)
        bce = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum")
        return bce if out.logvar is None else bce - 0.5 * torch.sum(1 + out.logvar - out.mu.pow(2) - out.logvar.exp())

    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for (x,) in train:
            optimizer.zero_grad()
            loss(x).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for (x,) in val:
                loss(x)
    return epochs * len(splits.train) / (time.perf_counter() - start)


def compare_architectures(splits, epochs: int):
    """Each model and architecture: a plain loop over the same net, the toolkit's trainer, and the
    trainer with `--precision bf16`."""
    print(
        f"{'model':12s} {'plain loop':>11s} {'toolkit':>9s} {'bf16':>9s}  toolkit/plain  bf16/fp32   "
        f"(examples/s, {epochs} epochs)"
    )
    for architecture in ARCHITECTURES:
        for model in MODELS:
            config = RunConfig(model=model, architecture=architecture, epochs=epochs, patience=0)
            plain = plain_loop(splits, config, epochs)
            fp32, bf16 = (
                len(splits.train) / toolkit_epoch_seconds(splits, replace(config, precision=precision))
                for precision in ("fp32", "bf16")
            )
            print(
                f"{model} {architecture:8s} {plain:11.0f} {fp32:9.0f} {bf16:9.0f}  {fp32 / plain:12.2f}x "
                f"{bf16 / fp32:9.2f}x"
            )


def torchvision_root(tmp: Path) -> Path:
    """A torchvision-layout copy (decompressed, as torchvision wants) of the IDX files the toolkit finds."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in find_files("fashion-mnist", download=False).values():
        target = raw / path.name.removesuffix(".gz")
        if path.suffix == ".gz":
            with gzip.open(path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(path, target)
    assert len(list(raw.iterdir())) == len(FILES)
    return tmp


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    config = RunConfig(epochs=args.epochs, patience=0)
    splits = load_splits("fashion-mnist", device="cpu", download=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs each")

    with tempfile.TemporaryDirectory() as tmp:
        notebook_rate = notebook_loop(torchvision_root(Path(tmp)), args.epochs)
        toolkit_rate = len(splits.train) / toolkit_epoch_seconds(splits, config)
        print(f"notebooks' loop : {notebook_rate:8.0f} examples/s")
        print(f"toolkit trainer : {toolkit_rate:8.0f} examples/s")
        print(f"speed-up        : {toolkit_rate / notebook_rate:8.2f}x  (target >= 2.0x)")
        compare_architectures(splits, args.epochs)

        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        without = toolkit_epoch_seconds(splits, config)
        logging_seconds = []

        def timed_log(epoch, metrics):
            start = time.perf_counter()
            run.log_epoch(epoch, metrics)
            logging_seconds.append(time.perf_counter() - start)

        with start_run("bench", "tracking-overhead") as run:
            with_logging = toolkit_epoch_seconds(splits, config, [timed_log])
        per_epoch = sum(logging_seconds) / len(logging_seconds)
        print(
            f"epoch without MLflow: {without:6.2f} s, with: {with_logging:6.2f} s "
            f"(wall-clock difference {100 * (with_logging / without - 1):+.1f}%, includes noise)"
        )
        print(
            f"time inside MLflow logging: {1000 * per_epoch:6.1f} ms per epoch = "
            f"{100 * per_epoch / with_logging:.2f}% of an epoch  (target <= 5%)"
        )


if __name__ == "__main__":
    main()
