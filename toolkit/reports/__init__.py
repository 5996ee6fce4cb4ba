"""Reports from the tracking store: `write_report(kind, ...)` writes `README.md`, its tables as CSV
and its figures as PNG into one directory (default `reports/<experiment>/`).

Data flows one way: `store.reading` loads the runs (params, final metrics, tags, metric histories,
artifacts) and, for the `study` kind, Optuna's study; one module per kind turns them into a
`Document`; nothing is retrained and no number is typed by hand.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from toolkit import ToolkitError, path_in
from toolkit.reports.document import check_out

KINDS = {
    "ae-vs-vae": "ae_vs_vae",
    "anchor": "anchor",
    "beta-sweep": "beta_sweep",
    "latent-dim": "latent_dim",
    "posterior-collapse": "posterior_collapse",
    "study": "study",
}  # kind -> its module, imported when used
REPORTS_DIR = Path("reports")


def build_report(
    kind: str,
    experiment: str | None = None,
    parent: str | None = None,
    study_name: str | None = None,
    storage: str | None = None,
):
    """The report of `kind` on an experiment's runs (the children of `parent`, when given) or, for
    `study`, on the Optuna study `study_name` (default: the experiment's name) in `storage`."""
    if kind not in KINDS:
        raise ToolkitError(f"unknown report kind {kind!r}; choose one of {', '.join(KINDS)}")
    options = {"--experiment": experiment, "--parent": parent}
    if kind == "study":
        options |= {"--study": study_name, "--storage": storage}
    rebuild = " ".join(["toolkit report", kind, *(f"{k} {v}" for k, v in options.items() if v)])
    module = importlib.import_module(f"toolkit.reports.{KINDS[kind]}")
    if kind == "study":
        name = study_name or experiment
        if not name:
            raise ToolkitError("a study report needs --study NAME (or --experiment NAME of a study)")
        return module.build(name, storage, rebuild)
    if not experiment:
        raise ToolkitError(f"a {kind} report needs --experiment NAME")
    from toolkit.reports.runs import RunSet

    return module.build(RunSet(experiment, parent), rebuild)


def write_report(
    kind: str,
    experiment: str | None = None,
    parent: str | None = None,
    out: Path | None = None,
    study_name: str | None = None,
    storage: str | None = None,
) -> tuple:
    """Build a report and write it into `out` (default `reports/<experiment or study>/`); returns
    the document and the path of its README.md. Nothing is written when the report cannot be built."""
    name = experiment or study_name
    folder = Path(out) if out else path_in(REPORTS_DIR, name, "the report's folder for") if name else None
    if folder is not None:
        check_out(folder)  # before the work of building it
    doc = build_report(kind, experiment, parent, study_name, storage)  # refuses a missing name
    return doc, doc.write(folder)
