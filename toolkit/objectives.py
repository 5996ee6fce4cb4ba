"""Loss terms, per example and in nats, summed over pixels (the reference notebooks' convention)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def reconstruction_nll(
    logits: torch.Tensor,
    x: torch.Tensor,
    likelihood: str,
    log_sigma: torch.Tensor | None = None,
    mean: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> torch.Tensor:
    """-log p(x|z) per example, shape (N,), in nats summed over the pixels.

    bernoulli: binary cross-entropy from logits. On grey levels x in [0, 1] it is a cross-entropy,
    not the likelihood of an image: its floor is the pixels' own entropy (`pixel_entropy`).
    gaussian: the whole negative log-density of N(x; mean(logits), σ²) per pixel, its constant
    included: Σ (x - mean)² / (2σ²) + D (ln σ + ½ ln 2π), with `log_sigma` = ln σ (a scalar
    tensor, trained when σ is learned) and `mean` the model's (`AE.mean`: the sigmoid, or the
    identity for a linear decoder). With σ² = ½ it is the squared error plus (D/2) ln π.
    """
    if likelihood == "bernoulli":
        return BernoulliNLL.apply(logits, x)
    if likelihood == "gaussian":
        squared = (mean(logits) - x).pow(2).sum(-1)
        return 0.5 * squared * torch.exp(-2 * log_sigma) + logits.shape[-1] * (log_sigma + HALF_LOG_2PI)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def pixel_entropy(x: torch.Tensor) -> torch.Tensor:
    """Σ over pixels of the entropy of Bernoulli(x), per example: the lowest value the Bernoulli
    cross-entropy of grey levels x can take (reached by a decoder that outputs x itself); 0 for
    binary pixels."""
    p = x.clamp(1e-12, 1 - 1e-12)
    return torch.where((x > 0) & (x < 1), -(p * p.log() + (1 - p) * (1 - p).log()), 0.0).sum(-1)


class BernoulliNLL(torch.autograd.Function):
    """Binary cross-entropy from logits l, summed over the last axis: softplus(l) - x l, computed
    in place as log(1 + exp(-|l|)) + max(l, 0) - x l, with the gradient sigmoid(l) - x.

    The same quantity as torch's `binary_cross_entropy_with_logits`, which spends its time in
    log-sigmoid and log1p, neither vectorised on this CPU (15% of a training step, half of the IW
    bound). log(1 + e) stands for log1p(e): where e is below float32's resolution the sum over 784
    pixels moves by less than 1e-4 nats. `x` may broadcast against `logits` (K samples of a batch)."""

    @staticmethod
    def forward(ctx, logits, x):
        ctx.save_for_backward(logits, x)
        nll = logits.abs().neg_().exp_().add_(1).log_()
        nll += logits.clamp_min(0)
        nll -= logits * x
        return nll.sum(-1)

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        return (torch.sigmoid(logits) - x) * grad.unsqueeze(-1), None


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per example and dimension, shape (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def beta_at(step: int, steps_per_epoch: int, beta: float, warmup_epochs: int) -> float:
    """Linear KL warm-up: beta ramps from 0 to `beta` over `warmup_epochs`, updated every step."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))


class Terms(NamedTuple):
    loss: torch.Tensor  # the objective minimised (batch mean)
    recon: torch.Tensor  # per example, (N,)
    kl: torch.Tensor  # true KL per example, (N,); zeros for the AE


def loss_terms(
    out, x, likelihood: str, beta, free_bits, log_sigma: torch.Tensor | None = None, mean=torch.sigmoid
) -> Terms:
    """Objective = mean recon + beta * sum_d max(free_bits, mean KL_d) (Kingma et al. 2016); `log_sigma`
    and `mean` as `reconstruction_nll` takes them.

    The KL returned for reporting is always the true KL, without the free-bits floor. For the
    members of a group (`toolkit.group`) every tensor has a leading member axis, and `beta`, (members,),
    and `free_bits`, (members, 1), are tensors: the objective is then one per member.
    """
    recon = reconstruction_nll(out.logits, x, likelihood, log_sigma, mean)
    if out.logvar is None:
        return Terms(recon.mean(-1), recon, torch.zeros_like(recon))
    kl_dims = kl_per_dim(out.mu, out.logvar)
    kl_batch = kl_dims.mean(-2)
    kl_objective = torch.where(torch.as_tensor(free_bits) > 0, kl_batch.clamp(min=free_bits), kl_batch).sum(-1)
    return Terms(recon.mean(-1) + beta * kl_objective, recon, kl_dims.sum(-1))
