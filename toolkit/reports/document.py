"""A report under construction: markdown, tables written both as markdown and as CSV, figures as
PNG (for reading) and PDF (vector, for papers).

Nothing here reads the store. The output is deterministic: the same inputs give the same bytes,
except for the one line that dates the report (`GENERATED`).
"""

from __future__ import annotations

import errno
import io
import math
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from toolkit import ToolkitError, masked  # noqa: E402
from toolkit.drawing import DPI  # noqa: E402

MARKER = "<!-- written by `toolkit report`: rebuilt from the tracking store, edits are overwritten -->"
GENERATED = "| generated |"  # the provenance row that holds the date: the only line that changes on a rebuild
MAX_PNG = 240_000  # bytes: a larger figure is re-encoded with fewer colours (see `small_png`)
SPREAD_DIGITS_BELOW = 4  # decimals a std may take beyond its mean's before it is written as a power of ten
# No library version or date in the files: the same figure gives the same bytes.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")  # line breaks and other control characters
# What makes code, emphasis (an underscore only where it is not inside a word), a table cell or a
# link target out of text.
MARKUP = re.compile(r"([\\`*~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))|(\]\()")


def escape(text) -> str:
    """Any text (a run name, an end reason, a param read from the store) as markdown that shows
    exactly it, on one line: no HTML, link, image, emphasis or table cell can come out of it
    (`<` and `&` as entities; `]` before `(`, which alone opens a link's target, escaped)."""
    text = CONTROL.sub(" ", str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MARKUP.sub(lambda m: "\\" + m.group(1) if m.group(1) else "]\\(", text)


def code(text) -> str:
    """Text from the store as an inline code span on one line (HTML in a code span is shown, not
    rendered; a backtick, which would end it, is shown as a quote; `|` escaped for table rows)."""
    return "`" + CONTROL.sub(" ", str(text)).replace("`", "'").replace("|", "\\|") + "`"


def link(text, target: str) -> str:
    """A link whose text and target may come from the store: the text escaped, the target
    percent-encoded, and only an http(s) target linked (any other is shown as text)."""
    if not target.startswith(("http://", "https://")):
        return escape(text)
    text = escape(text).replace("[", "\\[").replace("]", "\\]")  # a bracket would end the link's text
    return f"[{text}]({quote(target, safe=':/#?&=%')})"


def number(value, fmt: str = ".4g") -> str:
    """A value as text in the format `fmt`; blank for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:{fmt}}"


def mean_std(mean: float, std: float, n: int, fmt: str = ".4g") -> str:
    """'mean ± std' over n runs (the std to at least two significant digits), or the single
    value when n is 1. A std far below the mean's last digit (a bound at its ceiling in every
    seed) is written as a power of ten: 9.21 ± 2.1e-10, not 9.21 ± 0.00000000021."""
    if n <= 1 or math.isnan(std):
        return number(mean, fmt)
    if not fmt.endswith("f") or std == 0:
        return f"{number(mean, fmt)} ± {number(std, '.2g')}"
    decimals = max(int(fmt[1:-1]), 1 - math.floor(math.log10(std)))
    if decimals > int(fmt[1:-1]) + SPREAD_DIGITS_BELOW:
        return f"{number(mean, fmt)} ± {std:.1e}"
    return f"{number(mean, fmt)} ± {std:.{decimals}f}"


def markdown_table(frame: pd.DataFrame, markup: Iterable[str] = ()) -> str:
    """A pipe table of the frame's cells, headers from its columns. The cells of the columns named
    in `markup` are markdown the toolkit wrote (links, bold, code spans of escaped text) and go in
    as they are; every other cell and header is text, escaped (`escape`)."""
    escaped = [column not in set(markup) for column in frame.columns]

    def row(cells, escaping=escaped):
        return "| " + " | ".join(escape(c) if e else str(c) for c, e in zip(cells, escaping)) + " |"

    lines = [
        row(frame.columns, [True] * len(escaped)),
        "|" + " --- |" * len(escaped),
        *(row(r) for r in frame.itertuples(index=False)),
    ]
    return "\n".join(lines)


def render_png(fig) -> bytes:
    """A figure as PNG bytes, closed afterwards: 8-bit grey when it has no colour in it (images,
    black text), and re-encoded with fewer colours when it would exceed MAX_PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    return small_png(_grey_if_possible(buffer.getvalue()))


def render_pdf(fig) -> bytes:
    """A figure as vector PDF bytes (images inside it stay raster), left open."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf", dpi=DPI, bbox_inches="tight", metadata=PDF_METADATA)
    return buffer.getvalue()


def _grey_if_possible(png: bytes) -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
        return png
    buffer = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(buffer, format="PNG", optimize=True, dpi=(DPI, DPI))
    return buffer.getvalue()


def small_png(png: bytes) -> bytes:
    """The picture unchanged if it is at most MAX_PNG bytes; otherwise with 256, 128, ... colours
    (deterministic median cut) until it fits."""
    colours = 256
    while len(png) > MAX_PNG and colours >= 16:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT).save(
            buffer, format="PNG", optimize=True, dpi=(DPI, DPI)
        )
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

    def table(self, name: str, shown: pd.DataFrame, data: pd.DataFrame | None = None, markup: Iterable[str] = ()):
        """`shown` (formatted cells; `markup` names its columns of markdown) as a markdown table;
        `data` (full precision, default `shown`) as `name.csv` beside it, linked under the table."""
        markdown = markdown_table(shown, markup)
        self.main_table = self.main_table or markdown
        self._add_file(
            f"{name}.csv", (shown if data is None else data).to_csv(index=False, lineterminator="\n").encode()
        )
        self.parts.append(f"{markdown}\n\n<sub>As CSV: [{name}.csv]({name}.csv)</sub>")

    def figure(self, name: str, fig, alt: str, caption: str = ""):
        """Save a matplotlib figure as `name.png` and `name.pdf` and show it in the markdown, with
        its caption (what its bars and bands are) and the PDF's link below."""
        self._add_file(f"{name}.pdf", render_pdf(fig))
        self._add_file(f"{name}.png", render_png(fig))
        self.parts.append(
            f"![{alt}]({name}.png)\n\n<sub>{caption + ' ' if caption else ''}As PDF: [{name}.pdf]({name}.pdf)</sub>"
        )

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
        """The whole report, every URL in it with its credentials masked."""
        return masked("\n\n".join(self.parts) + "\n")

    def write(self, out: Path) -> Path:
        """Write README.md and the files into a new folder beside `out`, then move it into place,
        replacing an earlier report there: a reader never sees half a report, and one cut short (a
        full disk, a kill) leaves the earlier report as it was. A directory holding anything but
        a toolkit report is refused."""
        out = Path(out)
        check_out(out)
        staging = None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
            staging.chmod(0o755)  # mkdtemp's folder is private; a report is for everyone who can read its parent
            for name, data in self.files.items():
                (staging / name).write_bytes(data)
            (staging / "README.md").write_text(self.markdown())
            _swap_in(staging, out)
        except OSError as exc:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise ToolkitError(
                f"cannot write the report into {out}: {exc.strerror}; check --out "
                "(an earlier report there is unchanged)"
            ) from None
        return out / "README.md"


def check_out(out: Path):
    """Refuse `out` when it is a file, or a directory holding anything but a toolkit report."""
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {out}: it is a file, not a directory; choose a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        readme = out / "README.md"
        if not (readme.is_file() and readme.read_text(errors="replace").startswith(MARKER)):
            raise ToolkitError(
                f"--out {out}: the directory holds files that are not a toolkit report; choose a new or empty directory"
            )


def _swap_in(staging: Path, out: Path):
    """Move the finished folder `staging` to `out`, the earlier report there (if any) moved aside
    first and removed after. Another writer of the same report may be swapping too: retried."""
    for _ in range(3):
        old = None
        if out.exists() and any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{staging.name}")
            try:
                out.rename(old)
            except FileNotFoundError:  # the other writer moved it first
                old = None
        try:
            staging.replace(out)  # onto a missing or empty directory
        except OSError:
            continue  # the other writer's report arrived in between: move it aside in turn
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "other processes kept writing the same report")
