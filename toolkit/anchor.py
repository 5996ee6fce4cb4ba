"""The likelihood code's outside anchor: a linear-Gaussian VAE (probabilistic PCA's generative model),
whose test log-likelihood and ELBO are known exactly (`toolkit.ppca`), measured by the toolkit's own
importance-weighted bound (`evaluate.iw_log_weights`) at several K on every test image. The bound
must climb from the ELBO at K = 1 towards the exact value as K grows, never above it but by its
Monte Carlo error. `measure` is pure (a model and splits in, a flat dict out); `anchor_run` finds or
trains the run and logs the measurement into it, for `toolkit report anchor` to read."""

from __future__ import annotations

import math
import sys

import torch

from toolkit import names, ppca
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.evaluate import iw_log_weights
from toolkit.models import default_device

KS = (1, 10, 100, 1000, 5000)  # the Ks the bound is measured at
# The anchor's model: pPCA with a 20-d latent trained as a VAE, σ learned, until validation stops improving.
# σ starts at 0.2, near pPCA's own fit (σ = 0.14 for Fashion-MNIST's training images and 20 dimensions), and
# Adam's step is 2e-3, twice the default, so that the few minutes of training are not spent shrinking σ.
LINEAR = RunConfig(
    architecture="linear",
    likelihood="gaussian",
    decoder_scale="learned",
    sigma=0.2,
    lr=2e-3,
    latent_dim=20,
    epochs=200,
    fid="off",
)


# The comparison with a published likelihood (`studies/anchor.py --published`): a standard-normal-prior MLP VAE on
# dynamically binarised pixels, its IW bound with K = 1,000 on every test image (the protocol of Burda et al. 2015).
COMPARISON = RunConfig(binarize="dynamic", epochs=500, patience=10, iw_samples=1000, iw_images=10_000, fid="off")


def standard_error(values: torch.Tensor) -> float:
    """Of the mean of `values`."""
    return float(values.std() / math.sqrt(len(values)))


def measure(model, splits, ks=KS) -> dict[str, float]:
    """The anchor's metrics of a trained linear-Gaussian VAE on `splits.test`: the exact -log p(x)
    and -ELBO, pPCA's maximum-likelihood fit to `splits.train`, and the IW bound at each K with the
    standard error of its mean gap to the exact value. The bound runs in fp32 throughout: bf16, which
    `iw_nll` may choose, moves a bound by up to its tolerance (0.01 nats), as much as the gap left at
    K = 5,000, and a different K may make the other choice."""
    images = splits.test.images
    decoder = ppca.decoder_of(model)
    exact = ppca.log_marginal(decoder, images)
    with torch.no_grad():
        mu, logvar = model.encode(images)
    elbo = ppca.elbo(decoder, images, mu, logvar)
    fit = ppca.maximum_likelihood(splits.train.images, model.latent_dim)
    metrics = {
        names.ANCHOR_NLL_EXACT: -float(exact.mean()),
        names.ANCHOR_NEG_ELBO_EXACT: -float(elbo.mean()),
        names.ANCHOR_NEG_ELBO_GAP_SE: standard_error(exact - elbo),
        names.ANCHOR_NLL_PPCA_FIT: -float(ppca.log_marginal(fit, images).mean()),
    }
    for k in ks:
        bound = iw_log_weights(model, splits.test, "gaussian", k, allow_bf16=False).bounds().double()
        metrics[names.anchor_nll_iw(k)] = -float(bound.mean())
        metrics[names.anchor_nll_iw_gap_se(k)] = standard_error(exact - bound)
    return metrics


def settings_query(config: RunConfig) -> str:
    """An MLflow search filter for the finished runs logged with exactly `config`'s params."""
    return " and ".join(
        ["attributes.status = 'FINISHED'", *(f"params.{key} = '{value}'" for key, value in config.to_params().items())]
    )


def finished_run(config: RunConfig, experiment: str, data_dir=None) -> str:
    """The id of the earliest FINISHED run of `config` in `experiment`, trained now when there is none."""
    from toolkit.pipeline import train_run
    from toolkit.store import reading, writing

    writing.writer()  # the store, made here if this is its first run
    found = reading.find_run(experiment, settings_query(config))
    return found.run_id if found else train_run(config, experiment, data_dir).run_id


def anchor_run(config: RunConfig, experiment: str, ks=KS, data_dir=None) -> str:
    """The id of the FINISHED run of `config` in `experiment` (`finished_run`), holding the anchor's
    metrics (measured now when it lacks them)."""
    from toolkit.store import reading, writing

    run_id = finished_run(config, experiment, data_dir)
    if names.anchor_nll_iw(max(ks)) in reading.existing_run(run_id).metrics:
        return run_id
    device = default_device()
    model, _ = reading.load_model(run_id, device)
    print(f"run {run_id}: the IW bound at K = {', '.join(map(str, ks))} on every test image", file=sys.stderr)
    writing.Run(run_id).log_metrics(measure(model, load_splits(config.dataset, data_dir, config.limit, device), ks))
    return run_id
