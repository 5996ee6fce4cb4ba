"""`fit`: the training loop. It knows nothing of MLflow or Optuna; it reports each epoch's
metrics to callbacks `callback(epoch, metrics)`, which may raise to stop training, and hands the
whole training state to a `checkpoint(state)` hook, from which `fit(resume=state)` continues."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from toolkit import ToolkitError, names
from toolkit.config import RunConfig
from toolkit.evaluate import elbo_metrics
from toolkit.objectives import beta_at, loss_terms


class TrainingDiverged(ToolkitError):
    """The loss became NaN or infinite."""


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one metrics dict per epoch
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused kernel where this torch build has it (same maths, fewer passes over memory)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


@dataclass
class Progress:
    """One run's training as it stands between epochs: its model, optimiser and random streams
    (shuffle order, binarisation and sampling noise), its history, best weights and early-stopping
    count. `fit` keeps one; a group (`toolkit.group`) keeps one per member. `state()` is what a
    checkpoint keeps, and `Progress.start(..., resume=state)` goes on from it."""

    model: nn.Module
    config: RunConfig
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    noise: torch.Generator
    torch_rng: torch.Tensor  # torch's global random state once the model was built (training draws none from it)
    result: FitResult = field(default_factory=FitResult)
    best_state: dict | None = None
    bad_epochs: int = 0

    @classmethod
    def start(cls, model, config: RunConfig, device: torch.device, resume: dict | None = None) -> Progress:
        """A run's training from its first epoch, or from `resume`, a `state()` of it."""
        progress = cls(
            model,
            config,
            make_optimizer(model, config.lr),
            torch.Generator().manual_seed(config.seed),
            torch.Generator(device=device).manual_seed(config.seed),
            torch.get_rng_state(),
        )
        if resume is not None:
            model.load_state_dict(resume["model"])
            progress.optimizer.load_state_dict(resume["optimizer"])
            progress.torch_rng = resume["rng"]["torch"]
            progress.shuffle.set_state(resume["rng"]["shuffle"])
            progress.noise.set_state(resume["rng"]["noise"])
            progress.result = FitResult(
                list(resume["history"]), resume["best_epoch"], resume["best_val_loss"], resume["stopped_early"]
            )
            progress.best_state, progress.bad_epochs = resume["best_model"], resume["bad_epochs"]
        return progress

    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
        return len(self.result.history)

    def finished(self) -> bool:
        return self.result.stopped_early or self.epoch >= self.config.epochs

    def record(self, metrics: dict[str, float], val_loss: float):
        """Keep an epoch's metrics; keep its weights if its validation loss is the best so far, else
        count it towards early stopping (not while β still ramps up: a rising loss is expected then)."""
        self.result.history.append(metrics)
        if val_loss < self.result.best_val_loss:
            self.result.best_epoch, self.result.best_val_loss, self.bad_epochs = self.epoch, val_loss, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        elif self.epoch > self.config.warmup_epochs:
            self.bad_epochs += 1
            self.result.stopped_early = self.bad_epochs >= self.config.patience > 0

    def restore_best(self):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state(self) -> dict:
        """Everything training needs to continue after the last epoch of the history: weights,
        optimiser, the random streams, the history and early-stopping state, the best weights so
        far. Tensors are the live ones: serialise the state before training goes on."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": self.torch_rng, "shuffle": self.shuffle.get_state(), "noise": self.noise.get_state()},
            "history": self.result.history,
            "best_epoch": self.result.best_epoch,
            "best_val_loss": self.result.best_val_loss,
            "stopped_early": self.result.stopped_early,
            "bad_epochs": self.bad_epochs,
            "best_model": self.best_state,
        }


def fit(
    model, splits, config, callbacks=(), quiet: bool = False, checkpoint=None, resume: dict | None = None
) -> FitResult:
    """Train `model` on `splits.train`, early-stop on `splits.val`, restore the best weights.

    After each epoch, once the callbacks have seen it (so a full disk that stops the checkpoint
    does not lose the epoch's logged metrics), `checkpoint` receives the training state
    (`Progress.state`); `resume`, such a state, continues where it was taken, with the same
    optimiser, random streams and early-stopping counts, so the run ends as it would have."""
    progress = Progress.start(model, config, splits.train.images.device, resume)
    torch.set_rng_state(progress.torch_rng)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    first = progress.epoch + 1
    bar = tqdm(
        range(first, config.epochs + 1 if not progress.result.stopped_early else first),
        desc=f"{config.model}",
        unit="epoch",
        initial=first - 1,
        total=config.epochs,
        disable=quiet or not sys.stderr.isatty(),
    )
    for epoch in bar:
        start = time.perf_counter()
        sums, beta_mean = _train_epoch(model, progress, splits.train, (epoch - 1) * steps_per_epoch, steps_per_epoch)
        val = elbo_metrics(model, splits.val, config)
        metrics = epoch_metrics(epoch, model.variational, sums, beta_mean, val, time.perf_counter() - start)
        progress.record(metrics, val[names.LOSS])
        bar.set_postfix({k: f"{metrics[k]:.1f}" for k in (names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_RECON)})
        for callback in callbacks:
            callback(epoch, metrics)
        if checkpoint is not None:
            checkpoint(progress.state())
        if progress.result.stopped_early:
            break
    bar.close()
    progress.restore_best()
    return progress.result


def epoch_metrics(
    epoch: int, variational: bool, sums: list[float], beta_mean: float, val: dict[str, float], seconds: float
) -> dict[str, float]:
    """An epoch's metrics from its training sums (loss, recon and KL per example), its mean β and its
    validation metrics; `TrainingDiverged` if any is not finite."""
    loss, recon, kl = sums
    metrics = {names.TRAIN_LOSS: loss, names.TRAIN_RECON: recon}
    if variational:
        metrics.update({names.TRAIN_KL: kl, names.BETA_EFF: beta_mean})
    metrics |= {names.val(k): v for k, v in val.items()} | {names.EPOCH_SECONDS: seconds}
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise TrainingDiverged(
            f"epoch {epoch}: {', '.join(bad[:3])} became non-finite; the model is not saved. "
            "Try a smaller --lr or --beta."
        )
    return metrics


def _train_epoch(model, progress: Progress, split, step: int, steps_per_epoch: int) -> tuple[list[float], float]:
    """One pass over the training split: the per-example means of loss, recon and KL, and the
    epoch-mean beta. With dynamic binarisation every batch is drawn anew as Bernoulli samples of its grey levels."""
    config, optimizer, noise = progress.config, progress.optimizer, progress.noise
    model.train()
    sums = torch.zeros(3, device=split.images.device)  # loss * n, recon, kl
    beta_total = 0.0
    for i, (x, _) in enumerate(split.batches(config.batch_size, progress.shuffle)):
        if config.binarize == "dynamic":
            x = torch.bernoulli(x, generator=noise)
        beta = beta_at(step + i, steps_per_epoch, config.beta, config.warmup_epochs)
        beta_total += beta
        with forward_precision(config, x.device):
            out = model(x, noise)
        terms = loss_terms(out.in_fp32(), x, config.likelihood, beta, config.free_bits, model.log_sigma, model.mean)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        sums += torch.stack([terms.loss.detach() * len(x), terms.recon.detach().sum(), terms.kl.detach().sum()])
    return (sums / len(split)).tolist(), beta_total / steps_per_epoch


def forward_precision(config, device: torch.device):
    """The context a training step's forward pass runs in: bfloat16 autocast for `--precision bf16`."""
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
