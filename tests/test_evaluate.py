"""The importance-weighted bound on the test NLL (Burda et al. 2015)."""

import math

import pytest
import torch
from test_train import config, synthetic_splits

from toolkit.evaluate import elbo_metrics, iw_nll
from toolkit.models import build
from toolkit.train import fit


@pytest.fixture(scope="module")
def trained():
    splits = synthetic_splits()
    model = build(config(epochs=5), torch.device("cpu"))
    fit(model, splits, config(epochs=5), quiet=True)
    return model, splits.test


def test_one_sample_bound_is_the_negative_elbo(trained):
    model, test = trained
    assert iw_nll(model, test, "bernoulli", samples=1).nats == pytest.approx(
        elbo_metrics(model, test, config(epochs=5))["neg_elbo"], rel=0.01
    )


def test_bound_tightens_as_samples_grow(trained):
    model, test = trained
    bounds = [iw_nll(model, test, "bernoulli", samples=k).nats for k in (1, 10, 100)]
    assert bounds[0] > bounds[1] > bounds[2]


def test_gaussian_likelihood_bound_is_finite_and_below_its_elbo():
    splits = synthetic_splits()
    cfg = config(likelihood="gaussian", epochs=2)
    model = build(cfg, torch.device("cpu"))
    fit(model, splits, cfg, quiet=True)
    bound = iw_nll(model, splits.test, "gaussian", samples=20).nats
    assert math.isfinite(bound) and bound < elbo_metrics(model, splits.test, cfg)["neg_elbo"]
