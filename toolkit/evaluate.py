"""Metrics of a trained model on one split, per example and in nats."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from toolkit import names
from toolkit.config import IW_BATCH
from toolkit.machine import fast_bf16
from toolkit.objectives import HALF_LOG_2PI, kl_per_dim, reconstruction_nll

EVAL_SEED = 0  # the posterior sample used for the ELBO is fixed, so reloading a model reproduces its metrics
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015: unit u is active when Cov_x(E_q[z_u]) > 0.01
BATCH = 2000
BF16_TOLERANCE = 0.01  # nats per example: how far bf16 may move the IW bound's first batch from fp32
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
IW_ROWS = 2000  # codes decoded at once by the IW bound: 6 MB of fp32 logits, within this CPU's cache


@torch.no_grad()
def elbo_metrics(model, split, config, by_class: bool = False) -> dict[str, float]:
    """recon, mse (per pixel, from the posterior mean) and loss (at `config.beta`); for a VAE also
    kl, neg_elbo, kl_dim/NN and active_units; decoder_sigma where σ is learned;
    `by_class`: recon_class/NN, the mean recon over the images of class NN. The AE gets no KL keys."""
    was_training = model.training
    model.eval()
    device = split.images.device
    generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
    recon = kl = sq_err = 0.0
    kl_dims, mus, per_class = 0.0, [], []
    for x, labels in split.batches(BATCH):
        out = model(x, generator)
        nll = reconstruction_nll(out.logits, x, config.likelihood, model.log_sigma, model.mean)
        recon += nll.sum()
        per_class.append((nll, labels))
        sq_err += (model.mean(model.decode(out.mu)) - x).pow(2).sum()
        if out.logvar is not None:
            dims = kl_per_dim(out.mu, out.logvar)
            kl_dims = kl_dims + dims.sum(0)
            mus.append(out.mu)
    model.train(was_training)
    n = len(split)
    metrics = {names.RECON: float(recon) / n, names.MSE: float(sq_err) / (n * split.images.shape[1])}
    if by_class:
        metrics |= class_means(torch.cat([nll for nll, _ in per_class]), torch.cat([c for _, c in per_class]))
    if model.learns_sigma:
        metrics[names.DECODER_SIGMA] = float(model.log_sigma.exp())
    if not mus:
        metrics[names.LOSS] = metrics[names.RECON]
        return metrics
    kl_dims = kl_dims / n
    kl = float(kl_dims.sum())
    active = active_dims(torch.cat(mus))
    metrics.update(
        {
            names.KL: kl,
            names.NEG_ELBO: metrics[names.RECON] + kl,
            names.LOSS: metrics[names.RECON] + config.beta * kl,
            names.ACTIVE_UNITS: int(active.sum()),
        }
    )
    metrics.update({names.kl_dim(d): float(v) for d, v in enumerate(kl_dims)})
    return metrics


def active_dims(mu: torch.Tensor) -> torch.Tensor:
    """Which latent dimensions' posterior means vary across the data by more than 0.01 (Burda et al.)."""
    return mu.var(0, unbiased=False) > ACTIVE_UNIT_THRESHOLD


def class_means(nll: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """`recon_class/NN`: the mean of `nll` over the images of each class present."""
    return {names.recon_class(int(c)): float(nll[labels == c].mean()) for c in labels.unique()}


def best_sigma(recon: float, sigma: float, pixels: int) -> tuple[float, float]:
    """The σ of a Gaussian decoder, one for every pixel of every image, under which its
    reconstructions are likeliest, and the reconstruction term (nats per image) at that σ, from
    the term `recon` it had at a fixed σ. With S the squared error summed over an image's D
    pixels, averaged over the images, recon(σ) = S / (2σ²) + D (ln σ + ½ ln 2π); its minimum is at
    σ̂² = S / D, the mean squared error per pixel, where it is D/2 · (1 + ln 2π σ̂²). S is read back
    from `recon` and σ, so that the same reconstructions (the same posterior samples) are scored."""
    mse = 2 * sigma**2 * (recon / pixels - math.log(sigma) - HALF_LOG_2PI)
    return math.sqrt(mse), 0.5 * pixels * (1 + math.log(2 * math.pi * mse))


class Bound(NamedTuple):
    nats: float  # the importance-weighted bound on -log p(x), per example
    precision: str  # of the decoder's products: "bf16" or "fp32"
    bf16_shift: float | None  # nats by which bf16 moved the first batch's bound from fp32's (None: not tried)
    images: int  # the test images whose bound was computed: all of them, or the subset it is estimated from
    standard_error: (
        float | None
    )  # of the estimate, as an estimate of the bound on every image (None: computed on every image)


@torch.no_grad()
def iw_nll(
    model,
    split,
    likelihood: str,
    samples: int = 100,
    images: int | None = None,
    neg_elbo: float | None = None,
    batch: int = IW_BATCH,
) -> Bound:
    """Importance-weighted bound on -log p(x) (Burda et al. 2015), nats per example.

    -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x). K = 1 gives the negative ELBO and the
    bound tightens as K grows. It uses the same reconstruction term as `elbo_metrics`.

    Given `images` fewer than the split holds, and `neg_elbo`, the split's negative ELBO from
    `elbo_metrics`, the bound on the whole split is estimated from that many images drawn at random
    (EVAL_SEED, so every run of a dataset uses the same ones), with the ELBO as control variate: the
    split's -ELBO less the subset's mean gap log p_K(x) - ELBO_K(x), both terms of which come from
    the same K log-weights of an image. The per-image bound varies by tens of nats between images,
    the gap by a few, so this estimate is unbiased and far tighter than the subset's own mean bound.
    Its standard error combines the gap's spread over the subset with the Monte Carlo noise of the
    single-sample -ELBO (each image's variance of log p(x|z), measured on the subset, over the split).

    Nearly all of its work is the decoder on K x N codes. Where this machine multiplies bfloat16
    natively (`machine.fast_bf16`), the decoder runs under bf16 autocast, five times faster on the
    2-core CPU, once the first batch shows that it moves the bound by at most BF16_TOLERANCE from
    fp32; otherwise, and for the rest, fp32.
    """
    total = len(split)
    if images is not None and images < total:
        split = split.subset(torch.randperm(total, generator=torch.Generator().manual_seed(EVAL_SEED))[:images])
    weights = iw_log_weights(model, split, likelihood, samples, batch)
    log_p = weights.bounds()
    if len(split) == total:
        return Bound(-float(log_p.mean()), weights.precision, weights.bf16_shift, total, None)
    gap = log_p - weights.log_w.mean(0)  # >= 0 for every image (Jensen)
    variance = gap.var() / len(split) + weights.log_p_x.var(0).mean() / total
    return Bound(
        neg_elbo - float(gap.mean()), weights.precision, weights.bf16_shift, len(split), float(variance.sqrt())
    )


class LogWeights(NamedTuple):
    """The IW bound's K samples for every image of a split, each (K, images)."""

    log_p_x: torch.Tensor  # log p(x|z_k)
    log_w: torch.Tensor  # log p(x|z_k) p(z_k) / q(z_k|x)
    precision: str  # of the decoder's products: "bf16" or "fp32"
    bf16_shift: float | None  # nats by which bf16 moved the first batch's bound from fp32's (None: not tried)

    def bounds(self) -> torch.Tensor:
        """log p_K(x) of every image: the importance-weighted lower bound on its log p(x)."""
        return _log_mean_exp(self.log_w)


@torch.no_grad()
def iw_log_weights(
    model, split, likelihood: str, samples: int, batch: int = IW_BATCH, allow_bf16: bool = True
) -> LogWeights:
    """`samples` codes z_k ~ q(z|x) of every image of `split` (EVAL_SEED) and their log-weights,
    the decoder under bf16 autocast where `iw_nll` says so, unless `allow_bf16` is False."""
    model.eval()
    generator = torch.Generator(device=split.images.device).manual_seed(EVAL_SEED)
    precision, shift, found = "fp32", None, []
    for i, (x, _) in enumerate(split.batches(batch)):
        mu, logvar = model.encode(x)
        eps = torch.randn((samples, *mu.shape), generator=generator, device=mu.device)
        if i == 0 and allow_bf16 and fast_bf16(x.device):
            exact = _log_weights(model, x, mu, logvar, eps, likelihood, torch.float32)
            fast = _log_weights(model, x, mu, logvar, eps, likelihood, torch.bfloat16)
            shift = float((_log_mean_exp(fast[1]) - _log_mean_exp(exact[1])).mean())
            precision = "bf16" if abs(shift) <= BF16_TOLERANCE else "fp32"
            found.append(fast if precision == "bf16" else exact)
            continue
        found.append(_log_weights(model, x, mu, logvar, eps, likelihood, DTYPES[precision]))
    log_p_x, log_w = (torch.cat(parts, 1) for parts in zip(*found))
    return LogWeights(log_p_x, log_w, precision, shift)


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w_k) over the first dimension."""
    return torch.logsumexp(log_w, 0) - math.log(len(log_w))


def _log_weights(model, x, mu, logvar, eps, likelihood: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x|z_k) and the log-weights log p(x|z_k) p(z_k) / q(z_k|x), each (K, B), the decoder's
    products in `dtype`, the sums in fp32. The codes are decoded IW_ROWS at a time, so that the
    logits stay in cache while the likelihood passes over them."""
    z = mu + torch.exp(0.5 * logvar) * eps  # (K, B, D)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - HALF_LOG_2PI).sum(-1)
    log_p_z = (-0.5 * z.pow(2) - HALF_LOG_2PI).sum(-1)
    log_p_x = []
    for codes in z.split(max(1, IW_ROWS // len(x))):
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model.decode(codes.flatten(0, 1))
        logits = logits.float().view(*codes.shape[:2], -1)
        log_p_x.append(-reconstruction_nll(logits, x, likelihood, model.log_sigma, model.mean))
    log_p_x = torch.cat(log_p_x)
    return log_p_x, log_p_x + log_p_z - log_q
