import math

import pytest
import torch

from toolkit.config import RunConfig
from toolkit.data import Split, Splits
from toolkit.evaluate import active_dims, elbo_metrics
from toolkit.models import build
from toolkit.names import EPOCH_SECONDS
from toolkit.train import TrainingDiverged, fit


def synthetic_splits(n=256, seed=0) -> Splits:
    """Blurry stripes with a random offset: learnable, so losses move within a few epochs."""
    g = torch.Generator().manual_seed(seed)

    def make(count):
        offsets = torch.randint(0, 28, (count, 1), generator=g)
        cols = torch.arange(28).repeat(28)
        images = ((cols - offsets).abs() < 4).float() * 0.9 + 0.05 * torch.rand(count, 784, generator=g)
        return Split(images, torch.zeros(count, dtype=torch.long))

    return Splits(make(n), make(n // 4), make(n // 4), source=None)


def config(**overrides):
    return RunConfig(**{"latent_dim": 4, "hidden": (32,), "epochs": 3, "batch_size": 32, **overrides})


def train(cfg, splits=None, callbacks=()):
    splits = splits or synthetic_splits()
    model = build(cfg, torch.device("cpu"))
    return model, fit(model, splits, cfg, callbacks, quiet=True), splits


def timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != EPOCH_SECONDS} for epoch in history]


def test_same_seed_and_config_give_identical_metrics():
    _, first, _ = train(config())
    _, second, _ = train(config())
    _, other, _ = train(config(seed=7))
    assert timeless(first.history) == timeless(second.history)
    assert timeless(first.history) != timeless(other.history)


def test_every_epoch_reports_the_documented_metrics():
    seen = []
    _, result, _ = train(config(), callbacks=[lambda epoch, m: seen.append((epoch, sorted(m)))])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    keys = set(seen[0][1])
    assert {
        "train/loss",
        "train/recon",
        "train/kl",
        "val/loss",
        "val/recon",
        "val/kl",
        "val/mse",
        "val/active_units",
        "beta_eff",
        "time/epoch_s",
    } <= keys
    assert all(0 < epoch["time/epoch_s"] < 60 for epoch in result.history)
    assert {f"val/kl_dim/{d:02d}" for d in range(4)} <= keys
    assert result.history[-1]["val/loss"] < result.history[0]["val/loss"]


def test_ae_reports_no_kl_at_all():
    _, result, _ = train(config(model="ae"))
    assert not [k for k in result.history[0] if "kl" in k or k == "beta_eff"]


def test_warmup_logs_the_epoch_mean_of_a_per_step_ramp():
    _, result, _ = train(config(warmup_epochs=2, epochs=3, beta=1.0))
    betas = [h["beta_eff"] for h in result.history]
    steps = 8  # 256 examples / batch 32
    assert betas[0] == pytest.approx(sum(range(steps)) / steps / (2 * steps))
    assert betas[1] == pytest.approx(sum(range(steps, 2 * steps)) / steps / (2 * steps))
    assert betas[2] == 1.0


def test_best_weights_are_restored_after_early_stopping():
    cfg = config(epochs=30, patience=2, lr=3e-2)
    model, result, splits = train(cfg)
    best = min(h["val/loss"] for h in result.history)
    assert result.best_val_loss == best
    assert elbo_metrics(model, splits.val, cfg)["loss"] == pytest.approx(best, rel=1e-5)
    if result.stopped_early:
        assert len(result.history) - result.best_epoch == cfg.patience


def test_non_finite_loss_stops_with_a_clear_error():
    splits = synthetic_splits()
    splits.train.images[3, 5] = math.nan
    with pytest.raises(TrainingDiverged, match="epoch 1: .*non-finite"):
        train(config(), splits)


def test_active_units_count_dimensions_whose_mean_varies():
    mu = torch.stack([torch.randn(1000), 0.01 * torch.randn(1000), torch.zeros(1000)], dim=1)
    assert active_dims(mu).tolist() == [True, False, False]


def test_bf16_precision_trains_the_forward_pass_in_bfloat16_and_keeps_weights_and_evaluation_fp32():
    seen = []
    model = build(config(precision="bf16"), torch.device("cpu"))
    model.decoder[-1].register_forward_hook(lambda module, args, output: seen.append((module.training, output.dtype)))
    result = fit(model, synthetic_splits(), config(precision="bf16"), quiet=True)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}  # validation
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.history[-1]["val/loss"] < result.history[0]["val/loss"]


def test_a_learned_sigma_trains_towards_the_reconstruction_error_and_is_logged_every_epoch():
    cfg = config(likelihood="gaussian", decoder_scale="learned", epochs=4, lr=3e-2)
    model, result, splits = train(cfg)
    sigmas = [h["val/decoder_sigma"] for h in result.history]
    assert sigmas[0] < cfg.sigma and sigmas[-1] < sigmas[0]  # from √½ towards the pixels' error
    assert model.log_sigma.requires_grad and model.log_sigma.exp().item() == pytest.approx(
        result.history[result.best_epoch - 1]["val/decoder_sigma"]
    )
    fixed, fixed_result, _ = train(config(likelihood="gaussian", epochs=2))
    assert not fixed.log_sigma.requires_grad and "val/decoder_sigma" not in fixed_result.history[0]
    assert fixed.log_sigma.item() == pytest.approx(math.log(math.sqrt(0.5)))


def test_active_units_are_the_dimensions_whose_posterior_means_vary_over_the_test_images():
    cfg = config(epochs=2)
    model, _, splits = train(cfg)
    metrics = elbo_metrics(model, splits.test, cfg)
    mu = model.encode(splits.test.images)[0]
    assert metrics["active_units"] == int((mu.var(0, unbiased=False) > 0.01).sum())
    assert "informative_units" not in metrics  # decided by each dimension's information, in the rate split


def test_dynamic_binarisation_trains_on_fresh_binary_draws_and_tests_on_one_fixed_draw():
    seen = []
    cfg = config(binarize="dynamic", epochs=2, batch_size=256)
    splits = synthetic_splits()
    splits.train.images[:] = splits.train.images[0]  # one grey image: batches differ only by their draws
    splits = splits.binarized()
    model = build(cfg, torch.device("cpu"))
    model.encoder.register_forward_hook(
        lambda module, args, output: seen.append(args[0].clone()) if module.training else None
    )
    fit(model, splits, cfg, quiet=True)
    first, second = seen  # one batch per epoch
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    assert torch.allclose(first.mean(0), splits.train.images[0], atol=0.15)  # Bernoulli draws of the grey levels
    assert set(splits.test.images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(splits.test.images, synthetic_splits().binarized().test.images)  # the same draw every time
    assert not torch.equal(splits.train.images, splits.train.images.round())  # kept grey, to draw from
