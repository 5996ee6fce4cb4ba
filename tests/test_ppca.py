"""The linear-Gaussian VAE's closed forms (`toolkit.ppca`) against brute force on small dimensions,
and the toolkit's sampled likelihood bounds on a linear model against its exact likelihood."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from toolkit import evaluate, ppca
from toolkit.config import INPUT_DIM, RunConfig
from toolkit.data import Split
from toolkit.evaluate import BF16_TOLERANCE, elbo_metrics, iw_log_weights, iw_nll
from toolkit.models import build
from toolkit.objectives import kl_per_dim

D, d = 5, 2  # the small case every density can be written out for


def small_decoder(seed=0) -> ppca.Decoder:
    g = torch.Generator().manual_seed(seed)
    return ppca.Decoder(torch.randn(D, d, generator=g, dtype=torch.float64), torch.randn(D, generator=g).double(), 0.7)


def small_encoder(seed=1) -> ppca.Encoder:
    g = torch.Generator().manual_seed(seed)
    return ppca.Encoder(
        0.5 * torch.randn(d, D, generator=g, dtype=torch.float64),
        torch.randn(d, generator=g).double(),
        torch.tensor([-1.0, -0.3], dtype=torch.float64),
    )


def test_log_marginal_is_the_multivariate_normal_density():
    decoder = small_decoder()
    x = torch.randn(50, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    direct = MultivariateNormal(decoder.bias, decoder.covariance()).log_prob(x)
    assert torch.allclose(ppca.log_marginal(decoder, x), direct, atol=1e-10)


def test_the_maximum_likelihood_fit_beats_the_model_that_drew_the_data_on_that_data():
    """Tipping & Bishop's closed form: on 2,000 images drawn from a pPCA model its likelihood is at
    least the true model's, and a small step of any of its parameters lowers it."""
    decoder = small_decoder()
    g = torch.Generator().manual_seed(8)
    z = torch.randn(2000, d, generator=g, dtype=torch.float64)
    x = z @ decoder.weight.T + decoder.bias + decoder.sigma * torch.randn(2000, D, generator=g, dtype=torch.float64)
    fit = ppca.maximum_likelihood(x, d)
    best = float(ppca.log_marginal(fit, x).mean())
    assert best >= float(ppca.log_marginal(decoder, x).mean())
    nudge = 1e-3 * torch.randn(D, d, generator=g, dtype=torch.float64)
    for other in (
        fit._replace(weight=fit.weight + nudge),
        fit._replace(bias=fit.bias + nudge[:, 0]),
        fit._replace(sigma=fit.sigma * 1.01),
        fit._replace(sigma=fit.sigma / 1.01),
    ):
        assert float(ppca.log_marginal(other, x).mean()) < best


def test_posterior_is_the_conditional_of_the_joint_gaussian():
    """(z, x) is jointly Gaussian with Cov(z, x) = Wᵀ: p(z|x) = N(Wᵀ C⁻¹ (x - b), I - Wᵀ C⁻¹ W)."""
    decoder = small_decoder()
    x = torch.randn(7, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    gain = decoder.weight.T @ torch.linalg.inv(decoder.covariance())
    mean, covariance = ppca.posterior(decoder, x)
    assert torch.allclose(mean, (x - decoder.bias) @ gain.T, atol=1e-10)
    assert torch.allclose(covariance, torch.eye(d, dtype=torch.float64) - gain @ decoder.weight, atol=1e-10)


def test_elbo_is_its_monte_carlo_mean_and_falls_short_of_log_p_by_the_kl_to_the_posterior():
    """Within 4 standard errors of 200,000 samples; the gap log p(x) - ELBO is KL(q || p(z|x)) to 1e-9."""
    decoder = small_decoder()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, D, generator=g, dtype=torch.float64)
    mu, logvar = torch.randn(3, d, generator=g, dtype=torch.float64), torch.tensor([[-0.5, -1.5]]).double().expand(3, d)
    exact = ppca.elbo(decoder, x, mu, logvar)
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 3, d, generator=g, dtype=torch.float64)
    scale = decoder.sigma * torch.eye(D, dtype=torch.float64)
    log_w = (
        MultivariateNormal(z @ decoder.weight.T + decoder.bias, scale_tril=scale).log_prob(x)
        + MultivariateNormal(torch.zeros(d).double(), torch.eye(d).double()).log_prob(z)
        - torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    )
    assert (log_w.mean(0) - exact).abs().max() < 4 * log_w.std(0).max() / math.sqrt(len(log_w))
    post_mean, post_cov = ppca.posterior(decoder, x)
    gap = kl_divergence(
        MultivariateNormal(mu, torch.diag_embed(logvar.exp())), MultivariateNormal(post_mean, post_cov.expand(3, d, d))
    )
    assert torch.allclose(ppca.log_marginal(decoder, x) - exact, gap, atol=1e-9)


def test_information_and_marginal_kl_of_gaussian_data_match_monte_carlo_and_split_the_rate():
    """x ~ N(m, Σ): I(x; z) = E log q(z|x) / q(z) and KL(q(z) || p(z)) = E log q(z) / p(z), each within
    4 standard errors of 4,000 pairs (x, z), with q(z) the mean of q(z|x') over 10,000 fresh images x'
    (whose bias, under 0.01 nats here, is left inside that margin). Together they make the mean rate
    E_x KL(q(z|x) || p(z))."""
    encoder = small_encoder()
    g = torch.Generator().manual_seed(5)
    root = torch.randn(D, D, generator=g, dtype=torch.float64)
    data_mean, data_cov = torch.randn(D, generator=g).double(), root @ root.T / D + 0.1 * torch.eye(D).double()
    data = MultivariateNormal(data_mean, data_cov)
    torch.manual_seed(6)
    x, pool = data.sample((4000,)), data.sample((10_000,))
    std = (0.5 * encoder.logvar).exp()
    z = encoder.mean(x) + std * torch.randn(4000, d, dtype=torch.float64)
    log_q_given_x = torch.distributions.Normal(encoder.mean(x), std).log_prob(z).sum(1)
    squared = torch.cdist(z / std, encoder.mean(pool) / std).pow(2)  # (pairs, pool)
    log_q = (-0.5 * squared).logsumexp(1) - math.log(len(pool)) - (0.5 * math.log(2 * math.pi) + std.log()).sum()
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    for closed, samples in (
        (ppca.mutual_information(encoder, data_mean, data_cov), log_q_given_x - log_q),
        (ppca.marginal_kl(encoder, data_mean, data_cov), log_q - log_p),
    ):
        assert closed == pytest.approx(float(samples.mean()), abs=4 * float(samples.std()) / math.sqrt(len(samples)))
    rate = kl_per_dim(encoder.mean(x), encoder.logvar.expand(len(x), d)).sum(1)
    split = ppca.mutual_information(encoder, data_mean, data_cov) + ppca.marginal_kl(encoder, data_mean, data_cov)
    assert split == pytest.approx(float(rate.mean()), abs=4 * float(rate.std()) / math.sqrt(len(rate)))


def linear_vae(latent_dim: int, seed: int = 0, orthogonal: bool = False):
    """A toolkit linear VAE (784 pixels) with a known decoder (σ = 0.3) and, for `orthogonal` columns
    of W, the exact posterior as its encoder (then diagonal); otherwise that encoder perturbed."""
    model = build(RunConfig(architecture="linear", likelihood="gaussian", latent_dim=latent_dim), torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(INPUT_DIM, latent_dim, generator=g) * 0.05
    if orthogonal:
        weight = torch.linalg.qr(weight).Q * torch.linspace(0.5, 1.5, latent_dim)
    decoder = ppca.Decoder(weight.double(), 0.5 + 0.1 * torch.randn(INPUT_DIM, generator=g).double(), 0.3)
    gain = torch.linalg.inv(decoder.precision_matrix()) @ decoder.weight.T  # (d, D): the posterior's mean map
    variance = decoder.sigma**2 * torch.linalg.inv(decoder.precision_matrix()).diagonal()
    if not orthogonal:
        gain = gain * (1 + 0.3 * torch.randn(gain.shape, generator=g).double())
        variance = variance * 3
    with torch.no_grad():
        model.decoder.weight.copy_(decoder.weight)
        model.decoder.bias.copy_(decoder.bias)
        model.log_sigma.fill_(math.log(decoder.sigma))
        model.head.mean.weight.copy_(gain)
        model.head.mean.bias.copy_(-gain @ decoder.bias)
        model.head.logvar.copy_(variance.log())
    return model, decoder


def model_data(decoder: ppca.Decoder, n: int, seed: int = 7) -> Split:
    """n images drawn from the decoder's own p(x), float32 as the toolkit holds images."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, decoder.weight.shape[1], generator=g, dtype=torch.float64)
    x = z @ decoder.weight.T + decoder.bias + decoder.sigma * torch.randn(n, INPUT_DIM, generator=g).double()
    return Split(x.float(), torch.zeros(n, dtype=torch.long))


def test_a_linear_vae_whose_encoder_is_the_exact_posterior_has_every_log_weight_equal_to_log_p(monkeypatch):
    """Each log-weight to 0.01 nats in fp32; in bf16, where this machine has it, their mean to BF16_TOLERANCE."""
    model, decoder = linear_vae(3, orthogonal=True)
    data = model_data(decoder, 50)
    exact = ppca.log_marginal(decoder, data.images)
    auto = iw_log_weights(model, data, "gaussian", samples=20)
    assert abs(float((auto.log_w.double() - exact).mean())) < BF16_TOLERANCE
    monkeypatch.setattr(evaluate, "fast_bf16", lambda device: False)
    weights = iw_log_weights(model, data, "gaussian", samples=20)
    assert weights.precision == "fp32" and (weights.log_w.double() - exact).abs().max() < 0.01
    mu, logvar = model.encode(data.images)
    assert torch.allclose(ppca.elbo(decoder, data.images, mu, logvar), exact, atol=1e-3)


def test_the_toolkit_iw_bound_climbs_from_the_elbo_to_the_exact_likelihood_as_k_grows():
    """On 200 images drawn from a linear VAE whose encoder is not its posterior: the mean of the
    toolkit's bound -log p_K(x) less the exact -log p(x) is, within 4 standard errors (over the images,
    of each image's gap), the exact -ELBO's gap at K = 1 and at least 0 at every K; it shrinks as K
    grows, to under a tenth of the ELBO's gap at K = 1,000. `iw_nll` and `elbo_metrics` agree with it."""
    model, decoder = linear_vae(4)
    data = model_data(decoder, 200)
    exact = -ppca.log_marginal(decoder, data.images)
    with torch.no_grad():
        mu, logvar = model.encode(data.images)
    elbo_gap = float((-ppca.elbo(decoder, data.images, mu, logvar) - exact).mean())
    assert elbo_gap > 1  # an encoder far enough from the posterior for the bound to have room
    gaps = {}
    for k in (1, 10, 100, 1000):
        gap = -iw_log_weights(model, data, "gaussian", samples=k).bounds().double() - exact
        error = float(gap.std() / math.sqrt(len(gap)))
        gaps[k] = float(gap.mean())
        assert gaps[k] > -4 * error
        if k == 1:
            assert gaps[k] == pytest.approx(elbo_gap, abs=4 * error)
    assert gaps[1] > gaps[10] > gaps[100] > gaps[1000] and gaps[1000] < elbo_gap / 10
    assert iw_nll(model, data, "gaussian", samples=100).nats == pytest.approx(float(exact.mean()) + gaps[100], abs=1e-3)
    config = RunConfig(architecture="linear", likelihood="gaussian", latent_dim=4)
    neg_elbo = elbo_metrics(model, data, config)["neg_elbo"]
    assert neg_elbo == pytest.approx(float(exact.mean()) + elbo_gap, abs=0.5)  # one sample of z per image


def test_a_trained_linear_vae_is_read_back_as_its_decoder_and_encoder():
    model, decoder = linear_vae(2)
    read, encoder = ppca.decoder_of(model), ppca.encoder_of(model)
    assert torch.allclose(read.weight, decoder.weight) and read.sigma == pytest.approx(0.3)
    x = model_data(decoder, 5).images
    mu, logvar = model.encode(x)
    assert torch.allclose(encoder.mean(x.double()), mu.double(), atol=1e-5)
    assert torch.allclose(encoder.logvar.expand(5, 2), logvar.double())
    with pytest.raises(ValueError, match="linear decoder with a Gaussian likelihood"):
        ppca.decoder_of(build(RunConfig(latent_dim=2), torch.device("cpu")))
