"""Ways to draw latent codes, and the images they decode to.

The VAE's own sampler is its prior N(0, I). An AE has no prior, so (as in the reference notebooks) a Gaussian
is fitted to its training-set codes, and a 10-component Gaussian mixture (Ghosh et al. 2020) can
be; both are fitted to a VAE's posterior means too, so that the two models' samples can be
compared drawn the same way.
"""

from __future__ import annotations

import math

import torch
from sklearn.mixture import GaussianMixture

BATCH = 2000


@torch.no_grad()
def latent_means(model, images: torch.Tensor) -> torch.Tensor:
    """The encoder's mean code (the AE's code) for every image, in batches."""
    return torch.cat([model.encode(images[i : i + BATCH])[0] for i in range(0, len(images), BATCH)])


@torch.no_grad()
def posteriors(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's posterior means and log-variances for every image, in batches."""
    found = [model.encode(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    return torch.cat([mu for mu, _ in found]), torch.cat([logvar for _, logvar in found])


@torch.no_grad()
def decode_images(model, z: torch.Tensor) -> torch.Tensor:
    """Mean images for the codes `z`, as grey levels in [0, 1] (a linear decoder's mean clipped to them)."""
    return torch.cat([model.mean(model.decode(z[i : i + BATCH])).clamp(0, 1) for i in range(0, len(z), BATCH)])


class NormalPrior:
    """The VAE's prior N(0, I)."""

    title = "N(0, I) prior"

    def __init__(self, dim: int):
        self.dim = dim

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=generator)


class LaplacePrior(NormalPrior):
    """Independent Laplace codes with unit variance (scale 1/sqrt 2), drawn by inverting the CDF."""

    title = "Laplace prior (unit variance)"

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, self.dim, generator=generator) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


class AggregatePosterior:
    """The VAE's aggregate posterior q(z) = E_x q(z|x): a training image drawn at random, then a code
    from its posterior. Its samples against the prior's show what the prior's mismatch costs."""

    title = "aggregate posterior q(z)"

    def __init__(self, model, images: torch.Tensor):
        self.model, self.images = model, images

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        chosen = torch.randint(len(self.images), (n,), generator=generator)
        mu, logvar = posteriors(self.model, self.images[chosen.to(self.images.device)])
        eps = torch.randn(mu.shape, generator=generator)
        return (mu.cpu() + torch.exp(0.5 * logvar.cpu()) * eps).float()


class FittedGaussian:
    """A full-covariance Gaussian fitted to codes."""

    title = "Gaussian fitted to training codes"

    def __init__(self, codes: torch.Tensor):
        codes = codes.double().cpu()
        self.mean = codes.mean(0)
        correction = 1 if len(codes) > 1 else 0  # one code: no spread to estimate, only the ridge below
        cov = torch.cov(codes.T, correction=correction) + 1e-6 * torch.eye(codes.shape[1], dtype=codes.dtype)
        self.chol = torch.linalg.cholesky(cov)

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return (self.mean + eps @ self.chol.T).float()


class FittedMixture:
    """A full-covariance Gaussian mixture fitted to codes (Ghosh et al. 2020 use 10 components)."""

    title = "10-component GMM fitted to training codes"

    def __init__(self, codes: torch.Tensor, components: int = 10, seed: int = 0):
        codes = codes.double().cpu().numpy()
        self.gmm = GaussianMixture(
            min(components, len(codes)), covariance_type="full", random_state=seed, reg_covar=1e-5
        )
        self.gmm.fit(codes)

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.gmm.random_state = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        z, _ = self.gmm.sample(n)  # grouped by component; shuffled so any prefix is a fair sample
        return torch.from_numpy(z[torch.randperm(n, generator=generator).numpy()]).float()


def interpolation_codes(model, start: torch.Tensor, end: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Codes on the straight line between the latent means of two images."""
    z = latent_means(model, torch.stack([start, end]))
    weights = torch.linspace(0, 1, steps, device=z.device)[:, None]
    return (1 - weights) * z[0] + weights * z[1]


def manifold_codes(side: int = 15, codes: torch.Tensor | None = None) -> torch.Tensor:
    """A side x side grid over a 2-D latent space, row by row: the second coordinate from high to
    low down the rows, the first from low to high along them. Each coordinate runs over its 5 % to
    95 % quantiles: of the prior N(0, 1) (a VAE), or of `codes` (an AE's own codes, which no prior
    describes)."""
    levels = torch.linspace(0.05, 0.95, side)
    if codes is None:
        first = second = torch.distributions.Normal(0, 1).icdf(levels)
    else:
        first, second = torch.quantile(codes.cpu().float(), levels, dim=0).T
    return torch.cartesian_prod(second.flip(0), first)[:, [1, 0]]


def generate(model, sampler, n: int, seed: int = 0) -> torch.Tensor:
    """`n` images from `sampler`'s codes, reproducible from `seed`."""
    z = sampler(n, torch.Generator().manual_seed(seed))
    return decode_images(model, z.to(next(model.parameters()).device))
