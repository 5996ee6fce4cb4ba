"""`posterior-collapse`: VAEs under KL warm-up and free bits. For each (warm-up, free bits)
setting: active units and the final KL of every dimension, the KL of every dimension over the
epochs, the KL curve with the effective β and the free-bits floor; the baseline beside the best
cured setting; the table and what it shows."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit.reports import plots
from toolkit.reports.document import Document
from toolkit.reports.runs import RunSet
from toolkit.reports.sections import SPREAD, provenance, results_table, run_list

SETTING = ("warmup_epochs", "free_bits")
ORDER = ("test/active_units", "test/kl", "test/recon", "test/neg_elbo", "test/nll_iw", "test/mse")


def build(runs: RunSet, rebuild: str) -> Document:
    vae = runs.of_model("vae")
    runs.require("posterior-collapse", SETTING, vae, "finished VAE runs")
    doc = Document(f"Posterior collapse: {runs.experiment}")
    provenance(doc, runs, rebuild)
    columns = runs.columns(vae, first=ORDER)
    settings = runs.settings(list(SETTING), vae, columns)
    latent_dim = runs.latent_dim
    doc.heading("Results")
    doc.text(f"Test split, nats per image; a {latent_dim}-d latent. Warm-up: epochs over which β ramps linearly "
             "from 0; free bits: the floor, in nats, on each dimension's KL in the objective (the logged KL is "
             "the true KL). A dimension is active when its posterior mean varies over the data (variance > 0.01)."
             + SPREAD)
    results_table(doc, runs, "results", settings, {"warm-up (epochs)": list(settings["warmup_epochs"]),
                                                   "free bits (nats/dim)": list(settings["free_bits"])}, columns)
    first = [row.split()[0] for row in settings["run_ids"]]
    histories = runs.histories(first, ["val/kl", "train/kl", "beta_eff"])
    profiles = {i: runs.kl_profile(row["run_ids"].split()) for i, row in settings.iterrows()}
    doc.heading("KL of every dimension at the end")
    doc.figure("kl_per_dimension", kl_bars(settings, profiles), "final KL per dimension per setting")
    doc.heading("KL of every dimension over the epochs")
    doc.text("Validation KL of each dimension per epoch (first run of each setting), dimensions sorted by their "
             "final KL; one colour scale for all settings.")
    doc.figure("kl_heatmaps", kl_heatmaps(settings, [runs.kl_by_epoch(r) for r in first]), "KL heatmaps")
    doc.heading("KL over the epochs")
    doc.figure("kl_curves", kl_curves(settings, histories, first, latent_dim), "KL curves with beta and floor")
    baseline, cured = baseline_and_cured(settings)
    if cured is not None:
        side_by_side(doc, runs, settings, baseline, cured)
    doc.heading("Findings")
    doc.text(findings(settings, profiles, baseline, cured, latent_dim))
    run_list(doc, runs)
    return doc


def label(row: pd.Series) -> str:
    return f"warm-up {row['warmup_epochs']}, free bits {float(row['free_bits']):g}"


def _grid(settings: pd.DataFrame, width: float = 3.4, height: float = 2.6, **kwargs):
    """Axes laid out as warm-up (rows) x free bits (columns), one per setting, and the setting of each."""
    warmups = sorted(set(settings["warmup_epochs"]), key=float)
    bits = sorted(set(settings["free_bits"]), key=float)
    fig, axes = plt.subplots(len(warmups), len(bits), figsize=(width * len(bits), height * len(warmups)),
                             squeeze=False, **kwargs)
    used = {}
    for i, row in settings.iterrows():
        used[(warmups.index(row["warmup_epochs"]), bits.index(row["free_bits"]))] = i
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.set_visible(False)
    return fig, [(axes[r, c], settings.loc[i]) for (r, c), i in sorted(used.items())]


def kl_bars(settings, profiles: dict[int, np.ndarray]):
    """Final test KL of each dimension, sorted, per setting, with the free-bits floor."""
    fig, cells = _grid(settings, sharey=True)
    for ax, row in cells:
        profile = profiles[row.name]
        ax.bar(np.arange(1, len(profile) + 1), profile, color="tab:blue")
        if float(row["free_bits"]) > 0:
            ax.axhline(float(row["free_bits"]), color="tab:red", linestyle=":", label="free-bits floor")
            ax.legend(fontsize=7)
        ax.set(title=f"{label(row)}\n{row['test/active_units']:.3g} active units", xlabel="dimension, by KL",
               ylabel="KL (nats)")
    fig.tight_layout()
    return fig


def kl_heatmaps(settings, matrices: list[np.ndarray]):
    top = max(float(m.max()) for m in matrices)
    fig, cells = _grid(settings, width=3.2, height=2.6, sharex=True, sharey=True, layout="constrained")
    for (ax, row), matrix in zip(cells, matrices):
        ordered = matrix[:, np.argsort(matrix[-1])[::-1]].T  # dimensions (sorted by final KL) x epochs
        image = ax.imshow(ordered, aspect="auto", cmap="viridis", vmin=0, vmax=top, interpolation="nearest",
                          extent=(0.5, len(matrix) + 0.5, len(ordered) - 0.5, -0.5))
        ax.set_title(label(row), fontsize=9)
    fig.supxlabel("epoch")
    fig.supylabel("latent dimension, sorted by final KL")
    fig.colorbar(image, ax=[ax for ax, _ in cells], label="KL (nats)")
    return fig


def kl_curves(settings, histories: pd.DataFrame, first: list[str], latent_dim: int):
    """Validation and training KL per epoch, the effective β (right axis) and the free-bits floor."""
    fig, cells = _grid(settings, width=3.6, height=2.6, sharey=True)
    legend = {}
    for (ax, row), run_id in zip(cells, first):
        own = histories[histories["run_id"] == run_id]
        plots.curves(ax, own, "val/kl", "KL, validation", color="tab:blue")
        plots.curves(ax, own, "train/kl", "KL, training", color="tab:blue", linestyle="--")
        floor = latent_dim * float(row["free_bits"])
        if floor:
            ax.axhline(floor, color="tab:red", linestyle=":", label=f"free-bits floor ({latent_dim} × λ)")
        ax.set(title=label(row), xlabel="epoch", ylabel="KL (nats)")
        beta = ax.twinx()
        plots.curves(beta, own, "beta_eff", "effective β", color="tab:grey", linestyle="-.")
        beta.set(ylim=(0, 1.1 * max(1.0, own.loc[own["key"] == "beta_eff", "value"].max())), ylabel="effective β")
        for axis in (ax, beta):
            legend.update(zip(*reversed(axis.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def baseline_and_cured(settings: pd.DataFrame) -> tuple[int, int | None]:
    """The baseline (no warm-up, no free bits; else the first setting) and the setting with the
    most active units (the lowest −ELBO among ties), if it has more than the baseline."""
    plain = settings[(settings["warmup_epochs"].astype(float) == 0) & (settings["free_bits"].astype(float) == 0)]
    baseline = int(plain.index[0]) if len(plain) else 0
    ranked = settings.sort_values(["test/active_units", "test/neg_elbo"], ascending=[False, True], kind="stable")
    best = int(ranked.index[0])
    if settings.loc[best, "test/active_units"] <= settings.loc[baseline, "test/active_units"]:
        return baseline, None
    return baseline, best


def side_by_side(doc: Document, runs: RunSet, settings, baseline: int, cured: int):
    rows = {i: settings.loc[i] for i in (baseline, cured)}
    images = {i: runs.images(row["run_ids"].split()[0]) for i, row in rows.items()}
    if any(v is None for v in images.values()):
        return
    doc.heading("The baseline beside the best cured setting")
    doc.text(f"Baseline: {label(rows[baseline])}. Best cured: {label(rows[cured])} (the most active units).")
    doc.figure("reconstructions", plots.image_rows(
        [("original", images[baseline]["originals"]),
         *((label(rows[i]), images[i]["reconstructions"]) for i in (baseline, cured))], "reconstructions"),
        "reconstructions of baseline and cured")
    doc.figure("samples", plots.image_grids([(f"{label(rows[i])}: prior samples", images[i]["samples_normal_prior"])
                                             for i in (baseline, cured)]), "prior samples of baseline and cured")


def findings(settings: pd.DataFrame, profiles: dict[int, np.ndarray], baseline: int, cured: int | None,
             latent_dim: int) -> str:
    """`profiles`: each setting's final KL per dimension, sorted from the largest."""
    base = settings.loc[baseline]
    alive = int(round(base["test/active_units"]))
    text = [f"In the baseline ({label(base)}), {latent_dim - alive} of {latent_dim} latent dimensions collapse "
            f"({alive} active units, KL {base['test/kl']:.1f} nats)."]
    if cured is None:
        text.append("No other setting keeps more dimensions alive.")
        return " ".join(text)
    best = settings.loc[cured]
    revived = profiles[cured][alive:]
    text.append(f"{label(best).capitalize()} keeps the most alive: {best['test/active_units']:.3g} active units, "
                f"KL {best['test/kl']:.1f} nats, −ELBO {best['test/neg_elbo']:.1f} against the baseline's "
                f"{base['test/neg_elbo']:.1f}, reconstruction {best['test/recon']:.1f} against "
                f"{base['test/recon']:.1f}. Its {len(revived)} dimensions beyond the baseline's {alive} carry "
                f"{revived.sum():.2f} nats of KL together (at most {revived.max():.2f} each), against "
                f"{profiles[cured][:alive].sum():.1f} in its strongest {alive}.")
    same = settings[settings["test/active_units"] <= base["test/active_units"]].drop(index=baseline)
    if len(same):
        text.append("No more active units than the baseline: " + "; ".join(label(r) for _, r in same.iterrows()) + ".")
    return " ".join(text)
