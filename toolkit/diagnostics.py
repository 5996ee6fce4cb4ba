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

from toolkit.objectives import HALF_LOG_2PI, kl_per_dim

# The rate split E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)) (Hoffman & Johnson 2016). Neither
# part has a closed form, and the mixture estimator of I_q(x; z) (the InfoNCE bound, Poole et al. 2019)
# is biased low long before its ceiling log N, so each part is bracketed:
# - below, the mixture estimator over the test posteriors and, tighter, over the test and training
#   posteriors together (a larger N; both are shown, so that a reader sees whether it has converged;
#   the pooled one treats the training images as further draws of the test images' distribution, which
#   holds as far as the encoder generalises, and the test-only one needs no such assumption);
# - above, the rate less the sum of the dimensions' marginal KLs, a lower bound on KL(q(z) || p(z)) for a
#   factorised prior; each 1-D marginal density is the mixture of the other posteriors (leave-one-out),
#   whose log is low in expectation (Jensen), so the upper end errs upwards.
# Each end moves BRACKET_SE Monte Carlo standard errors outwards. A part is *measured* where its
# bracket is at most MEASURED_NATS wide; elsewhere only its bracket is reported.
RATE_CODES = 2000  # codes z ~ q(z|x), one for each of the first RATE_CODES test images
MARGINAL_CODES = 1000  # of them, those the 1-D marginals are evaluated at
BRACKET_SE = 3.0
MEASURED_NATS = 1.0
SATURATED_NATS = 0.1  # a mixture estimate this close to its ceiling log N is limited by N, not by I(x; z)
MIXTURE_ENTRIES = 8_000_000  # codes x posteriors in one log-density matrix (64 MB in float64)
# A dimension is informative when its information I(x; z_u) is above this for certain (its bracket's
# low end): under 0.1 nats a unit tells apart about e^0.1 = 1.1 kinds of image, nothing. Neither
# its KL nor its activity decides it: free bits hold units at a KL floor whatever they carry, and a
# unit counts as active from a few thousandths of a nat.
INFORMATIVE_NATS = 0.1

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


class Bracket(NamedTuple):
    """An interval [low, high] in nats known to hold a quantity (up to BRACKET_SE standard errors)."""

    low: float
    high: float

    @property
    def measured(self) -> bool:
        """Whether the bracket is narrow enough (MEASURED_NATS) for its midpoint to stand for the value."""
        return self.high - self.low <= MEASURED_NATS


class RateSplit(NamedTuple):
    information: Bracket  # I_q(x; z)
    marginal_kl: Bracket  # KL(q(z) || p(z)): the rate less the information
    mixture: float  # the mixture estimate of I_q(x; z) over the N test posteriors, at most log N
    pooled_mixture: float  # the same over the test and training posteriors together
    ceiling: float  # log N
    pooled_ceiling: float  # log of the pooled number of posteriors
    dims_information: list[Bracket]  # I_q(x; z_u) of each dimension
    marginal_kl_dims: list[float]  # KL(q(z_u) || N(0, 1)) of each dimension, leave-one-out (low in expectation)
    codes: torch.Tensor  # the codes drawn from the aggregate posterior, (M, D)


@torch.no_grad()
def rate_split(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    generator: torch.Generator,
    pool: tuple[torch.Tensor, torch.Tensor] | None = None,
    codes: int = RATE_CODES,
) -> RateSplit:
    """The rate of the N test posteriors (mu, logvar), split into the information I_q(x; z) and the
    marginal KL(q(z) || p(z)), each bracketed as above, and the information of each dimension
    bracketed the same way in one dimension. `pool`, the posteriors of further images of the same
    distribution (the training set), enlarges the lower end's mixture. One z ~ q(z|x_m) is drawn for
    each of the first `codes` test images; the 1-D marginals use the first MARGINAL_CODES of them."""
    mu, logvar = mu.double(), logvar.double()
    m = min(codes, len(mu))
    eps = torch.randn(m, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu[:m] + torch.exp(0.5 * logvar[:m]) * eps
    log_q_given_x = (-0.5 * eps.pow(2) - 0.5 * logvar[:m] - HALF_LOG_2PI).sum(1)
    log_test = _log_mixture(z, mu, logvar)
    mixture = log_q_given_x - log_test + math.log(len(mu))
    pooled_n = len(mu) + (0 if pool is None else len(pool[0]))
    if pool is not None:
        log_test = torch.logaddexp(log_test, _log_mixture(z, *(p.to(mu) for p in pool)))
    pooled = log_q_given_x - log_test + math.log(pooled_n)
    rate = kl_per_dim(mu, logvar)  # (N, D)
    dims_mixture, dims_marginal = _marginals(z[:MARGINAL_CODES], mu, logvar)
    information = _bracket(pooled, rate.sum(1), dims_marginal.sum(1))
    total = float(rate.sum(1).mean())
    return RateSplit(
        information,
        Bracket(max(0.0, total - information.high), total - information.low),
        float(mixture.mean()),
        float(pooled.mean()),
        math.log(len(mu)),
        math.log(pooled_n),
        [_bracket(dims_mixture[:, u], rate[:, u], dims_marginal[:, u]) for u in range(mu.shape[1])],
        [float(v) for v in dims_marginal.mean(0)],
        z.float(),
    )


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_m; mu_n, diag exp(logvar_n)) for every code m and posterior n: (M, N), as one matrix
    product: with p = 1/σ², Σ_d (z - μ)² p + ln σ² expands to [z², z, 1] · [p, -2μp, Σ_d (μ²p + ln σ²)],
    so that M x N x D is never held and M x N is written once."""
    precision = torch.exp(-logvar)
    codes = torch.cat([z.pow(2), z, torch.ones_like(z[:, :1])], 1)
    posteriors = torch.cat([precision, -2 * mu * precision, (mu.pow(2) * precision + logvar).sum(1, keepdim=True)], 1)
    return (codes @ posteriors.T).mul_(-0.5).sub_(z.shape[1] * HALF_LOG_2PI)


def _log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log Σ_n q(z_m|x_n) of each code z_m under the N posteriors (mu, logvar): the log of N times
    their mixture's density."""
    rows = max(1, MIXTURE_ENTRIES // len(mu))
    return torch.cat([torch.logsumexp(gaussian_log_density(part, mu, logvar), 1) for part in z.split(rows)])


def _marginals(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each code z_m, drawn from the m-th of the N posteriors (mu, logvar), and each dimension u,
    (M, D) each: log q(z_mu|x_m) less the log of the 1-D mixture of all N posteriors (the mixture
    estimator's term of I(x; z_u)), and the log of the 1-D mixture of the other N - 1 posteriors less
    log N(z_mu; 0, 1) (the leave-one-out term of KL(q(z_u) || N(0, 1))). One pass of exp serves both:
    the others' sum is shifted by their own maximum, so that a code's own density, however much
    larger, neither overflows it nor cancels from it."""
    n = len(mu)
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    rows = max(1, MIXTURE_ENTRIES // (n * mu.shape[1]))
    inverse_sd = torch.exp(-0.5 * logvar)
    together, apart = [], []
    for start in range(0, len(z), rows):
        part = z[start : start + rows]
        log_density = ((part[:, None, :] - mu) * inverse_sd).pow_(2).mul_(-0.5).sub_(0.5 * logvar + HALF_LOG_2PI)
        mine = torch.arange(len(part)), torch.arange(start, start + len(part))
        own = log_density[mine]
        log_density[mine] = -math.inf
        shift = log_density.amax(1)
        log_others = log_density.sub_(shift[:, None, :]).exp_().sum(1).log_().add_(shift)
        together.append(own - torch.logaddexp(log_others, own) + math.log(n))
        apart.append(log_others - math.log(max(n - 1, 1)))
    return torch.cat(together).double(), torch.cat(apart).double() + 0.5 * z.double().pow(2) + HALF_LOG_2PI


def _se(values: torch.Tensor) -> float:
    """The standard error of the mean of `values` (0 for one value)."""
    return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0


def _bracket(lower_terms: torch.Tensor, rate_terms: torch.Tensor, marginal_terms: torch.Tensor) -> Bracket:
    """An information's bracket: below, the mean of the mixture estimator's terms; above, the mean
    rate less the mean marginal KL; each BRACKET_SE standard errors outwards, and within [0, rate]
    (the 1-D terms are float32 sums: an information of 0 may come out at 1e-6 nats)."""
    rate, rate_se = float(rate_terms.mean()), _se(rate_terms)
    high = rate - float(marginal_terms.mean()) + BRACKET_SE * math.hypot(rate_se, _se(marginal_terms))
    low = max(0.0, float(lower_terms.mean()) - BRACKET_SE * _se(lower_terms))
    return Bracket(low, max(0.0, min(high, rate + BRACKET_SE * rate_se)))


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
