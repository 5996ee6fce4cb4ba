"""Fréchet distances between image sets, in the feature space of a named extractor.

Two extractors:
- the domain extractor (`fmnist-cnn`, `mnist-cnn`): a small CNN classifier the toolkit trains on
  the training split, cheap enough for every run. Its scores are NOT Inception FIDs and are never
  called so: metric names carry the extractor (`fid/fmnist-cnn/samples`).
- `inception`: pytorch-fid's InceptionV3 pool features (2048-d), when its weights are available.

Each (extractor, dataset) has a reference run in the store (experiment `fid-references`) that
holds the test-set statistics, the real-vs-real floor, the real images' side of the sample
diagnostics (`RealSide`) and what real images score on them (`real_metrics`) and, for the CNN, its
weights and accuracy and the linear probe's accuracy on raw pixels. It is created once and reused
by every run, which is tagged with the extractor's content hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from toolkit import ToolkitError, names
from toolkit.config import IMAGE_SIDE
from toolkit.diagnostics import (
    NEAREST_QUERIES,
    PR_IMAGES,
    PR_K,
    PROBE_TRAIN,
    kth_neighbour_radii,
    nearest,
    precision_recall,
    probe_accuracy,
)

REFERENCE_NOTE = (
    "The FID feature extractors' reference runs: test-set statistics, the real-vs-real floor "
    "and the domain CNN's weights and accuracy, one run per (extractor, dataset), reused by every run."
)
REFERENCE_EXPERIMENT = "fid-references"
DOMAIN_NAMES = {"fashion-mnist": "fmnist-cnn", "mnist": "mnist-cnn"}
CNN_RECIPE = "cnn-v1"  # change when the CNN or its training changes, so old caches are not reused
FLOOR_IMAGES = 10_000
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # the name pytorch-fid downloads to the hub cache
BATCH = 500
FID_EPS = 1e-6  # added to singular covariances' diagonals, as pytorch-fid does
CNN_BATCH = 256


class FidUnavailable(ToolkitError):
    """An asked-for extractor cannot be built here; the message says how to provide it."""


class DomainCNN(nn.Module):
    """Two strided conv blocks with batch norm and a 128-d penultimate layer; FID uses those features.

    Measured on Fashion-MNIST (2-core CPU): 4 epochs take about 65 s and reach 91.2% test accuracy.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
            nn.Conv2d(1, 32, 5, stride=2, padding=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(128, 10)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass
class Extractor:
    name: str
    network: nn.Module  # maps (N, 784) images in [0, 1] to (N, d) features
    content_hash: str

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        self.network.eval()
        device = next(self.network.parameters()).device
        chunks = [
            self.network(images[i : i + BATCH].to(device)).flatten(1).double().cpu()
            for i in range(0, len(images), BATCH)
        ]
        return torch.cat(chunks).numpy()

    def statistics(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return feature_statistics(self.features(images))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of (N, d) features, as FID compares them."""
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """The Fréchet distance between the Gaussians N(mu_a, S_a) and N(mu_b, S_b) of two (mean,
    covariance) pairs (Heusel et al. 2017): |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½).

    It is pytorch-fid's computation, to the last bit (tested against it), written here because
    importing pytorch-fid's own imports torchvision and through it torch._dynamo: a second of every
    command's start. Dead ReLU features make covariances singular; where the product's square root
    is then not finite, both covariances are regularised by FID_EPS on their diagonal, as there.
    """
    (mu_a, cov_a), (mu_b, cov_b) = a, b
    root = _square_root(cov_a.dot(cov_b))
    if not np.isfinite(root).all():
        offset = np.eye(len(cov_a)) * FID_EPS
        root = _square_root((cov_a + offset).dot(cov_b + offset))
    if np.iscomplexobj(root):  # rounding leaves an imaginary part; a large one means the maths failed
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            imaginary = abs(root.imag).max()
            raise ValueError(f"the covariances' product has no real square root (imaginary part {imaginary:g})")
        root = root.real
    diff = mu_a - mu_b
    return float(diff.dot(diff) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def _square_root(matrix: np.ndarray) -> np.ndarray:
    """scipy's principal square root, without its warning that a singular matrix has an inexact one
    (`frechet_distance` regularises what is not finite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def weights_hash(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(network.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def data_hash(splits) -> str:
    """Identifies the exact images an extractor and its references were computed from."""
    digest = hashlib.sha256()
    for split in (splits.train, splits.test):
        digest.update(split.images.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_domain_cnn(splits, epochs: int = 4, seed: int = 0) -> tuple[DomainCNN, float]:
    """Train the domain classifier on the training split only (Adam, one-cycle learning rate);
    return it and its test accuracy."""
    torch.manual_seed(seed)
    network = DomainCNN().to(splits.train.images.device)
    optimizer = torch.optim.Adam(network.parameters())
    steps_per_epoch = -(-len(splits.train) // CNN_BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    network.train()
    for _ in range(epochs):
        for x, y in splits.train.batches(CNN_BATCH, generator):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(network(x), y).backward()
            optimizer.step()
            schedule.step()
    network.eval()
    with torch.no_grad():
        correct = sum(int((network(x).argmax(1) == y).sum()) for x, y in splits.test.batches(BATCH))
    return network, correct / len(splits.test)


class CnnFeatures(nn.Module):
    """The domain CNN's 128-d penultimate layer, as an extractor network."""

    def __init__(self, cnn: DomainCNN):
        super().__init__()
        self.cnn = cnn

    def forward(self, x):
        return self.cnn.features(x)


class GreyInception(nn.Module):
    """pytorch-fid's InceptionV3 on grey 28x28 images: repeated to 3 channels, 2048-d pool features."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, x):
        return self.inception(x.view(-1, 1, IMAGE_SIDE, IMAGE_SIDE).repeat(1, 3, 1, 1))[0]


def inception_weights(given: str | None = None) -> Path | None:
    """The weights file: `given` (--fid-weights), $TOOLKIT_FID_WEIGHTS, or torch hub's cache."""
    given = given or os.environ.get("TOOLKIT_FID_WEIGHTS")
    if given:
        if not Path(given).is_file():
            raise FidUnavailable(f"Inception weights file {given} (--fid-weights / TOOLKIT_FID_WEIGHTS) does not exist")
        return Path(given)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


def inception_extractor(weights: Path | None, device) -> Extractor:
    """Build pytorch-fid's InceptionV3 from `weights`, or let pytorch-fid download them if None."""
    from pytorch_fid import inception

    hub = torch.hub.get_dir()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if weights is not None:  # pytorch-fid takes no path: show it the file as a hub cache entry
                (Path(tmp) / "checkpoints").mkdir()
                (Path(tmp) / "checkpoints" / INCEPTION_FILE).symlink_to(Path(weights).resolve())
                torch.hub.set_dir(tmp)
            network = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except Exception as exc:
        raise FidUnavailable(
            f"Inception FID skipped: its weights could not be loaded ({type(exc).__name__}: {exc}). "
            f"Download {inception.FID_WEIGHTS_URL} on a machine with a network and pass "
            "--fid-weights FILE or set TOOLKIT_FID_WEIGHTS=FILE (or put it in the torch hub cache)."
        ) from None
    finally:
        torch.hub.set_dir(hub)
    network = GreyInception(network).to(device)
    return Extractor("inception", network, weights_hash(network))


def find_reference(extractor_name: str, dataset_hash: str, recipe: str):
    """The finished reference run (a `store.reading.RunRecord`) for this extractor and data, or None.
    Where there is none the caller stores one, so the store is opened to write (a fresh one made)."""
    from toolkit.store import reading, writing

    writing.writer()
    query = (
        f"tags.extractor = '{extractor_name}' and tags.data_hash = '{dataset_hash}' "
        f"and tags.recipe = '{recipe}' and attributes.status = 'FINISHED'"
    )
    return reading.find_run(REFERENCE_EXPERIMENT, query)


@dataclass
class RealSide:
    """The real images' side of every run's sample diagnostics (`diagnostics`), in one extractor's
    features and in pixels: the same for every run of a dataset, so computed once and kept in the
    reference's run."""

    train: torch.Tensor  # features of the whole training split: where memorised copies are looked for
    test: torch.Tensor  # features of the first PR_IMAGES test images: precision and recall's real set
    radii: torch.Tensor  # their PR_K-th nearest-neighbour radii (empty for PR_K images or fewer)
    test_nearest: torch.Tensor  # the first NEAREST_QUERIES test images' distances to their nearest training image
    test_nearest_pixels: torch.Tensor  # the same in pixel space

    def npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: value.numpy() for name, value in vars(self).items()})
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> RealSide:
        """The stored real side; ValueError (KeyError for a missing array) unless its arrays are
        float32 of the shapes a RealSide has: what a store holds is checked, not trusted."""
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        found = cls(**{name: torch.from_numpy(arrays[name]) for name in cls.__dataclass_fields__})
        width = found.train.shape[-1]
        shapes_fit = (
            found.train.dim() == found.test.dim() == 2
            and found.test.shape[1] == width
            and len(found.radii) in (0, len(found.test))
            and found.radii.dim() == found.test_nearest.dim() == found.test_nearest_pixels.dim() == 1
        )
        if not shapes_fit or any(value.dtype != torch.float32 for value in vars(found).values()):
            raise ValueError("the arrays of a real side do not fit together")
        return found


def real_side(extractor: Extractor, train_images: torch.Tensor, test_images: torch.Tensor) -> RealSide:
    """The RealSide of these training and test images in `extractor`'s features."""
    train = torch.from_numpy(extractor.features(train_images)).float()
    test = torch.from_numpy(extractor.features(test_images[:PR_IMAGES])).float()
    return RealSide(
        train,
        test,
        kth_neighbour_radii(test) if len(test) > PR_K else torch.empty(0),
        nearest(test[:NEAREST_QUERIES], train)[0],
        nearest(test_images[:NEAREST_QUERIES], train_images)[0].cpu(),
    )


@dataclass
class Reference:
    extractor: Extractor
    statistics: tuple[np.ndarray, np.ndarray]  # of the test set
    floor: float  # FID of 10k training images against the test set
    run_id: str
    real: RealSide  # of the full training split

    def against(self, train_images: torch.Tensor, test_images: torch.Tensor) -> Reference:
        """This reference with its real side computed anew against `train_images` (a run trained on
        fewer images than the split's, whose copies can only be of those)."""
        return dataclasses.replace(self, real=real_side(self.extractor, train_images, test_images))

    def fid(self, images: torch.Tensor) -> float:
        """Fréchet distance of `images` (N, 784) in [0, 1] to the test set, in this extractor's features."""
        return self.fid_of_features(self.extractor.features(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """This extractor's features of `images`, float64, on the CPU."""
        return torch.from_numpy(self.extractor.features(images))

    def fid_of_features(self, features: np.ndarray) -> float:
        """Fréchet distance to the test set of images whose features (N, d) are `features`."""
        return frechet_distance(feature_statistics(features), self.statistics)


def references(dataset: str, splits, mode: str, weights: str | None = None) -> tuple[list[Reference], list[str]]:
    """The references a run scores against, and why any asked-for one was skipped.

    `mode` is RunConfig.fid: "off" gives none; "auto" the domain CNN, plus Inception when its
    weights are here and a GPU makes it cheap; "inception" the domain CNN and Inception.
    """
    from toolkit.store import location

    if mode == "off":
        return [], []
    path = inception_weights(weights)  # a missing --fid-weights file is said now, not after the CNN trained
    with location.store_lock():  # processes starting together: one trains the reference, the others load it
        found = [domain_reference(dataset, splits)]
        if mode == "inception" or (path is not None and splits.test.images.is_cuda):
            try:
                found.append(inception_reference(dataset, splits, path))
            except FidUnavailable as exc:
                return found, [str(exc)]
    return found, []


def domain_reference(dataset: str, splits) -> Reference:
    """The domain CNN and its test statistics: loaded from the store, or trained and stored once."""
    from toolkit.store import reading

    name, digest = DOMAIN_NAMES[dataset], data_hash(splits)
    found = find_reference(name, digest, CNN_RECIPE)
    if found is not None:
        cnn = DomainCNN().to(splits.train.images.device)
        cnn.load_state_dict(
            torch.load(
                io.BytesIO(reading.read_artifact(found.run_id, "weights.pt")),
                map_location=splits.train.images.device,
                weights_only=True,
            )
        )
        return _load_reference(found, Extractor(name, CnnFeatures(cnn), found.tags["extractor_hash"]), splits)
    cnn, accuracy = train_domain_cnn(splits)
    extractor = Extractor(name, CnnFeatures(cnn), weights_hash(cnn))
    return _store_reference(
        extractor, splits, dataset, digest, CNN_RECIPE, {"test_accuracy": accuracy}, {"weights.pt": _state_bytes(cnn)}
    )


def real_metrics(extractor: str, real: RealSide, splits) -> dict[str, float]:
    """What real images score where a run's samples and codes are scored, the floor of the runs'
    scores: the first PR_IMAGES training images' precision and recall against the test images
    (`names.REAL`) in `extractor`'s features and, for the domain CNN (one per dataset), the linear
    probe's accuracy on raw pixels, fitted as the runs' probes are (`diagnostics.probe_accuracy`)."""
    found = dict(
        zip(
            (names.precision(extractor, names.REAL), names.recall(extractor, names.REAL)),
            precision_recall(real.test, real.train[:PR_IMAGES], real_radii=real.radii),
        )
    )
    if extractor in DOMAIN_NAMES.values():
        train = splits.train
        found[names.PIXEL_PROBE_ACCURACY] = probe_accuracy(
            train.images[:PROBE_TRAIN], train.labels[:PROBE_TRAIN], splits.test.images, splits.test.labels
        )
    return found


def inception_reference(dataset: str, splits, weights: Path | None) -> Reference:
    extractor = inception_extractor(weights, splits.train.images.device)
    digest = data_hash(splits)
    found = find_reference(extractor.name, digest, extractor.content_hash)
    if found is not None:
        return _load_reference(found, extractor, splits)
    return _store_reference(extractor, splits, dataset, digest, extractor.content_hash, {}, {})


def _store_reference(extractor, splits, dataset, digest, recipe, metrics, files) -> Reference:
    from toolkit.store import writing

    test_stats = extractor.statistics(splits.test.images)
    floor = frechet_distance(extractor.statistics(splits.train.images[:FLOOR_IMAGES]), test_stats)
    tags = {
        "extractor": extractor.name,
        "extractor_hash": extractor.content_hash,
        "data_hash": digest,
        "recipe": recipe,
        "dataset": dataset,
    }
    with writing.start_run(REFERENCE_EXPERIMENT, f"{extractor.name}-{dataset}", tags, REFERENCE_NOTE) as run:
        real = real_side(extractor, splits.train.images, splits.test.images)
        floors = {names.fid_floor(extractor.name): floor, **real_metrics(extractor.name, real, splits)}
        run.log_metrics(metrics | floors)
        buffer = io.BytesIO()
        np.savez(buffer, mu=test_stats[0], sigma=test_stats[1])
        for name, data in {
            **files,
            names.TEST_STATISTICS_FILE: buffer.getvalue(),
            names.REAL_SIDE_FILE: real.npz(),
        }.items():
            run.log_bytes(data, name)
        return Reference(extractor, test_stats, floor, run.run_id, real)


def _load_reference(found, extractor, splits) -> Reference:
    """A stored reference; one stored before the real side or its `real_metrics` were kept gains them now."""
    from toolkit.store import reading, writing

    stats = np.load(io.BytesIO(reading.read_artifact(found.run_id, names.TEST_STATISTICS_FILE)))
    floor = found.metrics[names.fid_floor(extractor.name)]
    try:
        real = RealSide.from_npz(reading.read_artifact(found.run_id, names.REAL_SIDE_FILE))
    except (reading.ArtifactMissing, KeyError, ValueError, zipfile.BadZipFile):  # absent, or not what it should be
        real = real_side(extractor, splits.train.images, splits.test.images)
        writing.Run(found.run_id).log_bytes(real.npz(), names.REAL_SIDE_FILE)
    if names.precision(extractor.name, names.REAL) not in found.metrics:
        writing.Run(found.run_id).log_metrics(real_metrics(extractor.name, real, splits))
    return Reference(extractor, (stats["mu"], stats["sigma"]), floor, found.run_id, real)


def _state_bytes(network: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()
