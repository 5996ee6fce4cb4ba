"""`anchor`: the likelihood code against a known truth. A linear-Gaussian VAE's exact test
log-likelihood and ELBO (`toolkit.ppca`) beside the toolkit's IW bound at each K on every test image
(`toolkit.anchor`), the bound against K with the exact line, and where the experiment has one, a
dynamically binarised run beside the published likelihood it is meant to be set against."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from toolkit import ToolkitError, names
from toolkit.reports.document import Document, escape, markdown_table
from toolkit.reports.runs import RunSet
from toolkit.reports.sections import link, provenance, run_list, settings_section

WITHIN = 3  # standard errors: a mean gap within this many of a limit is consistent with it
Z95 = 1.96  # the error bars' half-width in standard errors
# The published reference the `--published` run of studies/anchor.py is meant for: a cited fact, not a result.
PUBLISHED_REFERENCE = (
    "Bauer and Mnih (2019), *Resampled Priors for Variational Autoencoders*, AISTATS 2019, PMLR 89:66–75 "
    "(arXiv:1810.11428), report test log-likelihoods on dynamically binarised Fashion-MNIST for a VAE with a "
    "standard normal prior and MLP encoder and decoder, beside their learned-acceptance (LARS) prior. Its "
    "table could not be read where this report was written (only the paper's opening pages were reachable), "
    "so no published number is quoted here: none is typed from memory. Before a number is set beside this "
    "store's, its architecture, latent size, K and stated uncertainty must be read from the paper and the "
    "run's settings matched to them."
)


def build(runs: RunSet, rebuild: str) -> Document:
    run = anchored_run(runs)
    metrics = {k.removeprefix("metrics."): v for k, v in run.items() if k.startswith("metrics.") and pd.notna(v)}
    ks = sorted(k for key in metrics if (k := names.parse_anchor_nll_iw(key)) is not None)
    doc = Document(f"Likelihood anchor: {escape(runs.experiment)}")
    provenance(doc, runs, rebuild)
    doc.heading("Findings")
    doc.text(findings(metrics, ks))
    doc.figure(
        "iw_against_k",
        against_k(metrics, ks),
        "the IW bound against K with the exact -log p(x) and the exact -ELBO, and its gap to the exact value",
        f"Error bars: ± {Z95} standard errors of the mean gap to the exact value, over the test images.",
    )
    doc.heading("The bound at each K")
    doc.text(
        f"Run {link(runs, run['run_id'])}: a linear VAE with a Gaussian likelihood, whose decoder is probabilistic "
        "PCA's generative model x = Wz + b + σε, so that log p(x) = log N(x; b, WWᵀ + σ²I) and the ELBO of its "
        "diagonal encoder are known in closed form. Nats per test image (of a density of grey levels: they can be "
        "negative), means over every test image; the gap is the bound less the exact -log p(x), with the standard "
        "error of its mean over the images (the Monte Carlo noise of each image's bound and the spread between "
        "images). The bounds here are computed in fp32 (`toolkit.anchor.measure` says why); the run's own bound, "
        "which may run in bf16, is set beside them in the findings."
    )
    table = bound_table(metrics, ks)
    doc.table("bounds", table.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v), table)
    doc.heading("A published likelihood")
    doc.text(published(runs))
    settings_section(doc, runs, runs.columns())
    run_list(doc, runs)
    return doc


def anchored_run(runs: RunSet) -> pd.Series:
    """The latest finished run that `toolkit.anchor` measured."""
    key = f"metrics.{names.ANCHOR_NLL_EXACT}"
    measured = runs.finished[runs.finished[key].notna()] if key in runs.finished else runs.finished.iloc[:0]
    if measured.empty:
        raise ToolkitError(
            "an anchor report needs a finished linear-Gaussian run measured by `python studies/anchor.py`; "
            f"experiment {runs.experiment!r} has {runs.describe()}"
        )
    return measured.iloc[-1]


def gap(metrics: dict, k: int) -> tuple[float, float]:
    """The bound at K less the exact -log p(x), and its standard error."""
    return metrics[names.anchor_nll_iw(k)] - metrics[names.ANCHOR_NLL_EXACT], metrics[names.anchor_nll_iw_gap_se(k)]


def bound_table(metrics: dict, ks: list[int]) -> pd.DataFrame:
    """One row per estimate: its nats, its gap to the exact value and that gap's standard error."""
    exact, elbo = metrics[names.ANCHOR_NLL_EXACT], metrics[names.ANCHOR_NEG_ELBO_EXACT]
    rows = [("exact -log p(x), closed form", exact, 0.0, 0.0)]
    rows.append(("exact -ELBO, closed form", elbo, elbo - exact, metrics[names.ANCHOR_NEG_ELBO_GAP_SE]))
    rows += [(f"IW bound, K = {k:,}", metrics[names.anchor_nll_iw(k)], *gap(metrics, k)) for k in ks]
    return pd.DataFrame(rows, columns=["estimate", "nats", "gap to exact", "standard error of the gap"])


def against_k(metrics: dict, ks: list[int]):
    """Left, the bound against K (log axis) with its error bars, the exact -log p(x) and the exact
    -ELBO as lines; right, its gap to the exact value on log axes (a gap at or under 0 is not drawn)."""
    fig, (bounds, gaps) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    found = [gap(metrics, k) for k in ks]
    errors = [Z95 * se for _, se in found]
    bounds.errorbar(ks, [metrics[names.anchor_nll_iw(k)] for k in ks], yerr=errors, marker="o", capsize=3)
    bounds.axhline(metrics[names.ANCHOR_NLL_EXACT], color="black", label="exact -log p(x)")
    bounds.axhline(metrics[names.ANCHOR_NEG_ELBO_EXACT], color="grey", linestyle="--", label="exact -ELBO")
    bounds.set(ylabel="nats per test image", title="IW bound (toolkit)")
    gaps.errorbar(ks, [g for g, _ in found], yerr=errors, marker="o", capsize=3)
    gaps.axhline(metrics[names.ANCHOR_NEG_ELBO_EXACT] - metrics[names.ANCHOR_NLL_EXACT], color="grey", linestyle="--")
    gaps.set(yscale="log", ylabel="nats above the exact -log p(x)", title="its gap to the exact value")
    for ax in (bounds, gaps):
        ax.set(xscale="log", xlabel="K (importance samples per image)")
        ax.set_xticks(ks, [f"{k:,}" for k in ks])
        ax.minorticks_off()
    bounds.legend()
    fig.tight_layout()
    return fig


def between(gap_: float, se: float, elbo_gap: float) -> bool:
    """Whether a mean gap lies in [0, the exact -ELBO's gap], within WITHIN standard errors."""
    return -WITHIN * se <= gap_ <= elbo_gap + WITHIN * se


def findings(metrics: dict, ks: list[int]) -> str:
    """What the bound does as K grows, whether it stays between the exact -ELBO and the exact value,
    how the run's own logged bound and ELBO compare, and how far training got from pPCA's best fit."""
    exact, elbo = metrics[names.ANCHOR_NLL_EXACT], metrics[names.ANCHOR_NEG_ELBO_EXACT]
    first, last = gap(metrics, ks[0]), gap(metrics, ks[-1])
    text = [
        f"On every test image the toolkit's IW bound goes from {metrics[names.anchor_nll_iw(ks[0])]:.3f} nats at "
        f"K = {ks[0]:,} to {metrics[names.anchor_nll_iw(ks[-1])]:.3f} at K = {ks[-1]:,}, against the exact "
        f"-log p(x) of {exact:.3f}: its gap falls from {first[0]:.3f} ± {first[1]:.3f} to "
        f"{last[0]:.3f} ± {last[1]:.3f} nats (± one standard error)."
    ]
    outside = [k for k in ks if not between(*gap(metrics, k), elbo - exact)]
    text.append(
        f"At every K it lies between the exact -log p(x) and the exact -ELBO ({elbo:.3f}) within {WITHIN} "
        "standard errors."
        if not outside
        else f"**At K = {', '.join(f'{k:,}' for k in outside)} it lies outside the exact -log p(x) and the exact "
        f"-ELBO ({elbo:.3f}) by more than {WITHIN} standard errors.**"
    )
    if ks[0] == 1:
        difference = first[0] - (elbo - exact)
        agree = abs(difference) <= WITHIN * first[1]
        text.append(
            f"At K = 1 the bound is a one-sample ELBO: it {'agrees with' if agree else '**differs from**'} the exact "
            f"-ELBO ({difference:+.3f} nats{'' if agree else f', more than {WITHIN} standard errors'})."
        )
    if names.TEST_NLL_IW in metrics and 100 in ks:
        se = metrics.get(names.TEST_NLL_IW_SE)
        text.append(
            f"The run's own bound, logged as every run's (`{names.TEST_NLL_IW}`), is {metrics[names.TEST_NLL_IW]:.3f}"
            + (f" ± {se:.3f}" if se is not None else "")
            + f" nats, against {metrics[names.anchor_nll_iw(100)]:.3f} at K = 100 on every image here."
        )
    fit = metrics.get(names.ANCHOR_NLL_PPCA_FIT)
    if fit is not None:
        text.append(
            "Probabilistic PCA fitted in closed form to the same training images (Tipping and Bishop 1999) "
            f"has an exact test -log p(x) of {fit:.3f} nats: the VAE's training ended {exact - fit:+.3f} nats from it."
        )
    return " ".join(text)


def published(runs: RunSet) -> str:
    """The published reference, and this store's dynamically binarised runs with their IW bounds."""
    binarised = runs.finished[runs.param("binarize") == "dynamic"]
    if binarised.empty:
        ours = (
            "This store has no dynamically binarised run to set beside it; `python studies/anchor.py --published` "
            "trains one (the configuration `toolkit.anchor.COMPARISON`)."
        )
    else:
        rows = [
            (
                link(runs, row["run_id"]),
                row.get(f"tags.{names.NOTE}", ""),
                f"{row.get(f'metrics.{names.TEST_NLL_IW}', float('nan')):.2f}",
                row.get("params.iw_samples", ""),
            )
            for _, row in binarised.iterrows()
        ]
        ours = "This store's dynamically binarised runs, their IW bound on the test images:\n\n" + markdown_table(
            pd.DataFrame(rows, columns=["run", "model", "IW bound (nats)", "K"]), markup=["run"]
        )
    return f"{PUBLISHED_REFERENCE}\n\n{ours}"
