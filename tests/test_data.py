import gzip

import numpy as np
import pytest
import torch
import torchvision
from conftest import idx_bytes, write_idx_set

from toolkit.data import FILES, DataError, find_files, load_splits


def test_explicit_dir_wins_over_env_and_local_data(tmp_cwd, monkeypatch):
    write_idx_set(tmp_cwd / "data", fill=1)
    write_idx_set(tmp_cwd / "env", fill=2)
    write_idx_set(tmp_cwd / "given", fill=3)
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_cwd / "env"))
    assert load_splits(data_dir=tmp_cwd / "given", download=False).train.images[0, 0] == pytest.approx(3 / 255)
    assert load_splits(download=False).train.images[0, 0] == pytest.approx(2 / 255)
    monkeypatch.delenv("TOOLKIT_DATA_DIR")
    assert load_splits(download=False).train.images[0, 0] == pytest.approx(1 / 255)


def test_search_falls_through_an_empty_given_dir(tmp_cwd):
    (tmp_cwd / "empty").mkdir()
    write_idx_set(tmp_cwd / "data", fill=7)
    assert find_files("fashion-mnist", tmp_cwd / "empty", download=False)["train_images"].parent == tmp_cwd / "data"


def test_plain_files_and_torchvision_layout_are_found(tmp_cwd):
    write_idx_set(tmp_cwd / "plain", gz=False)
    assert find_files("fashion-mnist", tmp_cwd / "plain", download=False)["test_labels"].suffix == ""
    write_idx_set(tmp_cwd / "tv" / "FashionMNIST" / "raw")
    assert find_files("fashion-mnist", tmp_cwd / "tv", download=False)["train_images"].parent.name == "raw"


def test_nothing_found_lists_every_place_and_how_to_get_data(tmp_cwd, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_cwd / "env"))
    # no network in tests: point torchvision at a closed local port so the download fails fast
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    (tmp_cwd / "given").mkdir()
    with pytest.raises(DataError) as info:
        find_files("mnist", tmp_cwd / "given")
    message = str(info.value)
    for place in ("given", "env", "data", "/usr/share/datasets/mnist", "torchvision download"):
        assert place in message
    assert list((tmp_cwd / "given").iterdir()) == []  # the failed download left no MNIST/raw behind
    with pytest.raises(DataError):
        find_files("mnist", tmp_cwd / "new" / "mnist")  # a directory to download into: removed again
    assert not (tmp_cwd / "new" / "mnist").exists()
    assert "apt-get install dataset-fashion-mnist" in message and "TOOLKIT_DATA_DIR" in message


def test_a_data_dir_that_does_not_exist_is_not_replaced_by_another_copy(tmp_cwd, real_data):
    write_idx_set(tmp_cwd / "data")  # ./data and the system copy both have files: neither may be used
    with pytest.raises(DataError) as info:
        find_files("fashion-mnist", tmp_cwd / "typo", download=False)
    assert f"{tmp_cwd / 'typo'}: no such directory" in str(info.value)
    assert str(tmp_cwd / "data") not in str(info.value) and "/usr/share" not in str(info.value).split("Get them")[0]


def test_a_limit_beyond_the_training_images_is_refused(tmp_cwd):
    write_idx_set(tmp_cwd / "data", n_train=200)
    with pytest.raises(DataError, match=r"^limit: 1,000 is more than the 180 training images"):
        load_splits(limit=1000, download=False)


def test_incomplete_directory_names_the_missing_file(tmp_cwd):
    write_idx_set(tmp_cwd / "data")
    (tmp_cwd / "data" / (FILES["test_labels"] + ".gz")).unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        find_files("mnist", download=False)


def _break(tmp_cwd, key, data: bytes):
    write_idx_set(tmp_cwd / "data")
    path = tmp_cwd / "data" / (FILES[key] + ".gz")
    path.write_bytes(data)
    return path.name


def test_corrupt_gzip_is_named(tmp_cwd):
    name = _break(tmp_cwd, "train_images", b"this is not gzip")
    with pytest.raises(DataError, match=f"{name}: not a readable gzip file"):
        load_splits(download=False)


def test_truncated_file_is_named(tmp_cwd):
    full = idx_bytes(np.zeros((200, 28, 28)))
    name = _break(tmp_cwd, "train_images", gzip.compress(full[:-100]))
    with pytest.raises(DataError, match=f"{name}: truncated"):
        load_splits(download=False)


def test_truncated_gzip_stream_is_named(tmp_cwd):
    name = _break(tmp_cwd, "test_images", gzip.compress(idx_bytes(np.zeros((50, 28, 28))))[:-30])
    with pytest.raises(DataError, match=name):
        load_splits(download=False)


def test_wrong_image_shape_is_named(tmp_cwd):
    name = _break(tmp_cwd, "train_images", gzip.compress(idx_bytes(np.zeros((200, 32, 32)))))
    with pytest.raises(DataError, match=f"{name}: images are \\[32, 32\\]"):
        load_splits(download=False)


def test_labels_given_for_images_are_refused(tmp_cwd):
    name = _break(tmp_cwd, "train_images", gzip.compress(idx_bytes(np.zeros(200))))
    with pytest.raises(DataError, match=f"{name}: not an IDX file of the expected kind"):
        load_splits(download=False)


def test_image_and_label_counts_must_match(tmp_cwd):
    _break(tmp_cwd, "train_labels", gzip.compress(idx_bytes(np.zeros(199))))
    with pytest.raises(DataError, match="200 images but .* 199 labels"):
        load_splits(download=False)


def test_splits_are_floats_in_unit_range_and_seeded(tmp_cwd):
    write_idx_set(tmp_cwd / "data", n_train=300, n_test=40)
    splits = load_splits(download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (270, 30, 40)
    x = splits.train.images
    assert x.dtype == torch.float32 and x.shape[1] == 784 and 0 <= x.min() and x.max() <= 1
    assert x.max() > 0.9  # really scaled from 0..255, not binarised or left as bytes
    again = load_splits(download=False)
    assert torch.equal(splits.val.images, again.val.images)


def test_limit_keeps_the_first_training_images_and_the_whole_validation_set(tmp_cwd):
    write_idx_set(tmp_cwd / "data", n_train=300)
    full, limited = load_splits(download=False), load_splits(limit=50, download=False)
    assert len(limited.train) == 50 and torch.equal(limited.train.images, full.train.images[:50])
    assert torch.equal(limited.val.images, full.val.images)


def test_batches_cover_the_split_once_in_a_seeded_order(tmp_cwd):
    write_idx_set(tmp_cwd / "data", n_train=300)
    split = load_splits(download=False).train
    first = [y for _, y in split.batches(64, torch.Generator().manual_seed(1))]
    second = [y for _, y in split.batches(64, torch.Generator().manual_seed(1))]
    assert [len(b) for b in first] == [64, 64, 64, 64, 14]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert sorted(torch.cat(first).tolist()) == sorted(split.labels.tolist())
    assert not torch.equal(torch.cat(first), split.labels)  # shuffled


def test_mnist_goes_through_the_same_loader(tmp_cwd):
    write_idx_set(tmp_cwd / "mnist" / "MNIST" / "raw", n_train=120, n_test=30, gz=False)
    splits = load_splits("mnist", tmp_cwd / "mnist", download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (108, 12, 30)
    assert splits.source == tmp_cwd / "mnist" / "MNIST" / "raw"


def test_real_fashion_mnist_has_the_documented_sizes(real_data):
    splits = load_splits("fashion-mnist", real_data, download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    assert sorted(splits.test.labels.unique().tolist()) == list(range(10))
