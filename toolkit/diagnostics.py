"""What a trained model's codes and samples show beyond its ELBO terms: the rate split into the
information it carries and the prior's mismatch, precision and recall of its samples, whether the
samples copy training images, a linear probe of the codes and traversals of the latent space.

Each estimator takes tensors (codes, features, images) and returns numbers; `pipeline` feeds them a
run's test and training splits and logs what they return.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from toolkit.objectives import HALF_LOG_2PI

# The rate split: one code z ~ q(z|x) for each of RATE_CODES test images estimates the expectations
# over q(z); q(z) itself is the mixture of the posteriors of all N test images, so the estimate of
# I_q(x; z) cannot exceed log N (Hoffman & Johnson 2016).
RATE_CODES = 2000
# Each dimension's marginal KL, a 1-D quantity, on subsets: q(z_u) the mixture of the first
# MARGINAL_POSTERIORS test posteriors, the expectation over MARGINAL_CODES codes. On the reference VAE
# every dimension's estimate is within 0.02 nats of 2,000 codes over all 10,000 posteriors, in a
# twelfth of the time (0.33 s against 4.2 s).
MARGINAL_CODES, MARGINAL_POSTERIORS = 1000, 2000
CHUNK = 500  # rows of a distance or density matrix computed at once
# Precision and recall (Kynkäänniemi et al. 2019): k-nearest-neighbour balls around this many real
# and generated images' features. Both scores rise with the number of points; every run uses the same.
PR_K, PR_IMAGES = 3, 5000
# Memorisation: this many samples and test images, each against every training image.
NEAREST_QUERIES = 500
PROBE_TRAIN = 10_000  # training codes the linear probe is fitted to
# sklearn's default tolerance is 1e-4; at 1e-3 the reference VAE's probe stops after 35 iterations
# instead of 90, in 0.3 s instead of 1.25 s, 0.2 points of accuracy lower (79.3 % against 79.5 %).
PROBE_TOLERANCE = 1e-3
TRAVERSAL_DIMS, TRAVERSAL_STEPS = 8, 9
TRAVERSAL_QUANTILES = (0.02, 0.98)  # of the aggregate posterior along each traversed dimension


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_m; mu_n, diag exp(logvar_n)) for every code m and posterior n: (M, N), as one matrix
    product: with p = 1/σ², Σ_d (z - μ)² p + ln σ² expands to [z², z, 1] · [p, -2μp, Σ_d (μ²p + ln σ²)],
    so that M x N x D is never held and M x N is written once."""
    precision = torch.exp(-logvar)
    codes = torch.cat([z.pow(2), z, torch.ones_like(z[:, :1])], 1)
    posteriors = torch.cat([precision, -2 * mu * precision, (mu.pow(2) * precision + logvar).sum(1, keepdim=True)], 1)
    return (codes @ posteriors.T).mul_(-0.5).sub_(z.shape[1] * HALF_LOG_2PI)


def _log_mixture(log_densities: torch.Tensor) -> torch.Tensor:
    """log (1/N) Σ_n exp(row) for each row of (M, N) log densities."""
    return torch.logsumexp(log_densities, 1) - math.log(log_densities.shape[1])


class RateSplit(NamedTuple):
    mutual_information: float  # I_q(x; z) in nats, at most `ceiling`
    marginal_kl: float  # KL(q(z) || p(z)) in nats
    marginal_kl_dims: list[float]  # KL(q(z_u) || N(0, 1)) of each dimension
    ceiling: float  # log N: the mixture over N images carries at most this much information
    codes: torch.Tensor  # the codes drawn from the aggregate posterior, (M, D)


@torch.no_grad()
def rate_split(
    mu: torch.Tensor, logvar: torch.Tensor, mean_kl: float, generator: torch.Generator, codes: int = RATE_CODES
) -> RateSplit:
    """Hoffman & Johnson's split of the rate E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)),
    q(z) the aggregate posterior: the mixture of q(z|x_n) over the N images whose posteriors are
    (mu, logvar). The information is the Monte Carlo mean of log q(z|x_m) - log q(z) over one
    z ~ q(z|x_m) for each of the first `codes` images (both densities at the same z, so that their
    noise largely cancels); the marginal KL is the rest of `mean_kl` (the analytic mean KL of the
    same N posteriors), so the two parts sum to the logged KL exactly. Each dimension's marginal
    KL is the mean of log q(z_u) - log N(z_u; 0, 1) over the first MARGINAL_CODES of the same
    codes, q(z_u) the mixture of the first MARGINAL_POSTERIORS posteriors along u."""
    mu, logvar = mu.double(), logvar.double()
    m = min(codes, len(mu))
    eps = torch.randn(m, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu[:m] + torch.exp(0.5 * logvar[:m]) * eps
    log_q = torch.cat([_log_mixture(gaussian_log_density(part, mu, logvar)) for part in z.split(CHUNK)])
    log_q_given_x = (-0.5 * eps.pow(2) - 0.5 * logvar[:m] - HALF_LOG_2PI).sum(1)
    information = float((log_q_given_x - log_q).mean())
    dims = marginal_kl_dims(
        z[:MARGINAL_CODES].float(), mu[:MARGINAL_POSTERIORS].float(), logvar[:MARGINAL_POSTERIORS].float()
    )
    return RateSplit(information, mean_kl - information, dims, math.log(len(mu)), z.float())


def marginal_kl_dims(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> list[float]:
    """KL(q(z_u) || N(0, 1)) of every dimension u: the mean over the codes z (M, D) of log q(z_u)
    - log N(z_u; 0, 1), q(z_u) the mixture of the N posteriors (mu, logvar) along u."""
    rows = max(1, CHUNK * 50 // len(mu))  # codes at once: rows x N x D stays near 25 M numbers
    log_q = []
    for part in z.split(rows):
        log_density = -0.5 * (part[:, None, :] - mu).pow(2) * torch.exp(-logvar) - 0.5 * logvar - HALF_LOG_2PI
        log_q.append(torch.logsumexp(log_density, 1) - math.log(len(mu)))  # (rows, D)
    log_prior = -0.5 * z.pow(2) - HALF_LOG_2PI
    return [float(v) for v in (torch.cat(log_q) - log_prior).mean(0)]


def _distances(a: torch.Tensor, b: torch.Tensor):
    """Euclidean distances of the rows of `a` to those of `b`, CHUNK rows of `a` at a time."""
    for part in a.split(CHUNK):
        yield torch.cdist(part, b)


def kth_neighbour_radii(points: torch.Tensor, k: int = PR_K) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point of the same set."""
    return torch.cat([d.topk(k + 1, 1, largest=False).values[:, k] for d in _distances(points, points)])


def precision_recall(
    real: torch.Tensor, generated: torch.Tensor, k: int = PR_K, real_radii: torch.Tensor | None = None
) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019): precision is the share of generated points inside the real
    manifold (the union of balls reaching each real point's k-th nearest real neighbour), recall the
    share of real points inside the generated manifold. Low precision: samples unlike any real
    image; low recall: real images that no sample resembles. Undefined (nan) for a set of k points
    or fewer. `real_radii` (`kth_neighbour_radii(real, k)`) may be given, to score several
    generated sets against one real set."""
    if min(len(real), len(generated)) <= k:
        return math.nan, math.nan
    real, generated = real.float(), generated.float()
    real_radii = kth_neighbour_radii(real, k) if real_radii is None else real_radii
    generated_radii = kth_neighbour_radii(generated, k)
    inside, covered = [], torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for block, d in zip(generated_radii.split(CHUNK), _distances(generated, real)):  # both scores from each block
        inside.append((d <= real_radii).any(1))  # these samples within some real point's ball
        covered |= (d <= block[:, None]).any(0)  # real points within some of these samples' balls
    return float(torch.cat(inside).float().mean()), float(covered.float().mean())


def nearest(queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's distance to its nearest reference point, and that point's index."""
    found = [d.min(1) for d in _distances(queries.float(), reference.float())]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def nearest_ratio(sample_distances: torch.Tensor, test_distances: torch.Tensor) -> float:
    """The median distance from a sample to its nearest training point over that from a test image
    to its (each as `nearest(..., train)` gives them). About 1 when the samples are as far from the
    training set as unseen real images are; near 0 when they copy training images; above 1 when
    they are farther from every real image than real images are from one another."""
    return float(sample_distances.median().cpu() / test_distances.median().cpu())


def probe_accuracy(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    seed: int = 0,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted to standardised training codes.
    Training images of a single class leave nothing to fit: the probe then predicts that class."""
    from sklearn.linear_model import LogisticRegression  # here: the reports read this module's sizes, not sklearn
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = train_labels.cpu().numpy()
    if len(np.unique(labels)) < 2:
        return float((test_labels.cpu().numpy() == labels[0]).mean())
    probe = make_pipeline(StandardScaler(), LogisticRegression(tol=PROBE_TOLERANCE, max_iter=1000, random_state=seed))
    probe.fit(train_codes.cpu().double().numpy(), labels)
    return float(probe.score(test_codes.cpu().double().numpy(), test_labels.cpu().numpy()))


def traversal_dims(kl_dims: list[float], most: int = TRAVERSAL_DIMS) -> list[int]:
    """The dimensions carrying the most KL, most first."""
    return [int(d) for d in np.argsort(kl_dims, kind="stable")[::-1][:most]]


def traversal_codes(
    centre: torch.Tensor, dims: list[int], aggregate: torch.Tensor, steps: int = TRAVERSAL_STEPS
) -> torch.Tensor:
    """For each of `dims`, `steps` codes equal to `centre` (a test image's posterior mean) but along
    that dimension, which runs evenly between the TRAVERSAL_QUANTILES of the aggregate posterior's
    codes on it: (len(dims) x steps, D), one dimension's codes after another."""
    centre, aggregate = centre.cpu(), aggregate.cpu()
    low, high = torch.quantile(aggregate[:, dims].float(), torch.tensor(TRAVERSAL_QUANTILES), dim=0)
    rows = []
    for i, d in enumerate(dims):
        row = centre.expand(steps, -1).clone()
        row[:, d] = torch.linspace(float(low[i]), float(high[i]), steps)
        rows.append(row)
    return torch.cat(rows)
