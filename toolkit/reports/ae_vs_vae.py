"""`ae-vs-vae`: AE beside VAE, as the seeds compared them: the test metrics, the clearly better
value marked (and the reference notebook's published numbers when the setting is the reference's), their
reconstructions, samples, interpolations, latent spaces and loss curves side by side, and
findings from paired differences over seeds (within each other setting, e.g. the architecture,
and across them)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit import ToolkitError, drawing, names
from toolkit.config import VAE_ONLY
from toolkit.data import CLASS_NAMES
from toolkit.reports import plots
from toolkit.reports.claims import Claims, Comparison, interval, sentence
from toolkit.reports.document import Document, escape
from toolkit.reports.runs import RunSet, shown_param, vae_first
from toolkit.reports.sections import (
    diagnostics_section,
    fid_caption,
    provenance,
    relative,
    results_table,
    run_list,
    settings_section,
    statistics_caption,
)
from toolkit.reports.stats import estimate, family, prediction_interval

# The reference notebook's setting and its published test numbers (nats per image): a reference, not a result.
REFERENCE_SETTING = {
    "dataset": "fashion-mnist",
    "hidden": "400",
    "latent_dim": "20",
    "likelihood": "bernoulli",
    "beta": "1.0",
    "warmup_epochs": "0",
    "free_bits": "0.0",
    "batch_size": "128",
    "lr": "0.001",
}
REFERENCE_PUBLISHED = {
    "vae": {names.TEST_RECON: 225.64, names.TEST_KL: 15.74, names.TEST_NEG_ELBO: 241.38},
    "ae": {names.TEST_RECON: 213.12},
}
REFERENCE_EPOCHS = 30  # the reference notebook's run trained this many
# The samples both models draw the same way, and the sampler in words; the VAE's prior samples are shown apart.
SHARED_SAMPLERS = {
    names.SAMPLES_GAUSSIAN: "a Gaussian fitted to its codes",
    names.SAMPLES_GMM: "a 10-component GMM fitted to its codes",
}
FID_SUBJECTS = {
    names.SAMPLES: "the VAE's prior samples",
    names.AGGREGATE_POSTERIOR: "the VAE's aggregate-posterior samples",
    names.SAMPLES_GAUSSIAN: "samples from a Gaussian fitted to the codes",
    names.SAMPLES_GMM: "samples from a GMM fitted to the codes",
    names.RECONSTRUCTIONS: "reconstructions",
}
CURVES = (
    (names.RECON, "reconstruction (nats)"),
    (names.KL, "KL (nats), VAE only"),
    (names.LOSS, "loss: recon + β·KL (nats)"),
)


def build(runs: RunSet, rebuild: str) -> Document:
    vae, ae = runs.of_model("vae"), runs.of_model("ae")
    if vae.empty or ae.empty:
        raise ToolkitError(
            f"an ae-vs-vae report needs finished runs of both models; experiment "
            f"{runs.experiment!r} has {runs.describe()}"
        )
    doc = Document(f"AE vs VAE: {escape(runs.experiment)}")
    provenance(doc, runs, rebuild)
    by = ["model", *[p for p in runs.varying() if p != "model"]]
    columns, diagnostics = runs.columns(), runs.diagnostic_columns()
    settings = vae_first(runs.settings(by, columns=columns + diagnostics))
    labels = {
        "model": list(settings["model"].str.upper()),
        **{p: [shown_param(m, p, v) for m, v in zip(settings["model"], settings[p])] for p in by[1:]},
    }
    reference = is_reference_setting(runs)
    extra = (
        [
            {
                "model": f"{m.upper()}, reference notebook (published)",
                **{c.header: f"*{values[c.key]:.2f}*" for c in columns if c.key in values},
            }
            for m, values in REFERENCE_PUBLISHED.items()
        ]
        if reference
        else []
    )
    settings_section(doc, runs, columns)
    doc.heading("Results")
    doc.text(
        "Test split: reconstruction, KL and −ELBO in nats per image, MSE per pixel. "
        f"{fid_caption(columns)} {statistics_caption(settings)}"
        + (
            " The rows marked published, their numbers in *italics*, are the reference notebook's published "
            "numbers for this setting (784-400-20, Bernoulli on grey levels, β = 1, batch 128, Adam 1e-3, 30 epochs): "
            "a reference, not "
            "runs of this store."
            if reference
            else ""
        )
    )
    results_table(doc, runs, "results", settings, labels, columns, extra)
    diagnostics_section(doc, runs, settings, labels, diagnostics)
    groups = pairs_by_group(settings, by[1:])
    claims = Claims(runs)
    findings_text = claims.opening((settings["n"] > 1).any())
    for group, pair in groups.items():
        suffix = f": {group}" if group else ""
        side_by_side(doc, runs, pair, suffix, group.replace(", ", "_").replace(" ", "-") + "_" if group else "")
        findings_text.append(
            (f"**{group}.** " if group else "") + findings(runs, claims, pair, runs.latent_dim, reference, group)
        )
    if len(groups) > 1:
        findings_text.append(across(runs, claims, groups))
    doc.heading("Findings")
    doc.text("\n\n".join(findings_text))
    claims.table(doc)
    run_list(doc, runs)
    return doc


def pairs_by_group(settings: pd.DataFrame, others: list[str]) -> dict[str, dict[str, pd.Series]]:
    """The VAE and AE rows of each value of the other varied params (e.g. the architecture), keyed
    by a label like 'architecture conv' ('' when nothing else varies); values where one model is
    missing are left out."""
    groups = {}
    for key, rows in settings.groupby(others, sort=False, dropna=False) if others else [((), settings)]:
        key = key if isinstance(key, tuple) else (key,)
        if set(rows["model"]) >= {"vae", "ae"}:
            label = ", ".join(f"{p} {v}" for p, v in zip(others, key))
            groups[label] = {m: rows[rows["model"] == m].iloc[0] for m in ("vae", "ae")}
    return groups


def side_by_side(doc: Document, runs: RunSet, pair: dict[str, pd.Series], suffix: str, prefix: str):
    """Images, latent spaces and loss curves of the first run of each model in `pair`."""
    first = {m: row["run_ids"].split()[0] for m, row in pair.items()}
    images = {m: runs.images(run_id) for m, run_id in first.items()}
    doc.heading(f"Side by side{suffix}")
    doc.text(
        f"Images from the first run of each model (VAE {escape(first['vae'][:8])}, AE {escape(first['ae'][:8])}); "
        "the same test images for both."
    )
    if all(i is not None for i in images.values()):
        image_figures(doc, images, prefix)
    by_class(doc, runs, {m: row["run_ids"].split() for m, row in pair.items()}, prefix)
    for name, title in (("latent_pca", "Latent means, PCA"), ("latent_tsne", "Latent means, t-SNE")):
        pngs = {m: runs.figure_png(run_id, name) for m, run_id in first.items()}
        if all(pngs.values()):
            doc.heading(title, 3)
            doc.images_side_by_side([(m.upper(), f"{prefix}{name}_{m}.png", png) for m, png in pngs.items()])
    doc.heading("Loss curves", 3)
    ids = {m: row["run_ids"].split() for m, row in pair.items()}
    histories = runs.histories(
        [i for m in ids.values() for i in m],
        [names.of_split(split, k) for split in ("train", "val") for k, _ in CURVES],
    )
    doc.figure(
        f"{prefix}loss_curves",
        loss_curves(histories, ids),
        "loss curves of both models",
        f"Mean over the seeds; {plots.BANDS[0].lower()}{plots.BANDS[1:]}",
    )


def by_class(doc: Document, runs: RunSet, ids: dict[str, list[str]], prefix: str):
    """Each model's test reconstruction per class, and the AE's less the VAE's paired by seed."""
    classes = CLASS_NAMES.get(runs.values("dataset")[0] if runs.values("dataset") else "", ())
    values = {
        name: {m: runs.by_seed(ids[m], names.test(names.recon_class(c))) for m in ("vae", "ae")}
        for c, name in enumerate(classes)
    }
    if not all(v for by_model in values.values() for v in by_model.values()):
        return
    found = family({name: (v["ae"], v["vae"]) for name, v in values.items()}, "classes")
    rows = [
        {
            "class": name,
            **{m.upper(): f"{estimate(v.values()).mean:.1f}" for m, v in values[name].items()},
            "AE − VAE": ("**" if d.clear else "") + interval(d, ".1f") + ("**" if d.clear else ""),
        }
        for name, d in found.items()
    ]
    doc.heading("Reconstruction by class", 3)
    doc.text(
        "Test reconstruction (nats per image) of each class, mean over seeds; AE − VAE paired by seed with its "
        "interval, **bold** where it survives Holm's correction over the classes (one family), its interval at "
        "the level Holm's step gives it."
    )
    doc.table(f"{prefix}recon_by_class", pd.DataFrame(rows), markup=["AE − VAE"])


def is_reference_setting(runs: RunSet) -> bool:
    """Whether every finished run uses the reference notebook's setting (for β and its kin, every VAE run)."""
    return all(
        set(runs.param(name, runs.of_model("vae") if name in VAE_ONLY else None)) == {value}
        for name, value in REFERENCE_SETTING.items()
    )


def image_figures(doc: Document, images: dict[str, dict[str, np.ndarray]], prefix: str = ""):
    """Reconstructions, samples and interpolations of both models; files named with `prefix`."""
    vae, ae = images["vae"], images["ae"]
    rows = [("original", vae[names.ORIGINALS]), ("VAE", vae[names.RECONSTRUCTION_IMAGES])]
    if not np.array_equal(vae[names.ORIGINALS], ae[names.ORIGINALS]):
        rows.append(("original (AE)", ae[names.ORIGINALS]))
    doc.figure(
        f"{prefix}reconstructions",
        drawing.image_rows([*rows, ("AE", ae[names.RECONSTRUCTION_IMAGES])], "reconstructions"),
        "originals, VAE and AE reconstructions",
    )
    for kind, sampler in SHARED_SAMPLERS.items():  # drawn the same way for both; files samples.png, samples_gmm.png
        if all(kind in i for i in images.values()):
            grids = [(f"{m.upper()}: samples from {sampler}", images[m][kind]) for m in ("vae", "ae")]
            name = "samples" if kind == names.SAMPLES_GAUSSIAN else kind
            doc.figure(f"{prefix}{name}", drawing.image_grids(grids), f"samples of both models from {sampler}")
    prior = [("VAE: samples from its prior N(0, I), which an AE does not have", vae[names.NORMAL_PRIOR_SAMPLES])]
    doc.figure(f"{prefix}samples_prior", drawing.image_grids(prior), "the VAE's prior samples")
    doc.figure(
        f"{prefix}interpolation",
        drawing.image_rows(
            [("VAE", vae[names.INTERPOLATION]), ("AE", ae[names.INTERPOLATION])],
            "interpolation between two test images (latent means)",
        ),
        "interpolations of both models",
    )


def loss_curves(histories: pd.DataFrame, ids: dict[str, list[str]]):
    """Train (dashed) and validation (solid) curves per epoch, mean over seeds with their range."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for ax, (key, label) in zip(axes, CURVES):
        for i, (model, run_ids) in enumerate(ids.items()):
            runs = histories[histories["run_id"].isin(run_ids)]
            for split, style in (("train", "--"), ("val", "-")):
                plots.curves(
                    ax, runs, names.of_split(split, key), f"{model.upper()} {split}", color=f"C{i}", linestyle=style
                )
        ax.set(title=label.split(" (")[0], xlabel="epoch", ylabel=label)
        ax.legend()
    fig.tight_layout()
    return fig


def findings(
    runs: RunSet, claims: Claims, pair: dict[str, pd.Series], latent_dim: int, reference: bool, group: str = ""
) -> str:
    """VAE against AE on reconstruction, MSE and every FID, paired by seed; the VAE's units; the
    published numbers against this store's intervals where the setting is the reference notebook's."""
    ids = {m: row["run_ids"].split() for m, row in pair.items()}

    def comparison(key: str, what: str, fmt: str, lower_is_better: bool = True) -> Comparison:
        ae, vae = runs.by_seed(ids["ae"], key), runs.by_seed(ids["vae"], key)
        return Comparison(what, "the AE", "the VAE", ae, vae, lower_is_better, fmt, group)

    comparisons = [
        comparison(names.TEST_RECON, "reconstruction (nats)", ".2f"),
        comparison(names.TEST_MSE, "MSE per pixel", ".5f"),
    ]
    if all(runs.by_seed(i, names.TEST_PROBE_ACCURACY) for i in ids.values()):
        comparisons.append(comparison(names.TEST_PROBE_ACCURACY, "linear-probe accuracy", ".3f", False))
    for key in sorted(k for k in pair["vae"].index if names.parse_fid(k)):
        if not (np.isnan(pair["vae"][key]) or np.isnan(pair["ae"][key])):
            extractor, what = names.parse_fid(key)
            comparisons.append(comparison(key, f"FID ({extractor}) of {FID_SUBJECTS[what]}", ".1f"))
    name = "comparisons of the AE with the VAE" + (f" ({group})" if group else "")
    text = [sentence(said.text) for said in claims.compare(name, comparisons)]
    vae = pair["vae"]
    for key in (k for k in vae.index if (fid := names.parse_fid(k)) and fid.kind == names.SAMPLES):
        if not np.isnan(vae[key]):
            text.append(
                f"Apart, as an AE has none: the VAE's prior samples score FID {vae[key]:.1f} "
                f"({names.parse_fid(key).extractor}; mean over seeds), compared with no AE number."
            )
    if names.TEST_ACTIVE_UNITS in vae and not np.isnan(vae[names.TEST_ACTIVE_UNITS]):
        informative = vae.get(names.TEST_INFORMATIVE_UNITS, np.nan)
        text.append(
            f"The VAE has {vae[names.TEST_ACTIVE_UNITS]:.3g} active units of {latent_dim} (mean over seeds)"
            + ("" if np.isnan(informative) else f", {informative:.3g} of them informative")
            + "."
        )
    if reference:
        text.append(published(runs, ids))
    return " ".join(text)


def published(runs: RunSet, ids: dict[str, list[str]]) -> str:
    """The reference notebook's published numbers, each of a single run, beside this store's means
    and where one run of this store's setting would fall (`stats.prediction_interval`)."""
    parts = []
    for model, key, what in (("vae", names.TEST_NEG_ELBO, "VAE −ELBO"), ("ae", names.TEST_RECON, "AE reconstruction")):
        values = runs.by_seed(ids[model], key).values()
        mean, (low, high) = estimate(values).mean, prediction_interval(values)
        value = REFERENCE_PUBLISHED[model][key]
        inside = (
            ""
            if math.isnan(low)
            else f", {'inside' if low <= value <= high else 'outside'} its 95 % prediction interval for one run "
            f"[{low:.2f}, {high:.2f}]"
        )
        parts.append(f"{what} {mean:.2f} here against {value} published ({relative(mean, value)}{inside})")
    epochs = " / ".join(runs.values("epochs"))
    trained = f" The notebook's run trained {REFERENCE_EPOCHS} epochs, these runs at most {epochs}."
    return (
        "Against the reference notebook's single run, set beside the interval that holds one more run of this "
        "setting (mean ± t · sd · √(1 + 1/n) over the seeds): "
        + "; ".join(parts)
        + "."
        + ("" if epochs == str(REFERENCE_EPOCHS) else trained)
    )


def across(runs: RunSet, claims: Claims, groups: dict[str, dict[str, pd.Series]]) -> str:
    """Each model compared between groups (e.g. architectures) on reconstruction and every FID:
    two groups by their paired differences, all of them one family, more by the best of them
    after Holm's correction."""
    comparisons, text = [], []
    keys = [names.TEST_RECON] + sorted({k for pair in groups.values() for k in pair["vae"].index if names.parse_fid(k)})
    for model in ("vae", "ae"):
        for key in keys:
            values = {g: runs.by_seed(pair[model]["run_ids"].split(), key) for g, pair in groups.items()}
            values = {g: v for g, v in values.items() if v}
            if len(values) < 2:
                continue
            what = (
                "reconstruction (nats)"
                if key == names.TEST_RECON
                else f"FID ({names.parse_fid(key).extractor}) of {FID_SUBJECTS[names.parse_fid(key).kind]}"
            )
            what, fmt = f"the {model.upper()}'s {what}", ".2f" if key == names.TEST_RECON else ".1f"
            if len(values) == 2:
                (a, va), (b, vb) = values.items()
                comparisons.append(Comparison(what, a, b, va, vb, True, fmt))
            else:
                text.append(sentence(claims.best(what, values, True, fmt)))
    said = claims.compare("comparisons across the settings", comparisons)
    return "**Across settings.** " + " ".join([sentence(s.text) for s in said] + text)
