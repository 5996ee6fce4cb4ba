"""`beta-sweep`: VAEs that differ only in β, with the AE as the reference: the rate–distortion
plane (Alemi et al. 2018), FID and active units against β, the KL of every latent dimension
against β, and samples at each β; findings stated only where the seeds resolve them."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from toolkit import drawing, names
from toolkit.diagnostics import INFORMATIVE_NATS
from toolkit.reports import plots
from toolkit.reports.claims import Claims, Comparison, basis, sentence
from toolkit.reports.document import Document, escape
from toolkit.reports.runs import Column, RunSet
from toolkit.reports.sections import (
    TRAVERSAL_CAPTION,
    bracket_cell,
    diagnostics_section,
    fid_caption,
    provenance,
    results_table,
    run_list,
    settings_section,
    statistics_caption,
    traversal_rows,
)

ORDER = (
    names.TEST_KL,
    names.TEST_RECON,
    names.TEST_NEG_ELBO,
    names.TEST_NLL_IW,
    names.TEST_ACTIVE_UNITS,
    names.TEST_INFORMATIVE_UNITS,
    names.TEST_MSE,
)
HEADERS = {names.TEST_KL: "rate: KL (nats)", names.TEST_RECON: "distortion: recon (nats)"}
SAMPLES_SHOWN = 12
FID_LABELS = {  # the AE has the fitted Gaussian's, the GMM's and the reconstructions', each set beside the VAEs' own
    names.SAMPLES: "prior samples",
    names.AGGREGATE_POSTERIOR: "aggregate-posterior samples",
    names.SAMPLES_GAUSSIAN: "fitted-Gaussian samples",
    names.SAMPLES_GMM: "GMM samples",
    names.RECONSTRUCTIONS: "reconstructions",
}


def build(runs: RunSet, rebuild: str) -> Document:
    vae, ae = runs.of_model("vae"), runs.of_model("ae")
    runs.require("beta-sweep", ("beta",), vae, "finished VAE runs")
    doc = Document(f"β sweep: {escape(runs.experiment)}")
    provenance(doc, runs, rebuild)
    columns = [replace(c, header=HEADERS.get(c.key, c.header)) for c in runs.columns(first=ORDER)]
    diagnostics = runs.diagnostic_columns()
    settings = pd.concat(
        [
            runs.settings(["beta"], vae, columns + diagnostics).assign(model="vae"),
            runs.settings([], ae, columns + diagnostics).assign(model="ae", beta=""),
        ],
        ignore_index=True,
    )
    settings = settings[["model", "beta", *[c for c in settings if c not in ("model", "beta")]]]
    betas = settings["beta"][settings["model"] == "vae"].astype(float)
    settings_section(doc, runs, columns)
    doc.heading("Results")
    doc.text(
        "Test split, nats per image (MSE per pixel). Rate is the KL of q(z|x) from the prior; distortion the "
        "reconstruction term. Active units: posterior mean varies over the data (variance > 0.01); "
        f"informative: its own information I(x; z_u) is above {INFORMATIVE_NATS:g} nats for certain (the low end "
        f"of its bracket, see the diagnostics). {fid_caption(columns)} "
        f"{statistics_caption(settings)}"
    )
    labels = {
        "β": [f"{b:g}" for b in betas] + ["–"] * (len(settings) - len(betas)),
        "model": list(settings["model"].str.upper()),
    }
    results_table(doc, runs, "results", settings, labels, columns)
    diagnostics_section(doc, runs, settings, labels, diagnostics)
    vae_rows, ae_row = settings[settings["model"] == "vae"], settings[settings["model"] == "ae"]
    doc.heading("Rate and distortion")
    doc.figure(
        "rate_distortion",
        rate_distortion(vae_rows, betas, ae_row),
        "rate-distortion plane",
        plots.BARS.replace("Error bars", "Error bars (both axes)"),
    )
    doc.heading("FID and active units against β")
    fids = [c for c in columns if names.parse_fid(c.key)]
    doc.figure(
        "fid_active_units",
        fid_and_active_units(vae_rows, betas, ae_row, fids, runs.latent_dim),
        "FID and active units against beta",
        plots.BARS + " The AE's values: dotted lines.",
    )
    doc.heading("KL of every latent dimension")
    profiles = [runs.kl_profile(ids.split()) for ids in vae_rows["run_ids"]]
    doc.figure(
        "kl_per_dimension",
        kl_heatmap(profiles, betas),
        "KL per latent dimension against beta",
        "Each run's dimensions sorted by their test KL, the mean over seeds of each rank; log colour scale, "
        f"{INFORMATIVE_NATS:g} nats marked on its bar: a dimension with less KL cannot be informative.",
    )
    samples = sample_rows(runs, vae_rows, betas, ae_row.iloc[:0])
    if samples:
        doc.heading("Samples")
        doc.text(
            f"The first {SAMPLES_SHOWN} of the 64 samples each run drew for its figures (first run of each "
            "setting), the VAEs' from their prior N(0, I), which an AE does not have."
        )
        doc.figure("samples", drawing.image_rows(samples, "prior samples at each β"), "samples at each beta")
    fitted = sample_rows(runs, vae_rows, betas, ae_row, names.SAMPLES_GAUSSIAN)
    if fitted:
        doc.text(
            "Every model drawn the same way, the VAEs beside the AE: from a Gaussian fitted to its training "
            "codes (posterior means)."
        )
        doc.figure(
            names.SAMPLES_GAUSSIAN,
            drawing.image_rows(fitted, "fitted-Gaussian samples at each β and of the AE"),
            "fitted-Gaussian samples at each beta and of the AE",
        )
    aggregate = sample_rows(runs, vae_rows, betas, ae_row.iloc[:0], "samples_aggregate_posterior")
    if aggregate:
        doc.text(
            "The same VAEs decoding codes from their aggregate posterior q(z) instead of the prior (a random "
            "training image's posterior, one code from it): what the decoder makes of the codes it was trained "
            "on. The gap between the two rows of a β is the prior hole."
        )
        doc.figure(
            "samples_aggregate_posterior",
            drawing.image_rows(aggregate, "aggregate-posterior samples at each β"),
            "aggregate-posterior samples at each beta",
        )
    traversed = [
        row for b, ids in zip(betas, vae_rows["run_ids"]) for row in traversal_rows(runs, ids.split()[0], f"β = {b:g}")
    ]
    if traversed:
        doc.heading("Latent traversals")
        doc.figure(
            "traversals",
            drawing.image_rows(traversed, "latent traversals at each β"),
            "latent traversals at each beta",
            TRAVERSAL_CAPTION,
        )
    doc.heading("Findings")
    claims = Claims(runs)
    doc.text(findings(runs, claims, vae_rows, betas, ae_row, fids))
    claims.table(doc)
    run_list(doc, runs)
    return doc


def rate_distortion(vae: pd.DataFrame, betas: pd.Series, ae: pd.DataFrame):
    """Distortion against rate, one labelled point per β, faint lines of constant −ELBO (D + R = c),
    the lowest of them drawn darker, and the AE's distortion as a horizontal reference line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    rate, distortion = vae[names.TEST_KL].to_numpy(), vae[names.TEST_RECON].to_numpy()
    ax.errorbar(
        rate,
        distortion,
        xerr=plots.half_widths(vae, names.TEST_KL),
        yerr=plots.half_widths(vae, names.TEST_RECON),
        marker="o",
        capsize=3,
        label="VAE, one point per β",
    )
    for r, d, b in zip(rate, distortion, betas):
        ax.annotate(f"β={b:g}", (r, d), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ae_d = ae[names.TEST_RECON].iloc[0] if len(ae) else np.nan
    y_low, y_high = np.nanmin([distortion.min(), ae_d]), distortion.max()
    pad = 0.08 * (y_high - y_low or 1)
    x_high = rate.max() * 1.15
    ax.set(xlim=(0, x_high), ylim=(y_low - pad, y_high + pad))
    neg_elbo = rate + distortion
    step = _step(y_high - y_low + x_high)
    for c in np.arange(np.floor((y_low - pad) / step) * step, y_high + pad + x_high, step):
        ax.plot([0, x_high], [c, c - x_high], color="grey", alpha=0.2, linewidth=0.8, zorder=0)
    best = int(np.argmin(neg_elbo))
    ax.plot(
        [0, x_high],
        [neg_elbo[best], neg_elbo[best] - x_high],
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"−ELBO = {neg_elbo[best]:.1f}, the lowest mean (β = {betas.iloc[best]:g})",
    )
    if len(ae):
        ax.axhline(
            ae_d, color="C5", linestyle="--", label=f"AE distortion {ae_d:.1f} (deterministic code: no finite rate)"
        )
    ax.set(
        xlabel="rate: test KL (nats)",
        ylabel="distortion: test reconstruction (nats)",
        title=f"rate–distortion plane (grey lines: constant −ELBO, {step:g} nats apart)",
    )
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _step(span: float) -> float:
    """A round spacing giving about ten lines over `span`."""
    step = 10 ** np.floor(np.log10(span / 10))
    return step * next(m for m in (1, 2, 5, 10) if span / (step * m) <= 12)


def fid_and_active_units(vae, betas, ae, fids: list[Column], latent_dim: int):
    """One panel of FIDs against β per extractor (the AE's as dotted lines), then active units."""
    extractors = sorted({names.parse_fid(c.key).extractor for c in fids})
    fig, axes = plt.subplots(1, len(extractors) + 1, figsize=(5 * (len(extractors) + 1), 3.8), squeeze=False)
    for ax, extractor in zip(axes[0], extractors):
        for i, column in enumerate(c for c in fids if names.parse_fid(c.key).extractor == extractor):
            what = names.parse_fid(column.key).kind
            plots.errorbars(ax, betas, vae, column.key, f"VAE {FID_LABELS[what]}", color=f"C{i}")
            if len(ae) and not np.isnan(ae[column.key].iloc[0]):
                ax.axhline(ae[column.key].iloc[0], color=f"C{i}", linestyle=":", label=f"AE {FID_LABELS[what]}")
        ax.set(
            xscale="log",
            xlabel="β (log scale)",
            ylabel=f"FID, {extractor} (lower is better)",
            title=f"FID against β ({extractor})",
        )
        ax.legend()
    units = axes[0, -1]
    for i, (key, label) in enumerate(
        ((names.TEST_ACTIVE_UNITS, "active"), (names.TEST_INFORMATIVE_UNITS, "informative"))
    ):
        if key in vae:
            plots.errorbars(units, betas, vae, key, f"VAE, {label}", color=f"C{i}")
    units.axhline(latent_dim, color="grey", linestyle=":", label=f"latent size {latent_dim}")
    units.set(
        xscale="log",
        xlabel="β (log scale)",
        ylabel="units",
        title="active and informative units against β",
        ylim=(0, latent_dim + 1),
    )
    units.yaxis.set_major_locator(MaxNLocator(integer=True))
    units.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xticks(list(betas), [f"{b:g}" for b in betas])
        ax.minorticks_off()
    fig.tight_layout()
    return fig


def kl_heatmap(profiles: list[np.ndarray], betas: pd.Series):
    """Test KL of each latent dimension (rows, sorted by KL within each β) against β (columns), on
    a log colour scale with INFORMATIVE_NATS, below which no dimension is informative, marked."""
    matrix = np.maximum(np.stack(profiles, axis=1), drawing.KL_FLOOR)
    latent_dim = len(matrix)
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * len(betas), 1.8 + 0.17 * latent_dim))
    image = ax.imshow(
        matrix,
        aspect="auto",
        cmap="viridis",
        origin="upper",
        interpolation="nearest",
        norm=drawing.kl_norm(matrix.max()),
    )
    drawing.mark_threshold(fig.colorbar(image, ax=ax, label="KL (nats, log scale)"), INFORMATIVE_NATS)
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(0, latent_dim, max(1, latent_dim // 10)))
    ax.set(xlabel="β", ylabel="latent dimensions, sorted by KL", title="test KL per dimension")
    fig.tight_layout()
    return fig


def sample_rows(runs: RunSet, vae, betas, ae, kind: str = names.NORMAL_PRIOR_SAMPLES) -> list[tuple[str, np.ndarray]]:
    """The first SAMPLES_SHOWN images of `kind` of each β's first run, then the AE's (if `ae`)."""
    rows = []
    for label, row in [
        *((f"β = {b:g}", r) for b, (_, r) in zip(betas, vae.iterrows())),
        *(("AE", r) for _, r in ae.iterrows()),
    ]:
        images = runs.images(row["run_ids"].split()[0])
        if images is not None and kind in images:
            rows.append((label, images[kind][:SAMPLES_SHOWN]))
    return rows


def findings(
    runs: RunSet, claims: Claims, vae: pd.DataFrame, betas: pd.Series, ae: pd.DataFrame, fids: list[Column]
) -> str:
    """The findings, each stated only as far as its paired intervals over seeds resolve it."""
    labels = [f"β = {b:g}" for b in betas]
    per_beta = {
        key: [runs.by_seed(ids.split(), key) for ids in vae["run_ids"]]
        for key in (
            names.TEST_KL,
            names.TEST_RECON,
            names.TEST_NEG_ELBO,
            names.TEST_NLL_IW,
            names.TEST_ACTIVE_UNITS,
            names.TEST_INFORMATIVE_UNITS,
            *(c.key for c in fids),
        )
    }
    text = claims.opening((vae["n"] > 1).any())
    rate = vae[names.TEST_KL].to_numpy()
    distortion = vae[names.TEST_RECON].to_numpy()
    text.append(
        f"As β rises from {betas.iloc[0]:g} to {betas.iloc[-1]:g} the rate goes from {rate[0]:.1f} to "
        f"{rate[-1]:.1f} nats and the distortion from {distortion[0]:.1f} to {distortion[-1]:.1f}: "
        + claims.trend("the rate", labels, per_beta[names.TEST_KL], ".2f")
        + "; "
        + claims.trend("the distortion", labels, per_beta[names.TEST_RECON], ".2f")
        + "."
    )
    for key, what in ((names.TEST_NEG_ELBO, "the negative ELBO"), (names.TEST_NLL_IW, "the IW bound")):
        if key in vae and vae[key].notna().any():
            text.append(sentence(claims.best(what, dict(zip(labels, per_beta[key])), True, ".2f")))
    for key, what in (
        (names.TEST_ACTIVE_UNITS, "the number of active units"),
        (names.TEST_INFORMATIVE_UNITS, "the number of informative units"),
    ):
        if key in vae and vae[key].notna().any():
            counts = ", ".join(f"{u:.3g}" for u in vae[key])
            text.append(
                f"Across β, {claims.trend(what, labels, per_beta[key], '.2f')} (means {counts} of {runs.latent_dim})."
            )
    text.extend(diagnostic_trends(runs, claims, vae, labels))
    ae_ids = ae["run_ids"].iloc[0].split() if len(ae) else []
    for column in fids:
        fid = names.parse_fid(column.key)
        what = f"the FID of the VAE's {FID_LABELS[fid.kind]} ({fid.extractor})"
        text.append(sentence(claims.best(what, dict(zip(labels, per_beta[column.key])), True, ".1f")))
        if ae_ids and runs.by_seed(ae_ids, column.key):
            text.append(
                _ae_against_every_vae(
                    claims,
                    f"FID ({fid.extractor}) of {FID_LABELS[fid.kind]}",
                    runs.by_seed(ae_ids, column.key),
                    labels,
                    per_beta[column.key],
                    ".1f",
                )
            )
    if ae_ids:
        text.append(
            _ae_against_every_vae(
                claims,
                "distortion (reconstruction, nats)",
                runs.by_seed(ae_ids, names.TEST_RECON),
                labels,
                per_beta[names.TEST_RECON],
                ".2f",
            )
        )
    return " ".join(text)


def diagnostic_trends(runs: RunSet, claims: Claims, vae: pd.DataFrame, labels: list[str]) -> list[str]:
    """The rate's two parts at each β as brackets (no trend is read from a bound), and how the prior
    hole moves with β, as far as the seeds resolve it."""
    text = [rate_split_brackets(vae, labels)] if names.TEST_MUTUAL_INFO_LOW in vae else []
    for e in runs.extractors:
        key, what = (
            names.prior_hole(e.name),
            f"the prior hole, FID ({e.name}) of prior less aggregate-posterior samples",
        )
        if key in vae and vae[key].notna().any():
            values = [runs.by_seed(ids.split(), key) for ids in vae["run_ids"]]
            means = ", ".join(f"{v:.2f}" for v in vae[key])
            text.append(f"Across β, {claims.trend(what, labels, values, '.2f')} (means {means}).")
    return text


def rate_split_brackets(vae: pd.DataFrame, labels: list[str]) -> str:
    """I(x; z) and KL(q(z) ‖ p(z)) at each β in words: a value where the bracket measures it, the
    bracket elsewhere."""
    parts = []
    for what, (low, high) in (
        ("I(x; z)", (names.TEST_MUTUAL_INFO_LOW, names.TEST_MUTUAL_INFO_HIGH)),
        ("KL(q(z) ‖ p(z))", (names.TEST_MARGINAL_KL_LOW, names.TEST_MARGINAL_KL_HIGH)),
    ):
        cells = [f"{label}: {bracket_cell(a, b)}" for label, a, b in zip(labels, vae[low], vae[high])]
        parts.append(f"{what} is " + "; ".join(cells))
    return (
        "In nats, "
        + ". ".join(parts)
        + ". A trend is read only from measured values, and the brackets are what the estimators can say."
    )


def _ae_against_every_vae(claims: Claims, what: str, ae: dict, labels: list[str], vae: list[dict], fmt: str) -> str:
    """Whether the AE is clearly better, clearly worse or unresolved against each VAE, the
    comparisons of the AE with every β one family."""
    said = claims.compare(
        f"comparisons of the AE with every β by {what}",
        [Comparison(what, "AE", label, ae, values, True, fmt) for label, values in zip(labels, vae)],
    )
    sides = {label: s.better for label, s in zip(labels, said)}
    better = [label for label, side in sides.items() if side == "a"]
    worse = [label for label, side in sides.items() if side == "b"]
    unresolved = [label for label in labels if label not in better + worse]
    on = basis([s.difference for s in said])
    if len(better) == len(labels):
        return f"By {what}, the AE is clearly better than every VAE ({on})."
    parts = [
        f"clearly better than the VAE at {', '.join(better)}" if better else "",
        f"clearly worse than at {', '.join(worse)}" if worse else "",
        f"not resolved against {', '.join(unresolved)}" if unresolved else "",
    ]
    return f"By {what}, the AE is " + "; ".join(p for p in parts if p) + f" ({on})."
