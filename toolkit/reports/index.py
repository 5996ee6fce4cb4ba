"""`toolkit report index`: one page over every report in a folder (`reports/README.md`), each
with its experiment, date, number of runs and main finding, read from the reports themselves
(not from the store): the index says what the reports say, as they stand on disk. With
`--readme`, the same reports' findings, word for word, replace a marked block of a README, so
that its summary says no more than the comparisons the reports made."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from toolkit import ToolkitError
from toolkit.reports.claims import ONE_SEED
from toolkit.reports.document import MARKER, markdown_table

TITLE = "# Reports"
FINDINGS_START = "<!-- findings: written by `toolkit report index --readme` from the reports' findings -->"
FINDINGS_END = "<!-- end of findings -->"
SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")


def entries(folder: Path) -> pd.DataFrame:
    """One row per toolkit report in `folder`'s subfolders: its link, experiment, date, runs and main finding."""
    rows = []
    for readme in sorted(Path(folder).glob("*/README.md")):
        text = readme.read_text(errors="replace")
        if not text.startswith(MARKER):
            continue
        facts = provenance(text)
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), readme.parent.name)
        rows.append(
            {
                "report": f"[{title}]({readme.parent.name}/README.md)",
                "experiment": facts.get("experiment", facts.get("study", "")).split(" (id")[0],
                "generated": facts.get("generated", ""),
                "runs": facts.get("runs", "").split(":")[0],
                "main finding": main_finding(text),
            }
        )
    return pd.DataFrame(rows, columns=["report", "experiment", "generated", "runs", "main finding"])


def provenance(text: str) -> dict[str, str]:
    """The rows of a report's first table (its provenance), by their first cell."""
    found = {}
    for line in text.splitlines():
        if line.startswith("## "):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and cells[0]:
            found[cells[0]] = cells[1]
    return found


def findings(text: str) -> list[str]:
    """The paragraphs of a report's Findings section (its tables left out)."""
    if "\n## Findings\n" not in text:
        return []
    section = text.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    return [p.strip() for p in section.split("\n\n") if p.strip() and not p.strip().startswith(("|", "<", "!"))]


def main_finding(text: str) -> str:
    """The first sentence of a report's Findings that states something (not the one-seed caveat)."""
    paragraphs = [p.replace(ONE_SEED, "").strip() for p in findings(text)]
    first = next((SENTENCE.match(p) for p in paragraphs if p), None)
    return first.group(1) if first else "–"


def write_readme_findings(folder: Path, readme: Path) -> Path:
    """Replace the block between FINDINGS_START and FINDINGS_END in `readme` with one item per report
    in `folder`: its link and its findings, word for word."""
    readme, folder = Path(readme), Path(folder)
    text = readme.read_text(errors="replace") if readme.is_file() else ""
    if FINDINGS_START not in text or FINDINGS_END not in text.split(FINDINGS_START, 1)[1]:
        raise ToolkitError(f"{readme} has no findings block: add the lines {FINDINGS_START} and {FINDINGS_END}")
    items = []
    for report in sorted(folder.glob("*/README.md")):
        found = report.read_text(errors="replace")
        if found.startswith(MARKER) and findings(found):
            title = next((line[2:] for line in found.splitlines() if line.startswith("# ")), report.parent.name)
            link = Path(os.path.relpath(report, readme.parent)).as_posix()
            items.append(f"- [{title}]({link}): " + " ".join(p.replace("\n", " ") for p in findings(found)))
    before, rest = text.split(FINDINGS_START, 1)
    after = rest.split(FINDINGS_END, 1)[1]
    _replace(readme, before + FINDINGS_START + "\n\n" + "\n".join(items) + "\n\n" + FINDINGS_END + after)
    return readme


def write_index(folder: Path) -> Path:
    """Write `folder`/README.md over the reports in it (replacing an earlier index whole)."""
    folder = Path(folder)
    found = entries(folder)
    if found.empty:
        raise ToolkitError(
            f"no toolkit reports under {folder}/ (each is a folder with a README.md written by "
            "`toolkit report`); write some first"
        )
    index = folder / "README.md"
    if index.exists() and not index.read_text(errors="replace").startswith(MARKER):
        raise ToolkitError(f"{index} is not an index the toolkit wrote; move it away first")
    text = (
        "\n\n".join(
            [
                MARKER,
                TITLE,
                f"{len(found)} reports, each rebuilt from the tracking store by the command "
                "in its first table; the main finding is the first of its findings.",
                markdown_table(found, markup=list(found.columns)),
            ]
        )
        + "\n"
    )
    _replace(index, text)
    return index


def _replace(path: Path, text: str):
    """Write `text` to `path` whole or not at all (a reader never sees half a file)."""
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(staging, 0o644)
    os.replace(staging, path)
