"""Fréchet distances, the domain extractor and its cache, and the Inception fallbacks."""

import io
import warnings

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_idx_set
from pytorch_fid import inception as pytorch_fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance

from toolkit import fid, names
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.diagnostics import precision_recall, probe_accuracy
from toolkit.models import build
from toolkit.samplers import NormalPrior, generate
from toolkit.store import location, writing
from toolkit.train import fit


def test_frechet_distance_of_a_set_with_itself_is_zero_and_a_shift_costs_its_square():
    features = np.random.default_rng(0).normal(size=(2000, 16))
    stats = (features.mean(0), np.cov(features, rowvar=False))
    assert fid.frechet_distance(stats, stats) == pytest.approx(0, abs=1e-6)
    shifted = (stats[0] + 0.5, stats[1])  # equal covariances: the distance is |mu1 - mu2|^2 = 16 * 0.25
    assert fid.frechet_distance(stats, shifted) == pytest.approx(4.0, rel=1e-6)


@pytest.mark.parametrize("rank", [16, 5])  # full rank, and singular (dead features): regularised
def test_frechet_distance_is_pytorch_fids_to_the_last_bit(rank):
    rng = np.random.default_rng(rank)
    stats = []
    for shift in (0.0, 0.3):
        features = rng.normal(size=(500, rank)) @ rng.normal(size=(rank, 16)) + shift
        stats.append((features.mean(0), np.cov(features, rowvar=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-fid's deprecated sqrtm argument, its singular-product note
        expected = calculate_frechet_distance(*stats[0], *stats[1])
    assert fid.frechet_distance(*stats) == expected


def test_samples_of_an_untrained_decoder_score_worse_than_a_trained_one(real_subset, store):
    splits = load_splits("fashion-mnist", real_subset, download=False)
    reference = fid.domain_reference("fashion-mnist", splits)
    config = RunConfig(latent_dim=8, epochs=8, patience=0)
    untrained = build(config, "cpu")
    trained = build(config, "cpu")
    fit(trained, splits, config, quiet=True)
    prior = NormalPrior(config.latent_dim)
    scores = {
        name: reference.fid(generate(model, prior, 500))
        for name, model in (("untrained", untrained), ("trained", trained))
    }
    assert scores["trained"] < 0.5 * scores["untrained"]
    assert reference.floor < scores["trained"]


def test_the_domain_extractor_is_trained_once_and_reused(tmp_path, store, monkeypatch):
    splits = load_splits("fashion-mnist", write_idx_set(tmp_path / "data"), download=False)
    trainings = []
    train = fid.train_domain_cnn
    monkeypatch.setattr(fid, "train_domain_cnn", lambda *args, **kw: trainings.append(1) or train(*args, **kw))
    first = fid.domain_reference("fashion-mnist", splits)
    second = fid.domain_reference("fashion-mnist", splits)
    assert len(trainings) == 1
    assert second.run_id == first.run_id and second.extractor.content_hash == first.extractor.content_hash
    assert second.extractor.name == "fmnist-cnn"
    np.testing.assert_allclose(
        second.extractor.features(splits.test.images),
        first.extractor.features(splits.test.images),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(second.statistics[0], first.statistics[0])
    assert second.floor == first.floor
    for name in fid.RealSide.__dataclass_fields__:  # the real side: stored with the reference, read back
        torch.testing.assert_close(getattr(second.real, name), getattr(first.real, name))
    assert len(first.real.train) == len(splits.train) and len(first.real.test_nearest) == min(1000, len(splits.test))
    mlflow_client = writing.writer()
    assert len(mlflow_client.search_runs([writing.experiment_id(fid.REFERENCE_EXPERIMENT)])) == 1


def test_a_reference_stored_without_its_real_side_gains_it(tmp_path, store):
    splits = load_splits("fashion-mnist", write_idx_set(tmp_path / "data"), download=False)
    first = fid.domain_reference("fashion-mnist", splits)
    folder = location.artifact_root(location.tracking_uri())
    (stored,) = folder.rglob(names.REAL_SIDE_FILE)
    wrong = io.BytesIO()
    np.savez(wrong, **{name: np.zeros((3, 2), np.float32) for name in fid.RealSide.__dataclass_fields__})
    for damaged in (b"not an npz", wrong.getvalue()):  # a store written before the real side was kept, a damaged one
        stored.write_bytes(damaged)
        again = fid.domain_reference("fashion-mnist", splits)
        torch.testing.assert_close(again.real.train, first.real.train)
        assert fid.RealSide.from_npz(stored.read_bytes()).train.shape == first.real.train.shape


def test_a_reference_keeps_what_real_images_score_as_the_runs_are_scored(tmp_path, store):
    splits = load_splits("fashion-mnist", write_idx_set(tmp_path / "data", n_train=300, n_test=60), download=False)
    reference = fid.domain_reference("fashion-mnist", splits)
    logged = writing.writer().get_run(reference.run_id).data.metrics
    real = reference.real
    assert (logged["precision/fmnist-cnn/real"], logged["recall/fmnist-cnn/real"]) == pytest.approx(
        precision_recall(real.test, real.train[: len(splits.train)])  # training images against the test images
    )
    pixels = probe_accuracy(splits.train.images, splits.train.labels, splits.test.images, splits.test.labels)
    assert logged[names.PIXEL_PROBE_ACCURACY] == pytest.approx(pixels)


def test_other_images_get_their_own_extractor(tmp_path, store):
    a = load_splits("fashion-mnist", write_idx_set(tmp_path / "a"), download=False)
    b = load_splits("fashion-mnist", write_idx_set(tmp_path / "b", n_train=150), download=False)
    assert fid.domain_reference("fashion-mnist", a).run_id != fid.domain_reference("fashion-mnist", b).run_id


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(fid.FidUnavailable, match="nope.pth.*does not exist"):
        fid.inception_weights(str(tmp_path / "nope.pth"))


def test_without_weights_or_network_inception_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    monkeypatch.setattr(
        pytorch_fid_inception, "FID_WEIGHTS_URL", "http://127.0.0.1:9/pt_inception-2015-12-05-6726825d.pth"
    )  # refuses connections
    assert fid.inception_weights() is None
    with pytest.raises(fid.FidUnavailable) as error:
        fid.inception_extractor(None, "cpu")
    message = str(error.value)
    assert message.startswith("Inception FID skipped") and "--fid-weights" in message
    assert "TOOLKIT_FID_WEIGHTS" in message


def _random_inception_weights(path, monkeypatch):
    """A state dict with pytorch-fid's architecture and random values (the real one is a download)."""
    with monkeypatch.context() as patch:
        patch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kw: None)
        patch.setattr(torchvision.models.inception.Inception3, "load_state_dict", lambda *args, **kw: None)
        torch.save(pytorch_fid_inception.fid_inception_v3().state_dict(), path)
    return path


def test_a_given_weights_file_builds_inception_with_2048_features(tmp_path, monkeypatch):
    weights = _random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    monkeypatch.setenv("TOOLKIT_FID_WEIGHTS", str(weights))
    extractor = fid.inception_extractor(fid.inception_weights(), "cpu")
    assert extractor.name == "inception"
    assert extractor.features(torch.rand(3, 784)).shape == (3, 2048)


def test_auto_mode_skips_inception_on_a_cpu_even_with_weights(tmp_path, store, monkeypatch):
    splits = load_splits("fashion-mnist", write_idx_set(tmp_path / "data"), download=False)
    (tmp_path / "weights.pth").write_bytes(b"")
    monkeypatch.setattr(fid, "inception_reference", lambda *args: pytest.fail("Inception on a CPU"))
    found, skipped = fid.references("fashion-mnist", splits, "auto", str(tmp_path / "weights.pth"))
    assert [r.extractor.name for r in found] == ["fmnist-cnn"] and skipped == []
    assert fid.references("fashion-mnist", splits, "off") == ([], [])


def test_asked_for_inception_with_unusable_weights_keeps_the_domain_score(tmp_path, store):
    splits = load_splits("mnist", write_idx_set(tmp_path / "data"), download=False)
    (tmp_path / "weights.pth").write_bytes(b"garbage")
    found, skipped = fid.references("mnist", splits, "inception", str(tmp_path / "weights.pth"))
    assert [r.extractor.name for r in found] == ["mnist-cnn"]
    assert len(skipped) == 1 and "Inception FID skipped" in skipped[0]
