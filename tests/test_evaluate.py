"""The importance-weighted bound on the test NLL (Burda et al. 2015)."""

import math

import pytest
import torch
from test_train import config, synthetic_splits

from toolkit.evaluate import EVAL_SEED, best_sigma, elbo_metrics, iw_nll
from toolkit.models import build
from toolkit.objectives import reconstruction_nll
from toolkit.train import fit


@pytest.fixture(scope="module")
def synthetic_vae():
    splits = synthetic_splits()
    model = build(config(epochs=5), torch.device("cpu"))
    fit(model, splits, config(epochs=5), quiet=True)
    return model, splits.test


def test_one_sample_bound_is_the_negative_elbo(synthetic_vae):
    model, test = synthetic_vae
    assert iw_nll(model, test, "bernoulli", samples=1).nats == pytest.approx(
        elbo_metrics(model, test, config(epochs=5))["neg_elbo"], rel=0.01
    )


def test_bound_tightens_as_samples_grow(synthetic_vae):
    model, test = synthetic_vae
    bounds = [iw_nll(model, test, "bernoulli", samples=k).nats for k in (1, 10, 100)]
    assert bounds[0] > bounds[1] > bounds[2]


def test_gaussian_likelihood_bound_is_finite_and_below_its_elbo():
    splits = synthetic_splits()
    cfg = config(likelihood="gaussian", epochs=2)
    model = build(cfg, torch.device("cpu"))
    fit(model, splits, cfg, quiet=True)
    bound = iw_nll(model, splits.test, "gaussian", samples=20).nats
    assert math.isfinite(bound) and bound < elbo_metrics(model, splits.test, cfg)["neg_elbo"]


def test_a_subset_as_large_as_the_split_computes_the_bound_on_every_image(synthetic_vae):
    model, test = synthetic_vae
    every = iw_nll(model, test, "bernoulli", samples=10)
    assert every == iw_nll(model, test, "bernoulli", samples=10, images=len(test), neg_elbo=0.0)
    assert every.images == len(test) and every.standard_error is None


def test_the_bound_estimated_from_a_subset_is_within_its_standard_error_of_the_bound_on_every_image():
    """The control variate: the split's -ELBO less the subset's mean gap. Its error shrinks with
    the subset and stays within a few standard errors; the subset's own mean bound, without the
    -ELBO, misses by far more than that standard error (the bound varies between images by far
    more than its gap to the ELBO does)."""
    splits = synthetic_splits(n=4000)  # 1,000 test images
    model = build(config(epochs=2), torch.device("cpu"))
    fit(model, splits, config(epochs=2), quiet=True)
    test = splits.test
    every = iw_nll(model, test, "bernoulli", samples=20).nats
    neg_elbo = elbo_metrics(model, test, config())["neg_elbo"]
    small, large = (iw_nll(model, test, "bernoulli", 20, images, neg_elbo) for images in (100, 400))
    assert (small.images, large.images) == (100, 400)
    assert 0 < large.standard_error < small.standard_error
    for estimate in (small, large):
        assert abs(estimate.nats - every) < 4 * estimate.standard_error
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(EVAL_SEED))[:20]
    bounds = torch.tensor(
        [iw_nll(model, test.subset(order[i : i + 1]), "bernoulli", samples=20).nats for i in range(20)]
    )
    assert bounds.std() / 100**0.5 > 3 * small.standard_error  # the s.e. of 100 images' plain mean bound


def test_the_best_sigma_closed_form_is_the_brute_force_optimum_of_the_same_reconstructions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 784, generator=g, dtype=torch.float64)
    logits = torch.randn(50, 784, generator=g, dtype=torch.float64)

    def recon(sigma) -> torch.Tensor:
        """The mean reconstruction term at each σ of `sigma`."""
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log()[..., None]
        return reconstruction_nll(logits, x, "gaussian", log_sigma).mean(-1)

    sigma, at_best = best_sigma(float(recon(math.sqrt(0.5))), math.sqrt(0.5), 784)
    grid = torch.logspace(-3, 0, 20_001, dtype=torch.float64)  # σ from 0.001 to 1, 0.035 % apart
    values = recon(grid)
    assert sigma == pytest.approx(float(grid[values.argmin()]), rel=4e-4)
    assert at_best == pytest.approx(float(recon(sigma)), abs=1e-9) and at_best <= float(values.min()) + 1e-9
    scored_elsewhere = best_sigma(float(recon(0.1)), 0.1, 784)  # the same reconstructions scored at another σ
    assert scored_elsewhere == pytest.approx((sigma, at_best), rel=1e-9)
