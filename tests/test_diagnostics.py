"""The diagnostics' estimators on cases whose answers are known."""

import math
from pathlib import Path

import pytest
import torch

from toolkit import fid, pipeline
from toolkit.data import Split, Splits
from toolkit.diagnostics import (
    gaussian_log_density,
    nearest,
    nearest_ratio,
    precision_recall,
    probe_accuracy,
    rate_split,
    traversal_codes,
    traversal_dims,
)
from toolkit.objectives import kl_per_dim


def linear_gaussian(n: int, scale: torch.Tensor, sd: torch.Tensor, seed: int = 0):
    """Posteriors q(z|x) = N(scale * x, sd²) of x ~ N(0, I): q(z) is N(0, scale² + sd²) per dimension."""
    x = torch.randn(n, len(scale), generator=torch.Generator().manual_seed(seed))
    return scale * x, torch.log(sd.pow(2)).expand(n, -1)


def test_the_log_density_of_every_code_under_every_posterior_is_torchs():
    g = torch.Generator().manual_seed(0)
    z, mu, logvar = (
        torch.randn(7, 3, generator=g).double(),
        torch.randn(5, 3, generator=g).double(),
        torch.randn(5, 3, generator=g).double(),
    )
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z[:, None, :]).sum(-1)
    assert torch.allclose(gaussian_log_density(z, mu, logvar), expected, rtol=0, atol=1e-10)


def prior_matched(n: int, information: float, dims: int, seed: int):
    """Posteriors N(a x, s²) of x ~ N(0, I) with a² + s² = 1, so that q(z) is the prior N(0, I)
    exactly: I(x; z) = -dims ln(s), all of the rate; the marginal KL is 0."""
    s = math.exp(-information / dims)
    return linear_gaussian(n, torch.full((dims,), math.sqrt(1 - s * s)), torch.full((dims,), s), seed)


@pytest.mark.parametrize("information", [2, 5, 9, 12, 16, 20])
def test_the_brackets_hold_the_true_information_where_the_mixture_estimator_falls_short(information):
    dims = 10
    mu, logvar = prior_matched(5000, information, dims, seed=1)
    found = rate_split(mu, logvar, torch.Generator().manual_seed(0), pool=prior_matched(20_000, information, dims, 2))
    assert found.information.low <= information <= found.information.high
    assert found.marginal_kl.low <= 0 <= found.marginal_kl.high  # both ends are clipped at 0 only from below
    assert all(b.low <= information / dims <= b.high for b in found.dims_information)
    assert found.mixture <= found.ceiling == pytest.approx(math.log(5000))
    assert found.pooled_mixture <= found.pooled_ceiling == pytest.approx(math.log(25_000))
    if information >= 12:  # past log N the mixture estimate is a bound, and the bracket says so
        assert found.mixture < information - 2 and not found.information.measured
    if information <= 5:
        assert found.information.measured


def test_the_pooled_posteriors_lift_the_lower_end_towards_the_truth():
    mu, logvar = prior_matched(5000, 12, 10, seed=1)
    alone = rate_split(mu, logvar, torch.Generator().manual_seed(0))
    pooled = rate_split(mu, logvar, torch.Generator().manual_seed(0), pool=prior_matched(20_000, 12, 10, 2))
    assert alone.mixture == alone.pooled_mixture == pooled.mixture
    assert pooled.pooled_mixture > alone.mixture + 1 and pooled.information.low > alone.information.low + 1


def test_the_rate_split_of_a_linear_gaussian_encoder_brackets_its_closed_form():
    scale, sd = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, 0.5, 1.0])
    mu, logvar = linear_gaussian(5000, scale, sd)
    variance = scale.pow(2) + sd.pow(2)
    information = 0.5 * torch.log(variance / sd.pow(2))  # per dimension; the dimensions are independent
    marginal = 0.5 * (variance - 1 - torch.log(variance))
    found = rate_split(mu, logvar, torch.Generator().manual_seed(1))
    assert found.information.low <= float(information.sum()) <= found.information.high
    assert found.marginal_kl.low <= float(marginal.sum()) <= found.marginal_kl.high
    assert found.information.measured and found.marginal_kl.measured
    assert all(b.low <= float(i) <= b.high for b, i in zip(found.dims_information, information))
    assert found.marginal_kl_dims == pytest.approx(
        marginal.tolist(), abs=0.06
    )  # 1,000 codes: a few hundredths of MC noise
    rate = float(kl_per_dim(mu, logvar).sum(1).mean())
    assert found.information.low + found.marginal_kl.high == pytest.approx(rate)


def test_a_collapsed_encoder_carries_no_information_and_matches_the_prior():
    mu, logvar = torch.zeros(3000, 4), torch.zeros(3000, 4)
    found = rate_split(mu, logvar, torch.Generator().manual_seed(0))
    assert found.information == pytest.approx((0, 0), abs=1e-6) and found.marginal_kl == pytest.approx((0, 0), abs=1e-6)
    assert all(b == pytest.approx((0, 0), abs=1e-6) for b in found.dims_information)


def test_posteriors_far_apart_reach_the_mixture_ceiling_of_log_n_and_stay_bracketed():
    mu = torch.linspace(-3, 3, 1000)[:, None]  # 1,000 points 0.006 apart with sd 1e-5: each code names its image
    logvar = torch.full_like(mu, math.log(1e-10))
    found = rate_split(mu, logvar, torch.Generator().manual_seed(0))
    assert found.mixture == pytest.approx(math.log(1000), abs=1e-3)
    rate = float(kl_per_dim(mu, logvar).sum(1).mean())  # about 10.4 nats
    assert found.information.low <= found.mixture < rate - 1 <= found.information.high
    assert not found.information.measured


def test_a_unit_held_at_the_free_bits_floor_is_not_informative():
    """Two units with the same KL, 0.5 nats: one spends it on the image, one holds it whatever the
    image (every posterior N(1, 1): KL 0.5, information 0)."""
    g = torch.Generator().manual_seed(0)
    s = math.exp(-0.5)  # I = 0.5 nats, aggregate the prior: KL 0.5
    carrying = math.sqrt(1 - s * s) * torch.randn(4000, 1, generator=g)
    mu = torch.cat([carrying, torch.ones(4000, 1)], 1)
    logvar = torch.cat([torch.full((4000, 1), 2 * math.log(s)), torch.zeros(4000, 1)], 1)
    assert kl_per_dim(mu, logvar).mean(0).tolist() == pytest.approx([0.5, 0.5], abs=0.03)
    metrics = pipeline.rate_metrics(rate_split(mu, logvar, torch.Generator().manual_seed(1)))
    assert metrics["test/informative_units"] == 1
    assert metrics["test/mutual_info_dim_low/00"] > 0.4 and metrics["test/mutual_info_dim_high/01"] < 0.1


def clusters(n: int, centres: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return centres[torch.randint(len(centres), (n,), generator=g)] + 0.3 * torch.randn(n, centres.shape[1], generator=g)


CENTRES = torch.eye(8) * 5


def test_a_set_against_itself_has_precision_and_recall_one():
    points = clusters(600, CENTRES, 0)
    assert precision_recall(points, points) == (1.0, 1.0)


def test_disjoint_sets_have_precision_and_recall_zero():
    points = clusters(600, CENTRES, 0)
    assert precision_recall(points, points + 100) == (0.0, 0.0)


def test_samples_of_one_mode_are_precise_but_recall_little():
    real = clusters(800, CENTRES, 0)
    one_mode = clusters(800, CENTRES[:1], 1)
    precision, recall = precision_recall(real, one_mode)
    assert precision > 0.8 and recall < 0.25
    precision, recall = precision_recall(real, clusters(800, CENTRES, 1))
    assert precision > 0.8 and recall > 0.8


def test_the_nearest_ratio_tells_a_copying_model_from_a_real_one():
    train, test, fresh = (clusters(n, CENTRES, seed) for n, seed in ((3000, 0), (500, 1), (500, 2)))
    copies = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:500]]
    baseline = nearest(test, train)[0]
    assert nearest_ratio(nearest(copies, train)[0], baseline) == 0.0
    assert 0.8 < nearest_ratio(nearest(fresh, train)[0], baseline) < 1.25


def test_the_probe_reads_labels_the_codes_hold_and_not_those_they_do_not():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(10, (2000,), generator=g)
    codes = torch.nn.functional.one_hot(labels, 10).double() * 5 + torch.randn(2000, 10, generator=g)
    assert probe_accuracy(codes[:1500], labels[:1500], codes[1500:], labels[1500:]) > 0.95
    noise = torch.randn(2000, 10, generator=g)
    assert probe_accuracy(noise[:1500], labels[:1500], noise[1500:], labels[1500:]) < 0.2


def test_a_traversal_varies_exactly_one_dimension_per_row_over_the_aggregate_range():
    aggregate = torch.randn(5000, 6, generator=torch.Generator().manual_seed(0)) * torch.arange(1.0, 7.0)
    centre = torch.full((6,), 0.5)
    dims = traversal_dims([0.1, 3.0, 0.0, 2.0, 5.0, 0.2], most=3)
    assert dims == [4, 1, 3]
    rows = traversal_codes(centre, dims, aggregate, steps=7).view(3, 7, 6)
    for row, d in zip(rows, dims):
        others = [u for u in range(6) if u != d]
        assert torch.equal(row[:, others], centre[others].expand(7, -1))
        assert torch.all(row[1:, d] > row[:-1, d])
        assert row[0, d] == pytest.approx(float(torch.quantile(aggregate[:, d], 0.02)), rel=1e-5)
        assert row[-1, d] == pytest.approx(float(torch.quantile(aggregate[:, d], 0.98)), rel=1e-5)


def test_a_probe_trained_on_one_class_predicts_it():
    codes, labels = torch.randn(5, 3), torch.full((5,), 4)
    assert probe_accuracy(codes, labels, torch.randn(4, 3), torch.tensor([4, 1, 4, 2])) == 0.5


@pytest.mark.parametrize("copying", [True, False])
def test_a_run_whose_samples_copy_any_training_image_scores_near_zero(monkeypatch, copying):
    """Through the pipeline: copies drawn from the whole training split, not only from its first
    images, are found in pixels and in features; fresh images score about 1."""
    g = torch.Generator().manual_seed(0)
    train, test, fresh = (torch.rand(n, 784, generator=g) for n in (3000, 500, 600))
    labels = torch.zeros(3000, dtype=torch.long)
    splits = Splits(Split(train, labels), Split(test, labels[:500]), Split(test, labels[:500]), Path("."))
    extractor = fid.Extractor("toy", torch.nn.Linear(784, 16), "toy")
    reference = fid.Reference(extractor, extractor.statistics(test), 0.0, "run", fid.real_side(extractor, train, test))
    samples = train[torch.randperm(3000, generator=g)[:600]] if copying else fresh
    monkeypatch.setattr(pipeline, "generate", lambda model, sampler, n, seed: samples[:n])
    monkeypatch.setattr(pipeline, "latent_means", lambda model, images: images)
    monkeypatch.setattr(pipeline, "decode_images", lambda model, codes: codes)
    metrics, shown = pipeline.sample_metrics(None, {"samples": None}, splits, [reference], 600)
    for key in ("nearest/pixels/samples", "nearest/toy/samples"):
        assert metrics[key] == 0.0 if copying else 0.9 < metrics[key] < 1.1
    if copying:
        assert torch.equal(shown["nearest_pixels"], samples[: len(shown["nearest_pixels"])])
