"""The anchor study's measurement and report, on a linear VAE trained for one epoch on tiny data."""

import math

import pytest
from mlflow import MlflowClient

from toolkit import ToolkitError, names
from toolkit.anchor import anchor_run
from toolkit.config import RunConfig
from toolkit.reports import write_report

TINY_LINEAR = RunConfig(
    architecture="linear",
    likelihood="gaussian",
    decoder_scale="learned",
    latent_dim=2,
    epochs=1,
    fid="off",
    figures="off",
    iw_samples=10,
)
KS = (1, 10, 100)


@pytest.fixture
def anchored(store, tiny_data):
    """A store with one measured linear run in the experiment `anchor`: (its id, its metrics)."""
    run_id = anchor_run(TINY_LINEAR, "anchor", KS, tiny_data)
    return run_id, MlflowClient(store).get_run(run_id).data.metrics


def test_the_anchor_logs_the_exact_likelihood_and_the_bound_at_each_k_into_the_run(anchored):
    _, metrics = anchored
    exact, elbo = metrics[names.ANCHOR_NLL_EXACT], metrics[names.ANCHOR_NEG_ELBO_EXACT]
    assert elbo >= exact and all(math.isfinite(metrics[names.anchor_nll_iw_gap_se(k)]) for k in KS)
    bounds = [metrics[names.anchor_nll_iw(k)] for k in KS]
    assert bounds == sorted(bounds, reverse=True) and bounds[-1] >= exact - 1e-3


def test_a_second_call_finds_the_measured_run_and_trains_nothing(anchored, store, tiny_data):
    run_id, _ = anchored
    assert anchor_run(TINY_LINEAR, "anchor", KS, tiny_data) == run_id
    assert (
        len(MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("anchor").experiment_id])) == 1
    )


def test_the_report_shows_the_stores_numbers_and_the_figure(anchored, tmp_path):
    run_id, metrics = anchored
    doc, path = write_report("anchor", "anchor", out=tmp_path / "report")
    text = path.read_text()
    assert text.startswith("<!--") and "# Likelihood anchor: anchor" in text
    assert f"| exact -log p(x), closed form | {metrics[names.ANCHOR_NLL_EXACT]:.3f} |" in text
    for k in KS:
        assert f"| IW bound, K = {k:,} | {metrics[names.anchor_nll_iw(k)]:.3f} |" in text
    assert "no published number is quoted" in text and run_id[:8] in text
    assert (tmp_path / "report" / "iw_against_k.png").stat().st_size > 0


def test_an_experiment_without_a_measured_run_is_refused_in_one_line(store, tiny_data, tmp_path):
    from toolkit.pipeline import train_run

    train_run(TINY_LINEAR, "plain", tiny_data, quiet=True)
    with pytest.raises(ToolkitError, match="an anchor report needs a finished linear-Gaussian run measured"):
        write_report("anchor", "plain", out=tmp_path / "report")
