"""`latent-dim`: VAE and AE at several latent sizes: reconstruction, −ELBO, FID and active units
against the size, the 2-D manifolds where a run has a 2-d latent, the table, and findings
stated only where the seeds resolve them."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from toolkit import drawing, names
from toolkit.reports import plots
from toolkit.reports.claims import Claims, sentence
from toolkit.reports.document import Document, escape, render_png
from toolkit.reports.runs import RunSet, vae_first
from toolkit.reports.sections import (
    diagnostics_section,
    fid_caption,
    provenance,
    results_table,
    run_list,
    settings_section,
    statistics_caption,
)

MODELS = (("vae", "VAE"), ("ae", "AE"))
SAMPLE_KINDS = {names.SAMPLES: "prior samples", names.SAMPLES_GAUSSIAN: "fitted-Gaussian samples"}  # best size of each


def build(runs: RunSet, rebuild: str) -> Document:
    runs.require("latent-dim", ("latent_dim",), runs.finished, "finished runs")
    doc = Document(f"Latent size: {escape(runs.experiment)}")
    provenance(doc, runs, rebuild)
    columns, diagnostics = runs.columns(), runs.diagnostic_columns()
    settings = vae_first(runs.settings(["model", "latent_dim"], columns=columns + diagnostics))
    settings_section(doc, runs, columns)
    doc.heading("Results")
    doc.text(f"Test split, nats per image (MSE per pixel). {fid_caption(columns)} {statistics_caption(settings)}")
    labels = {"model": list(settings["model"].str.upper()), "latent size": list(settings["latent_dim"])}
    results_table(doc, runs, "results", settings, labels, columns)
    diagnostics_section(doc, runs, settings, labels, diagnostics)
    by_model = {m: settings[settings["model"] == m] for m, _ in MODELS if (settings["model"] == m).any()}
    doc.heading("Against the latent size")
    doc.figure(
        "against_latent_size",
        against_size(by_model, [c for c in columns if names.parse_fid(c.key)]),
        "reconstruction, -ELBO, FID and active units against the latent size",
        plots.BARS,
    )
    manifolds = []
    for model, label in MODELS:
        two = settings[(settings["model"] == model) & (settings["latent_dim"] == "2")]
        images = runs.images(two["run_ids"].iloc[0].split()[0]) if len(two) else None
        if images is not None and names.MANIFOLD in images:
            figure = drawing.image_grids([(f"{label}, 2-d latent", images[names.MANIFOLD])], columns=15, scale=2)
            manifolds.append((label, f"manifold_{model}.png", render_png(figure)))
    if manifolds:
        doc.heading("2-D latent manifolds")
        doc.text(
            "Decoded images on a 15 × 15 grid over the 2-d latent space, each coordinate from its 5 % to its "
            "95 % quantile: of the prior N(0, 1) for the VAE, of its own test codes for the AE (no prior "
            "describes them). The second coordinate falls down the rows, the first rises along them."
        )
        doc.images_side_by_side(manifolds)
    doc.heading("Findings")
    claims = Claims(runs)
    doc.text(findings(runs, claims, by_model))
    claims.table(doc)
    run_list(doc, runs)
    return doc


def against_size(by_model: dict, fids: list):
    """One panel per metric against the latent size, both models in each; a slot the panels leave
    in the last row holds the legend of the models."""
    panels = [
        (names.TEST_RECON, "reconstruction (nats)"),
        (names.TEST_NEG_ELBO, "−ELBO (nats), VAE only"),
        *((c.key, c.header) for c in fids),
        (names.TEST_ACTIVE_UNITS, "active and informative units, VAE only"),
    ]
    if any(names.TEST_PROBE_ACCURACY in frame for frame in by_model.values()):
        panels.append((names.TEST_PROBE_ACCURACY, "linear-probe accuracy (test)"))
    per_row = next((c for c in (3, 4, 2) if len(panels) % c == 0), 3)
    rows = -(-len(panels) // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(3.8 * per_row, 3.3 * rows), squeeze=False)
    sizes = sorted({int(s) for frame in by_model.values() for s in frame["latent_dim"]})
    for ax, (key, label) in zip(axes.flat, panels):
        for i, (model, frame) in enumerate(by_model.items()):
            if key in frame and frame[key].notna().any():
                plots.errorbars(ax, frame["latent_dim"].astype(int), frame, key, model.upper(), color=f"C{i}")
        if key == names.TEST_ACTIVE_UNITS and "vae" in by_model and names.TEST_INFORMATIVE_UNITS in by_model["vae"]:
            plots.errorbars(
                ax,
                by_model["vae"]["latent_dim"].astype(int),
                by_model["vae"],
                names.TEST_INFORMATIVE_UNITS,
                "VAE, informative",
                color="C0",
                linestyle="--",
                marker="s",
            )
        if key == names.TEST_ACTIVE_UNITS:
            ax.plot(sizes, sizes, color="grey", linestyle=":", label="all units active")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xscale="log", xlabel="latent size (log scale)", ylabel=label, title=label.split(" (")[0].split(",")[0])
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        if key == names.TEST_ACTIVE_UNITS or len(panels) % per_row == 0:
            ax.legend()
    for spare in axes.flat[len(panels) :]:
        spare.axis("off")
    if len(panels) % per_row:
        axes.flat[len(panels)].legend(*axes.flat[0].get_legend_handles_labels(), loc="center", title="model")
    fig.tight_layout()
    return fig


def findings(runs: RunSet, claims: Claims, by_model: dict) -> str:
    """Per model: how reconstruction moves with the latent size, step by step, and which size has
    the best sample FID, each as far as the seeds resolve it; the VAE's active and informative units."""
    text = claims.opening(any((frame["n"] > 1).any() for frame in by_model.values()))
    for model, frame in by_model.items():
        sizes, recon = [f"{s} dimensions" for s in frame["latent_dim"]], frame[names.TEST_RECON].to_numpy()
        values = [runs.by_seed(ids.split(), names.TEST_RECON) for ids in frame["run_ids"]]
        text.append(
            sentence(
                f"the {model.upper()}'s reconstruction goes from {recon[0]:.1f} nats at {sizes[0]} to "
                f"{recon[-1]:.1f} at {sizes[-1]}: "
                + claims.trend(f"the {model.upper()}'s reconstruction", sizes, values)
            )
        )
        for key in (k for k in frame if (fid := names.parse_fid(k)) and fid.kind in SAMPLE_KINDS):
            if frame[key].isna().all():  # the AE's prior samples: it has none
                continue
            extractor, kind = names.parse_fid(key)
            values = {size: runs.by_seed(ids.split(), key) for size, ids in zip(sizes, frame["run_ids"])}
            what = f"the {model.upper()}'s FID of {SAMPLE_KINDS[kind]} ({extractor})"
            text.append(sentence(claims.best(what, values, True, ".1f")))
    vae = by_model.get("vae")
    if vae is not None and names.TEST_ACTIVE_UNITS in vae:
        informative = vae.get(names.TEST_INFORMATIVE_UNITS, pd.Series(math.nan, index=vae.index))
        counts = [
            f"{a:.3g} active" + ("" if math.isnan(i) else f" and {i:.3g} informative") + f" of {s}"
            for s, a, i in zip(vae["latent_dim"], vae[names.TEST_ACTIVE_UNITS], informative)
        ]
        text.append("The VAE's units (means over seeds): " + "; ".join(counts) + ".")
    return " ".join(text)
