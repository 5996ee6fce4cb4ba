"""The parts every report of runs shares: provenance, the results table, the runs left out of it,
and the list of every run with its link."""
from __future__ import annotations

import datetime
import math

import numpy as np
import pandas as pd

from toolkit import tracking
from toolkit.reports.document import GENERATED, Document, markdown_table, mean_std, number
from toolkit.reports.runs import Column, RunSet, shown_param

RUNNING_REASON = "still running, or its process died without ending the run"
SAMPLES = ("FID samples: the VAE's drawn from its prior N(0, I), the AE's from a Gaussian fitted to its training "
           "codes; FID GMM samples: from a 10-component Gaussian mixture fitted to either model's codes.")
SPREAD = " Mean ± sample standard deviation over seeds where a setting has several runs (n)."


def link(runs: RunSet, run_id: str, text: str | None = None) -> str:
    return f"[{text or run_id[:8]}]({tracking.run_url(runs.experiment_id, run_id)})"


def provenance(doc: Document, runs: RunSet | None, rebuild: str, extra: list[tuple[str, str]] = ()):
    """Where every number comes from: store, experiment, runs, code, data and FID extractors
    (`extra` rows, e.g. an Optuna study's, before the command that rebuilds the report)."""
    rows = [("store", f"`{tracking.tracking_uri()}`")]
    if runs is not None:
        counts = runs.runs["status"].value_counts()
        rows += [("experiment", f"`{runs.experiment}` (id {runs.experiment_id})"),
                 ("parent run", link(runs, runs.parent, runs.parent) if runs.parent else "none: every run of the experiment"),
                 ("runs", f"{len(runs.runs)}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
                  + "; ids under [Runs](#runs)"),
                 ("git commit", _commits(runs.runs)),
                 ("dataset", _dataset(runs.finished))]
        rows += [_extractor_row(e) for e in runs.extractors]
    rows += [*extra, ("rebuild", f"`{rebuild}`")]
    doc.text("\n".join(["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows),
                        f"{GENERATED} {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC |"]))


def _extractor_row(e) -> tuple[str, str]:
    floor = f"real-vs-real floor {number(e.floor)}" if e.floor is not None else "floor not found"
    kind = "Inception" if e.name == "inception" else "a domain CNN: these are not Inception FIDs"
    hashes = ", ".join(f"`{h}`" for h in e.hashes)
    warning = "; **several extractor versions: their FIDs are not comparable**" if len(e.hashes) > 1 else ""
    reference = f" (reference run {e.reference_run})" if e.reference_run else ""
    return f"FID `{e.name}`", f"{kind}; hash {hashes}{warning}; {floor}{reference}"


def _commits(runs: pd.DataFrame) -> str:
    if "tags.git_commit" not in runs:
        return "not recorded"
    dirty = runs.get("tags.git_dirty", pd.Series(["?"] * len(runs), index=runs.index))
    found = sorted({(c[:10], d) for c, d in zip(runs["tags.git_commit"].fillna("unknown"), dirty.fillna("?"))})
    return ", ".join(f"`{c}`" + (" (uncommitted changes)" if d == "True" else "") for c, d in found)


def _dataset(runs: pd.DataFrame) -> str:
    names = sorted(set(runs.get("params.dataset", pd.Series(dtype=object)).dropna()))
    dirs = sorted(set(runs.get("tags.data_dir", pd.Series(dtype=object)).dropna()))
    return ", ".join(names) + (f", read from {', '.join(f'`{d}`' for d in dirs)}" if dirs else "")


def results_table(doc: Document, runs: RunSet, name: str, settings: pd.DataFrame, labels: dict[str, list[str]],
                  columns: list[Column], extra_rows: list[dict[str, str]] = (), mark_better: bool = False):
    """The settings as a table: `labels` (header -> one cell per setting) first, then n when a
    setting has several runs, then mean ± std of each column; `extra_rows` (header -> cell) are
    appended to the markdown only. With `mark_better` the best value of each column is bold.
    The CSV holds the full-precision means and standard deviations under the metric keys."""
    several = bool((settings["n"] > 1).any())
    shown = pd.DataFrame(labels)
    if several:
        shown["n"] = settings["n"].astype(str).to_numpy()
    for column in columns:
        cells = [mean_std(m, s, n, column.fmt) for m, s, n in zip(settings[column.key], settings[f"{column.key}_std"],
                                                                  settings["n"])]
        best = _best(settings[column.key], column) if mark_better else None
        shown[column.header] = [f"**{c}**" if i == best else c for i, c in enumerate(cells)]
    for extra in extra_rows:
        shown.loc[len(shown)] = [extra.get(header, "") for header in shown.columns]
    keep = [c for c in settings if not c.endswith("_std") or several]
    doc.table(name, shown, settings[[*[c for c in keep if c != "run_ids"], "run_ids"]])
    for e in runs.extractors:
        if e.floor is not None and any(c.key.startswith(f"fid/{e.name}/") for c in columns):
            kind = "Inception" if e.name == "inception" else "a domain CNN, so not an Inception FID"
            doc.text(f"FID `{e.name}` ({kind}): its real-vs-real floor (real training images against the test "
                     f"set) is {number(e.floor, '.2f')}.")
    if "gaussian" in set(runs.param("likelihood")):
        doc.text("Gaussian likelihood: its reconstruction term is the squared error summed over the 784 pixels "
                 "(the Gaussian NLL with σ² = ½ without its constant), so its nats are not comparable with those "
                 "of Bernoulli runs.")
    left_out(doc, runs)


def _best(values: pd.Series, column: Column) -> int | None:
    """The row with the better value (when there are two or more values to compare)."""
    if column.lower_is_better is None or values.notna().sum() < 2:
        return None
    return int(values.idxmin() if column.lower_is_better else values.idxmax())


def left_out(doc: Document, runs: RunSet):
    """The runs that are not FINISHED, with their status and why: never averaged in, never dropped."""
    if runs.excluded.empty:
        return
    rows = pd.DataFrame({"run": [link(runs, r, n) for r, n in zip(runs.excluded["run_id"], _names(runs.excluded))],
                         "status": runs.excluded["status"],
                         "reason": [_reason(run) for _, run in runs.excluded.iterrows()]})
    doc.text(f"**{len(rows)} run(s) left out of the tables** (not FINISHED):")
    doc.text(markdown_table(rows))


def _reason(run: pd.Series) -> str:
    reason = run.get(f"tags.{tracking.END_REASON}")
    if isinstance(reason, str) and reason:
        return reason
    return RUNNING_REASON if run["status"] == "RUNNING" else "no reason recorded"


def _names(frame: pd.DataFrame) -> list[str]:
    return list(frame.get("tags.mlflow.runName", frame["run_id"]).fillna("").astype(str))


def run_list(doc: Document, runs: RunSet):
    """Every run of the report, with a link to it in the MLflow UI; also as runs.csv."""
    varying = runs.varying()
    frame = runs.runs
    data = pd.DataFrame({"run_id": frame["run_id"], "name": _names(frame), "status": frame["status"],
                         "trial": frame.get("tags.trial", pd.Series([None] * len(frame))).fillna(""),
                         "seed": runs.param("seed", frame),
                         **{p: runs.param(p, frame) for p in varying if p != "seed"},
                         "git_commit": frame.get("tags.git_commit", pd.Series([None] * len(frame))).fillna("")})
    shown = data.drop(columns=["run_id"]).copy()
    shown.insert(0, "run", [link(runs, r) for r in data["run_id"]])
    shown["git_commit"] = shown["git_commit"].str[:10]
    models = runs.param("model", frame).fillna("")
    for p in varying:
        shown[p] = [shown_param(m, p, v) for m, v in zip(models, shown[p])]
    doc.heading("Runs")
    served = "" if tracking.tracking_uri().startswith("http") else " (start it with `toolkit ui`)"
    doc.text(f"Links open the run in the MLflow UI at {tracking.ui_url()}{served}.")
    doc.table("runs", shown.fillna(""), data.fillna(""))


def relative(a: float, b: float) -> str:
    """How much larger a is than b, in percent, signed."""
    return "n/a" if not b or math.isnan(a) or math.isnan(b) else f"{100 * (a - b) / b:+.2f}%"


def trend(values) -> str:
    """How a sequence moves, for a findings sentence: 'rises at every step', 'never falls', ..."""
    values = np.asarray(values, dtype=float)
    steps = np.diff(values)
    if (steps > 0).all():
        return "rises at every step"
    if (steps < 0).all():
        return "falls at every step"
    if (steps >= 0).all():
        return "never falls"
    if (steps <= 0).all():
        return "never rises"
    return f"{'rises' if values[-1] > values[0] else 'falls'} overall but not at every step"


def lowest(x, values) -> tuple:
    """The x at which `values` is lowest, and that value."""
    i = int(np.nanargmin(np.asarray(values, dtype=float)))
    return list(x)[i], float(np.asarray(values, dtype=float)[i])
