"""`ae-vs-vae`: AE beside VAE, as the seeds compared them: the test metrics with the better value
marked (and the seed notebook's published numbers when the setting is the seed's), then their
reconstructions, samples, interpolations, latent spaces and loss curves side by side."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit import ToolkitError
from toolkit.config import VAE_ONLY
from toolkit.reports import plots
from toolkit.reports.document import Document
from toolkit.reports.runs import RunSet, shown_param, vae_first
from toolkit.reports.sections import SAMPLES, SPREAD, provenance, relative, results_table, run_list

# The seed notebook's setting and its published test numbers (nats per image): a reference, not a result.
SEED_SETTING = {"dataset": "fashion-mnist", "hidden": "400", "latent_dim": "20", "likelihood": "bernoulli",
                "beta": "1.0", "warmup_epochs": "0", "free_bits": "0.0", "batch_size": "128", "lr": "0.001"}
SEED_PUBLISHED = {"vae": {"test/recon": 225.64, "test/kl": 15.74, "test/neg_elbo": 241.38}, "ae": {"test/recon": 213.12}}
OWN_SAMPLER = {"vae": ("samples_normal_prior", "its prior N(0, I)"),
               "ae": ("samples_fitted_gaussian", "a Gaussian fitted to its training codes")}
FID_SUBJECTS = {"samples": "each model's own samples (VAE prior, AE fitted Gaussian)",
                "samples_gmm": "samples from a GMM fitted to the codes", "recon": "reconstructions"}
CURVES = (("recon", "reconstruction (nats)"), ("kl", "KL (nats), VAE only"), ("loss", "loss: recon + β·KL (nats)"))


def build(runs: RunSet, rebuild: str) -> Document:
    vae, ae = runs.of_model("vae"), runs.of_model("ae")
    if vae.empty or ae.empty:
        raise ToolkitError(f"an ae-vs-vae report needs finished runs of both models; experiment "
                           f"{runs.experiment!r} has {runs.describe()}")
    doc = Document(f"AE vs VAE: {runs.experiment}")
    provenance(doc, runs, rebuild)
    by = ["model", *[p for p in runs.varying() if p != "model"]]
    columns = runs.columns()
    settings = vae_first(runs.settings(by, columns=columns))
    labels = {"model": list(settings["model"].str.upper()),
              **{p: [shown_param(m, p, v) for m, v in zip(settings["model"], settings[p])] for p in by[1:]}}
    seed = is_seed_setting(runs)
    extra = [{"model": f"*{m.upper()}, seed notebook (published)*",
              **{c.header: f"*{values[c.key]:.2f}*" for c in columns if c.key in values}}
             for m, values in SEED_PUBLISHED.items()] if seed else []
    doc.heading("Results")
    doc.text("Test split: reconstruction, KL and −ELBO in nats per image, MSE per pixel; the better of the "
             f"models in **bold**. {SAMPLES}{SPREAD}"
             + (" The rows in *italics* are the seed notebook's published numbers for this setting "
                "(784-400-20, Bernoulli, β = 1, batch 128, Adam 1e-3): a reference, not runs of this store."
                if seed else ""))
    results_table(doc, runs, "results", settings, labels, columns, extra, mark_better=True)
    groups = paired(settings, by[1:])
    findings_text = []
    for group, pair in groups.items():
        suffix = f": {group}" if group else ""
        side_by_side(doc, runs, pair, suffix, group.replace(", ", "_").replace(" ", "-") + "_" if group else "")
        findings_text.append((f"**{group}.** " if group else "") + findings(pair, runs.latent_dim, seed))
    if len(groups) > 1:
        findings_text.append(across(groups))
    doc.heading("Findings")
    doc.text("\n\n".join(findings_text))
    run_list(doc, runs)
    return doc


def paired(settings: pd.DataFrame, others: list[str]) -> dict[str, dict[str, pd.Series]]:
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
    doc.text(f"Images from the first run of each model (VAE {first['vae'][:8]}, AE {first['ae'][:8]}); "
             "the same test images for both.")
    if all(i is not None for i in images.values()):
        image_figures(doc, images, prefix)
    for name, title in (("latent_pca", "Latent means, PCA"), ("latent_tsne", "Latent means, t-SNE")):
        pngs = {m: runs.figure_png(run_id, name) for m, run_id in first.items()}
        if all(pngs.values()):
            doc.heading(title, 3)
            doc.images_side_by_side([(m.upper(), f"{prefix}{name}_{m}.png", png) for m, png in pngs.items()])
    doc.heading("Loss curves", 3)
    ids = {m: row["run_ids"].split() for m, row in pair.items()}
    histories = runs.histories([i for m in ids.values() for i in m],
                               [f"{split}/{k}" for split in ("train", "val") for k, _ in CURVES])
    doc.figure(f"{prefix}loss_curves", loss_curves(histories, ids), "loss curves of both models")


def is_seed_setting(runs: RunSet) -> bool:
    """Whether every finished run uses the seed notebook's setting (for β and its kin, every VAE run)."""
    return all(set(runs.param(name, runs.of_model("vae") if name in VAE_ONLY else None)) == {value}
               for name, value in SEED_SETTING.items())


def image_figures(doc: Document, images: dict[str, dict[str, np.ndarray]], prefix: str = ""):
    """Reconstructions, samples and interpolations of both models; files named with `prefix`."""
    vae, ae = images["vae"], images["ae"]
    rows = [("original", vae["originals"]), ("VAE", vae["reconstructions"])]
    if not np.array_equal(vae["originals"], ae["originals"]):
        rows.append(("original (AE)", ae["originals"]))
    doc.figure(f"{prefix}reconstructions", plots.image_rows([*rows, ("AE", ae["reconstructions"])], "reconstructions"),
               "originals, VAE and AE reconstructions")
    own = [(f"{m.upper()}: samples from {OWN_SAMPLER[m][1]}", images[m][OWN_SAMPLER[m][0]]) for m in ("vae", "ae")]
    doc.figure(f"{prefix}samples", plots.image_grids(own), "samples of both models")
    if all("samples_gmm" in i for i in images.values()):
        gmm = [(f"{m.upper()}: samples from a 10-component GMM fitted to its codes", images[m]["samples_gmm"])
               for m in ("vae", "ae")]
        doc.figure(f"{prefix}samples_gmm", plots.image_grids(gmm), "GMM samples of both models")
    doc.figure(f"{prefix}interpolation", plots.image_rows([("VAE", vae["interpolation"]), ("AE", ae["interpolation"])],
                                                 "interpolation between two test images (latent means)"),
               "interpolations of both models")


def loss_curves(histories: pd.DataFrame, ids: dict[str, list[str]]):
    """Train (dashed) and validation (solid) curves per epoch, mean over seeds with their range."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for ax, (key, label) in zip(axes, CURVES):
        for i, (model, run_ids) in enumerate(ids.items()):
            runs = histories[histories["run_id"].isin(run_ids)]
            for split, style in (("train", "--"), ("val", "-")):
                plots.curves(ax, runs, f"{split}/{key}", f"{model.upper()} {split}", color=f"C{i}", linestyle=style)
        ax.set(title=label.split(" (")[0], xlabel="epoch", ylabel=label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def findings(pair: dict[str, pd.Series], latent_dim: int, seed: bool) -> str:
    vae, ae = pair["vae"], pair["ae"]
    better = "AE" if ae["test/recon"] < vae["test/recon"] else "VAE"
    low, high = sorted([ae["test/recon"], vae["test/recon"]])
    text = [f"The {better} reconstructs better: {low:.1f} against {high:.1f} nats of test reconstruction "
            f"({relative(low, high)}){_spread(vae, ae, 'test/recon')}; MSE per pixel {ae['test/mse']:.5f} (AE) "
            f"against {vae['test/mse']:.5f} (VAE)."]
    for key in sorted(k for k in vae.index if k.startswith("fid/") and not k.endswith("_std")):
        extractor, what = key.split("/")[1:]
        if np.isnan(vae[key]) or np.isnan(ae[key]):
            continue
        winner = "AE" if ae[key] < vae[key] else "VAE"
        text.append(f"By FID ({extractor}) of {FID_SUBJECTS[what]}, the {winner} is better: VAE {vae[key]:.1f}, "
                    f"AE {ae[key]:.1f}{_spread(vae, ae, key)}.")
    if "test/active_units" in vae and not np.isnan(vae["test/active_units"]):
        units = vae["test/active_units"]
        text.append(f"The VAE uses {units:.3g} of its {latent_dim} latent dimensions (active units); "
                    f"{latent_dim - units:.3g} have collapsed to the prior.")
    if seed:
        published = {m: SEED_PUBLISHED[m][k] for m, k in (("vae", "test/neg_elbo"), ("ae", "test/recon"))}
        text.append(f"Against the seed notebook: VAE −ELBO {vae['test/neg_elbo']:.2f} vs {published['vae']} "
                    f"({relative(vae['test/neg_elbo'], published['vae'])}), AE reconstruction "
                    f"{ae['test/recon']:.2f} vs {published['ae']} ({relative(ae['test/recon'], published['ae'])}).")
    return " ".join(text)


def across(groups: dict[str, dict[str, pd.Series]]) -> str:
    """Each model compared between groups (e.g. architectures) on reconstruction and every FID:
    the best group, and whether its lead over the next is clear of the seed-to-seed spread."""
    text = []
    keys = ["test/recon"] + sorted({k for pair in groups.values() for k in pair["vae"].index
                                    if k.startswith("fid/") and not k.endswith("_std")})
    for model in ("vae", "ae"):
        for key in keys:
            rows = {g: pair[model] for g, pair in groups.items() if not np.isnan(pair[model].get(key, np.nan))}
            if len(rows) < 2:
                continue
            best, second = sorted(rows, key=lambda g: rows[g][key])[:2]
            what = "reconstruction (nats)" if key == "test/recon" else \
                f"FID ({key.split('/')[1]}) of {FID_SUBJECTS[key.split('/')[2]]}"
            shown = ", ".join(f"{g} {row[key]:.1f}" for g, row in rows.items())
            text.append(f"{model.upper()}, {what}: {shown}; lowest {best}{_spread(rows[best], rows[second], key)}.")
    return "**Across settings.** " + " ".join(text)


def _spread(a: pd.Series, b: pd.Series, key: str) -> str:
    """How the gap between two settings compares with the seed-to-seed spread, when there are several seeds."""
    spreads = [s for s in (a.get(f"{key}_std"), b.get(f"{key}_std")) if s is not None and not np.isnan(s)]
    spread = max(spreads, default=0.0)
    if spread == 0:
        return ""
    ratio = abs(a[key] - b[key]) / spread
    if ratio < 2:
        return f"; but the gap is only {ratio:.1f}× the larger seed-to-seed standard deviation: not a clear difference"
    return f"; the gap is {ratio:.0f}× the larger seed-to-seed standard deviation"
