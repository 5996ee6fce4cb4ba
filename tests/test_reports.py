"""Reports built from a small store of real 1-2 epoch runs on real Fashion-MNIST images: every
table cell against `mlflow.search_runs`, every linked figure a valid PNG, the runs left out, the
error paths, a byte-identical rebuild, and the same report through an `mlflow server`."""

import errno
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import TOOLKIT, running_mlflow_server
from PIL import Image

from toolkit import ToolkitError
from toolkit.config import RunConfig
from toolkit.reports import build_report, write_report
from toolkit.reports.document import GENERATED, MARKER, Document
from toolkit.store import location, writing
from toolkit.studies import Execution, Study, run_study

REFERENCE_SETTING = RunConfig(epochs=2, limit=1000, fid_samples=300, iw_samples=5)  # 784-400-20, β = 1
SMALL = RunConfig(epochs=1, limit=1000, hidden=(64,), latent_dim=4, fid_samples=300, iw_samples=5, figures="off")
STUDIES = {  # the ae-vs-vae study runs two seeds, 1 and 2; the others one, 42
    "ae-vs-vae": (replace(REFERENCE_SETTING, seed=1), {m: {"model": m} for m in ("vae", "ae")}),
    "beta": (
        SMALL,
        {
            "vae-beta0.5": {"beta": 0.5},
            "vae-beta2": {"beta": 2},
            "ae": {"model": "ae"},
            "diverges": {"beta": 1, "lr": 1e6},
        },
    ),
    "latent": (SMALL, {f"{m}-z{z}": {"model": m, "latent_dim": z} for m in ("vae", "ae") for z in (2, 3)}),
    "collapse": (
        replace(SMALL, likelihood="gaussian", epochs=2),
        {f"w{w}-fb{fb}": {"warmup_epochs": w, "free_bits": fb} for w in (0, 1) for fb in (0, 0.5)},
    ),
    "architecture": (
        SMALL,
        {f"{a}-{m}": {"architecture": a, "model": m} for a in ("mlp", "conv") for m in ("vae", "ae")},
    ),
}
KINDS = {
    "ae-vs-vae": "ae-vs-vae",
    "beta": "beta-sweep",
    "latent": "latent-dim",
    "collapse": "posterior-collapse",
    "architecture": "ae-vs-vae",
}
LABELS = {
    "ae-vs-vae": {"model": "model"},
    "architecture": {"model": "model", "architecture": "architecture"},
    "beta": {"model": "model", "beta": "beta"},
    "latent": {"model": "model", "latent_dim": "latent_dim"},
    "collapse": {"warmup_epochs": "warmup_epochs", "free_bits": "free_bits"},
}


def search_space(trial):
    return {"latent_dim": trial.suggest_int("latent_dim", 2, 6), "beta": trial.suggest_float("beta", 0.5, 4, log=True)}


@pytest.fixture(scope="module")
def report_store(tmp_path_factory, real_subset):
    """One store with a study per report kind (and a search), plus a run left RUNNING in `beta`."""
    root = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        storage = f"sqlite:///{root / 'optuna.db'}"
        execution = Execution(storage, data_dir=str(real_subset))
        for name, (base, grid) in STUDIES.items():
            run_study(Study(name, base, grid=grid, pruner="none", seeds=2 if name == "ae-vs-vae" else 1), execution)
        run_study(Study("search", SMALL, space=search_space, trials=4, pruner="none"), execution)
        mlflow_client = writing.writer()
        parent = [r for r in mlflow_client.search_runs([writing.experiment_id("beta")]) if "trial" not in r.data.tags][
            0
        ].info.run_id
        mlflow_client.create_run(writing.experiment_id("beta"), run_name="stuck", tags={"mlflow.parentRunId": parent})
        mlflow_client.create_experiment("empty")
        yield {"root": root, "storage": storage, "uri": os.environ["MLFLOW_TRACKING_URI"]}


def independent_runs(experiment: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(location.tracking_uri())
    return mlflow.search_runs(experiment_names=[experiment], max_results=None)


def markdown_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first pipe table after a heading, as rows of header -> cell."""
    lines = text[text.index(f"## {heading}\n") :].splitlines()
    rows = [line for line in lines[lines.index(next(line for line in lines if line.startswith("| "))) :]]
    rows = rows[: next((i for i, row in enumerate(rows) if not row.startswith("|")), len(rows))]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in rows]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def assert_shows(cell: str, value: float):
    """A formatted cell shows `value` to the precision it is printed with."""
    text = cell.strip("*")
    if not text:
        assert value is None or math.isnan(value), f"blank cell for {value}"
        return
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert float(text) == pytest.approx(value, abs=0.5 * 10**-decimals + 1e-9, rel=5e-4), (cell, value)


@pytest.fixture(scope="module")
def reports(report_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("written")
    return {name: write_report(kind, name, out=out / name)[1] for name, kind in KINDS.items()}


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric keys of a results CSV (their means), without the derived ones and the spread columns."""
    return [c for c in table if "/" in c and not c.endswith(("_std", "_low", "_high")) and not c.startswith("derived/")]


TABLES = {"results": ("Results", "test/recon"), "diagnostics": ("Latent space and samples", "test/probe_accuracy")}


@pytest.mark.parametrize("table_name", list(TABLES))
@pytest.mark.parametrize("name", list(KINDS))
def test_every_results_csv_cell_is_the_mean_spread_and_interval_of_finished_runs_in_the_store(
    report_store, reports, name, table_name
):
    runs = independent_runs(name)
    finished = runs[(runs["status"] == "FINISHED") & runs["tags.mlflow.parentRunId"].notna()]  # not the parent
    table = pd.read_csv(reports[name].parent / f"{table_name}.csv", dtype=str, keep_default_na=False)
    metrics = metric_columns(table)
    assert metrics and TABLES[table_name][1] in metrics
    for _, row in table.iterrows():
        ids = row["run_ids"].split()
        group = finished[finished["run_id"].isin(ids)]
        assert len(group) == len(ids) == int(row["n"])
        same = np.ones(len(finished), dtype=bool)
        for column, param in LABELS[name].items():
            if row[column]:  # the AE's β is blank
                same &= (finished[f"params.{param}"] == row[column]).to_numpy()
        if name == "collapse":
            same &= (finished["params.model"] == "vae").to_numpy()
        assert set(finished[same]["run_id"]) == set(ids)
        for key in metrics:
            values = group[f"metrics.{key}"].dropna()
            assert float(row[key] or "nan") == pytest.approx(values.mean(), nan_ok=True), key
            if len(values) > 1 and values.std() > 0:
                assert float(row[f"{key}_std"]) == pytest.approx(values.std(ddof=1)), key
                low, high = scipy.stats.t.interval(0.95, len(values) - 1, values.mean(), scipy.stats.sem(values))
                assert (float(row[f"{key}_low"]), float(row[f"{key}_high"])) == pytest.approx((low, high)), key
    used = {i for ids in table["run_ids"] for i in ids.split()}
    assert used == set(
        finished["run_id"] if name != "collapse" else finished[finished["params.model"] == "vae"]["run_id"]
    )


@pytest.mark.parametrize("table_name", list(TABLES))
@pytest.mark.parametrize("name", list(KINDS))
def test_the_markdown_results_table_shows_the_csv_values(reports, name, table_name):
    table = pd.read_csv(reports[name].parent / f"{table_name}.csv")
    extra = ("published", "real data, no model")  # rows of the markdown only: no runs of this store
    shown = [
        row
        for row in markdown_table(reports[name].read_text(), TABLES[table_name][0])
        if not any(word in str(row) for word in extra)
    ]
    assert len(shown) == len(table)
    metrics = [c for c in table if "/" in c and not c.endswith(("_std", "_low", "_high"))]
    for row, (_, data) in zip(shown, table.iterrows()):
        cells = list(row.values())[-len(metrics) :]
        for cell, key in zip(cells, metrics):
            values, _, bounds = cell.strip("*").partition(" [")
            mean, _, std = values.partition(" ± ")
            assert_shows(mean, data[key])
            if std:
                assert_shows(std, data[f"{key}_std"])
            if bounds:
                low, high = bounds.rstrip("]").split(", ")
                assert_shows(low, data[f"{key}_low"]) and assert_shows(high, data[f"{key}_high"])


def test_several_seeds_give_mean_plus_minus_std_with_n_shown(reports):
    rows = markdown_table(reports["ae-vs-vae"].read_text(), "Results")
    runs = [row for row in rows if "published" not in row["model"]]
    assert [row["n"] for row in runs] == ["2", "2"]
    assert all(" ± " in row["recon (nats)"] and " [" in row["recon (nats)"] for row in runs)


def test_ae_vs_vae_bolds_the_better_model_only_when_the_paired_interval_excludes_zero(report_store, reports):
    text = reports["ae-vs-vae"].read_text()
    rows = {row["model"]: row for row in markdown_table(text, "Results")}
    runs = independent_runs("ae-vs-vae")
    runs = runs[runs["status"] == "FINISHED"].dropna(subset=["metrics.test/recon"]).sort_values("params.seed")
    for key, header in (("test/recon", "recon (nats)"), ("test/mse", "MSE / pixel")):
        ae, vae = (runs[runs["params.model"] == m][f"metrics.{key}"].to_numpy() for m in ("ae", "vae"))
        low, high = scipy.stats.ttest_rel(ae, vae).confidence_interval(0.95)
        clear = low > 0 or high < 0
        better = "AE" if ae.mean() < vae.mean() else "VAE"
        worse = {"AE": "VAE", "VAE": "AE"}[better]
        assert rows[better][header].startswith("**") == clear, (key, low, high)
        assert not rows[worse][header].startswith("**")
    assert rows["VAE, reference notebook (published)"]["−ELBO (nats)"] == "*241.38*"
    assert rows["AE, reference notebook (published)"]["recon (nats)"] == "*213.12*"
    other = build_report("ae-vs-vae", "latent").markdown()  # latent sizes 2 and 3: not the reference setting
    assert "reference notebook (published)" not in other


@pytest.mark.parametrize("name", list(KINDS))
def test_every_linked_file_exists_and_every_figure_is_a_small_valid_png_with_a_pdf_beside_it(reports, name):
    readme = reports[name]
    linked = re.findall(r"\]\(([^)#:]+\.(?:png|csv|pdf))\)", readme.read_text())
    assert any(link.endswith(".png") for link in linked)
    for link in linked:
        path = readme.parent / link
        assert path.is_file(), link
        if link.endswith(".png"):
            with Image.open(path) as image:
                assert image.format == "PNG"
                assert image.info["dpi"][0] == pytest.approx(150, abs=1)
                image.verify()
            assert path.stat().st_size < 250_000, link
            runs_own = link.endswith(("_vae.png", "_ae.png"))  # a run's logged figure, shown as it is
            assert runs_own or path.with_suffix(".pdf").name in linked, link
        if link.endswith(".pdf"):
            assert path.read_bytes().startswith(b"%PDF"), link
    files = {p.name for p in readme.parent.iterdir()} - {"README.md"}
    assert files == set(linked)


def test_ae_vs_vae_over_two_architectures_pairs_the_models_within_each_and_compares_across(reports):
    readme = reports["architecture"]
    text = readme.read_text()
    table = pd.read_csv(readme.parent / "results.csv", dtype=str)
    assert list(zip(table["model"], table["architecture"])) == [
        ("vae", "conv"),
        ("vae", "mlp"),
        ("ae", "conv"),
        ("ae", "mlp"),
    ]
    assert "hidden" not in table  # a conv model has no hidden layer sizes: they do not make a setting
    for architecture in ("conv", "mlp"):
        assert f"## Side by side: architecture {architecture}" in text
        assert (readme.parent / f"architecture-{architecture}_samples.png").is_file()
    findings = text[text.index("## Findings") :]
    assert "**architecture conv.** By reconstruction (nats), " in findings
    assert "**architecture mlp.** By reconstruction (nats), " in findings
    assert re.search(
        r"\*\*Across settings\.\*\* By the VAE's reconstruction \(nats\), architecture (conv|mlp) and "
        r"architecture (conv|mlp) are not resolved with 1 seed",
        findings,
    )  # one seed: nothing called


def test_failed_and_running_runs_are_listed_apart_with_their_reason(reports):
    text = reports["beta"].read_text()
    assert len(markdown_table(text, "Results")) == 3  # VAE β 0.5, VAE β 2, AE: the failed β = 1 run is no setting
    left_out = text.split("**2 run(s) left out of the tables** (not FINISHED):")[1].split("## ")[0]
    assert re.search(r"\| FAILED \| TrainingDiverged: epoch 1: .*non-finite", left_out)
    assert "| RUNNING | still running, or its process died without ending the run |" in left_out


def test_a_rebuild_from_the_same_store_is_byte_identical_but_for_the_date(report_store, reports, tmp_path):
    for name, kind in KINDS.items():
        again = write_report(kind, name, out=tmp_path / name)[1]
        first, second = (p.read_text().splitlines() for p in (reports[name], again))
        assert [line for line in first if not line.startswith(GENERATED)] == [
            line for line in second if not line.startswith(GENERATED)
        ]
        for path in reports[name].parent.iterdir():
            if path.suffix in (".csv", ".png"):
                assert path.read_bytes() == (again.parent / path.name).read_bytes(), path.name


def test_provenance_names_store_experiment_parent_commit_data_and_fid_extractor(report_store, reports):
    text = reports["ae-vs-vae"].read_text()
    runs = independent_runs("ae-vs-vae")
    parent = runs[runs["tags.trial"].isna()]["run_id"].iloc[0]
    assert f"| store | `{report_store['uri']}` |" in text and "| experiment | `ae-vs-vae`" in text
    assert f"| parent run | [{parent}]" in text
    commit = runs["tags.git_commit"].dropna().iloc[0][:10]
    assert f"`{commit}`" in text and "fashion-mnist" in text
    extractor_hash = runs["tags.fid/fmnist-cnn/extractor_hash"].dropna().iloc[0]
    assert re.search(
        rf"\| FID `fmnist-cnn` \| a domain CNN: these are not Inception FIDs; hash `{extractor_hash}`; "
        r"real-vs-real floor \d",
        text,
    )
    for run_id in runs[runs["tags.trial"].notna()]["run_id"]:
        assert f"runs/{run_id})" in text


def test_posterior_collapse_shows_each_setting_and_names_the_baseline(reports):
    text = reports["collapse"].read_text()
    assert "In the baseline (warm-up 0, free bits 0)" in text
    for figure in ("kl_per_dimension.png", "kl_heatmaps.png", "kl_curves.png"):
        assert figure in text


def test_a_study_report_tables_its_best_trials_with_links_and_importances(report_store, tmp_path):
    import optuna

    _, readme = write_report("study", study_name="search", storage=report_store["storage"], out=tmp_path / "search")
    study = optuna.load_study(study_name="search", storage=report_store["storage"])
    best = pd.read_csv(readme.parent / "best_trials.csv")
    complete = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert list(best["trial"]) == [t.number for t in complete]
    assert list(best["run_id"]) == [t.user_attrs["mlflow_run_id"] for t in complete]
    importances = pd.read_csv(readme.parent / "importances.csv")
    assert set(importances["parameter"]) == {"latent_dim", "beta"}
    text = readme.read_text()
    assert "history_0.png" in text and "importances_0.png" in text
    assert f"runs/{complete[0].user_attrs['mlflow_run_id']})" in text


@pytest.mark.parametrize(
    "kind, experiment, message",
    [
        ("beta-sweep", "nope", "no experiment 'nope' in the store .*; it has: .*ae-vs-vae"),
        ("beta-sweep", "empty", "there are no runs in experiment 'empty'"),
        (
            "beta-sweep",
            "latent",
            "a beta-sweep report needs finished VAE runs at two or more values of beta; "
            "experiment 'latent' has 4 finished runs \\(2 ae, 2 vae; latent_dim 2/3\\)",
        ),
        (
            "posterior-collapse",
            "beta",
            "a posterior-collapse report needs finished VAE runs at two or more values of warmup_epochs x free_bits",
        ),
        ("latent-dim", "collapse", "a latent-dim report needs finished runs at two or more values of latent_dim"),
        (
            "latent-dim",
            "search",
            r"a latent-dim report compares runs that differ only in latent_dim \(and model, seed\), "
            "but these also differ in beta",
        ),
        ("ae-vs-vae", "collapse", "an ae-vs-vae report needs finished runs of both models"),
    ],
)
def test_a_report_that_does_not_fit_is_one_clear_error_and_writes_nothing(
    report_store, tmp_path, kind, experiment, message
):
    with pytest.raises(ToolkitError, match=message):
        write_report(kind, experiment, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_study_report_of_an_unknown_study_names_the_ones_there(report_store):
    with pytest.raises(ToolkitError, match="no study 'nope' in the Optuna storage .*; it has: .*search"):
        build_report("study", study_name="nope", storage=report_store["storage"])


def test_the_command_line_writes_a_report_or_says_in_one_line_why_not(report_store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": report_store["uri"]}
    done = subprocess.run(
        [TOOLKIT, "report", "beta-sweep", "--experiment", "beta", "--out", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report written: {tmp_path / 'r' / 'README.md'}"
    refused = subprocess.run(
        [TOOLKIT, "report", "beta-sweep", "--experiment", "latent"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert not (tmp_path / "reports").exists()


def test_a_directory_that_is_not_a_report_is_not_overwritten_and_stale_figures_go(report_store, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ToolkitError, match="not a toolkit report"):
        write_report("beta-sweep", "beta", out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    _, readme = write_report("beta-sweep", "beta", out=tmp_path / "report")
    assert readme.read_text().startswith(MARKER)
    (readme.parent / "old_figure.png").write_bytes(b"stale")
    write_report("beta-sweep", "beta", out=tmp_path / "report")
    assert not (readme.parent / "old_figure.png").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    """An `mlflow server` with its own SQLite backend, serving artifacts itself, on a free port."""
    with running_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts") as url:
        yield url


def test_a_report_through_an_mlflow_server(mlflow_server, real_subset, tmp_path, monkeypatch):
    """Runs logged through the server (artifacts proxied by it), then reported through it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    base, grid = STUDIES["beta"]
    grid = {k: v for k, v in grid.items() if k != "diverges"}
    run_study(
        Study("served", replace(base, fid="off"), grid=grid, pruner="none", seeds=1),
        Execution(f"sqlite:///{tmp_path / 'optuna.db'}", data_dir=str(real_subset)),
    )
    _, readme = write_report("beta-sweep", "served", out=tmp_path / "served")
    runs = independent_runs("served")
    assert all(uri.startswith("mlflow-artifacts:") for uri in runs["artifact_uri"])
    table = pd.read_csv(readme.parent / "results.csv").set_index("run_ids")
    for run_id, recon in zip(runs["run_id"], runs["metrics.test/recon"]):
        if run_id in table.index:
            assert table.loc[run_id, "test/recon"] == pytest.approx(recon)
    assert len(table) == 3 and (readme.parent / "samples.png").is_file()
    assert (
        f"| store | `{mlflow_server}` |" in readme.read_text()
        and f"{mlflow_server}/#/experiments/" in readme.read_text()
    )
    ui = subprocess.run(
        [str(Path(sys.executable).parent / "toolkit"), "ui"], capture_output=True, text=True, timeout=120
    )
    experiment = runs["experiment_id"].iloc[0]
    assert ui.returncode == 0 and f"served: {mlflow_server}/#/experiments/{experiment}/runs?" in ui.stdout


def small_report(text: str) -> Document:
    doc = Document("a report")
    doc.text(text)
    doc.table("numbers", pd.DataFrame({"x": [1, 2], "y": [3, 4]}))
    return doc


def test_a_report_cut_short_while_writing_leaves_the_earlier_one_whole_and_the_rerun_succeeds(tmp_path, monkeypatch):
    out = tmp_path / "report"
    small_report("first").write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write = Path.write_bytes

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(
        ToolkitError, match="No space left on device; check --out .an earlier report there is unchanged."
    ):
        small_report("second").write(out)
    monkeypatch.setattr(Path, "write_bytes", real_write)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and os.listdir(tmp_path) == ["report"]
    small_report("second").write(out)
    assert "second" in (out / "README.md").read_text() and os.listdir(tmp_path) == ["report"]


def test_out_naming_a_file_is_refused_in_one_line_before_any_work(report_store, tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(ToolkitError, match="it is a file, not a directory"):
        write_report("beta-sweep", "no-such-experiment", out=tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "mine"


def test_the_index_lists_every_report_with_its_runs_date_and_first_finding(reports, tmp_path):
    from toolkit.reports.index import write_index

    folder = next(iter(reports.values())).parent.parent
    index = write_index(folder)
    rows = [r for r in markdown_table("## Index\n" + index.read_text().split("\n\n", 3)[3], "Index")]
    assert len(rows) == len(reports)
    for row in rows:
        target = re.search(r"\]\(([^)]+)\)", row["report"]).group(1)
        report = (folder / target).read_text()
        assert f"| runs | {row['runs']}:" in report and f"| generated | {row['generated']} |" in report
        findings = report.split("\n## Findings\n", 1)[1].strip()
        assert row["main finding"] != "–" and row["main finding"] in findings
    assert write_index(folder).read_text() == index.read_text()  # rewritten in place, the same
    with pytest.raises(ToolkitError, match="no toolkit reports"):
        write_index(tmp_path)
    (tmp_path / "README.md").write_text("my notes")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "README.md").write_text(index.read_text())
    with pytest.raises(ToolkitError, match="not an index the toolkit wrote"):
        write_index(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my notes"


def test_the_readme_findings_are_the_reports_findings_word_for_word(reports, tmp_path):
    from toolkit.reports.index import FINDINGS_END, FINDINGS_START, write_readme_findings

    folder = next(iter(reports.values())).parent.parent
    readme = tmp_path / "README.md"
    readme.write_text(f"# Mine\n\nkept\n\n{FINDINGS_START}\nstale words\n{FINDINGS_END}\n\nkept too\n")
    text = write_readme_findings(folder, readme).read_text()
    assert text.startswith("# Mine\n\nkept\n\n") and text.endswith(f"{FINDINGS_END}\n\nkept too\n")
    assert "stale words" not in text
    items = [line for line in text.splitlines() if line.startswith("- [")]
    assert len(items) == len(reports)
    for item in items:
        target = re.search(r"\]\(([^)]+)\)", item).group(1)
        report = (tmp_path / target).read_text()
        said = report.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
        for paragraph in (p.strip() for p in said.split("\n\n") if p.strip() and not p.startswith("|")):
            assert paragraph.replace("\n", " ") in item  # nothing added, nothing left out
    readme.write_text("# no block\n")
    with pytest.raises(ToolkitError, match="has no findings block"):
        write_readme_findings(folder, readme)
    assert readme.read_text() == "# no block\n"
