"""The real `toolkit train` command on real Fashion-MNIST, read back from the MLflow store."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TOOLKIT
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from toolkit.config import VAE_ONLY, RunConfig
from toolkit.data import load_splits
from toolkit.evaluate import elbo_metrics
from toolkit.models import build
from toolkit.store.reading import load_model

pytestmark = pytest.mark.slow  # the real command end to end on real Fashion-MNIST

EPOCHS, LIMIT, LATENT = 2, 2000, 6
FID_SAMPLES, IW_SAMPLES = 1000, 20
EPOCH_METRICS = [
    "train/loss",
    "train/recon",
    "train/kl",
    "val/loss",
    "val/recon",
    "val/kl",
    "val/mse",
    "val/active_units",
    "beta_eff",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data):
    """Train a VAE and an AE with the real command into a private store; return (uri, runs, stderr).

    The VAE asks for Inception FID with an unusable weights file (the run must still finish);
    each scores samples from a Gaussian and a GMM fitted to its codes.
    """
    root = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    (root / "garbage.pth").write_bytes(b"not a state dict")
    extra = {
        "vae": ["--fid", "inception", "--fid-weights", str(root / "garbage.pth"), "--iw-samples", str(IW_SAMPLES)],
        "ae": [],
    }
    stderr = {}
    for model in ("vae", "ae"):
        stderr[model] = subprocess.run(
            [
                TOOLKIT,
                "train",
                "--model",
                model,
                "--epochs",
                str(EPOCHS),
                "--limit",
                str(LIMIT),
                "--latent-dim",
                str(LATENT),
                "--data-dir",
                str(real_data),
                "--experiment",
                "e2e",
                "--fid-samples",
                str(FID_SAMPLES),
                "--quiet",
                *extra[model],
            ],
            check=True,
            env=env,
            cwd=root,
            timeout=900,
            capture_output=True,
            text=True,
        ).stderr
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["e2e"])
    return uri, {row["params.model"]: row for _, row in runs.iterrows()}, stderr


def test_both_runs_finished_with_the_params_their_model_uses_a_description_and_tags(trained):
    _, runs, _ = trained
    assert set(runs) == {"vae", "ae"}
    for model, run in runs.items():
        assert run["status"] == "FINISHED"
        assert run["params.epochs"] == str(EPOCHS) and run["params.limit"] == str(LIMIT)
        for param in ("latent_dim", "hidden", "likelihood", "batch_size", "lr", "patience", "seed", "dataset"):
            assert isinstance(run[f"params.{param}"], str)
        for param in VAE_ONLY:  # an AE has no β, warm-up, free bits or IW bound: it does not pretend to
            assert isinstance(run[f"params.{param}"], str) == (model == "vae")
        assert run["tags.model"] == model and run["tags.dataset"] == "fashion-mnist"
        assert len(run["tags.git_commit"]) > 0
        assert run["tags.mlflow.runName"] == {"vae": f"vae-z{LATENT}-beta1", "ae": f"ae-z{LATENT}"}[model]
        note = run["tags.mlflow.note.content"]
        assert note.startswith(f"{model.upper()} with a {LATENT}-d latent (MLP 784-400-{LATENT})")
        assert note.endswith(f"; {LIMIT:,} training images.")


def test_vae_logs_every_epoch_metric_and_every_kl_dimension(trained):
    uri, runs, _ = trained
    client = MlflowClient(uri)
    run_id = runs["vae"]["run_id"]
    keys = EPOCH_METRICS + [f"val/kl_dim/{d:02d}" for d in range(LATENT)]
    for key in keys:
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, EPOCHS + 1)), key
    for key in ("test/neg_elbo", "test/recon", "test/kl", "test/mse", "test/active_units", "test/kl_dim/05"):
        assert runs["vae"][f"metrics.{key}"] > 0
    vae = runs["vae"]
    assert vae["metrics.test/neg_elbo"] == pytest.approx(vae["metrics.test/recon"] + vae["metrics.test/kl"])


def test_every_run_logs_the_diagnostics_of_its_codes_and_samples_and_a_vae_its_rate_split(trained):
    _, runs, _ = trained
    for model, run in runs.items():
        assert 0.1 < run["metrics.test/probe_accuracy"] <= 1
        classes = [run[f"metrics.test/recon_class/{c:02d}"] for c in range(10)]
        assert min(classes) < run["metrics.test/recon"] < max(classes)
        prior = ("samples", "aggregate_posterior") if model == "vae" else ()
        for kind in ("samples_fitted_gaussian", "samples_gmm", *prior):
            assert 0 <= run[f"metrics.precision/fmnist-cnn/{kind}"] <= 1
            assert 0 <= run[f"metrics.recall/fmnist-cnn/{kind}"] <= 1
        assert run["metrics.nearest/pixels/samples"] > 0.5 and run["metrics.nearest/fmnist-cnn/samples"] > 0.5
    vae = runs["vae"]
    assert (
        0
        < vae["metrics.test/mutual_info_mixture"]
        <= vae["metrics.test/mutual_info_ceiling"]
        == pytest.approx(np.log(10_000))
    )
    assert vae["metrics.test/mutual_info_pooled_ceiling"] > vae["metrics.test/mutual_info_ceiling"]  # training pooled
    low, high = vae["metrics.test/mutual_info_low"], vae["metrics.test/mutual_info_high"]
    assert 0 < low <= vae["metrics.test/mutual_info_pooled"] and low < high <= vae["metrics.test/kl"] + 0.5
    assert low + vae["metrics.test/marginal_kl_high"] == pytest.approx(vae["metrics.test/kl"], abs=1e-3)
    assert vae["metrics.test/informative_units"] == sum(
        vae[f"metrics.test/mutual_info_dim_low/{d:02d}"] > 0.1 for d in range(LATENT)
    )
    assert all(vae[f"metrics.test/marginal_kl_dim/{d:02d}"] >= -0.05 for d in range(LATENT))
    assert vae["metrics.prior_hole/fmnist-cnn"] == pytest.approx(
        vae["metrics.fid/fmnist-cnn/samples"] - vae["metrics.fid/fmnist-cnn/aggregate_posterior"]
    )
    assert "metrics.prior_hole/fmnist-cnn" not in runs["ae"] or np.isnan(runs["ae"]["metrics.prior_hole/fmnist-cnn"])


def test_ae_logs_no_kl_metrics(trained):
    uri, runs, _ = trained
    logged = MlflowClient(uri).get_run(runs["ae"]["run_id"]).data.metrics
    assert "val/recon" in logged and "test/mse" in logged
    assert not [k for k in logged if "kl" in k or k == "beta_eff"]


FIGURES = {
    "reconstructions",
    "samples_normal_prior",
    "samples_laplace_prior",
    "interpolation",
    "latent_pca",
    "latent_tsne",
    "loss_curves",
    "nearest_training",
    "samples_fitted_gaussian",  # every model's fitted samplers
    "samples_gmm",
}
EXTRA_FIGURES = {"vae": {"kl_per_dim", "kl_heatmap", "traversals", "samples_aggregate_posterior"}, "ae": set()}


def test_artifacts_hold_the_model_every_figure_and_kl_per_dim(trained):
    uri, runs, _ = trained
    client = MlflowClient(uri)
    for model, run in runs.items():
        paths = {a.path for a in client.list_artifacts(run["run_id"])}
        paths |= {a.path for p in ("model", "figures") for a in client.list_artifacts(run["run_id"], p)}
        assert "images.npz" in paths
        figures = {p.removeprefix("figures/").removesuffix(".png") for p in paths if p.startswith("figures/")}
        assert figures == FIGURES | EXTRA_FIGURES[model]
        assert ("kl_per_dim.json" in paths) == (model == "vae")
        assert Path(run["artifact_uri"]).is_relative_to(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")


def test_the_model_is_an_mlflow_pytorch_model_with_its_typed_config(trained, tmp_path):
    uri, runs, _ = trained
    client = MlflowClient(uri)
    for model, run in runs.items():
        [logged] = client.search_logged_models([run["experiment_id"]], f"source_run_id = '{run['run_id']}'")
        assert logged.name == "model" and logged.status == LoggedModelStatus.READY
        path = Path(
            mlflow.artifacts.download_artifacts(
                f"runs:/{run['run_id']}/model", dst_path=str(tmp_path / model), tracking_uri=uri
            )
        )
        assert "pytorch" in (path / "MLmodel").read_text()
        config = json.loads((path / "extra_files" / "config.json").read_text())
        assert config["latent_dim"] == LATENT and config["limit"] == LIMIT and config["hidden"] == [400]
        assert ("beta" in config) == (model == "vae") and (config.get("beta") == 1.0 if model == "vae" else True)


def test_images_npz_holds_the_pictures_the_figures_show(trained, real_data, tmp_path):
    uri, runs, _ = trained
    test = load_splits("fashion-mnist", real_data, download=False).test
    first_of_each_class = [int((test.labels == c).nonzero()[0, 0]) for c in range(10)]
    for model, run in runs.items():
        path = MlflowClient(uri).download_artifacts(run["run_id"], "images.npz", str(tmp_path / model))
        images = dict(np.load(path))
        samples = {f"samples_{name}" for name in ("normal_prior", "laplace_prior")}
        samples |= {"samples_fitted_gaussian", "samples_gmm"}
        samples |= {"samples_aggregate_posterior"} if model == "vae" else set()
        nearest = {"nearest_samples", "nearest_pixels", "nearest_features"}
        assert set(images) == {"originals", "reconstructions", "interpolation"} | samples | nearest | (
            {"traversal"} if model == "vae" else set()
        )
        assert all(array.dtype == np.uint8 and array.shape[1:] == (28, 28) for array in images.values())
        assert all(len(images[name]) == 64 for name in samples)
        assert all(len(images[name]) == 10 for name in nearest)
        originals = (test.images[first_of_each_class] * 255).round().to(torch.uint8).view(-1, 28, 28).numpy()
        assert np.array_equal(images["originals"], originals)
        assert images["reconstructions"].shape == (10, 28, 28) and images["interpolation"].shape == (10, 28, 28)


def test_fids_are_named_after_the_domain_extractor_and_tagged_with_its_hash(trained):
    _, runs, _ = trained
    shared = {"samples_fitted_gaussian", "samples_gmm", "recon"}  # drawn the same way for both
    expected = {"vae": shared | {"samples", "aggregate_posterior"}, "ae": shared}
    hashes = set()
    for model, run in runs.items():
        fids = {k.removeprefix("metrics.") for k in run.index if k.startswith("metrics.fid/") and pd.notna(run[k])}
        assert fids == {f"fid/fmnist-cnn/{name}" for name in expected[model]}
        assert all(run[f"metrics.{k}"] > 0 for k in fids)
        hashes.add(run["tags.fid/fmnist-cnn/extractor_hash"])
    assert len(hashes) == 1


def test_domain_extractor_is_trained_once_on_the_full_split_and_is_accurate(trained):
    uri, runs, _ = trained
    mlflow.set_tracking_uri(uri)
    references = mlflow.search_runs(experiment_names=["fid-references"])
    assert len(references) == 1
    reference = references.iloc[0]
    assert reference["tags.extractor"] == "fmnist-cnn"
    assert reference["tags.extractor_hash"] == runs["vae"]["tags.fid/fmnist-cnn/extractor_hash"]
    assert reference["metrics.test_accuracy"] >= 0.90
    floor = reference["metrics.fid/fmnist-cnn/real_floor"]
    assert 0 < floor < min(run["metrics.fid/fmnist-cnn/recon"] for run in runs.values())


def test_unusable_inception_weights_give_a_warning_and_the_run_still_finishes(trained):
    _, runs, stderr = trained
    assert "warning: Inception FID skipped" in stderr["vae"] and "--fid-weights" in stderr["vae"]
    assert "Traceback" not in stderr["vae"]
    assert runs["vae"]["status"] == "FINISHED" and "Inception" in runs["vae"]["tags.fid/skipped"]
    assert not [k for k in runs["vae"].index if "inception" in k]


def test_vae_logs_an_importance_weighted_bound_tighter_than_its_elbo(trained):
    _, runs, _ = trained
    vae, ae = runs["vae"], runs["ae"]
    assert int(vae["params.iw_samples"]) == IW_SAMPLES
    assert vae["metrics.test/neg_elbo"] - 30 < vae["metrics.test/nll_iw"] < vae["metrics.test/neg_elbo"]
    assert int(vae["params.iw_images"]) == 2000  # of the 10,000 test images: the bound on all is estimated
    assert 0 < vae["metrics.test/nll_iw_se"] < 0.5
    assert pd.isna(ae["metrics.test/nll_iw"])  # the AE has no such metric


def test_model_loaded_from_the_store_reproduces_the_logged_test_metrics(trained, real_data, monkeypatch):
    uri, runs, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    test = load_splits("fashion-mnist", real_data, download=False).test
    for model_name, run in runs.items():
        model, config = load_model(run["run_id"], torch.device("cpu"))
        assert config.model == model_name and config.latent_dim == LATENT
        metrics = elbo_metrics(model, test, config)
        assert metrics["recon"] == pytest.approx(run["metrics.test/recon"], rel=1e-6)
        if model_name == "vae":
            assert metrics["neg_elbo"] == pytest.approx(run["metrics.test/neg_elbo"], rel=1e-6)


@pytest.mark.parametrize("model_name", ["vae", "ae"])
def test_a_conv_model_goes_the_same_way_from_the_command_to_a_reloaded_model(model_name, real_subset, store, tmp_cwd):
    subprocess.run(
        [
            TOOLKIT,
            "train",
            "--architecture",
            "conv",
            "--model",
            model_name,
            "--epochs",
            "1",
            "--data-dir",
            str(real_subset),
            "--fid-samples",
            "500",
            "--iw-samples",
            "5",
            "--experiment",
            "conv",
            "--quiet",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name("conv").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name.startswith(f"{model_name}-conv-z20")
    assert run.data.params["architecture"] == "conv" and "hidden" not in run.data.params
    assert "(conv 32-64)" in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["fid/fmnist-cnn/samples_fitted_gaussian"] > 0 and run.data.metrics["time/mean_epoch_s"] > 0
    assert ("test/nll_iw" in run.data.metrics) == (model_name == "vae")
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/latent_tsne.png", "figures/reconstructions.png"} <= figures
    model, config = load_model(run.info.run_id, torch.device("cpu"))
    assert config.architecture == "conv" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    test = load_splits("fashion-mnist", real_subset, download=False).test
    assert elbo_metrics(model, test, config)["recon"] == pytest.approx(run.data.metrics["test/recon"], rel=1e-6)


def test_load_model_reads_runs_logged_before_mlflow_models(store, tmp_path):
    """Runs made before issue 11 logged `model/weights.pt` and `model/config.json` (every value a string)."""
    config = RunConfig(model="ae", latent_dim=3, hidden=(16,))
    model = build(config, torch.device("cpu"))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps({**config.to_params(), "beta": "1.0"}))
    client = MlflowClient(store)
    run = client.create_run(client.create_experiment("old", artifact_location=str(tmp_path / "artifacts"))).info.run_id
    client.log_artifact(run, str(tmp_path / "weights.pt"), "model")
    client.log_artifact(run, str(tmp_path / "config.json"), "model")
    loaded, loaded_config = load_model(run, torch.device("cpu"))
    assert loaded_config == config and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def _run_status(uri, experiment):
    runs = mlflow.search_runs(experiment_names=[experiment], search_all_experiments=False)
    return list(runs["status"])


def test_a_diverging_run_ends_failed_with_a_clear_error(real_data, store, tmp_cwd):
    result = subprocess.run(
        [
            TOOLKIT,
            "train",
            "--epochs",
            "2",
            "--limit",
            "500",
            "--lr",
            "1e6",
            "--data-dir",
            str(real_data),
            "--experiment",
            "nan",
            "--fid",
            "off",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "non-finite" in result.stderr and "Traceback" not in result.stderr
    mlflow.set_tracking_uri(store)
    assert _run_status(store, "nan") == ["FAILED"]
    [reason] = mlflow.search_runs(experiment_names=["nan"])["tags.end_reason"]
    assert reason.startswith("TrainingDiverged: epoch") and "non-finite" in reason


def test_an_interrupted_run_ends_killed(real_data, store, tmp_cwd):
    process = subprocess.Popen(
        [
            TOOLKIT,
            "train",
            "--epochs",
            "500",
            "--limit",
            "500",
            "--data-dir",
            str(real_data),
            "--experiment",
            "interrupted",
            "--fid",
            "off",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
    )
    mlflow.set_tracking_uri(store)
    client = MlflowClient(store)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training has logged an epoch
        runs = mlflow.search_runs(experiment_names=["interrupted"])
        if len(runs) and client.get_metric_history(runs["run_id"][0], "val/loss"):
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read().decode()[-3000:]
    assert _run_status(store, "interrupted") == ["KILLED"]
    assert list(mlflow.search_runs(experiment_names=["interrupted"])["tags.end_reason"]) == ["interrupted (Ctrl-C)"]


def test_the_same_command_twice_gives_identical_metrics_on_cpu(real_subset, store, tmp_cwd):
    """Every metric (per epoch and final, FIDs included; wall times aside) and the weights, bit for bit."""
    command = [
        TOOLKIT,
        "train",
        "--data-dir",
        str(real_subset),
        "--epochs",
        "2",
        "--latent-dim",
        "4",
        "--fid-samples",
        "500",
        "--iw-samples",
        "5",
        "--experiment",
        "twice",
        "--figures",
        "off",  # figures are drawn from these numbers, which this test compares
        "--quiet",
    ]
    for _ in range(2):
        subprocess.run(command, check=True, capture_output=True, timeout=600)
    client = MlflowClient(store)
    first, second = client.search_runs(
        [client.get_experiment_by_name("twice").experiment_id], order_by=["attributes.start_time ASC"]
    )
    timeless = [{k: v for k, v in run.data.metrics.items() if not k.startswith("time/")} for run in (first, second)]
    assert timeless[0] == timeless[1] and len(timeless[0]) >= 28  # 4 latent dims
    for key in ("val/loss", "train/kl", "val/kl_dim/03"):
        assert [m.value for m in client.get_metric_history(first.info.run_id, key)] == [
            m.value for m in client.get_metric_history(second.info.run_id, key)
        ]
    weights = [load_model(run.info.run_id, torch.device("cpu"))[0].state_dict() for run in (first, second)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_evaluate_gives_an_older_run_the_metrics_and_figures_it_lacks_without_retraining(real_subset, store, tmp_cwd):
    subprocess.run(
        [
            TOOLKIT,
            "train",
            "--epochs",
            "1",
            "--latent-dim",
            "3",
            "--data-dir",
            str(real_subset),
            "--fid-samples",
            "500",
            "--iw-samples",
            "5",
            "--experiment",
            "older",
            "--quiet",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("older").experiment_id])[0]
    run_id, before = run.info.run_id, run.data.metrics
    lacking = [k for k in before if k.startswith(("test/mutual_info", "test/marginal_kl", "precision/", "prior_hole/"))]
    database = sqlite3.connect(store.removeprefix("sqlite:///"))  # as a run logged before these metrics existed
    for table in ("metrics", "latest_metrics"):
        database.executemany(f"DELETE FROM {table} WHERE run_uuid = ? AND key = ?", [(run_id, k) for k in lacking])
    database.commit()
    database.close()
    figure = Path(run.info.artifact_uri.removeprefix("file://")) / "figures" / "traversals.png"
    figure.unlink()
    assert lacking and not set(lacking) & set(client.get_run(run_id).data.metrics)

    result = subprocess.run(
        [TOOLKIT, "evaluate", "--experiment", "older", "--data-dir", str(real_subset)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"run {run_id}: {len(lacking)} metrics added" in result.stderr
    after = client.get_run(run_id)
    assert after.info.status == "FINISHED" and after.data.tags["evaluated_by"] == after.data.tags["git_commit"]
    assert after.data.metrics == pytest.approx(before, rel=1e-6)  # the lost ones back, nothing else changed
    assert figure.is_file()
    again = subprocess.run(
        [TOOLKIT, "evaluate", run_id, "--data-dir", str(real_subset)], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0 and f"run {run_id}: nothing to add" in again.stderr
