"""Figures the report kinds share: pure functions from arrays and frames to matplotlib Figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

GAP = 2  # pixels between images in a strip
INCH_PER_IMAGE = 0.42


def strip(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """(N, 28, 28) images tiled into one array, `columns` per line (all in one line by default),
    separated by white gaps; grey levels in [0, 1]."""
    images = np.asarray(images, dtype=np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    columns = columns or len(images)
    lines = -(-len(images) // columns)
    side = images.shape[1]
    canvas = np.ones((lines * (side + GAP) - GAP, columns * (side + GAP) - GAP), dtype=np.float32)
    for i, image in enumerate(images):
        top, left = (i // columns) * (side + GAP), (i % columns) * (side + GAP)
        canvas[top:top + side, left:left + side] = image
    return canvas


def image_rows(rows: list[tuple[str, np.ndarray]], title: str):
    """One labelled strip of images per row (e.g. originals / VAE / AE, or samples per β)."""
    width = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width * INCH_PER_IMAGE + 1.6, len(rows) * INCH_PER_IMAGE + 0.5),
                             squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        ax.imshow(strip(images[:width]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title)
    fig.subplots_adjust(hspace=0.08)
    return fig


def image_grids(panels: list[tuple[str, np.ndarray]], columns: int = 8):
    """Square grids of images side by side, one titled panel each (e.g. samples of VAE and AE)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * columns * INCH_PER_IMAGE * 0.9 + 0.4,
                                                      columns * INCH_PER_IMAGE * 0.9 + 0.6), squeeze=False)
    for ax, (title, images) in zip(axes[0], panels):
        ax.imshow(strip(images, columns), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=title, xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def errorbars(ax, x, settings: pd.DataFrame, key: str, label: str | None = None, **style):
    """Means of `key` against x, with ± one sample standard deviation where there are several seeds."""
    std = settings.get(f"{key}_std")
    yerr = None if std is None or std.isna().all() else std.fillna(0).to_numpy()
    ax.errorbar(np.asarray(x, dtype=float), settings[key].to_numpy(), yerr=yerr, marker="o", capsize=3,
                label=label, **style)


def curves(ax, histories: pd.DataFrame, key: str, label: str, **style):
    """The mean over runs of a per-epoch metric, with a band from the lowest to the highest run."""
    values = histories[histories["key"] == key].pivot_table(index="step", columns="run_id", values="value")
    if values.empty:
        return
    line, = ax.plot(values.index, values.mean(axis=1), label=label, **style)
    if values.shape[1] > 1:
        ax.fill_between(values.index, values.min(axis=1), values.max(axis=1), color=line.get_color(), alpha=0.2,
                        linewidth=0)
