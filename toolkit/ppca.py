"""Closed forms of the linear-Gaussian VAE (`--architecture linear --likelihood gaussian`): its
decoder is probabilistic PCA's generative model (Tipping & Bishop 1999),

    z ~ N(0, I_d),   x = W z + b + σ ε,   ε ~ N(0, I_D),   so   x ~ N(b, C),  C = W Wᵀ + σ² I_D,

and its encoder q(z|x) = N(A x + c, diag s²) is affine in x with one variance for every image.
Everything a VAE estimates by sampling is exact here: log p(x), the posterior p(z|x), the ELBO of
the encoder and, for Gaussian data, the information I(x; z) and KL(q(z) || p(z)) that the rate
splits into. They anchor the toolkit's sampled estimates (`evaluate.iw_nll`, the ELBO) to truth.

Work is in float64 and in the latent dimension d, never D x D: with M = Wᵀ W + σ² I_d,
C⁻¹ = (I - W M⁻¹ Wᵀ) / σ² (Woodbury) and det C = σ^(2(D - d)) det M (the determinant lemma).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

LOG_2PI = math.log(2 * math.pi)


class Decoder(NamedTuple):
    """x = W z + b + σ ε."""

    weight: torch.Tensor  # W, (D, d)
    bias: torch.Tensor  # b, (D,)
    sigma: float

    def precision_matrix(self) -> torch.Tensor:
        """M = Wᵀ W + σ² I_d, whose inverse scales the posterior's covariance."""
        d = self.weight.shape[1]
        return self.weight.T @ self.weight + self.sigma**2 * torch.eye(d, dtype=self.weight.dtype)

    def covariance(self) -> torch.Tensor:
        """C = W Wᵀ + σ² I_D, the covariance of x (D x D: for small D and for data drawn from the model)."""
        return self.weight @ self.weight.T + self.sigma**2 * torch.eye(len(self.bias), dtype=self.weight.dtype)


class Encoder(NamedTuple):
    """q(z|x) = N(A x + c, diag exp(logvar))."""

    weight: torch.Tensor  # A, (d, D)
    bias: torch.Tensor  # c, (d,)
    logvar: torch.Tensor  # log s², (d,)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


def decoder_of(model) -> Decoder:
    """A trained linear-Gaussian model's decoder (`models.linear_decoder`), in float64."""
    if not model.identity_mean:
        raise ValueError("the closed forms need a linear decoder with a Gaussian likelihood")
    layer = model.decoder
    return Decoder(
        layer.weight.detach().double().cpu(), layer.bias.detach().double().cpu(), float(model.log_sigma.detach().exp())
    )


def encoder_of(model) -> Encoder:
    """A linear VAE's encoder (`models.SharedVarianceHead` on the pixels), in float64."""
    head = model.head
    weight, bias = (t.detach().double().cpu() for t in (head.mean.weight, head.mean.bias))
    return Encoder(weight, bias, head.logvar.detach().double().cpu())


def log_marginal(decoder: Decoder, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log N(x; b, W Wᵀ + σ² I) of every row of x, (N,), in nats."""
    x = x.double().cpu()
    D, d = decoder.weight.shape
    factor = torch.linalg.cholesky(decoder.precision_matrix())
    r = x - decoder.bias
    u = r @ decoder.weight  # (N, d): Wᵀ (x - b)
    quadratic = (r.pow(2).sum(1) - (u * torch.cholesky_solve(u.T, factor).T).sum(1)) / decoder.sigma**2
    log_det = (D - d) * math.log(decoder.sigma**2) + 2 * factor.diagonal().log().sum()
    return -0.5 * (D * LOG_2PI + log_det + quadratic)


def posterior(decoder: Decoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact p(z|x) = N(M⁻¹ Wᵀ (x - b), σ² M⁻¹): its means (N, d) and its one covariance (d, d)."""
    x = x.double().cpu()
    inverse = torch.linalg.inv(decoder.precision_matrix())
    return (x - decoder.bias) @ decoder.weight @ inverse, decoder.sigma**2 * inverse


def elbo(decoder: Decoder, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The exact ELBO E_q[log p(x|z)] - KL(q || N(0, I)) of every row of x under q(z|x) = N(mu, diag
    exp(logvar)), (N,): the expected squared error of W z + b is that of its mean plus Σ_j s_j² |W_j|²."""
    x, mu, logvar = (t.double().cpu() for t in (x, mu, logvar))
    D = len(decoder.bias)
    variance = logvar.exp()
    squared = (x - mu @ decoder.weight.T - decoder.bias).pow(2).sum(1)
    spread = (variance * decoder.weight.pow(2).sum(0)).sum(-1)
    expected = -0.5 * (D * (LOG_2PI + math.log(decoder.sigma**2)) + (squared + spread) / decoder.sigma**2)
    return expected - 0.5 * (mu.pow(2) + variance - 1 - logvar).sum(1)


def maximum_likelihood(x: torch.Tensor, latent_dim: int) -> Decoder:
    """Probabilistic PCA fitted to the rows of x by maximum likelihood, in closed form (Tipping &
    Bishop 1999): b the mean, σ² the mean variance of the directions left out, W the leading
    eigenvectors of the covariance scaled by (λ - σ²)^½. No decoder of this latent size gives x a
    higher likelihood."""
    x = x.double().cpu()
    mean = x.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((x - mean).T, correction=0))
    values, vectors = values.flip(0), vectors.flip(1)  # largest first
    variance = float(values[latent_dim:].mean())
    weight = vectors[:, :latent_dim] * (values[:latent_dim] - variance).clamp_min(0).sqrt()
    return Decoder(weight, mean, math.sqrt(variance))


def aggregate_posterior(encoder: Encoder, data_mean: torch.Tensor, data_cov: torch.Tensor) -> tuple:
    """q(z) = ∫ q(z|x) p(x) dx for x ~ N(m, Σ): Gaussian, N(A m + c, A Σ Aᵀ + diag s²); (mean, covariance)."""
    weight = encoder.weight
    return encoder.mean(data_mean.double()), weight @ data_cov.double() @ weight.T + torch.diag(encoder.logvar.exp())


def mutual_information(encoder: Encoder, data_mean: torch.Tensor, data_cov: torch.Tensor) -> float:
    """I(x; z) under q for x ~ N(m, Σ): H[q(z)] - H[q(z|x)] = ½ log det(A Σ Aᵀ + S) - ½ log det S."""
    _, covariance = aggregate_posterior(encoder, data_mean, data_cov)
    return float(0.5 * (torch.logdet(covariance) - encoder.logvar.sum()))


def marginal_kl(encoder: Encoder, data_mean: torch.Tensor, data_cov: torch.Tensor) -> float:
    """KL(q(z) || N(0, I)) for x ~ N(m, Σ): with the mean rate E_x KL(q(z|x) || p(z)) it makes the rate's split,
    rate = I(x; z) + marginal KL."""
    mean, covariance = aggregate_posterior(encoder, data_mean, data_cov)
    return float(0.5 * (covariance.trace() + mean.pow(2).sum() - len(mean) - torch.logdet(covariance)))
