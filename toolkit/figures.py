"""Pure functions from models or arrays to matplotlib Figures; saving and logging live elsewhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from toolkit import drawing, names  # noqa: E402
from toolkit.config import IMAGE_SIDE  # noqa: E402
from toolkit.diagnostics import INFORMATIVE_NATS  # noqa: E402
from toolkit.samplers import latent_means  # noqa: E402

# t-SNE runs on the first 1,000 test images (about 100 of each class), the same subset for every
# run, for 500 iterations (sklearn's default is 1,000). On a VAE's codes, 2,000 images took 2.1 s
# here and 1,000 take 0.9 s, trustworthiness (5 neighbours) 0.9963 against 0.9952; at 2,000 images
# 500 iterations gave the same layout as 1,000, trustworthiness 0.9854 against 0.9856.
TSNE_IMAGES, TSNE_ITERATIONS = 1000, 500
MARKERS = "o^sDv<>pPX"  # one per class, with its colour: classes stay apart without colour vision


def _as_numpy(images) -> np.ndarray:
    return images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)


def _images(images) -> np.ndarray:
    """Flat (N, 784) images in [0, 1] as (N, 28, 28)."""
    return _as_numpy(images).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def reconstructions(originals, recon):
    """Originals above their reconstructions."""
    return drawing.image_rows([("original", _images(originals)), ("reconstruction", _images(recon))], "reconstructions")


def samples(images, title: str):
    """A square grid of generated images."""
    return drawing.image_grids([(title, _images(images))], columns=int(np.sqrt(len(images))))


def interpolation(images):
    """Decoded images along a line between two codes, in one row."""
    return drawing.image_rows([("", _images(images))], "interpolation")


def traversals(images, dims: list[int], kl: list[float]):
    """One row per traversed latent dimension (`diagnostics.traversal_codes`), labelled with its test KL."""
    rows = _images(images).reshape(len(dims), -1, IMAGE_SIDE, IMAGE_SIDE)
    return drawing.image_rows(
        [(f"z{d:02d}: {k:.2f} nats", row) for d, k, row in zip(dims, kl, rows)],
        "traversals (one dimension each, 2nd to 98th percentile of q(z))",
    )


def nearest_training(samples, pixels, features, extractor: str):
    """Samples above their nearest training images in pixel space and in the extractor's features."""
    rows = [("sample", _images(samples)), ("nearest (pixels)", _images(pixels))]
    if features is not None:
        rows.append((f"nearest ({extractor})", _images(features)))
    return drawing.image_rows(rows, "samples and their nearest training images")


def _scatter(points: np.ndarray, labels, title: str, class_names=None, axes: tuple[str, str] = ("", "")):
    """Points coloured (and shaped) by class label; the legend names the classes when
    `class_names` is given."""
    labels = _as_numpy(labels)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for label in np.unique(labels):
        mask = labels == label
        name = class_names[label] if class_names else str(label)
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            color=f"C{label % 10}",
            marker=MARKERS[label % len(MARKERS)],
            s=4,
            alpha=0.7,
            linewidths=0,
            label=name,
        )
    ax.legend(title="class", loc="center left", bbox_to_anchor=(1, 0.5), markerscale=3)
    ax.set(title=title, xticks=[], yticks=[], xlabel=axes[0], ylabel=axes[1])
    fig.tight_layout()
    return fig


def _model_name(model) -> str:
    return "VAE" if model.variational else "AE"


def latent_pca(model, images, labels, class_names=None):
    """First two principal components of the latent means, coloured by class, each axis with the
    share of the codes' variance it explains."""
    mu = _as_numpy(latent_means(model, images))
    if mu.shape[1] <= 2:
        return _scatter(mu, labels, f"{_model_name(model)} latent means", class_names, ("z1", "z2"))
    pca = PCA(2).fit(mu)
    shares = [f"PC{i + 1} ({100 * r:.1f} % of variance)" for i, r in enumerate(pca.explained_variance_ratio_)]
    return _scatter(
        pca.transform(mu),
        labels,
        f"{_model_name(model)} latent means: PCA of {mu.shape[1]} dimensions",
        class_names,
        tuple(shares),
    )


def latent_tsne(model, images, labels, class_names=None, seed: int = 0):
    """t-SNE of the latent means of the first TSNE_IMAGES images, coloured by class."""
    mu = _as_numpy(latent_means(model, images[:TSNE_IMAGES]))
    points = TSNE(2, init="pca", random_state=seed, perplexity=30, max_iter=TSNE_ITERATIONS).fit_transform(mu)
    return _scatter(
        points,
        labels[:TSNE_IMAGES],
        f"{_model_name(model)} latent means: t-SNE of {min(len(mu), TSNE_IMAGES):,} test images (perplexity 30)",
        class_names,
    )


def manifold(images):
    """The decoded grid of a 2-D latent space (`samplers.manifold_codes`)."""
    return drawing.image_grids([("2-D latent manifold", _images(images))], columns=int(np.sqrt(len(images))))


def kl_bars(kl_per_dim, information_low=None, free_bits: float = 0.0, active: int | None = None):
    """KL of each latent dimension at the end, on a log scale (a collapsed dimension's few
    thousandths of a nat stay visible). A dimension's KL bounds its information from above, so one
    below INFORMATIVE_NATS is uninformative; the informative ones, those whose information bracket
    (`information_low`, its low ends) clears INFORMATIVE_NATS, are coloured."""
    kl = np.asarray(kl_per_dim)
    informative = np.asarray(information_low if information_low is not None else np.zeros_like(kl)) > INFORMATIVE_NATS
    fig, ax = plt.subplots(figsize=(max(4.5, 0.3 * len(kl)), 3.2))
    ax.bar(np.arange(len(kl)), np.maximum(kl, drawing.KL_FLOOR), color=np.where(informative, "C0", "C2"))
    ax.axhline(
        INFORMATIVE_NATS, color="C1", linestyle="--", label=f"{INFORMATIVE_NATS:g} nats: less KL, less information"
    )
    if free_bits:
        ax.axhline(free_bits, color="C5", linestyle=":", label=f"free-bits floor {free_bits:g}")
    counts = (f"{int(informative.sum())} informative, " if information_low is not None else "") + (
        f"{active} active" if active is not None else ""
    )
    ax.set(
        yscale="log",
        ylim=(drawing.KL_FLOOR, max(1.0, kl.max()) * 2),
        title=f"KL per latent dimension (test){': ' + counts.rstrip(', ') if counts else ''}",
        xlabel="dimension",
        ylabel="nats (log scale)",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    drawing.plain_log_ticks(ax.yaxis)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def kl_heatmap(kl_by_epoch):
    """KL of each dimension (rows) over epochs (columns), on a log colour scale with INFORMATIVE_NATS
    marked on its bar (a dimension below it carries less information): the picture of posterior collapse."""
    matrix = np.maximum(np.asarray(kl_by_epoch).T, drawing.KL_FLOOR)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.25 * matrix.shape[1] + 2.5), max(3, 0.2 * matrix.shape[0] + 1)))
    image = ax.imshow(
        matrix,
        aspect="auto",
        cmap="viridis",
        origin="lower",
        norm=drawing.kl_norm(matrix.max()),
        extent=(0.5, matrix.shape[1] + 0.5, -0.5, matrix.shape[0] - 0.5),
        interpolation="nearest",
    )
    colorbar = fig.colorbar(image, ax=ax, label="nats (log scale)")
    drawing.plain_log_ticks(colorbar.ax.yaxis)
    drawing.mark_threshold(colorbar, INFORMATIVE_NATS)
    ax.set(title="KL per dimension over epochs (validation)", xlabel="epoch", ylabel="dimension")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def loss_curves(history: list[dict[str, float]]):
    """Train and validation curves per epoch: total loss, reconstruction and (for a VAE) KL."""
    epochs = range(1, len(history) + 1)
    panels = [name for name in (names.LOSS, names.RECON, names.KL) if names.val(name) in history[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, name in zip(axes[0], panels):
        for split in ("train", "val"):
            ax.plot(epochs, [h[names.of_split(split, name)] for h in history], marker=".", label=split)
        ax.set(title=name, xlabel="epoch", ylabel="nats per example")
        ax.legend()
    fig.tight_layout()
    return fig
