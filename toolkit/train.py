"""`fit`: the training loop. It knows nothing of MLflow or Optuna; it reports each epoch's
metrics to callbacks `callback(epoch, metrics)`, which may raise to stop training."""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from toolkit import ToolkitError
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


def fit(model, splits, config, callbacks=(), quiet: bool = False) -> FitResult:
    """Train `model` on `splits.train`, early-stop on `splits.val`, restore the best weights."""
    device = splits.train.images.device
    optimizer = make_optimizer(model, config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    result, best_state, bad_epochs = FitResult(), None, 0
    bar = tqdm(range(1, config.epochs + 1), desc=f"{config.model}", unit="epoch",
               disable=quiet or not sys.stderr.isatty())
    for epoch in bar:
        train = _train_epoch(model, optimizer, splits.train, config, (epoch - 1) * steps_per_epoch,
                             steps_per_epoch, shuffle, noise)
        val = elbo_metrics(model, splits.val, config.likelihood, config.beta)
        metrics = {**train, **{f"val/{k}": v for k, v in val.items()}}
        _check_finite(epoch, metrics)
        result.history.append(metrics)
        bar.set_postfix({k: f"{metrics[k]:.1f}" for k in ("train/loss", "val/loss", "val/recon")})
        for callback in callbacks:
            callback(epoch, metrics)
        if val["loss"] < result.best_val_loss:
            result.best_epoch, result.best_val_loss, bad_epochs = epoch, val["loss"], 0
            best_state = copy.deepcopy(model.state_dict())
        elif epoch > config.warmup_epochs:  # while beta still ramps up, a rising loss is expected
            bad_epochs += 1
            if bad_epochs >= config.patience > 0:
                result.stopped_early = True
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _train_epoch(model, optimizer, split, config, step, steps_per_epoch, shuffle, noise):
    """One pass over the training split: per-example means and, for a VAE, the epoch-mean beta."""
    model.train()
    sums = torch.zeros(3, device=split.images.device)  # loss * n, recon, kl
    beta_total = 0.0
    for i, (x, _) in enumerate(split.batches(config.batch_size, shuffle)):
        beta = beta_at(step + i, steps_per_epoch, config.beta, config.warmup_epochs)
        beta_total += beta
        terms = loss_terms(model(x, noise), x, config.likelihood, beta, config.free_bits)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        sums += torch.stack([terms.loss.detach() * len(x), terms.recon.detach().sum(), terms.kl.detach().sum()])
    loss, recon, kl = (sums / len(split)).tolist()
    metrics = {"train/loss": loss, "train/recon": recon}
    if model.variational:
        metrics.update({"train/kl": kl, "beta_eff": beta_total / steps_per_epoch})
    return metrics


def _check_finite(epoch: int, metrics: dict[str, float]):
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise TrainingDiverged(
            f"epoch {epoch}: {', '.join(bad[:3])} became non-finite; the model is not saved. "
            "Try a smaller --lr or --beta."
        )
