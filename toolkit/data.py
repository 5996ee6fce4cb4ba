"""Fashion-MNIST and MNIST from their IDX files, held as whole tensors on the device.

Where the files are looked for, in order: the `data_dir` argument (`--data-dir`),
`$TOOLKIT_DATA_DIR`, `./data`, `/usr/share/datasets/<name>` (Debian's `dataset-fashion-mnist`),
then torchvision's download into the first of those directories when a network is there.
Inside each directory the files may be plain or gzipped, at the top or in torchvision's
`<Name>/raw/` layout.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolkit import ToolkitError
from toolkit.config import IMAGE_SIDE

SPLIT_SEED = 20240601  # fixed, so every run (whatever its own seed) sees the same validation set
BINARIZE_SEED = 20240602  # fixed, so every binarised run is validated and tested on the same draws
VALIDATION_SIZE = 6000
IMAGES_MAGIC, LABELS_MAGIC = 0x803, 0x801

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TORCHVISION_NAMES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
CLASS_NAMES = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}


class DataError(ToolkitError):
    """The data could not be found or a file is unreadable; the message names the place."""


@dataclass
class Split:
    images: torch.Tensor  # (N, 784) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self):
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        """The examples at `index`, in its order."""
        return Split(self.images[index.to(self.images.device)], self.labels[index.to(self.labels.device)])

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Yield (images, labels) slices; shuffled by a permutation drawn from `generator` if given."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield self.images[idx], self.labels[idx]


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    source: Path  # the directory the files came from

    def binarized(self) -> Splits:
        """Validation and test images as one fixed draw of Bernoulli pixels (BINARIZE_SEED), the
        same for every run; the training split stays grey, for training to draw every batch anew."""
        generator = torch.Generator(device=self.val.images.device).manual_seed(BINARIZE_SEED)
        val, test = (Split(torch.bernoulli(s.images, generator=generator), s.labels) for s in (self.val, self.test))
        return dataclasses.replace(self, val=val, test=test)


def candidate_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for the IDX files, in order."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("TOOLKIT_DATA_DIR"):
        dirs.append(Path(os.environ["TOOLKIT_DATA_DIR"]))
    dirs.append(Path.cwd() / "data")
    dirs.append(Path("/usr/share/datasets") / dataset)
    return dirs


def find_files(dataset: str, data_dir=None, download: bool = True) -> dict[str, Path]:
    """Locate the four IDX files, or raise one DataError that lists every place tried. A
    `data_dir` that does not exist is the only place tried (and downloaded into): falling back to
    another copy would train on data the user did not ask for."""
    tried = []
    given_but_missing = data_dir is not None and not Path(data_dir).is_dir()
    for directory in [Path(data_dir)] if given_but_missing else candidate_dirs(dataset, data_dir):
        found, reason = _files_in(directory, dataset)
        if found:
            return found
        tried.append(f"  {directory}: {reason}")
    if download:
        target = candidate_dirs(dataset, data_dir)[0]
        error = _torchvision_download(dataset, target)
        if error is None:
            found, reason = _files_in(target, dataset)
            if found:
                return found
            error = reason
        tried.append(f"  torchvision download into {target}: {error}")
    raise DataError(
        f"{dataset} IDX files not found. Tried:\n" + "\n".join(tried) + "\n"
        "Get them with `apt-get install dataset-fashion-mnist` (Fashion-MNIST, Debian), or put the "
        "four *-ubyte(.gz) files in a directory and pass --data-dir DIR or set TOOLKIT_DATA_DIR=DIR."
    )


def _files_in(directory: Path, dataset: str) -> tuple[dict[str, Path] | None, str]:
    if not directory.is_dir():
        return None, "no such directory"
    for root in (directory, directory / TORCHVISION_NAMES[dataset] / "raw"):
        found = {}
        for key, stem in FILES.items():
            for name in (stem, stem + ".gz"):
                if (root / name).is_file():
                    found[key] = root / name
                    break
        if len(found) == len(FILES):
            return found, ""
        if found:
            missing = sorted(set(FILES.values()) - {FILES[k] for k in found})
            return None, f"incomplete, missing {', '.join(missing)} in {root}"
    return None, "no IDX files there"


def _torchvision_download(dataset: str, target: Path) -> str | None:
    """Try torchvision's download; return None on success, else a short reason. A failed download
    leaves nothing behind: the directories it made are removed."""
    import torchvision

    cls = {"fashion-mnist": torchvision.datasets.FashionMNIST, "mnist": torchvision.datasets.MNIST}[dataset]
    made = target if not target.exists() else target / TORCHVISION_NAMES[dataset]
    fresh = not made.exists()
    try:
        for train in (True, False):
            cls(str(target), train=train, download=True)
    except Exception as exc:  # any network or disk failure means: not available here
        if fresh:
            shutil.rmtree(made, ignore_errors=True)
        return f"failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (plain or gzip) as uint8, checking magic number, shape and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); delete it and fetch it again") from None
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file of the expected kind (magic number should be {magic:#06x})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{path}: truncated or padded, {len(raw)} bytes where the header promises {expected}")
    if dims[0] == 0:
        raise DataError(f"{path}: holds no {'images' if magic == IMAGES_MAGIC else 'labels'}")
    if magic == IMAGES_MAGIC and dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataError(f"{path}: images are {dims[1:]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def training_size(dataset: str, data_dir=None, download: bool = True) -> int:
    """How many images the training split has (the training file less the validation split)."""
    n = len(read_idx(find_files(dataset, data_dir, download)["train_labels"], LABELS_MAGIC))
    return n - validation_size(n)


def validation_size(n: int) -> int:
    """How many of the `n` training-file images the validation split takes."""
    return min(VALIDATION_SIZE, n // 10)


def load_splits(
    dataset: str = "fashion-mnist",
    data_dir=None,
    limit: int | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Splits:
    """Train/validation/test splits as tensors on `device`; `limit` keeps the first N training images."""
    files = find_files(dataset, data_dir, download)
    x, y = _read_pair(files["train_images"], files["train_labels"])
    x_test, y_test = _read_pair(files["test_images"], files["test_labels"])
    n_val = validation_size(len(x))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train_idx, val_idx = order[n_val:], order[:n_val]
    if limit is not None:
        if limit > len(train_idx):
            raise DataError(
                f"limit: {limit:,} is more than the {len(train_idx):,} training images of "
                f"{files['train_images']}; give at most {len(train_idx):,}, or leave it out"
            )
        train_idx = train_idx[:limit]
    return Splits(
        train=Split(x[train_idx].to(device), y[train_idx].to(device)),
        val=Split(x[val_idx].to(device), y[val_idx].to(device)),
        test=Split(x_test.to(device), y_test.to(device)),
        source=files["train_images"].parent,
    )
