"""A report under construction: markdown, tables written both as markdown and as CSV, figures as PNG.

Nothing here reads the store. The output is deterministic: the same inputs give the same bytes,
except for the one line that dates the report (`GENERATED`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from toolkit import ToolkitError  # noqa: E402

MARKER = "<!-- written by `toolkit report`: rebuilt from the tracking store, edits are overwritten -->"
GENERATED = "| generated |"  # the provenance row that holds the date: the only line that changes on a rebuild
DPI = 80
MAX_PNG = 150_000  # bytes: a larger figure is re-encoded with fewer colours (see `small_png`)
PNG_METADATA = {"Software": None}  # no library version in the file: the same figure gives the same bytes


def number(value, fmt: str = ".4g") -> str:
    """A value as text in the format `fmt`; blank for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:{fmt}}"


def mean_std(mean: float, std: float, n: int, fmt: str = ".4g") -> str:
    """'mean ± std' over n runs (the std to at least two significant digits), or the single
    value when n is 1."""
    if n <= 1 or math.isnan(std):
        return number(mean, fmt)
    if not fmt.endswith("f") or std == 0:
        return f"{number(mean, fmt)} ± {number(std, '.2g')}"
    decimals = max(int(fmt[1:-1]), 1 - math.floor(math.log10(std)))
    return f"{number(mean, fmt)} ± {std:.{decimals}f}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table of the frame's cells as they are (strings), headers from its columns."""
    def row(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
    lines = [row(frame.columns), row(["---"] * len(frame.columns)), *(row(r) for r in frame.itertuples(index=False))]
    return "\n".join(lines)


def render_png(fig) -> bytes:
    """A figure as PNG bytes, closed afterwards: 8-bit grey when it has no colour in it (images,
    black text), and re-encoded with fewer colours when it would exceed MAX_PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    return small_png(_grey_if_possible(buffer.getvalue()))


def _grey_if_possible(png: bytes) -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
        return png
    buffer = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def small_png(png: bytes) -> bytes:
    """The picture unchanged if it is at most MAX_PNG bytes; otherwise with 256, 128, ... colours
    (deterministic median cut) until it fits."""
    colours = 256
    while len(png) > MAX_PNG and colours >= 16:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT).save(
            buffer, format="PNG", optimize=True)
        png, colours = buffer.getvalue(), colours // 2
    return png


class Document:
    """Markdown parts and the files (CSVs, PNGs) the markdown links, written together by `write`."""

    def __init__(self, title: str):
        self.parts: list[str] = [MARKER, f"# {title}"]
        self.files: dict[str, bytes] = {}
        self.main_table: str | None = None  # the first table, which the study scripts also print

    def heading(self, title: str, level: int = 2):
        self.parts.append(f"{'#' * level} {title}")

    def text(self, markdown: str):
        self.parts.append(markdown.strip())

    def table(self, name: str, shown: pd.DataFrame, data: pd.DataFrame | None = None):
        """`shown` (formatted cells) as a markdown table; `data` (full precision, default `shown`)
        as `name.csv` beside it, linked under the table."""
        markdown = markdown_table(shown)
        self.main_table = self.main_table or markdown
        self._add_file(f"{name}.csv", (shown if data is None else data).to_csv(index=False, lineterminator="\n").encode())
        self.parts.append(f"{markdown}\n\n<sub>As CSV: [{name}.csv]({name}.csv)</sub>")

    def figure(self, name: str, fig, alt: str, caption: str = ""):
        """Save a matplotlib figure as `name.png` and show it in the markdown, with its caption
        (what its bars and bands are) below."""
        self._add_file(f"{name}.png", render_png(fig))
        self.parts.append(f"![{alt}]({name}.png)" + (f"\n\n<sub>{caption}</sub>" if caption else ""))

    def images_side_by_side(self, cells: list[tuple[str, str, bytes]]):
        """PNG files (a caption, a file name, the bytes, e.g. figures runs logged) in one row."""
        for _, name, png in cells:
            self._add_file(name, small_png(png))
        header = "| " + " | ".join(caption for caption, _, _ in cells) + " |"
        images = "| " + " | ".join(f"![{caption}]({name})" for caption, name, _ in cells) + " |"
        self.parts.append("\n".join([header, "|" + " --- |" * len(cells), images]))

    def _add_file(self, name: str, data: bytes):
        if name in self.files:
            raise ValueError(f"the report already has a file {name}")
        self.files[name] = data

    def markdown(self) -> str:
        return "\n\n".join(self.parts) + "\n"

    def write(self, out: Path) -> Path:
        """Write README.md and the files into `out`, replacing an earlier report there (its stale
        PNGs and CSVs go too); a directory holding anything else is refused."""
        out = Path(out)
        readme = out / "README.md"
        if out.exists() and any(out.iterdir()):
            if not (readme.is_file() and readme.read_text(errors="replace").startswith(MARKER)):
                raise ToolkitError(f"--out {out}: the directory holds files that are not a toolkit report; "
                                   "choose a new or empty directory")
            for stale in [*out.glob("*.png"), *out.glob("*.csv")]:
                if stale.name not in self.files:
                    stale.unlink()
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in self.files.items():
                (out / name).write_bytes(data)
            readme.write_text(self.markdown())
        except OSError as exc:
            raise ToolkitError(f"cannot write the report into {out}: {exc.strerror}; check --out") from None
        return readme
