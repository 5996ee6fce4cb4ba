"""Calibrated comparisons and converged runs in the reports, on stores of made-up runs (no
training): AE and VAE samples set side by side only when drawn the same way, the real-data and
pixel baselines beside the models' scores, the Bernoulli terms above their floor, the IW bound's
standard error, a single published run against a prediction interval, and how many runs of each
setting converged."""

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from synthetic import fake_study

from toolkit import fid, names
from toolkit.config import RunConfig
from toolkit.reports import build_report
from toolkit.reports.ae_vs_vae import REFERENCE_PUBLISHED
from toolkit.reports.stats import prediction_interval
from toolkit.store import writing

SEEDS = (1, 2, 3)
EXTRACTOR = "fmnist-cnn"
# each kind's FID far from the others', so that a comparison of two kinds cannot pass for one of one kind
VAE_FID = {names.SAMPLES: 100.0, names.SAMPLES_GAUSSIAN: 80.0, names.SAMPLES_GMM: 60.0, names.RECONSTRUCTIONS: 30.0}
AE_FID = {names.SAMPLES_GAUSSIAN: 71.0, names.SAMPLES_GMM: 49.0, names.RECONSTRUCTIONS: 18.0}
REAL = {"precision": 0.71, "recall": 0.69, "probe": 0.799}


def table(doc, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(doc.files[f"{name}.csv"]))


def reference_run() -> str:
    """A FID reference run, as `fid.real_metrics` leaves one: the floor and what real images score."""
    client = writing.writer()
    run = client.create_run(writing.experiment_id(fid.REFERENCE_EXPERIMENT)).info.run_id
    metrics = {
        names.fid_floor(EXTRACTOR): 1.5,
        names.precision(EXTRACTOR, names.REAL): REAL["precision"],
        names.recall(EXTRACTOR, names.REAL): REAL["recall"],
        names.PIXEL_PROBE_ACCURACY: REAL["probe"],
    }
    for key, value in metrics.items():
        client.log_metric(run, key, value)
    client.set_terminated(run)
    return run


def sample_metrics(fids: dict[str, float], seed: int) -> dict[str, float]:
    """FID, precision and recall of each kind, a little different at each seed."""
    found = {}
    for kind, value in fids.items():
        found[names.fid(EXTRACTOR, kind)] = value + 0.3 * seed
        if kind != names.RECONSTRUCTIONS:
            found[names.precision(EXTRACTOR, kind)] = 0.5 + 0.01 * seed
            found[names.recall(EXTRACTOR, kind)] = 0.3 + 0.01 * seed
    return found


def ae_vs_vae(name: str, unconverged: dict[str, set[int]] = None, bound_se: float | None = None) -> str:
    """An AE and a VAE at the reference notebook's setting, a run per seed; the runs of the seeds in
    `unconverged[model]` stopped at their epoch limit, the others converged."""
    reference, runs = reference_run(), []
    for model in ("vae", "ae"):
        for seed in SEEDS:
            recon = (225.0 if model == "vae" else 213.27) + 0.1 * seed  # the AE's mean 0.35 above the published
            metrics = {
                names.TEST_RECON: recon,
                names.TEST_MSE: recon / 20_000,
                names.TEST_PIXEL_ENTROPY: 189.9,
                names.TEST_PROBE_ACCURACY: 0.79 + 0.001 * seed,
                names.CONVERGED: float(seed not in (unconverged or {}).get(model, ())),
                **sample_metrics(VAE_FID if model == "vae" else AE_FID, seed),
            }
            if model == "vae":
                metrics |= {names.TEST_KL: 16.0, names.TEST_NEG_ELBO: recon + 16, names.TEST_NLL_IW: recon + 14}
                metrics |= {names.TEST_NLL_IW_SE: bound_se} if bound_se else {}
            runs.append((RunConfig(model=model, seed=seed), metrics))
    fake_study(name, runs, tags=[{names.reference_run(EXTRACTOR): reference}] * len(runs))
    return name


def fid_comparisons(doc) -> pd.DataFrame:
    rows = table(doc, "comparisons")
    return rows[rows["what"].str.contains("FID")]


def difference(rows: pd.DataFrame, what: str, b: str | None = None) -> float:
    """The mean a − b of the one comparison among `rows` whose `what` says `what` (and whose b is `b`)."""
    chosen = rows[rows["what"].str.contains(what) & ((rows["b"] == b) if b else True)]
    (text,) = chosen["a − b"]
    return float(re.match(r"[+-]?[\d.]+", text.replace("−", "-")).group())


def test_every_comparison_of_ae_against_vae_samples_sets_the_same_sampler_on_both_sides(store):
    doc = build_report("ae-vs-vae", ae_vs_vae("same-sampler"))
    rows = fid_comparisons(doc)
    words = {names.SAMPLES_GAUSSIAN: "Gaussian", names.SAMPLES_GMM: "GMM", names.RECONSTRUCTIONS: "reconstructions"}
    assert len(rows) == len(words)
    for kind, word in words.items():  # the AE's kind less the VAE's same kind
        assert difference(rows, word) == pytest.approx(AE_FID[kind] - VAE_FID[kind])
    results = table(doc, "results").set_index("model")
    assert math.isnan(results.loc["ae", names.fid(EXTRACTOR, names.SAMPLES)])  # the prior's column: VAE only
    assert "Apart, as an AE has none: the VAE's prior samples score FID 100.6" in doc.markdown()


def test_the_ae_is_compared_with_every_beta_on_samples_drawn_the_same_way(store):
    runs, reference = [], reference_run()
    for seed in SEEDS:
        for beta in (0.5, 2.0):
            fids = {kind: value + 10 * beta for kind, value in VAE_FID.items()}
            metrics = {"test/kl": 30 / beta + 0.1 * seed, "test/recon": 220 + 4 * beta + 0.1 * seed}
            metrics |= {names.test(names.kl_dim(d)): 1.5 / beta for d in range(20)}
            runs.append((RunConfig(beta=beta, seed=seed), metrics | sample_metrics(fids, seed)))
        runs.append((RunConfig(model="ae", seed=seed), {"test/recon": 210 + 0.1 * seed} | sample_metrics(AE_FID, seed)))
    fake_study("beta-samplers", runs, tags=[{names.reference_run(EXTRACTOR): reference}] * len(runs))
    rows = fid_comparisons(build_report("beta-sweep", "beta-samplers"))
    against_ae = rows[rows["a"] == "AE"]
    assert len(against_ae) == 2 * 3  # fitted Gaussian, GMM, reconstructions, each against both β
    assert not against_ae["what"].str.contains("prior").any()
    for kind, word in {names.SAMPLES_GAUSSIAN: "fitted-Gaussian", names.SAMPLES_GMM: "GMM"}.items():
        for beta in (0.5, 2.0):
            found = difference(against_ae, word, f"β = {beta:g}")
            assert found == pytest.approx(AE_FID[kind] - VAE_FID[kind] - 10 * beta)


def test_real_data_scores_sit_beside_the_models_precision_recall_and_probe(store):
    doc = build_report("ae-vs-vae", ae_vs_vae("real-data"))
    text = doc.markdown().split("## Latent space and samples")[1].split("\n## ")[0]
    (row,) = [line for line in text.splitlines() if line.startswith("| real data, no model |")]
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    cells = dict(zip(header.split("|"), row.split("|")))
    for kind in ("prior samples", "fitted-Gaussian samples", "GMM samples"):
        assert cells[f" precision, {kind} ({EXTRACTOR}) "].strip() == f"*{REAL['precision']:.3f}*"
        assert cells[f" recall, {kind} ({EXTRACTOR}) "].strip() == f"*{REAL['recall']:.3f}*"
    assert cells[" linear probe accuracy "].strip() == f"*{REAL['probe']:.3f}*"


def test_bernoulli_reconstruction_and_elbo_are_also_shown_above_the_pixel_entropy(store):
    results = table(build_report("ae-vs-vae", ae_vs_vae("excess")), "results").set_index("model")
    np.testing.assert_allclose(results[names.RECON_EXCESS], results[names.TEST_RECON] - 189.9)
    assert results.loc["vae", names.NEG_ELBO_EXCESS] == pytest.approx(results.loc["vae", names.TEST_NEG_ELBO] - 189.9)


def test_the_iw_bounds_standard_error_is_a_column_and_a_subset_is_not_called_every_test_image(store):
    doc = build_report("ae-vs-vae", ae_vs_vae("bound-se", bound_se=0.07))
    assert table(doc, "results").set_index("model").loc["vae", names.TEST_NLL_IW_SE] == pytest.approx(0.07)
    settings = doc.markdown().split("## Settings")[1].split("## Results")[0]
    row = next(line for line in settings.splitlines() if line.startswith("| IW bound"))
    assert "per test image" not in row and "computed on 2000 test images drawn at random" in row


def test_a_prediction_interval_for_one_run_is_the_mean_plus_minus_t_sd_root_one_plus_one_over_n():
    values = [241.2, 241.9, 240.8, 241.5]
    n, mean, sd = len(values), np.mean(values), np.std(values, ddof=1)
    half = scipy.stats.t.ppf(0.975, n - 1) * sd * math.sqrt(1 + 1 / n)
    assert prediction_interval(values) == pytest.approx((mean - half, mean + half))
    low, high = scipy.stats.ttest_1samp(values, 0).confidence_interval(0.95)
    assert prediction_interval(values)[0] < low and high < prediction_interval(values)[1]  # wider than the mean's
    assert all(math.isnan(v) for v in prediction_interval([241.0]))


def test_the_published_single_run_is_set_against_the_prediction_interval_not_the_interval_of_the_mean(store):
    text = build_report("ae-vs-vae", ae_vs_vae("published")).markdown()
    recon = [213.27 + 0.1 * seed for seed in SEEDS]
    low, high = prediction_interval(recon)
    published = REFERENCE_PUBLISHED["ae"][names.TEST_RECON]
    assert low <= published <= high and published < scipy.stats.ttest_1samp(recon, 0).confidence_interval().low
    assert f"AE reconstruction 213.47 here against {published} published (+0.16%, inside its 95 % prediction " in text
    assert f"interval for one run [{low:.2f}, {high:.2f}]" in text


def test_each_setting_says_how_many_of_its_runs_converged_and_their_comparisons_are_marked(store):
    doc = build_report("ae-vs-vae", ae_vs_vae("converged", unconverged={"vae": {2}}))
    text = doc.markdown()
    results = text.split("## Results")[1].split("\n## ")[0]
    header, _, *lines = [line for line in results.splitlines() if line.startswith("| ")]
    column = [c.strip() for c in header.split("|")].index("converged")
    cells = {line.split("|")[1].strip(): line.split("|")[column].strip() for line in lines}
    assert cells["VAE"] == "2/3" and cells["AE"] == "3/3"
    settings = text.split("## Settings")[1].split("## Results")[0]
    assert "5 of 6 converged: early stopping" in settings
    rows = table(doc, "comparisons")
    assert (rows["converged"] == "not all: the VAE 1 of 3 runs not converged").all()
    assert "runs that did not converge: the VAE 1 of 3" in text.split("## Findings")[1]
    assert (table(build_report("ae-vs-vae", ae_vs_vae("all-converged")), "comparisons")["converged"] == "all").all()
