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


def test_the_rate_split_of_a_linear_gaussian_encoder_is_its_closed_form():
    scale, sd = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, 0.5, 1.0])
    mu, logvar = linear_gaussian(5000, scale, sd)
    variance = scale.pow(2) + sd.pow(2)
    information = 0.5 * torch.log(variance / sd.pow(2))  # per dimension; the dimensions are independent
    marginal = 0.5 * (variance - 1 - torch.log(variance))
    mean_kl = float(kl_per_dim(mu, logvar).sum(1).mean())
    found = rate_split(mu, logvar, mean_kl, torch.Generator().manual_seed(1))
    assert found.mutual_information == pytest.approx(float(information.sum()), abs=0.05)
    assert found.marginal_kl == pytest.approx(float(marginal.sum()), abs=0.05)
    assert found.marginal_kl_dims == pytest.approx(marginal.tolist(), abs=0.03)
    assert found.mutual_information + found.marginal_kl == pytest.approx(mean_kl)
    assert found.ceiling == pytest.approx(math.log(5000))


def test_a_collapsed_encoder_carries_no_information_and_matches_the_prior():
    mu, logvar = torch.zeros(3000, 4), torch.zeros(3000, 4)
    found = rate_split(mu, logvar, 0.0, torch.Generator().manual_seed(0))
    assert found.mutual_information == pytest.approx(0, abs=1e-9)
    assert found.marginal_kl == pytest.approx(0, abs=1e-9)


def test_posteriors_far_apart_reach_the_information_ceiling_of_log_n():
    mu = torch.linspace(-3, 3, 1000)[:, None]  # 1,000 points 0.006 apart with sd 1e-5: each code names its image
    logvar = torch.full_like(mu, math.log(1e-10))
    found = rate_split(mu, logvar, float(kl_per_dim(mu, logvar).sum(1).mean()), torch.Generator().manual_seed(0))
    assert found.mutual_information == pytest.approx(math.log(1000), abs=1e-3)


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
