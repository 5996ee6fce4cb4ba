import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from toolkit.models import Output
from toolkit.objectives import beta_at, kl_per_dim, loss_terms, pixel_entropy, reconstruction_nll


def test_kl_per_dimension_matches_the_closed_form():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert torch.allclose(kl_per_dim(mu, logvar), expected, atol=1e-6)
    assert torch.all(kl_per_dim(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_bernoulli_nll_is_binary_cross_entropy_summed_over_pixels():
    x = torch.tensor([[1.0, 0.0, 0.5]])
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    p = torch.sigmoid(logits)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(reconstruction_nll(logits, x, "bernoulli"), expected)


def test_gaussian_nll_is_the_negative_log_density_with_its_constant():
    x = torch.tensor([[1.0, 0.0], [0.2, 0.4]])
    logits = torch.zeros(2, 2)  # sigmoid -> 0.5
    for sigma in (math.sqrt(0.5), 0.1, 2.0):
        expected = -Normal(torch.sigmoid(logits), sigma).log_prob(x).sum(-1)
        got = reconstruction_nll(logits, x, "gaussian", torch.tensor(math.log(sigma)))
        assert torch.allclose(got, expected, atol=1e-5)
    # σ² = ½: the squared error plus (D/2) ln π, the reference notebooks' number plus a constant
    half = reconstruction_nll(logits, x, "gaussian", torch.tensor(math.log(math.sqrt(0.5))))
    assert torch.allclose(half, torch.tensor([0.5, 0.1]) + math.log(math.pi), atol=1e-6)


def test_pixel_entropy_is_the_floor_of_the_bernoulli_cross_entropy_and_zero_for_binary_pixels():
    x = torch.tensor([[0.2, 0.5, 1.0], [0.0, 1.0, 1.0]])
    floor = pixel_entropy(x)
    assert torch.allclose(reconstruction_nll(torch.logit(x.clamp(1e-7, 1 - 1e-7)), x, "bernoulli"), floor, atol=1e-4)
    assert floor[1] == 0 and floor[0] == pytest.approx(
        -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)) + math.log(2), rel=1e-6
    )
    logits = torch.randn(2, 3)
    assert (reconstruction_nll(logits, x, "bernoulli") >= floor).all()


def _output(mu, logvar):
    return Output(torch.zeros(mu.shape[0], 4), mu, logvar)


def test_free_bits_floor_each_dimension_in_the_objective_but_not_in_the_reported_kl():
    mu = torch.tensor([[0.1, 2.0], [0.1, 2.0]], requires_grad=True)  # KL_0 = 0.005, KL_1 = 2
    logvar = torch.zeros(2, 2)
    x = torch.full((2, 4), 0.5)
    log_sigma = torch.tensor(math.log(math.sqrt(0.5)))
    terms = loss_terms(_output(mu, logvar), x, "gaussian", beta=1.0, free_bits=0.5, log_sigma=log_sigma)
    recon = reconstruction_nll(torch.zeros(2, 4), x, "gaussian", log_sigma).mean()
    assert terms.loss.item() == pytest.approx(recon.item() + 0.5 + 2.0)
    assert terms.kl.tolist() == pytest.approx([2.005, 2.005])
    terms.loss.backward()
    assert mu.grad[:, 0].abs().sum() == 0  # a dimension under the floor gets no KL gradient
    assert mu.grad[:, 1].abs().sum() > 0


def test_beta_weights_the_kl_term():
    mu, logvar = torch.ones(3, 2), torch.zeros(3, 2)
    x = torch.full((3, 4), 0.5)
    t1 = loss_terms(_output(mu, logvar), x, "bernoulli", beta=1.0, free_bits=0.0)
    t4 = loss_terms(_output(mu, logvar), x, "bernoulli", beta=4.0, free_bits=0.0)
    assert (t4.loss - t1.loss).item() == pytest.approx(3 * t1.kl.mean().item())


def test_warmup_ramps_linearly_per_step_then_holds():
    steps = 10
    assert beta_at(0, steps, beta=2.0, warmup_epochs=3) == 0.0
    assert beta_at(15, steps, beta=2.0, warmup_epochs=3) == pytest.approx(1.0)
    assert beta_at(16, steps, beta=2.0, warmup_epochs=3) > beta_at(15, steps, beta=2.0, warmup_epochs=3)
    assert beta_at(30, steps, beta=2.0, warmup_epochs=3) == 2.0
    assert beta_at(99, steps, beta=2.0, warmup_epochs=3) == 2.0
    assert beta_at(0, steps, beta=2.0, warmup_epochs=0) == 2.0


def test_ae_terms_have_no_kl():
    out = Output(torch.zeros(2, 4), torch.zeros(2, 3), None)
    terms = loss_terms(out, torch.full((2, 4), 0.5), "bernoulli", beta=1.0, free_bits=0.5)
    assert torch.equal(terms.kl, torch.zeros(2)) and terms.loss.item() == pytest.approx(terms.recon.mean().item())


def test_bernoulli_nll_and_its_gradient_match_torchs_fused_loss_even_for_extreme_logits():
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(6, 784) * 8, torch.full((1, 784), 120.0), torch.full((1, 784), -120.0)])
    x = torch.rand(8, 784)
    ours, theirs = (logits.clone().requires_grad_() for _ in range(2))
    reconstruction_nll(ours, x, "bernoulli").sum().backward()
    torch.nn.functional.binary_cross_entropy_with_logits(theirs, x, reduction="none").sum(-1).sum().backward()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    assert torch.allclose(reconstruction_nll(logits, x, "bernoulli"), expected, rtol=1e-6, atol=1e-4)
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)
    double, target = torch.randn(3, 5, dtype=torch.float64, requires_grad=True), torch.rand(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda logits: reconstruction_nll(logits, target, "bernoulli"), (double,))
