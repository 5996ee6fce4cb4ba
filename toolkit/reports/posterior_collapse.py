"""`posterior-collapse`: VAEs under KL warm-up, free bits and (for a Gaussian decoder) its scale σ.
For each setting: active and informative units and the KL each kind carries, the final KL of
every dimension against the free-bits floor and the KL below which no dimension informs, the KL of every
dimension over the epochs, the KL curve with the effective β; every setting against the baseline
on units, KL, −ELBO, IW bound and FID, with paired intervals; the baseline beside the setting with
the most informative units; findings that never call collapse cured on a unit count alone."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit import drawing, names
from toolkit.config import SQRT_HALF
from toolkit.diagnostics import INFORMATIVE_NATS
from toolkit.reports import plots
from toolkit.reports.claims import Claims, Comparison, basis, interval
from toolkit.reports.document import Document, escape
from toolkit.reports.runs import Column, RunSet
from toolkit.reports.sections import (
    TRAVERSAL_CAPTION,
    diagnostics_section,
    fid_caption,
    provenance,
    results_table,
    run_list,
    settings_section,
    statistics_caption,
    traversal_rows,
)
from toolkit.reports.stats import Difference, estimate, family
from toolkit.store.reading import ArtifactMissing

AXES = ("decoder_scale", "sigma", "warmup_epochs", "free_bits")  # what a setting may vary, the grid's rows first
KL_SPLIT = (
    Column("derived/kl_informative", "KL of informative dims (nats)", None),
    Column("derived/kl_rest", "KL of the other dims (nats)", None, fmt=".2f"),
)
ORDER = (
    names.TEST_ACTIVE_UNITS,
    names.TEST_INFORMATIVE_UNITS,
    names.TEST_KL,
    *(c.key for c in KL_SPLIT),
    names.TEST_RECON,
    names.TEST_NEG_ELBO,
    names.TEST_RECON_BEST_SIGMA,
    names.TEST_NEG_ELBO_BEST_SIGMA,
    names.TEST_BEST_SIGMA,
    names.TEST_NLL_IW,
    names.TEST_NLL_IW_SE,
    names.TEST_MSE,
    names.TEST_DECODER_SIGMA,
)
# Against the baseline: what changes, and which way is better (None: no better way).
DELTAS = (
    (names.TEST_ACTIVE_UNITS, "active units", None),
    (names.TEST_INFORMATIVE_UNITS, "informative units", None),
    (names.TEST_KL, "KL (nats)", None),
    (names.TEST_NEG_ELBO, "−ELBO (nats)", True),
    (names.TEST_NEG_ELBO_BEST_SIGMA, "−ELBO at best σ (nats)", True),
    (names.TEST_NLL_IW, "IW bound (nats)", True),
)


def build(runs: RunSet, rebuild: str) -> Document:
    vae = runs.of_model("vae")
    axes = [a for a in AXES if a in ("warmup_epochs", "free_bits") or a in runs.varying(vae)]
    runs.require("posterior-collapse", tuple(axes), vae, "finished VAE runs")
    split_kl(runs)
    vae = runs.of_model("vae")
    doc = Document(f"Posterior collapse: {escape(runs.experiment)}")
    provenance(doc, runs, rebuild)
    columns = [
        c for c in runs.columns(vae, first=ORDER) if c.key != names.TEST_DECODER_SIGMA or "decoder_scale" in axes
    ]
    columns = sorted([*columns, *KL_SPLIT], key=lambda c: ORDER.index(c.key) if c.key in ORDER else len(ORDER))
    diagnostics = runs.diagnostic_columns(vae)
    settings = runs.settings(axes, vae, columns + diagnostics)
    latent_dim = runs.latent_dim
    settings_section(doc, runs, columns)
    doc.heading("Results")
    doc.text(
        f"Test split, nats per image; a {latent_dim}-d latent. Warm-up: epochs over which β ramps linearly "
        "from 0; free bits: the floor, in nats, on each dimension's KL in the objective (the logged KL is the "
        "true KL); σ: the Gaussian decoder's standard deviation, fixed or learned. A fixed-σ run is also scored "
        "at its best σ: the one σ for every pixel under which its reconstructions are likeliest (σ̂² their "
        "squared error per pixel), its reconstruction and −ELBO there (the KL does not change), the numbers "
        "to set beside a learned σ's. A dimension is *active* when "
        "its posterior mean varies over the data (variance > 0.01, Burda et al. 2015) and *informative* when "
        f"its own information I(x; z_u) exceeds {INFORMATIVE_NATS:g} nats for certain: the low end of its "
        "bracket (see the diagnostics) is above it. Its KL only bounds that information from above, and free "
        "bits hold a dimension's KL at the floor whatever it carries. The KL columns split each run's KL "
        f"between the informative dimensions and the rest. {fid_caption(columns)} "
        f"{statistics_caption(settings)}"
    )
    labels = {HEADERS[name]: [shown(name, v) for v in settings[name]] for name in axes}
    results_table(doc, runs, "results", settings, labels, columns)
    diagnostics_section(doc, runs, settings, labels, diagnostics)
    baseline = baseline_of(settings)
    claims = Claims(runs)
    doc.heading("Against the baseline")
    keys = delta_keys(settings, columns)
    deltas = against_baseline(runs, settings, baseline, keys)
    doc.text(
        f"Every setting minus the baseline ({label(settings.loc[baseline], axes)}), paired by seed: mean "
        "difference and interval. The whole table is one family of comparisons, Holm-corrected "
        f"({basis(list(deltas.values())) if deltas else 'no comparisons'}): **bold** where a difference "
        "survives the correction, each interval at the level Holm's step gives it."
    )
    table = baseline_table(settings, deltas, keys, axes)
    doc.table("against_baseline", table, markup=[c for c in table if c != "setting"])
    first = [row.split()[0] for row in settings["run_ids"]]
    profiles = {i: runs.kl_profiles(row["run_ids"].split()) for i, row in settings.iterrows()}
    doc.heading("KL of every dimension at the end")
    doc.figure(
        "kl_per_dimension",
        kl_bars(settings, profiles, axes),
        "final KL per dimension per setting",
        "Each run's dimensions sorted by their test KL, the mean over seeds of each rank; "
        f"{plots.BARS[0].lower()}{plots.BARS[1:]} Red dotted: the free-bits floor; black dashed: "
        f"{INFORMATIVE_NATS:g} nats, below which a dimension's KL leaves it no room to be informative. "
        "Symmetric-log scale, linear below 0.1 nats; "
        "intervals are cut at zero, below which a KL cannot go.",
    )
    matrices = [kl_by_epoch(runs, r) for r in first]
    if all(m is not None for m in matrices):
        doc.heading("KL of every dimension over the epochs")
        doc.text(
            "Validation KL of each dimension per epoch (first seed of each setting), dimensions sorted by their "
            f"final KL; one log colour scale for all settings, {INFORMATIVE_NATS:g} nats marked on the bar: "
            "below it a dimension cannot be informative."
        )
        doc.figure("kl_heatmaps", kl_heatmaps(settings, matrices, axes), "KL heatmaps")
    doc.heading("KL over the epochs")
    histories = runs.histories(first, [names.VAL_KL, names.TRAIN_KL, names.BETA_EFF])
    doc.figure(
        "kl_curves",
        kl_curves(settings, histories, first, latent_dim, axes),
        "KL curves with beta and floor",
        "First seed of each setting.",
    )
    richest = most_informative(settings, baseline, deltas)
    if richest is not None:
        side_by_side(doc, runs, settings, baseline, richest, axes)
    chosen = [baseline] + ([richest] if richest is not None else [])
    traversed = [row for i in chosen for row in traversal_rows(runs, first[i], label(settings.loc[i], axes))]
    if traversed:
        doc.heading("Latent traversals")
        doc.figure(
            "traversals",
            drawing.image_rows(traversed, "latent traversals"),
            "latent traversals",
            TRAVERSAL_CAPTION
            + " The baseline"
            + (", then the setting with the most informative units." if richest is not None else "."),
        )
    doc.heading("Findings")
    doc.text(findings(runs, claims, settings, baseline, axes, latent_dim, columns, deltas))
    claims.table(doc)
    run_list(doc, runs)
    return doc


def split_kl(runs: RunSet):
    """Add to each finished VAE run the KL of its informative dimensions (the low end of their
    information bracket above INFORMATIVE_NATS, as `test/informative_units` counts them) and of the
    rest, as the metrics `derived/kl_informative` and `derived/kl_rest`; nan for a run that logged
    no information brackets."""
    frame = runs.finished
    dims = range(runs.latent_dim)
    kl = [f"metrics.{names.test(names.kl_dim(d))}" for d in dims]
    low = [f"metrics.{names.test(names.mutual_info_dim(d, 'low'))}" for d in dims]
    if not all(key in frame for key in kl + low):
        frame["metrics.derived/kl_informative"] = frame["metrics.derived/kl_rest"] = np.nan
        return
    kl, low = frame[kl].to_numpy(dtype=float), frame[low].to_numpy(dtype=float)
    informative = np.where(low > INFORMATIVE_NATS, kl, 0.0).sum(axis=1)
    measured = (runs.param("model") == "vae").to_numpy() & ~np.isnan(low).any(axis=1)
    frame["metrics.derived/kl_informative"] = np.where(measured, informative, np.nan)
    frame["metrics.derived/kl_rest"] = np.where(measured, kl.sum(axis=1) - informative, np.nan)


HEADERS = {
    "decoder_scale": "σ",
    "sigma": "σ₀ (fixed σ, or learned σ's start)",
    "warmup_epochs": "warm-up (epochs)",
    "free_bits": "free bits (nats/dim)",
}


def shown(name: str, value) -> str:
    """A setting's value as a table shows it: σ and free bits as short numbers, '–' where not logged."""
    if value is None:
        return "–"
    return f"{float(value):.3g}" if name in ("sigma", "free_bits") else str(value)


def label(row: pd.Series, axes: list[str]) -> str:
    """'σ learned, warm-up 10, free bits 0.05'."""
    words = {"decoder_scale": "σ", "sigma": "σ₀", "warmup_epochs": "warm-up", "free_bits": "free bits"}
    return ", ".join(f"{words[name]} {shown(name, row[name])}" for name in axes)


def baseline_of(settings: pd.DataFrame) -> int:
    """No warm-up, no free bits, σ fixed (at the reference notebooks' √½ where σ's value varies)
    where it is a setting; else the first setting."""
    plain = (settings["warmup_epochs"].astype(float) == 0) & (settings["free_bits"].astype(float) == 0)
    if "decoder_scale" in settings:
        plain &= settings["decoder_scale"] == "fixed"
    if "sigma" in settings:
        plain &= np.isclose(settings["sigma"].astype(float), SQRT_HALF)
    return int(settings.index[plain][0]) if plain.any() else int(settings.index[0])


def delta_keys(settings: pd.DataFrame, columns: list[Column]) -> list[tuple[str, str]]:
    """The (metric key, header) of what every setting is compared with the baseline on: units, KL,
    −ELBO, IW bound and sample FID."""
    return [(key, header) for key, header, _ in DELTAS if key in settings] + [
        (c.key, c.header) for c in columns if (fid := names.parse_fid(c.key)) and fid.kind == names.SAMPLES
    ]


def against_baseline(
    runs: RunSet, settings: pd.DataFrame, baseline: int, keys: list[tuple[str, str]]
) -> dict[tuple[int, str], Difference]:
    """Each other setting (by its index) minus the baseline on each of `keys`, all of them one family."""
    base = settings.loc[baseline, "run_ids"].split()
    pairs = {
        (i, key): (runs.by_seed(row["run_ids"].split(), key), runs.by_seed(base, key))
        for i, row in settings.drop(index=baseline).iterrows()
        for key, _ in keys
    }
    return family(pairs, "comparisons of the table against the baseline")


def baseline_table(
    settings: pd.DataFrame, deltas: dict[tuple[int, str], Difference], keys: list[tuple[str, str]], axes: list[str]
) -> pd.DataFrame:
    """The differences from the baseline as a table, a row per other setting, bold where clear."""
    rows = []
    for i in dict.fromkeys(i for i, _ in deltas):
        cells = {"setting": label(settings.loc[i], axes)}
        for key, header in keys:
            d = deltas[(i, key)]
            cells[header] = f"**{interval(d)}**" if d.clear else interval(d)
        rows.append(cells)
    return pd.DataFrame(rows)


def _grid(settings: pd.DataFrame, axes: list[str], width: float = 3.4, height: float = 2.6, **kwargs):
    """Axes laid out with free bits across and the other settings down, one per setting, and the setting of each."""
    down = [a for a in axes if a != "free_bits"]
    rows = sorted({tuple(r) for r in settings[down].itertuples(index=False)}, key=str)
    bits = sorted(set(settings["free_bits"]), key=float)
    fig, grid = plt.subplots(
        len(rows), len(bits), figsize=(width * len(bits), height * len(rows)), squeeze=False, **kwargs
    )
    used = {(rows.index(tuple(row[down])), bits.index(row["free_bits"])): i for i, row in settings.iterrows()}
    for (r, c), ax in np.ndenumerate(grid):
        if (r, c) not in used:
            ax.set_visible(False)
    return fig, [(grid[r, c], settings.loc[i]) for (r, c), i in sorted(used.items())]


def kl_bars(settings, profiles: dict[int, np.ndarray], axes: list[str]):
    """Final test KL of each dimension, sorted (mean over seeds per rank, with its interval), per
    setting, with the free-bits floor and the KL below which no dimension is informative."""
    fig, cells = _grid(settings, axes, sharey=True)
    for ax, row in cells:
        found = [estimate(column) for column in profiles[row.name].T]
        mean = np.array([e.mean for e in found])
        error = np.array([0.0 if math.isnan(e.low) else e.mean - e.low for e in found])
        floor = float(row["free_bits"])
        shown = np.maximum(mean, drawing.KL_FLOOR)
        ax.bar(
            np.arange(1, len(mean) + 1),
            shown,
            yerr=[np.minimum(error, shown - drawing.KL_FLOOR), error],
            color="C0",
            error_kw={"linewidth": 0.8},
        )  # the interval is cut at the axis' floor
        if floor > 0:
            ax.axhline(floor, color="C5", linestyle=":", label="free-bits floor")
        ax.axhline(INFORMATIVE_NATS, color="black", linestyle="--", linewidth=0.8, label=f"{INFORMATIVE_NATS:g} nats")
        ax.set_yscale("log")
        ax.set_ylim(drawing.KL_FLOOR, 2 * max(1.0, float(np.nanmax(mean))))
        informative = row.get(names.TEST_INFORMATIVE_UNITS, math.nan)
        ax.set(
            title=f"{label(row, axes)}\n{row[names.TEST_ACTIVE_UNITS]:.3g} active, {informative:.3g} informative",
            xlabel="dimension, by KL",
            ylabel="KL (nats, log scale)",
        )
    legend = {label: handle for ax, _ in cells for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def kl_by_epoch(runs: RunSet, run_id: str) -> np.ndarray | None:
    try:
        return runs.kl_by_epoch(run_id)
    except ArtifactMissing:
        return None


def kl_heatmaps(settings, matrices: list[np.ndarray], axes: list[str]):
    """Validation KL of each dimension per epoch, one panel per setting, on one log colour scale
    with INFORMATIVE_NATS, below which no dimension is informative, marked on its bar."""
    norm = drawing.kl_norm(max(float(m.max()) for m in matrices))
    fig, cells = _grid(settings, axes, width=3.2, height=2.6, sharex=True, sharey=True, layout="constrained")
    for (ax, row), matrix in zip(cells, matrices):
        ordered = np.maximum(
            matrix[:, np.argsort(matrix[-1])[::-1]].T, drawing.KL_FLOOR
        )  # dimensions (by final KL) x epochs
        image = ax.imshow(
            ordered,
            aspect="auto",
            cmap="viridis",
            norm=norm,
            interpolation="nearest",
            extent=(0.5, len(matrix) + 0.5, len(ordered) - 0.5, -0.5),
        )
        ax.set_title(label(row, axes))
    fig.supxlabel("epoch")
    fig.supylabel("latent dimension, sorted by final KL")
    colorbar = fig.colorbar(image, ax=[ax for ax, _ in cells], label="KL (nats, log scale)")
    drawing.mark_threshold(colorbar, INFORMATIVE_NATS)
    return fig


def kl_curves(settings, histories: pd.DataFrame, first: list[str], latent_dim: int, axes: list[str]):
    """Validation and training KL per epoch, the effective β (right axis) and the free-bits floor."""
    fig, cells = _grid(settings, axes, width=3.6, height=2.6)  # each panel its own KL axis
    legend = {}
    for (ax, row), run_id in zip(cells, first):
        own = histories[histories["run_id"] == run_id]
        plots.curves(ax, own, names.VAL_KL, "KL, validation", color="C0")
        plots.curves(ax, own, names.TRAIN_KL, "KL, training", color="C0", linestyle="--")
        floor = latent_dim * float(row["free_bits"])
        if floor:
            ax.axhline(floor, color="C5", linestyle=":", label=f"free-bits floor ({latent_dim} × λ)")
        ax.set(xlabel="epoch", ylabel="KL (nats)")
        ax.set_title(label(row, axes))
        beta = ax.twinx()
        plots.curves(beta, own, names.BETA_EFF, "effective β", color="C3", linestyle="-.")
        beta.set(ylim=(0, 1.1 * max(1.0, own.loc[own["key"] == names.BETA_EFF, "value"].max())), ylabel="effective β")
        for axis in (ax, beta):
            legend.update(zip(*reversed(axis.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def most_informative(settings: pd.DataFrame, baseline: int, deltas: dict[tuple[int, str], Difference]) -> int | None:
    """The setting with the most informative units (the lowest −ELBO among ties), when it has
    clearly more than the baseline (in the table's family, `deltas`)."""
    key = names.TEST_INFORMATIVE_UNITS
    if key not in settings:
        return None
    ranked = settings.sort_values([key, names.TEST_NEG_ELBO], ascending=[False, True], kind="stable")
    best = int(ranked.index[0])
    d = deltas.get((best, key))
    return best if d is not None and d.clear and d.mean > 0 else None


def side_by_side(doc: Document, runs: RunSet, settings, baseline: int, other: int, axes: list[str]):
    rows = {i: settings.loc[i] for i in (baseline, other)}
    images = {i: runs.images(row["run_ids"].split()[0]) for i, row in rows.items()}
    if any(v is None for v in images.values()):
        return
    doc.heading("The baseline beside the setting with the most informative units")
    doc.text(
        f"Baseline: {label(rows[baseline], axes)}. Most informative units: {label(rows[other], axes)}. First "
        "seed of each."
    )
    doc.figure(
        "reconstructions",
        drawing.image_rows(
            [
                ("original", images[baseline][names.ORIGINALS]),
                *((label(rows[i], axes), images[i][names.RECONSTRUCTION_IMAGES]) for i in (baseline, other)),
            ],
            "reconstructions",
        ),
        "reconstructions of the baseline and the most informative setting",
    )
    doc.figure(
        "samples",
        drawing.image_grids(
            [
                (f"{label(rows[i], axes)}: prior samples", images[i][names.NORMAL_PRIOR_SAMPLES])
                for i in (baseline, other)
            ]
        ),
        "prior samples of both",
    )


def findings(
    runs: RunSet,
    claims: Claims,
    settings: pd.DataFrame,
    baseline: int,
    axes: list[str],
    latent_dim: int,
    columns: list[Column],
    deltas: dict[tuple[int, str], Difference],
) -> str:
    """How many dimensions collapse in the baseline; which settings have clearly more active or
    informative units; and what each such change costs or buys in KL, −ELBO, IW bound and sample
    FID, each as far as the table's family of comparisons with the baseline (`deltas`) resolves
    it. A unit count alone never makes a setting 'cured': more active units without more
    informative ones are said to carry next to nothing."""
    base = settings.loc[baseline]
    base_ids = base["run_ids"].split()
    on = f" ({basis(list(deltas.values()))})" if deltas else ""
    text = claims.opening((settings["n"] > 1).any())
    text.append(
        f"In the baseline ({label(base, axes)}), {base[names.TEST_ACTIVE_UNITS]:.3g} of {latent_dim} dimensions "
        f"are active and {base[names.TEST_INFORMATIVE_UNITS]:.3g} informative, with {base[names.TEST_KL]:.1f} nats of "
        f"KL ({base['derived/kl_informative']:.1f} in the informative ones)."
    )
    others = settings.drop(index=baseline)

    def change(key: str) -> dict[int, str | None]:
        """'more', 'fewer' or None (not resolved) per setting, each comparison recorded."""
        found = {}
        for i, row in others.iterrows():
            d = deltas[(i, key)]
            found[i] = ("more" if d.mean > 0 else "fewer") if d.clear else None
            claims.record(
                key.removeprefix(names.test("")).replace("_", " "),
                label(row, axes),
                "the baseline",
                d,
                found[i] or "not resolved",
                ".1f",
                {
                    label(row, axes): runs.by_seed(row["run_ids"].split(), key),
                    "the baseline": runs.by_seed(base_ids, key),
                },
            )
        return found

    active, informative = change(names.TEST_ACTIVE_UNITS), change(names.TEST_INFORMATIVE_UNITS)
    named = {i: label(row, axes) for i, row in others.iterrows()}
    more_active = [i for i, c in active.items() if c == "more"]
    richer = [i for i, c in informative.items() if c == "more"]
    if not more_active and not richer:
        text.append(f"No setting has clearly more active or informative units than the baseline{on}.")
        return " ".join(text)
    if more_active:
        text.append(
            f"Clearly more active units than the baseline{on}: " + "; ".join(named[i] for i in more_active) + "."
        )
    empty = [i for i in more_active if i not in richer]
    if empty:
        held = "; ".join(f"{named[i]}: {_beyond(others.loc[i], latent_dim)}" for i in empty)
        text.append(
            "Of these, not clearly more informative ones: "
            + "; ".join(named[i] for i in empty)
            + ". Their dimensions that are not informative (whose own information is not above "
            f"{INFORMATIVE_NATS:g} nats for certain), which the active-unit count includes: {held}."
        )
    poorer = [i for i, c in informative.items() if c == "fewer"]
    if poorer:
        text.append(
            f"Clearly fewer informative units than the baseline{on}: "
            + "; ".join(f"{named[i]} ({others.loc[i, names.TEST_INFORMATIVE_UNITS]:.3g})" for i in poorer)
            + "."
        )
    if richer:
        text.append(
            f"Clearly more informative units than the baseline{on}: "
            + "; ".join(f"{named[i]} ({others.loc[i, names.TEST_INFORMATIVE_UNITS]:.3g})" for i in richer)
            + "."
        )
    fids = [c for c in columns if (fid := names.parse_fid(c.key)) and fid.kind == names.SAMPLES]
    outcomes = [
        (names.TEST_KL, "KL", None),
        (names.TEST_NEG_ELBO, "−ELBO", True),
        (names.TEST_NLL_IW, "the IW bound", True),
        *((c.key, f"sample FID ({names.parse_fid(c.key).extractor})", True) for c in fids),
    ]
    for group, what in ((richer, "with more informative units"), (empty, "with more active units only")):
        if group:
            text.append(
                f"For the settings {what}, against the baseline{on}: "
                + "; ".join(
                    _grouped(claims, runs, others.loc[group], base_ids, deltas, key, name, better, axes)
                    for key, name, better in outcomes
                    if key in settings
                )
                + "."
            )
    return " ".join(text)


def _beyond(row: pd.Series, latent_dim: int) -> str:
    """'11.7 dimensions with 3.29 nats of KL together, 0.281 each, against a free-bits floor of 0.25'."""
    count = latent_dim - row[names.TEST_INFORMATIVE_UNITS]
    each = row["derived/kl_rest"] / count if count else math.nan
    return (
        f"{count:.3g} dimensions with {row['derived/kl_rest']:.2f} nats of KL together, {each:.3f} each, against a "
        f"free-bits floor of {float(row['free_bits']):g}"
    )


def _grouped(
    claims: Claims,
    runs: RunSet,
    rows: pd.DataFrame,
    base_ids: list[str],
    deltas: dict[tuple[int, str], Difference],
    key: str,
    what: str,
    better: bool | None,
    axes: list[str],
) -> str:
    """'−ELBO clearly better for A, B; clearly worse for C; not resolved for D', each difference the
    table's (`deltas`), each comparison recorded."""
    words = {"a": "clearly better", "b": "clearly worse"} if better else {}
    groups: dict[str, list[str]] = {}
    base = runs.by_seed(base_ids, key)
    for i, row in rows.iterrows():
        d = deltas[(i, key)]
        values = runs.by_seed(row["run_ids"].split(), key)
        said = claims.say(Comparison(what, label(row, axes), "the baseline", values, base, better), d)
        verdict = words.get(said.better) or (
            ("clearly higher" if d.mean > 0 else "clearly lower") if d.clear else "not resolved"
        )
        groups.setdefault(verdict, []).append(f"{label(row, axes)} ({interval(d, '.1f')})")
    return f"{what} " + "; ".join(f"{verdict} for {', '.join(labels)}" for verdict, labels in groups.items())
