"""The parts every report of runs shares: provenance, the settings its runs share and what
their numbers can be compared with, the results table, the runs left out of it, and the list of
every run with its link."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pandas as pd
import scipy.stats

from toolkit import names
from toolkit.config import GAUSSIAN_ONLY, MLP_ONLY, VAE_ONLY, RunConfig
from toolkit.diagnostics import (
    BRACKET_SE,
    INFORMATIVE_NATS,
    MARGINAL_CODES,
    MEASURED_NATS,
    NEAREST_QUERIES,
    PR_IMAGES,
    PR_K,
    PROBE_TRAIN,
    RATE_CODES,
    SATURATED_NATS,
)
from toolkit.reports import plots
from toolkit.reports.document import GENERATED, Document, code, escape, markdown_table, mean_std, number
from toolkit.reports.document import link as markdown_link
from toolkit.reports.runs import LATENT_COLUMNS, SCORED_SAMPLES, Column, RunSet, shown_param, sort_key
from toolkit.reports.stats import LEVEL, best_of
from toolkit.store import location

CEILINGS = {  # the mixture estimates' ceilings log N, and how the rate-split figure labels them
    names.TEST_MUTUAL_INFO_CEILING: "log N, test",
    names.TEST_MUTUAL_INFO_POOLED_CEILING: "log N, test and training",
}
RUNNING_REASON = "still running, or its process died without ending the run"
FID_SUBJECTS = {
    names.SAMPLES: "the VAE's drawn from its prior N(0, I) (an AE has none)",
    names.AGGREGATE_POSTERIOR: "the VAE's decoded from its aggregate posterior q(z): a random training "
    "image's posterior q(z|x), one code from it",
    names.SAMPLES_GAUSSIAN: "from a full-covariance Gaussian fitted to either model's training codes (posterior means)",
    names.SAMPLES_GMM: "from a 10-component Gaussian mixture fitted to either model's training codes (posterior means)",
    names.RECONSTRUCTIONS: "the decoder means of the test images' posterior means",
}
# Settings a report does not list under its runs' shared settings: said elsewhere, or no setting of the model.
NOT_LISTED = ("seed",)


def link(runs: RunSet, run_id: str, text: str | None = None) -> str:
    return markdown_link(text or run_id[:8], location.run_url(runs.experiment_id, run_id))


def provenance(doc: Document, runs: RunSet | None, rebuild: str, extra: list[tuple[str, str]] = ()):
    """Where every number comes from: store, experiment, runs, code, data and FID extractors
    (`extra` rows, e.g. an Optuna study's, before the command that rebuilds the report)."""
    rows = [("store", code(shown_store(location.tracking_uri())))]
    if runs is not None:
        counts = runs.runs["status"].value_counts()
        rows += [
            ("experiment", f"{code(runs.experiment)} (id {escape(runs.experiment_id)})"),
            (
                "parent run",
                link(runs, runs.parent, runs.parent) if runs.parent else "none: every run of the experiment",
            ),
            (
                "runs",
                f"{len(runs.runs)}: "
                + ", ".join(f"{n} {escape(s.lower())}" for s, n in sorted(counts.items()))
                + "; ids under [Runs](#runs)",
            ),
            ("git commit", _commits(runs.runs)),
            ("dataset", _dataset(runs.finished)),
        ]
        rows += [_extractor_row(e) for e in runs.extractors]
    rows += [*extra, ("rebuild", code(rebuild))]
    doc.text(
        "\n".join(
            [
                "| | |",
                "| --- | --- |",
                *(f"| {k} | {v} |" for k, v in rows),
                f"{GENERATED} {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC |",
            ]
        )
    )


def shown_store(uri: str) -> str:
    """The store as a reader of the report finds it: a local database relative to the directory
    the report was built in (`mlruns/mlflow.db` in the project), any other URI as it is."""
    path = location.sqlite_path(uri)
    if path is None:
        return uri
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return uri


def _extractor_row(e) -> tuple[str, str]:
    floor = f"real-vs-real floor {number(e.floor)}" if e.floor is not None else "floor not found"
    kind = "Inception" if e.name == "inception" else "a domain CNN: these are not Inception FIDs"
    hashes = ", ".join(code(h) for h in e.hashes)
    warning = "; **several extractor versions: their FIDs are not comparable**" if len(e.hashes) > 1 else ""
    reference = f" (reference run {escape(e.reference_run)})" if e.reference_run else ""
    return f"FID {code(e.name)}", f"{kind}; hash {hashes}{warning}; {floor}{reference}"


def _commits(runs: pd.DataFrame) -> str:
    commit, dirty = f"tags.{names.GIT_COMMIT}", f"tags.{names.GIT_DIRTY}"
    if commit not in runs:
        return "not recorded"
    dirty = runs.get(dirty, pd.Series(["?"] * len(runs), index=runs.index))
    found = sorted({(c[:10], d) for c, d in zip(runs[commit].fillna("unknown"), dirty.fillna("?"))})
    return ", ".join(code(c) + (" (uncommitted changes)" if d == "True" else "") for c, d in found)


def _dataset(runs: pd.DataFrame) -> str:
    datasets = sorted(set(runs.get("params.dataset", pd.Series(dtype=object)).dropna()))
    dirs = sorted(set(runs.get(f"tags.{names.DATA_DIR}", pd.Series(dtype=object)).dropna()))
    return escape(", ".join(datasets)) + (f", read from {', '.join(code(d) for d in dirs)}" if dirs else "")


def fid_caption(columns: list[Column]) -> str:
    """What each FID column of a table scores, for the columns it has."""
    kinds = {fid.kind for c in columns if (fid := names.parse_fid(c.key))}
    return " ".join(f"{names.FID_KIND_HEADERS[kind]}: {FID_SUBJECTS[kind]}." for kind in FID_SUBJECTS if kind in kinds)


def statistics_caption(settings: pd.DataFrame) -> str:
    """How the table's cells and bold are to be read, for the number of seeds it has."""
    if not (settings["n"] > 1).any():
        return (
            "One seed per setting: the cells are single runs, without intervals, and nothing is bold. "
            "Rerun the study with `--seeds 3` for intervals."
        )
    return (
        f"Cells: mean ± sample standard deviation over the n seeds, then the {100 * LEVEL:.0f} % Student-t "
        "interval of the mean. **Bold**: the best value of its column, only where it is clearly better than "
        "every other row (each paired difference over the shared seeds survives Holm's correction for the "
        "k − 1 comparisons; a difference the same at every seed is judged by the exact sign-flip test, "
        "p = 2 / 2^n, so never with three seeds). Columns without a better direction (a KL, a count of units, "
        "the prior hole) are never bold."
    )


def settings_table(
    doc: Document,
    runs: RunSet,
    name: str,
    settings: pd.DataFrame,
    labels: dict[str, list[str]],
    columns: list[Column],
    extra_rows: list[dict[str, str]] = (),
):
    """The settings as a table: `labels` (header -> one cell per setting) first, then n, then each
    column's mean ± sd [95 % interval]; the best value of a column with a direction is bold when it
    is clearly better than every other row (`stats.best_of`). `extra_rows` (header -> cell) are
    appended to the markdown only. The CSV holds the full-precision means, standard deviations
    and interval bounds of the table's columns under the metric keys."""
    shown = pd.DataFrame(labels)
    shown["n"] = settings["n"].astype(int).astype(str).to_numpy()  # a float when the frame was joined with an empty one
    shown["converged"] = [runs.converged_share(ids.split()) for ids in settings["run_ids"]]
    for column in columns:
        cells = [cell(row, column) for _, row in settings.iterrows()]
        best = clear_best(runs, settings, column)
        shown[column.header] = [f"**{c}**" if i == best else c for i, c in enumerate(cells)]
    for extra in extra_rows:
        shown.loc[len(shown)] = [extra.get(header, "") for header in shown.columns]
    stats = [
        f"{key}{part}" for c in columns for key in (c.key, c.upper) if key for part in ("", "_std", "_low", "_high")
    ]
    kept = [c for c in settings if "/" not in c and c != "run_ids"]  # a metric key has a '/', a param none
    doc.table(name, shown, settings[[*kept, *stats, "run_ids"]], markup=[c.header for c in columns])


def results_table(
    doc: Document,
    runs: RunSet,
    name: str,
    settings: pd.DataFrame,
    labels: dict[str, list[str]],
    columns: list[Column],
    extra_rows: list[dict[str, str]] = (),
):
    """The settings' table (`settings_table`), the FID extractors' floors and the runs left out of it."""
    settings_table(doc, runs, name, settings, labels, columns, extra_rows)
    for e in runs.extractors:
        if e.floor is not None and any((fid := names.parse_fid(c.key)) and fid.extractor == e.name for c in columns):
            kind = "Inception" if e.name == "inception" else "a domain CNN, so not an Inception FID"
            doc.text(
                f"FID {code(e.name)} ({kind}): its real-vs-real floor (real training images against the test "
                f"set) is {number(e.floor, '.2f')}."
            )
    left_out(doc, runs)


def cell(row: pd.Series, column: Column) -> str:
    """'241.50 ± 0.02 [241.45, 241.55]' (mean ± sd [95 % interval]), or the value of a single run; a
    bracket's cell (`bracket_cell`)."""
    if column.upper:
        return bracket_cell(row[column.key], row[column.upper], column.fmt)
    text = mean_std(row[column.key], row[f"{column.key}_std"], row["n"], column.fmt)
    low, high = row[f"{column.key}_low"], row[f"{column.key}_high"]
    if row["n"] < 2 or math.isnan(low) or low == high:  # one seed, or the same value at every seed
        return text
    return f"{text} [{low:{column.fmt}}, {high:{column.fmt}}]"


def bracket_cell(low: float, high: float, fmt: str = ".2f") -> str:
    """'in [9.96, 12.10]' for a quantity known only to lie in its bracket (the seeds' means of its
    ends: the mean's own bracket), '5.02 (measured: [4.84, 5.06])' where the bracket is at most
    MEASURED_NATS wide."""
    if math.isnan(low) or math.isnan(high):
        return "—"
    if high - low <= MEASURED_NATS:
        return f"{(low + high) / 2:{fmt}} (measured: [{low:{fmt}}, {high:{fmt}}])"
    return f"in [{low:{fmt}}, {high:{fmt}}]"


def clear_best(runs: RunSet, settings: pd.DataFrame, column: Column) -> int | None:
    """The position of the row whose value is clearly better than every other row's (Holm), or None."""
    if column.lower_is_better is None:
        return None
    values = {i: runs.by_seed(ids.split(), column.key) for i, ids in enumerate(settings["run_ids"])}
    found = best_of({i: v for i, v in values.items() if v}, column.lower_is_better)
    return found.label if found is not None and found.clear else None


def diagnostics_section(
    doc: Document, runs: RunSet, settings: pd.DataFrame, labels: dict[str, list[str]], columns: list[Column]
):
    """The latent space's and the samples' diagnostics (`RunSet.diagnostic_columns`) as a table of
    the same settings as the results table, with how each is estimated."""
    if not columns:
        return
    latent = {c.key for c in LATENT_COLUMNS}
    keys = {c.key for c in columns}
    doc.heading("Latent space and samples")
    text = []
    if keys & latent:
        text.append(
            f"Test split. The rate (KL) splits into I(x; z), the information the codes carry about the "
            f"image, and KL(q(z) ‖ p(z)), the aggregate posterior's mismatch with the prior (Hoffman & "
            f"Johnson 2016). Neither has a closed form, so each is bracketed. Below, I(x; z) is at least the "
            f"mixture estimate (one code from each of {RATE_CODES:,} test images, q(z) the mixture of the "
            f"posteriors of the test and training images together; it cannot exceed log N and falls short "
            f"well before it, so its value over the test images alone is shown beside it: where the two "
            f"differ, neither has converged). Above, I(x; z) is at most the rate less the sum of the "
            f"dimensions' marginal KLs KL(q(z_u) ‖ N(0, 1)) (well estimated in one dimension, "
            f"{MARGINAL_CODES:,} codes, leave-one-out mixtures), which bound KL(q(z) ‖ p(z)) from below. "
            f"Each end includes {BRACKET_SE:g} Monte Carlo standard errors; the marginal KL's bracket is "
            f"the rate less the information's. A value is *measured* only where its bracket is at most "
            f"{MEASURED_NATS:g} nat wide; elsewhere the table gives the bracket (the seeds' means of its "
            f"ends), and no trend is read from it. Informative units are those whose own information "
            f"I(x; z_u), bracketed the same way, is above {INFORMATIVE_NATS:g} nats for certain. Linear "
            f"probe: a logistic regression from {PROBE_TRAIN:,} training images' posterior means to their classes, its "
            f"accuracy on the test set."
        )
    if keys - latent:  # the samples' diagnostics
        text.append(
            f"Samples, in each FID extractor's features: the prior hole is the FID of prior samples less "
            f"that of samples decoded from the aggregate posterior, the part of the sample FID the prior's "
            f"mismatch costs. Precision (samples within the real images' manifold) and recall (real images "
            f"within the samples') after Kynkäänniemi et al. 2019, k = {PR_K} nearest neighbours, "
            f"{PR_IMAGES:,} samples against {PR_IMAGES:,} test images. Nearest-training ratio: the median "
            f"distance of {NEAREST_QUERIES:,} of the model's own samples (a VAE's prior's, an AE's fitted "
            f"Gaussian's) to their nearest training image (of all the run trained "
            f"on) over that of {NEAREST_QUERIES:,} test images; about 1 for samples as novel as unseen "
            f"images, near 0 for copies of the training set."
        )
    logged_ceilings = ceilings(runs)
    doc.text(
        " ".join(text + [measured(settings, labels), saturated(settings, labels, logged_ceilings)])
        + " "
        + statistics_caption(settings)
    )
    real = real_data_row(runs, labels, columns)
    if real:
        doc.text(
            f"The row *real data, no model*: real images scored as a model's samples are ({PR_IMAGES:,} training "
            "images against the test images, the most precision and recall can say of images as good as real), "
            "and the linear probe fitted to raw pixels instead of codes."
        )
    settings_table(doc, runs, "diagnostics", settings, labels, columns, real)
    bracketed = settings[names.TEST_MUTUAL_INFO_LOW].notna() if names.TEST_MUTUAL_INFO_LOW in settings else []
    if any(bracketed):
        rows = [setting_name(labels, i) for i, b in enumerate(bracketed) if b]
        doc.figure(
            "rate_split",
            plots.rate_split(
                settings[bracketed].reset_index(drop=True),
                rows,
                {CEILINGS[key]: height for key, height in logged_ceilings.items()},
            ),
            "the rate and the brackets of its two parts at each setting",
            "Bars: each part's bracket, the seeds' means of its ends; where a bar is short the part is "
            "measured, elsewhere only bounded. Triangles: the mixture estimates the lower end of I(x; z) "
            "comes from; where the pooled one stands above the test one, the lower end has not converged. "
            "Grey lines: their ceilings, log N; an estimate at its line is limited by N.",
        )


def real_data_row(runs: RunSet, labels: dict[str, list[str]], columns: list[Column]) -> list[dict[str, str]]:
    """The diagnostics' row of real data, no model, as their FID references logged it
    (`fid.real_metrics`): under every precision and recall the training images' against the test
    images, under the linear probe the probe on raw pixels; none where no reference logged them."""
    found = {}
    for e in runs.extractors:
        for f in (names.precision, names.recall):
            found |= dict.fromkeys((f(e.name, kind) for kind in SCORED_SAMPLES), e.real.get(f(e.name, names.REAL)))
        found.setdefault(names.TEST_PROBE_ACCURACY, e.real.get(names.PIXEL_PROBE_ACCURACY))
    cells = {c.header: f"*{found[c.key]:{c.fmt}}*" for c in columns if found.get(c.key) is not None}
    return [{next(iter(labels)): "real data, no model", **cells}] if cells else []


def measured(settings: pd.DataFrame, labels: dict[str, list[str]]) -> str:
    """Which settings' I(x; z) the bracket measures (at most MEASURED_NATS wide), said in words."""
    low, high = names.TEST_MUTUAL_INFO_LOW, names.TEST_MUTUAL_INFO_HIGH
    if low not in settings or high not in settings:
        return ""
    rows = [i for i, (a, b) in enumerate(zip(settings[low], settings[high])) if b - a <= MEASURED_NATS]
    if len(rows) == len(settings):
        return "I(x; z) is measured at every setting."
    named = "; ".join(setting_name(labels, i) for i in rows)
    return f"I(x; z) is measured at {escape(named) if rows else 'no setting'}; elsewhere only bracketed."


def ceilings(runs: RunSet) -> dict[str, float]:
    """The mixture estimates' ceilings log N (CEILINGS' metrics) that any run logged, by metric key."""
    logged = {key: f"metrics.{key}" for key in CEILINGS}
    return {
        key: float(runs.finished[column].max())
        for key, column in logged.items()
        if column in runs.finished and runs.finished[column].notna().any()
    }


def saturated(settings: pd.DataFrame, labels: dict[str, list[str]], logged_ceilings: dict[str, float]) -> str:
    """Which settings' pooled mixture estimate, the lower end of I(x; z), is within SATURATED_NATS of
    its ceiling log N (`logged_ceilings`, as `ceilings` gives them), said in words: there the
    bracket's lower end is set by N, not by the codes."""
    estimate, top = names.TEST_MUTUAL_INFO_POOLED, logged_ceilings.get(names.TEST_MUTUAL_INFO_POOLED_CEILING)
    if estimate not in settings or top is None:
        return ""
    rows = [i for i, value in enumerate(settings[estimate]) if value >= top - SATURATED_NATS]
    if not rows:
        return ""
    where = "every setting" if len(rows) == len(settings) else escape("; ".join(setting_name(labels, i) for i in rows))
    return (
        f"At {where} the pooled estimate is within {SATURATED_NATS:g} nats of its ceiling, log N = {top:.2f} "
        "nats: the lower end is set by the number of posteriors, not by the codes, and I(x; z) may lie anywhere "
        "in its bracket."
    )


def setting_name(labels: dict[str, list[str]], i: int) -> str:
    """The i-th setting of a table named by its label columns: 'β 0.5, model VAE'."""
    return ", ".join(f"{header} {cells[i]}" for header, cells in labels.items())


def traversal_rows(runs: RunSet, run_id: str, label: str, most: int = 4) -> list[tuple[str, object]]:
    """The traversals of a run's `most` most informative dimensions (`figures.traversals`) as rows
    labelled '<label>, z07: 3.21 nats'; none for a run that logged none."""
    images, found = runs.images(run_id), runs.traversal(run_id)
    if images is None or found is None or names.TRAVERSAL not in images:
        return []
    dims, kl = found
    steps = len(images[names.TRAVERSAL]) // max(len(dims), 1)
    return [
        (f"{label}, z{d:02d}: {k:.2f} nats", images[names.TRAVERSAL][i * steps : (i + 1) * steps])
        for i, (d, k) in enumerate(zip(dims[:most], kl[:most]))
    ]


TRAVERSAL_CAPTION = (
    "Each row moves one latent dimension (the most informative by test KL, its KL given) evenly "
    "from the 2nd to the 98th percentile of the aggregate posterior's codes on it, the others held "
    "at the posterior mean of one test image (the first run of each setting)."
)


def settings_section(doc: Document, runs: RunSet, columns: list[Column]):
    """What the runs share and what varies, how long they trained, how their bound and FIDs were
    computed, on what machine their times were taken, and what their numbers can be compared with."""
    finished = runs.finished
    doc.heading("Settings")
    shared, varied = [], runs.varying()
    for field in RunConfig.__dataclass_fields__:
        users = _users(runs, field)
        values = runs.values(field, users) if len(users) else []
        if field in varied or field in NOT_LISTED or len(values) != 1:
            continue
        shared.append((field, values[0]))
    seeds = runs.values("seed")
    rows = [
        (
            "shared by every run that uses it",
            ", ".join(f"`{k}` {'none' if v in (None, 'None') else escape(v)}" for k, v in shared),
        ),
        ("varied", ", ".join(f"`{k}` {_values(runs, k)}" for k in varied) or "nothing"),
        ("seeds", f"{escape(', '.join(map(str, seeds)))} ({len(seeds)}): {resolution(len(seeds))}"),
        ("training images", _distinct(finished, f"tags.{names.TRAIN_IMAGES}", "{:,}", int)),
        ("training", _epochs(runs)),
    ]
    if names.TEST_NLL_IW in {c.key for c in columns}:
        rows.append(
            (
                "IW bound",
                f"K = {_values(runs, 'iw_samples', _users(runs, 'iw_samples'))} "
                f"importance samples per image, {_iw_images(runs)}; precision: {_precisions(finished)}",
            )
        )
    if any(names.parse_fid(c.key) for c in columns):
        rows.append(
            (
                "FID",
                f"{_values(runs, 'fid_samples')} generated images per score against the 10,000 test images; "
                "every run's samples from a Gaussian and a 10-component GMM fitted to its training codes "
                "(posterior means), the same samplers for AE and VAE, and a VAE's from its prior N(0, I) "
                "and its aggregate posterior",
            )
        )
    if any(c.key == names.MEAN_EPOCH_SECONDS for c in columns):
        rows.append(("machine (times)", _machine(finished)))
    doc.text(markdown_table(pd.DataFrame(rows, columns=["", "value"]), markup=["value"]))
    doc.text(comparability(runs))


def _users(runs: RunSet, field: str) -> pd.DataFrame:
    """The finished runs whose model, architecture and likelihood use `field` (and so log it)."""
    runs_ = runs.finished
    if field in VAE_ONLY:
        runs_ = runs_[runs.param("model", runs_) != "ae"]
    if field in MLP_ONLY:
        runs_ = runs_[runs.param("architecture", runs_) == "mlp"]
    if field in GAUSSIAN_ONLY:
        runs_ = runs_[runs.param("likelihood", runs_) == "gaussian"]
    return runs_


def _values(runs: RunSet, field: str, frame: pd.DataFrame | None = None) -> str:
    """The values a setting takes, as markdown: 'a / b'."""
    return escape(" / ".join(map(str, runs.values(field, frame))))


def _distinct(frame: pd.DataFrame, column: str, fmt: str = "{}", kind=str) -> str:
    """The values a tag takes over the runs, as markdown: 'a / b'."""
    if column not in frame or frame[column].isna().all():
        return "not recorded"
    return escape(" / ".join(fmt.format(kind(v)) for v in sorted(set(frame[column].dropna()), key=sort_key)))


def _epochs(runs: RunSet) -> str:
    """Best epochs and early stops over the runs, e.g. 'best epoch 10 of at most 10 in 22 runs, 9 in 2;
    0 stopped early'."""
    frame = runs.finished
    if "metrics.best_epoch" not in frame:
        return "not recorded"
    best = frame["metrics.best_epoch"].dropna().astype(int).value_counts().sort_index(ascending=False)
    text = f"at most {_values(runs, 'epochs')} epochs; best epoch " + ", ".join(
        f"{epoch} in {n} run{'s' * (n > 1)}" for epoch, n in best.items()
    )
    text += (
        f"; {int(runs.converged().sum())} of {len(frame)} converged: early stopping (patience "
        f"{_values(runs, 'patience')}) ended them before the limit. The tables' *converged* column counts "
        "them per setting, and every comparison involving a run that did not converge is marked"
    )
    return text + " (each run's under [Runs](#runs))"


def resolution(n: int) -> str:
    """What `n` seeds can resolve, in words: the smallest paired difference, in standard
    deviations of its seeds' differences, whose 95 % t interval excludes zero."""
    if n < 2:
        return "one seed resolves no difference"
    factor = scipy.stats.t.ppf((1 + LEVEL) / 2, n - 1) / math.sqrt(n)
    return (
        f"with {n} seeds a paired difference is resolved only where its mean exceeds {factor:.2f} standard "
        f"deviations of its seeds' differences (t({n - 1}) / √{n}, before any correction for its family)"
    )


def _iw_images(runs: RunSet) -> str:
    """Which test images the runs computed the IW bound on: every one, or a subset from which the
    bound on every one is estimated (`iw_nll`), with the estimates' standard errors."""
    frame = runs.finished
    bounded = frame[frame[f"metrics.{names.TEST_NLL_IW}"].notna()] if f"metrics.{names.TEST_NLL_IW}" in frame else frame
    column = f"metrics.{names.TEST_NLL_IW_SE}"
    if column not in bounded or bounded[column].isna().all():
        return "computed on every test image"
    estimated = bounded[bounded[column].notna()]
    low, high = (number(f(estimated[column]), ".2g") for f in (min, max))
    parts = [
        f"computed on {_values(runs, 'iw_images', estimated)} test images drawn at random and estimated for "
        f"the whole test set as its −ELBO less their mean gap to the bound, standard error "
        f"{low if low == high else f'{low}–{high}'} nats (`{names.TEST_NLL_IW_SE}`, the column *IW bound s.e.*) "
        f"({len(estimated)} runs)"
    ]
    if len(estimated) < len(bounded):
        parts.append(f"computed on every test image ({len(bounded) - len(estimated)} runs)")
    return " / ".join(parts)


def _precisions(frame: pd.DataFrame) -> str:
    precision = f"tags.{names.NLL_IW_PRECISION}"
    if precision not in frame:
        return "not recorded"
    found = frame[precision].dropna()
    kinds = sorted({text.split(" ")[0] for text in found})
    return (
        " / ".join(f"{escape(kind)} ({(found.str.split(' ').str[0] == kind).sum()} runs)" for kind in kinds)
        + " (the tag `nll_iw_precision` of each run says how far bf16 moved its first batch)"
    )


def _machine(frame: pd.DataFrame) -> str:
    cpu, threads, torch, gpu = (
        f"tags.{tag}" for tag in (names.MACHINE_CPU, names.MACHINE_THREADS, names.MACHINE_TORCH, names.MACHINE_GPU)
    )
    parts = [_distinct(frame, cpu), f"torch threads: {_distinct(frame, threads)}", f"torch {_distinct(frame, torch)}"]
    if gpu in frame and frame[gpu].notna().any():
        parts.append(_distinct(frame, gpu))
    group = f"tags.{names.GROUP_SIZE}"
    together = int(frame[group].notna().sum()) if group in frame else 0
    shared = (
        f"; {together} of {len(frame)} runs trained together in groups of {_distinct(frame, group)} "
        "(a run's share of its group's training pass and its own validation: what it cost, "
        "not what it would take alone)"
        if together
        else ""
    )
    return (
        ", ".join(parts)
        + "; wall seconds per epoch, training and validation, on a machine that may have been shared"
        + shared
    )


def comparability(runs: RunSet) -> str:
    """What the report's nats and FIDs may be set beside, for the likelihoods and pixels its runs use."""
    frame, text = runs.finished, []
    likelihood = runs.param("likelihood")
    grey = frame[(likelihood == "bernoulli") & (runs.param("binarize") == "none")]
    if len(grey):
        floor = grey.get(f"metrics.{names.TEST_PIXEL_ENTROPY}", pd.Series(dtype=float)).dropna()
        entropy = f", {floor.iloc[0]:.1f} nats per test image here" if len(floor) else ""
        text.append(
            "**Bernoulli likelihood on grey levels.** The pixels are grey levels in [0, 1], not binarised, so "
            "the reconstruction term, −ELBO and IW bound are cross-entropies, not likelihoods of the images: "
            f"their floor is the test pixels' own entropy{entropy}, and they cannot be set beside published "
            "likelihoods (binarised MNIST: about 80–90 nats) or runs with other pixels. Differences between "
            "the runs of this report are comparable, and the tables also give the reconstruction and −ELBO "
            "less that floor, the part a better model could still remove. `--binarize dynamic` gives likelihoods "
            "the literature can be compared with."
        )
    if ((likelihood == "bernoulli") & (runs.param("binarize") == "dynamic")).any():
        text.append(
            "**Bernoulli likelihood on binarised pixels.** Training images are drawn anew as binary pixels "
            "every batch, the test set once with a fixed seed (Burda et al. 2015): −ELBO and the IW bound "
            "bound the negative log-likelihood of binary images, in nats, as in the literature."
        )
    if (likelihood == "gaussian").any():
        text.append(
            "**Gaussian likelihood.** −log p(x|z) is the whole negative log-density of N(x; decoder mean, σ²) "
            "per pixel, its constant D(ln σ + ½ ln 2π) included, so −ELBO and the IW bound are bounds on a "
            "continuous density of the grey levels in nats (they can be negative): comparable between "
            "Gaussian runs of any σ, not with Bernoulli runs or with likelihoods of discrete pixels."
        )
    return "\n\n".join(text)


def left_out(doc: Document, runs: RunSet):
    """The runs that are not FINISHED, with their status and why: never averaged in, never dropped."""
    if runs.excluded.empty:
        return
    rows = pd.DataFrame(
        {
            "run": [link(runs, r, n) for r, n in zip(runs.excluded["run_id"], _names(runs.excluded))],
            "status": runs.excluded["status"],
            "reason": [_reason(run) for _, run in runs.excluded.iterrows()],
        }
    )
    doc.text(f"**{len(rows)} run(s) left out of the tables** (not FINISHED):")
    doc.text(markdown_table(rows, markup=["run"]))


def _reason(run: pd.Series) -> str:
    reason = run.get(f"tags.{names.END_REASON}")
    if isinstance(reason, str) and reason:
        return reason
    return RUNNING_REASON if run["status"] == "RUNNING" else "no reason recorded"


def _names(frame: pd.DataFrame) -> list[str]:
    return list(frame.get(f"tags.{names.RUN_NAME}", frame["run_id"]).fillna("").astype(str))


def run_list(doc: Document, runs: RunSet):
    """Every run of the report, with a link to it in the MLflow UI; also as runs.csv."""
    varying = runs.varying()
    frame = runs.runs
    data = pd.DataFrame(
        {
            "run_id": frame["run_id"],
            "name": _names(frame),
            "status": frame["status"],
            "trial": frame.get(f"tags.{names.TRIAL}", pd.Series([None] * len(frame))).fillna(""),
            "seed": runs.param("seed", frame),
            **{p: runs.param(p, frame) for p in varying if p != "seed"},
            "best epoch": _metric(frame, names.BEST_EPOCH),
            "epochs trained": _metric(frame, names.EPOCHS_TRAINED),
            "git_commit": frame.get(f"tags.{names.GIT_COMMIT}", pd.Series([None] * len(frame))).fillna(""),
        }
    )
    shown = data.drop(columns=["run_id"]).copy()
    shown.insert(0, "run", [link(runs, r) for r in data["run_id"]])
    shown["git_commit"] = shown["git_commit"].str[:10]
    models = runs.param("model", frame).fillna("")
    for p in varying:
        shown[p] = [shown_param(m, p, v) for m, v in zip(models, shown[p])]
    doc.heading("Runs")
    served = "" if location.tracking_uri().startswith("http") else " (start it with `toolkit ui`)"
    doc.text(f"Links open the run in the MLflow UI at {location.ui_url()}{served}.")
    doc.table("runs", shown.fillna(""), data.fillna(""), markup=["run"])


def _metric(frame: pd.DataFrame, key: str) -> list[str]:
    """A whole-number metric of every run as text, blank where a run has none (it did not finish)."""
    values = frame.get(f"metrics.{key}", pd.Series([math.nan] * len(frame), index=frame.index))
    return ["" if math.isnan(v) else f"{v:.0f}" for v in values]


def relative(a: float, b: float) -> str:
    """How much larger a is than b, in percent, signed."""
    return "n/a" if not b or math.isnan(a) or math.isnan(b) else f"{100 * (a - b) / b:+.2f}%"
