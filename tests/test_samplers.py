"""Latent samplers: the priors, the fitted Gaussian and the mixture, and reproducible generation."""

import pytest
import torch

from toolkit import names
from toolkit.config import RunConfig
from toolkit.models import build
from toolkit.pipeline import generation_samplers
from toolkit.samplers import (
    AggregatePosterior,
    FittedGaussian,
    FittedMixture,
    LaplacePrior,
    NormalPrior,
    generate,
    interpolation_codes,
    latent_means,
    manifold_codes,
)


def draw(sampler, n=200_000, seed=0):
    return sampler(n, torch.Generator().manual_seed(seed))


def test_laplace_prior_has_unit_variance_and_heavy_tails():
    z = draw(LaplacePrior(2))
    assert z.mean().item() == pytest.approx(0, abs=0.01)
    assert z.var().item() == pytest.approx(1, abs=0.02)
    kurtosis = (z.pow(4).mean() / z.var() ** 2).item()
    assert kurtosis == pytest.approx(6, abs=0.3)  # a Gaussian's is 3


def test_fitted_gaussian_recovers_mean_and_covariance():
    cov = torch.tensor([[2.0, 0.8], [0.8, 1.0]])
    codes = torch.distributions.MultivariateNormal(torch.tensor([3.0, -1.0]), cov).sample((50_000,))
    z = draw(FittedGaussian(codes))
    torch.testing.assert_close(z.mean(0), torch.tensor([3.0, -1.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), cov, atol=0.05, rtol=0)


def test_fitted_mixture_finds_separate_clusters_and_mixes_its_draws():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
    codes = centres[torch.arange(2000) % 2] + 0.1 * torch.randn(2000, 2, generator=g)
    z = draw(FittedMixture(codes, components=2), n=1000)
    assert ((z[:, 0].abs() - 10).abs() < 1).all()  # every sample near a centre, none in between
    assert 0.4 < (z[:500, 0] > 0).float().mean() < 0.6  # components interleaved, not in blocks


def test_ae_and_vae_are_scored_with_the_same_samplers_fitted_to_their_posterior_means_and_the_vae_also_with_its_prior():
    images = torch.rand(60, 784, generator=torch.Generator().manual_seed(0))
    found = {}
    for model_name in ("vae", "ae"):
        config = RunConfig(model=model_name, latent_dim=3, hidden=(8,))
        model = build(config, "cpu").eval()
        found[model_name] = generation_samplers(model, config, images)
        codes = latent_means(model, images)
        torch.testing.assert_close(found[model_name][names.SAMPLES_GAUSSIAN].mean, codes.double().mean(0))
        assert found[model_name][names.SAMPLES_GMM].gmm.n_features_in_ == 3
    assert {k: type(v) for k, v in found["ae"].items()} == {
        names.SAMPLES_GAUSSIAN: FittedGaussian,
        names.SAMPLES_GMM: FittedMixture,
    }
    assert {k: type(v) for k, v in found["vae"].items()} == {
        names.SAMPLES: NormalPrior,
        names.AGGREGATE_POSTERIOR: AggregatePosterior,
        names.SAMPLES_GAUSSIAN: FittedGaussian,
        names.SAMPLES_GMM: FittedMixture,
    }


def test_generation_is_reproducible_from_its_seed():
    model = build(RunConfig(latent_dim=3, hidden=(8,)), "cpu")
    prior = NormalPrior(3)
    first, again, other = (generate(model, prior, 5, seed) for seed in (1, 1, 2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == (5, 784) and 0 <= first.min() and first.max() <= 1


def test_interpolation_codes_run_from_the_first_code_to_the_second():
    model = build(RunConfig(latent_dim=3, hidden=(8,)), "cpu")
    start, end = torch.rand(784), torch.rand(784)
    z = interpolation_codes(model, start, end, steps=5)
    ends = latent_means(model, torch.stack([start, end]))
    assert z.shape == (5, 3)
    torch.testing.assert_close(z[[0, -1]], ends)
    torch.testing.assert_close(z[2], ends.mean(0))


def test_manifold_codes_cover_a_symmetric_grid_row_by_row():
    z = manifold_codes(side=5)
    assert z.shape == (25, 2)
    assert torch.equal(z[:5, 1], z[0, 1].expand(5)) and (z[:5, 0].diff() > 0).all()  # a row: z1 rises, z2 fixed
    assert z[0, 1] > z[-1, 1] and z[0, 1] == pytest.approx(-z[-1, 1])  # z2 falls down the rows


def test_an_autoencoders_manifold_spans_its_own_codes_quantiles_not_the_priors():
    codes = torch.stack([torch.linspace(100, 200, 1001), torch.linspace(-3, -1, 1001)], 1)
    z = manifold_codes(side=5, codes=codes)
    assert z[:, 0].min() == pytest.approx(105) and z[:, 0].max() == pytest.approx(195)
    assert z[:, 1].min() == pytest.approx(-2.9) and z[:, 1].max() == pytest.approx(-1.1)
    assert z[0, 1] > z[-1, 1]  # the same orientation as the prior's grid
