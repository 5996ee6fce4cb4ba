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
from tqdm.auto import tqdm

from toolkit import ToolkitError, names
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


def fit(
    model, splits, config, callbacks=(), quiet: bool = False, checkpoint=None, resume: dict | None = None
) -> FitResult:
    """Train `model` on `splits.train`, early-stop on `splits.val`, restore the best weights.

    After each epoch, once the callbacks have seen it (so a full disk that stops the checkpoint
    does not lose the epoch's logged metrics), `checkpoint` receives the training state
    (`training_state`); `resume`, such a state, continues where it was taken, with the same
    optimiser, random streams and early-stopping counts, so the run ends as it would have."""
    device = splits.train.images.device
    optimizer = make_optimizer(model, config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    result, best_state, bad_epochs = FitResult(), None, 0
    if resume is not None:
        result, best_state, bad_epochs = _restore(resume, model, optimizer, shuffle, noise)
    first = len(result.history) + 1
    bar = tqdm(
        range(first, config.epochs + 1 if not result.stopped_early else first),
        desc=f"{config.model}",
        unit="epoch",
        initial=first - 1,
        total=config.epochs,
        disable=quiet or not sys.stderr.isatty(),
    )
    for epoch in bar:
        start = time.perf_counter()
        train = _train_epoch(
            model, optimizer, splits.train, config, (epoch - 1) * steps_per_epoch, steps_per_epoch, shuffle, noise
        )
        val = elbo_metrics(model, splits.val, config)
        metrics = {
            **train,
            **{names.val(k): v for k, v in val.items()},
            names.EPOCH_SECONDS: time.perf_counter() - start,
        }
        _check_finite(epoch, metrics)
        result.history.append(metrics)
        bar.set_postfix({k: f"{metrics[k]:.1f}" for k in (names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_RECON)})
        if val[names.LOSS] < result.best_val_loss:
            result.best_epoch, result.best_val_loss, bad_epochs = epoch, val[names.LOSS], 0
            best_state = copy.deepcopy(model.state_dict())
        elif epoch > config.warmup_epochs:  # while beta still ramps up, a rising loss is expected
            bad_epochs += 1
            result.stopped_early = bad_epochs >= config.patience > 0
        for callback in callbacks:
            callback(epoch, metrics)
        if checkpoint is not None:
            checkpoint(training_state(model, optimizer, shuffle, noise, result, best_state, bad_epochs))
        if result.stopped_early:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def training_state(model, optimizer, shuffle, noise, result: FitResult, best_state, bad_epochs: int) -> dict:
    """Everything `fit` needs to continue after the last epoch of `result.history`: weights,
    optimiser, the random streams (torch's global one, the shuffle and the noise generators),
    the history and early-stopping state, the best weights so far. Tensors are the live ones:
    serialise the state before training goes on."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(), "noise": noise.get_state()},
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        "bad_epochs": bad_epochs,
        "best_model": best_state,
    }


def _restore(state: dict, model, optimizer, shuffle, noise) -> tuple[FitResult, dict | None, int]:
    """Load a `training_state` into the model, optimiser and generators; the loop's own state back."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    shuffle.set_state(state["rng"]["shuffle"])
    noise.set_state(state["rng"]["noise"])
    result = FitResult(list(state["history"]), state["best_epoch"], state["best_val_loss"], state["stopped_early"])
    return result, state["best_model"], state["bad_epochs"]


def _train_epoch(model, optimizer, split, config, step, steps_per_epoch, shuffle, noise):
    """One pass over the training split: per-example means and, for a VAE, the epoch-mean beta.
    With dynamic binarisation every batch is drawn anew as Bernoulli samples of its grey levels."""
    model.train()
    sums = torch.zeros(3, device=split.images.device)  # loss * n, recon, kl
    beta_total = 0.0
    forward = (
        torch.autocast(split.images.device.type, dtype=torch.bfloat16)
        if config.precision == "bf16"
        else contextlib.nullcontext()
    )
    for i, (x, _) in enumerate(split.batches(config.batch_size, shuffle)):
        if config.binarize == "dynamic":
            x = torch.bernoulli(x, generator=noise)
        beta = beta_at(step + i, steps_per_epoch, config.beta, config.warmup_epochs)
        beta_total += beta
        with forward:
            out = model(x, noise)
        terms = loss_terms(out.in_fp32(), x, config.likelihood, beta, config.free_bits, model.log_sigma)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        sums += torch.stack([terms.loss.detach() * len(x), terms.recon.detach().sum(), terms.kl.detach().sum()])
    loss, recon, kl = (sums / len(split)).tolist()
    metrics = {names.TRAIN_LOSS: loss, names.TRAIN_RECON: recon}
    if model.variational:
        metrics.update({names.TRAIN_KL: kl, names.BETA_EFF: beta_total / steps_per_epoch})
    return metrics


def _check_finite(epoch: int, metrics: dict[str, float]):
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise TrainingDiverged(
            f"epoch {epoch}: {', '.join(bad[:3])} became non-finite; the model is not saved. "
            "Try a smaller --lr or --beta."
        )
