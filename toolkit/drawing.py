"""The look every figure shares, a run's (`figures`) or a report's (`reports`): the style, images
laid out in labelled rows and grids at an exact pixel scale, and the log scale of KL axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

DPI = 150  # every figure's text is at least 8 pt (STYLE) at this resolution, the PNG at natural width
GAP = 2  # pixels between images in a strip
LABEL_PX, TITLE_PX, ROW_GAP_PX = 280, 48, 10  # at DPI: room for a label of about 25 characters at 9 pt
SCALE = 3  # figure pixels per image pixel, each way: a 28-pixel image is 84 pixels, 0.56 inches at DPI
# Every figure, of a run or of a report: text of 8 pt or more at DPI, and one colour-blind-safe
# palette (matplotlib's tableau-colorblind10) for every line, bar and class.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}
plt.style.use(["tableau-colorblind10", STYLE])
KL_FLOOR = 1e-3  # nats: the bottom of every log-scale KL axis; smaller KLs are drawn at it


def strip(images: np.ndarray, columns: int | None = None, scale: int = 1) -> np.ndarray:
    """(N, 28, 28) images tiled into one array, `columns` per line (all in one line by default),
    separated by white gaps, each pixel repeated `scale` times each way; grey levels in [0, 1]."""
    images = np.asarray(images, dtype=np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    columns = columns or len(images)
    lines = -(-len(images) // columns)
    side = images.shape[1]
    canvas = np.ones((lines * (side + GAP) - GAP, columns * (side + GAP) - GAP), dtype=np.float32)
    for i, image in enumerate(images):
        top, left = (i // columns) * (side + GAP), (i % columns) * (side + GAP)
        canvas[top : top + side, left : left + side] = image
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1)


def _pixel_axes(fig, canvas: np.ndarray, left: float, bottom: float):
    """Axes exactly the canvas's size in pixels at (left, bottom) pixels, showing it unresampled."""
    width, height = fig.get_size_inches() * DPI
    ax = fig.add_axes((left / width, bottom / height, canvas.shape[1] / width, canvas.shape[0] / height))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def image_rows(rows: list[tuple[str, np.ndarray]], title: str, scale: int = SCALE):
    """One labelled strip of images per row (e.g. originals / VAE / AE, or samples per β), each
    image pixel shown as scale x scale figure pixels."""
    canvases = [strip(images, scale=scale) for _, images in rows]
    width = LABEL_PX + max(c.shape[1] for c in canvases)
    height = TITLE_PX + sum(c.shape[0] + ROW_GAP_PX for c in canvases)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    top = height - TITLE_PX
    for (label, _), canvas in zip(rows, canvases):
        top -= canvas.shape[0]
        _pixel_axes(fig, canvas, LABEL_PX, top).set_ylabel(label, rotation=0, ha="right", va="center")
        top -= ROW_GAP_PX
    fig.suptitle(title, y=1 - 6 / height, va="top")
    return fig


def image_grids(panels: list[tuple[str, np.ndarray]], columns: int = 8, scale: int = SCALE):
    """Square grids of images side by side, one titled panel each (e.g. samples of VAE and AE)."""
    canvases = [strip(images, columns, scale) for _, images in panels]
    gap = 3 * ROW_GAP_PX
    width = sum(c.shape[1] for c in canvases) + gap * (len(canvases) + 1)
    height = max(c.shape[0] for c in canvases) + TITLE_PX
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    left = gap
    for (title, _), canvas in zip(panels, canvases):
        _pixel_axes(fig, canvas, left, 0).set_title(title)
        left += canvas.shape[1] + gap
    return fig


def kl_norm(top: float) -> LogNorm:
    """The log colour scale of a KL heatmap, from KL_FLOOR (anything below shows as it) to `top`."""
    return LogNorm(vmin=KL_FLOOR, vmax=max(top, 10 * KL_FLOOR))


def plain_log_ticks(axis):
    """Label a log axis's decades as plain numbers (0.001, 0.1, 10 nats), not as powers of ten:
    read at a glance, and drawn without mathtext (a tenth of a second on the first figure)."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def mark_threshold(colorbar, threshold: float):
    """A line across a KL colour bar at `threshold`: a dimension with less KL carries less information."""
    colorbar.ax.axhline(threshold, color="white", linewidth=2)
    colorbar.ax.axhline(threshold, color="C1", linewidth=1, linestyle="--")
    colorbar.ax.text(
        1.05,
        threshold,
        f" {threshold:g}: less KL, less information",
        transform=colorbar.ax.get_yaxis_transform(),
        va="bottom",
        fontsize=8,
        color="C1",
        rotation=90,
    )
