"""The runs a report is built from, as the tracking store holds them, and their aggregation.

A *setting* is the configuration of a run less its seed: runs of one setting with different
seeds are summarised as mean, sample standard deviation, n and the 95 % t interval of the mean
(`stats.estimate`), and compared with other settings seed by seed (`by_seed`). Only FINISHED
runs are summarised; every other run is listed apart with its status and the reason it ended.
"""

from __future__ import annotations

import io
import json
import math
import sys
import zipfile
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from toolkit import ToolkitError, names
from toolkit.config import GAUSSIAN_ONLY, MLP_ONLY, NOT_MEASURED, VAE_ONLY
from toolkit.reports.stats import estimate
from toolkit.store import location, reading

PARENT = f"tags.{names.PARENT_RUN}"
BEFORE_LOGGED = {"architecture": "mlp", "binarize": "none"}  # settings added later, with what runs before them had


@dataclass(frozen=True)
class Column:
    """A metric as a table shows it: the run's metric key, a header with units, which way is
    better, and its number format; or a bracket (`diagnostics.Bracket`), its two ends' keys."""

    key: str
    header: str
    lower_is_better: bool | None = True
    fmt: str = ".1f"
    upper: str | None = None  # a bracket's: the metric key of its high end, `key` being its low end


TEST_COLUMNS = (
    Column(names.TEST_RECON, "recon (nats)"),
    Column(names.TEST_MSE, "MSE / pixel", fmt=".5f"),
    Column(names.TEST_KL, "KL (nats)", None),
    Column(names.TEST_NEG_ELBO, "−ELBO (nats)"),
    Column(names.RECON_EXCESS, "recon − pixel entropy (nats)"),
    Column(names.NEG_ELBO_EXCESS, "−ELBO − pixel entropy (nats)"),
    Column(names.TEST_RECON_BEST_SIGMA, "recon at best σ (nats)"),
    Column(names.TEST_NEG_ELBO_BEST_SIGMA, "−ELBO at best σ (nats)"),
    Column(names.TEST_BEST_SIGMA, "best σ", None, fmt=".4f"),
    Column(names.TEST_NLL_IW, "IW bound (nats)"),
    Column(names.TEST_NLL_IW_SE, "IW bound s.e. (nats)", None, fmt=".2g"),
    Column(names.TEST_ACTIVE_UNITS, "active units", None, fmt=".3g"),
    Column(names.TEST_INFORMATIVE_UNITS, "informative units", None, fmt=".3g"),
    Column(names.TEST_DECODER_SIGMA, "σ (learned)", None, fmt=".4f"),
)
TIME_COLUMN = Column(names.MEAN_EPOCH_SECONDS, "s / epoch", None, fmt=".2f")  # wall time, last in tables
# The latent space's and the samples' diagnostics (`toolkit.diagnostics`), shown in a table of their own.
LATENT_COLUMNS = (
    Column(names.TEST_MUTUAL_INFO_LOW, "I(x; z) (nats)", None, ".2f", names.TEST_MUTUAL_INFO_HIGH),
    Column(names.TEST_MARGINAL_KL_LOW, "KL(q(z) ‖ p(z)) (nats)", None, ".2f", names.TEST_MARGINAL_KL_HIGH),
    Column(names.TEST_MUTUAL_INFO_MIXTURE, "I(x; z) mixture estimate, test (nats)", None, fmt=".2f"),
    Column(names.TEST_MUTUAL_INFO_POOLED, "I(x; z) mixture estimate, test and training (nats)", None, fmt=".2f"),
    Column(names.TEST_PROBE_ACCURACY, "linear probe accuracy", False, fmt=".3f"),
)


SCORED_SAMPLES = (names.SAMPLES, names.SAMPLES_GAUSSIAN, names.SAMPLES_GMM)  # the samples with precision columns


def sample_columns(extractor: str) -> tuple[Column, ...]:
    """The samples' diagnostics in one extractor's features: the prior hole, precision and recall of
    each of SCORED_SAMPLES, and the nearest-training ratios of the model's own samples."""
    return (
        # a diagnostic of the prior's mismatch, not a quality score: no better direction, never bold as best
        Column(names.prior_hole(extractor), f"prior hole: FID samples − FID q(z) samples ({extractor})", None),
        *(
            Column(
                f(extractor, kind),
                f"{word}, {names.FID_KIND_HEADERS[kind].removeprefix('FID ')} ({extractor})",
                False,
                fmt=".3f",
            )
            for kind in SCORED_SAMPLES
            for f, word in ((names.precision, "precision"), (names.recall, "recall"))
        ),
        Column(names.nearest(extractor), f"nearest-training ratio ({extractor})", None, fmt=".3f"),
        Column(names.nearest(names.PIXELS), "nearest-training ratio (pixels)", None, fmt=".3f"),
    )


@dataclass(frozen=True)
class ExtractorUsed:
    """A FID feature extractor as the runs used it."""

    name: str
    hashes: tuple[str, ...]  # more than one: the runs' FIDs are not comparable with each other
    floor: float | None  # its real-vs-real FID (training against test images)
    reference_run: str | None
    real: dict = field(default_factory=dict)  # what real images score in its reference run (`fid.real_metrics`)


class SeedValues(dict):
    """A metric of a setting's runs by seed (`RunSet.by_seed`), with how many runs it has and how
    many of them did not converge."""

    runs: int = 0
    unconverged: int = 0


class RunSet:
    """The runs of one experiment, or of one parent run, read once from the store."""

    def __init__(self, experiment: str, parent: str | None = None):
        frame = reading.load_runs(experiment, parent)
        if frame.empty:
            where = f"parent run {parent} has no child runs in" if parent else "there are no runs in"
            raise ToolkitError(f"{where} experiment {experiment!r} (store {location.tracking_uri()})")
        parents = set(frame[PARENT].dropna()) if PARENT in frame else set()
        if parent is None and len(parents) == 1:
            parent = next(iter(parents))
        self.experiment, self.parent = experiment, parent
        self.experiment_id = str(frame["experiment_id"].iloc[0])
        runs = frame[~frame["run_id"].isin(parents)].copy()  # a study's parent holds no results of its own
        trial = f"tags.{names.TRIAL}"
        runs["order"] = pd.to_numeric(runs[trial], errors="coerce") if trial in runs else np.nan
        self.runs = runs.sort_values(["order", "start_time", "run_id"], na_position="last").reset_index(drop=True)
        self.finished = self.runs[self.runs["status"] == "FINISHED"].reset_index(drop=True)
        self.excluded = self.runs[self.runs["status"] != "FINISHED"].reset_index(drop=True)
        self._read_older_ae_samples()
        _add_excess(self.finished)

    def _read_older_ae_samples(self):
        """An AE run logged before every run was scored with the same fitted samplers logged its
        fitted Gaussian's samples as `samples`, the kind now meaning a VAE's prior samples: they
        are read as the fitted Gaussian's (where the run lacks those), never as prior samples."""
        ae = (self.param("model") == "ae").to_numpy()
        for e in self.extractors:
            for f in (names.fid, names.precision, names.recall):
                old, new = f"metrics.{f(e.name, names.SAMPLES)}", f"metrics.{f(e.name, names.SAMPLES_GAUSSIAN)}"
                if old in self.finished:
                    moved = self.finished[old].where(ae)
                    self.finished[new] = self.finished[new].fillna(moved) if new in self.finished else moved
                    self.finished.loc[ae, old] = np.nan

    def converged(self, runs: pd.DataFrame | None = None) -> pd.Series:
        """Whether each (finished) run converged: early stopping ended it before its epoch limit
        (`names.CONVERGED`; for a run logged before it, fewer epochs trained than its limit)."""
        runs = self.finished if runs is None else runs
        logged = runs.get(f"metrics.{names.CONVERGED}", pd.Series(np.nan, index=runs.index))
        trained = runs.get(f"metrics.{names.EPOCHS_TRAINED}", pd.Series(np.nan, index=runs.index))
        return logged.fillna((trained < pd.to_numeric(self.param("epochs", runs))).astype(float)).astype(bool)

    def unconverged(self, run_ids) -> int:
        """How many of these finished runs did not converge (`converged`)."""
        return int((~self.converged(self.finished[self.finished["run_id"].isin(list(run_ids))])).sum())

    def converged_share(self, run_ids) -> str:
        """'2/3': how many of these runs' finished ones converged, of how many."""
        finished = int(self.finished["run_id"].isin(list(run_ids)).sum())
        return f"{finished - self.unconverged(run_ids)}/{finished}"

    def param(self, name: str, runs: pd.DataFrame | None = None) -> pd.Series:
        """A param of the (finished) runs as strings; None where a run did not log it (an older
        toolkit), so that such runs still group together."""
        runs = self.finished if runs is None else runs
        column = f"params.{name}"
        if column not in runs:
            values = pd.Series([None] * len(runs), index=runs.index, dtype=object)
        else:
            values = runs[column].astype(object).where(runs[column].notna(), None)
        return values.fillna(BEFORE_LOGGED[name]) if name in BEFORE_LOGGED else values

    def values(self, name: str, runs: pd.DataFrame | None = None) -> list:
        """The distinct values of a param among the (finished) runs, in numeric order where numeric."""
        return sorted(set(self.param(name, runs).dropna()), key=sort_key)

    def varying(self, runs: pd.DataFrame | None = None) -> list[str]:
        """The params (other than the seed) that differ between (finished) runs: what makes a setting."""
        runs = self.finished if runs is None else runs
        params = sorted(c.removeprefix("params.") for c in runs if c.startswith("params."))
        vae = runs[self.param("model", runs) != "ae"]  # an AE neither uses nor logs β and its kin
        mlp = runs[self.param("architecture", runs) == "mlp"]  # a conv model neither uses nor logs `hidden`
        gaussian = runs[self.param("likelihood", runs) == "gaussian"]  # nor does a Bernoulli one log σ
        users = {
            **dict.fromkeys(VAE_ONLY, vae),
            **dict.fromkeys(MLP_ONLY, mlp),
            **dict.fromkeys(GAUSSIAN_ONLY, gaussian),
        }
        return [
            n
            for n in params
            if n != "seed" and n not in NOT_MEASURED and self.param(n, users.get(n, runs)).nunique(dropna=False) > 1
        ]

    def describe(self) -> str:
        """The finished runs in a few words, for errors that say what was found."""
        if self.finished.empty:
            counts = self.runs["status"].value_counts()
            return f"no finished runs ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
        models = self.param("model").value_counts()
        varying = {n: self.values(n) for n in self.varying() if n != "model"}
        what = "; ".join(f"{n} {'/'.join(map(str, v))}" for n, v in varying.items()) or "no other setting varied"
        return (
            f"{len(self.finished)} finished runs ({', '.join(f'{n} {m}' for m, n in sorted(models.items()))}; {what})"
        )

    def of_model(self, model: str) -> pd.DataFrame:
        return self.finished[self.param("model") == model]

    def require(self, kind: str, varied: tuple[str, ...], runs: pd.DataFrame, what: str):
        """Refuse, in one line saying what was found, runs that do not fit a report comparing
        settings of `varied`: fewer than two of them among `runs`, or finished runs that also
        differ in another param (besides the model and the seed)."""
        settings = set(zip(*(self.param(p, runs) for p in varied)))
        if len(settings) < 2:
            raise ToolkitError(
                f"a {kind} report needs {what} at two or more values of {' x '.join(varied)}; "
                f"experiment {self.experiment!r} has {self.describe()}"
            )
        others = [p for p in self.varying() if p not in (*varied, "model")]
        if others:
            raise ToolkitError(
                f"a {kind} report compares runs that differ only in {' and '.join(varied)} (and "
                f"model, seed), but these also differ in {', '.join(others)}: "
                f"experiment {self.experiment!r} has {self.describe()}"
            )

    @property
    def latent_dim(self) -> int:
        """The latent size of the finished runs (the largest, where it varies)."""
        return max(int(v) for v in self.values("latent_dim"))

    def logged(self, runs: pd.DataFrame | None = None) -> set[str]:
        """The metric keys that any of the (finished) runs logged."""
        runs = self.finished if runs is None else runs
        return {c.removeprefix("metrics.") for c in runs if c.startswith("metrics.") and runs[c].notna().any()}

    def columns(self, runs: pd.DataFrame | None = None, first: tuple[str, ...] = ()) -> list[Column]:
        """The test metrics and FIDs that any of the runs logged, in a fixed order (the keys in
        `first` leading, in their order)."""
        logged = self.logged(runs)
        fids = [
            Column(names.fid(e.name, kind), f"{label} ({e.name})")
            for e in self.extractors
            for kind, label in names.FID_KIND_HEADERS.items()
            if names.fid(e.name, kind) in logged
        ]
        found = [c for c in (*TEST_COLUMNS, *fids, TIME_COLUMN) if c.key in logged]
        return sorted(found, key=lambda c: first.index(c.key) if c.key in first else len(first))

    def diagnostic_columns(self, runs: pd.DataFrame | None = None) -> list[Column]:
        """The diagnostics (LATENT_COLUMNS, then `sample_columns` of each extractor) that any of the
        runs logged."""
        logged = self.logged(runs)
        found = [*LATENT_COLUMNS, *(c for e in self.extractors for c in sample_columns(e.name))]
        return list({c.key: c for c in found if c.key in logged}.values())

    def kl_profiles(self, run_ids: list[str]) -> np.ndarray:
        """The final test KL of every latent dimension of each run (runs x dimensions), each run's
        sorted from the largest."""
        keys = [f"metrics.{names.test(names.kl_dim(d))}" for d in range(self.latent_dim)]
        rows = self.finished.loc[self.finished["run_id"].isin(run_ids), keys].to_numpy()
        return np.array([np.sort(row)[::-1] for row in rows])

    def kl_profile(self, run_ids: list[str]) -> np.ndarray:
        """The mean over runs (seeds) of their sorted KL profiles (`kl_profiles`)."""
        return self.kl_profiles(run_ids).mean(axis=0)

    def settings(
        self, by: list[str], runs: pd.DataFrame | None = None, columns: list[Column] | None = None
    ) -> pd.DataFrame:
        """One row per setting (the values of the params `by`): n, the run ids, and for each
        column its mean (named by the metric key), sample standard deviation (key + '_std') and
        95 % interval of the mean (key + '_low', key + '_high'); a bracket's two ends each so."""
        runs = self.finished if runs is None else runs
        columns = self.columns(runs) if columns is None else columns
        keys = [tuple(row) for row in zip(*(self.param(p, runs) for p in by))] if by else [()] * len(runs)
        rows = []
        for key in sorted(set(keys), key=lambda k: tuple(sort_key(v) for v in k)):
            group = runs[[k == key for k in keys]]
            row = {p: v for p, v in zip(by, key)} | {"n": len(group), "run_ids": " ".join(group["run_id"])}
            for key in (k for column in columns for k in (column.key, column.upper) if k):
                found = estimate(group[f"metrics.{key}"] if f"metrics.{key}" in group else [])
                row |= {key: found.mean, f"{key}_std": found.sd, f"{key}_low": found.low, f"{key}_high": found.high}
            rows.append(row)
        return pd.DataFrame(rows)

    def by_seed(self, run_ids, key: str) -> SeedValues:
        """A metric of some finished runs (a setting's) by seed, for comparing settings seed by
        seed; runs of one setting that share a seed (a run repeated) count with their mean. It
        carries how many of those runs did not converge, so that a comparison can say so."""
        rows = self.finished[self.finished["run_id"].isin(list(run_ids))]
        if f"metrics.{key}" not in rows:
            return SeedValues()
        values = pd.DataFrame({"seed": self.param("seed", rows), "value": rows[f"metrics.{key}"]}).dropna()
        found = SeedValues({int(seed): float(value) for seed, value in values.groupby("seed")["value"].mean().items()})
        logged = rows.loc[rows[f"metrics.{key}"].notna(), "run_id"]
        found.runs, found.unconverged = len(logged), self.unconverged(logged)
        return found

    @cached_property
    def extractors(self) -> list[ExtractorUsed]:
        """The FID extractors the finished runs used, with their hashes and real-vs-real floors."""
        tags = {c: name for c in self.finished if (name := names.hashed_extractor(c.removeprefix("tags.")))}
        found = []
        for column, name in sorted(tags.items()):
            references = sorted(set(self.finished.get(f"tags.{names.reference_run(name)}", pd.Series()).dropna()))
            reference = references[0] if len(references) == 1 else None
            logged = _reference_metrics(reference) if reference else {}
            hashes = tuple(sorted(set(self.finished[column].dropna())))
            found.append(ExtractorUsed(name, hashes, logged.get(names.fid_floor(name)), reference, logged))
        return found

    def histories(self, run_ids, keys) -> pd.DataFrame:
        return reading.metric_histories(run_ids, keys)

    def images(self, run_id: str) -> dict[str, np.ndarray] | None:
        """The images a run's figures show (`images.npz`), or None for a run that logged none."""
        try:
            return dict(np.load(io.BytesIO(reading.read_artifact(run_id, names.IMAGES_NPZ))))
        except reading.ArtifactMissing:
            return None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # damaged, or arrays of objects
            print(
                f"note: run {run_id}: its {names.IMAGES_NPZ} cannot be read ({type(exc).__name__}); the report shows "
                "no images of it",
                file=sys.stderr,
            )
            return None

    def kl_by_epoch(self, run_id: str) -> np.ndarray:
        """The validation KL of every latent dimension per epoch (epochs x dimensions), from kl_per_dim.json."""
        return np.asarray(json.loads(reading.read_artifact(run_id, names.KL_PER_DIM_JSON))[names.KL_VAL_BY_EPOCH])

    def traversal(self, run_id: str) -> tuple[list[int], list[float]] | None:
        """The dimensions a run's traversal image shows (most informative first) and their test KL,
        from kl_per_dim.json; None for a run that logged none."""
        try:
            logged = json.loads(reading.read_artifact(run_id, names.KL_PER_DIM_JSON))
        except reading.ArtifactMissing:
            return None
        if not isinstance(logged, dict) or names.TRAVERSAL_DIMS not in logged:
            return None
        dims = [int(d) for d in logged[names.TRAVERSAL_DIMS]]
        return dims, [float(logged[names.KL_TEST][d]) for d in dims]

    def figure_png(self, run_id: str, name: str) -> bytes | None:
        try:
            return reading.read_artifact(run_id, f"{names.FIGURES}/{name}.png")
        except reading.ArtifactMissing:
            return None


def _reference_metrics(reference_run: str) -> dict[str, float]:
    """What an extractor's reference run logged: the real-vs-real FID and what real images score."""
    try:
        return reading.final_metrics(reference_run)
    except ToolkitError:
        return {}


def _add_excess(frame: pd.DataFrame):
    """Each Bernoulli run's reconstruction and −ELBO less their floor, the test pixels' entropy
    (`names.RECON_EXCESS`, `names.NEG_ELBO_EXCESS`), as metrics of `frame`."""
    floor = f"metrics.{names.TEST_PIXEL_ENTROPY}"
    for key, excess in ((names.TEST_RECON, names.RECON_EXCESS), (names.TEST_NEG_ELBO, names.NEG_ELBO_EXCESS)):
        if floor in frame and f"metrics.{key}" in frame:
            frame[f"metrics.{excess}"] = frame[f"metrics.{key}"] - frame[floor]


def sort_key(value):
    """Numbers in numeric order before other strings; missing values last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def vae_first(settings: pd.DataFrame) -> pd.DataFrame:
    """Settings with the VAE's rows before the AE's, each model's rows in their own order."""
    return settings.sort_values("model", key=lambda m: m.map({"vae": 0, "ae": 1}), kind="stable").reset_index(drop=True)


def shown_param(model: str, name: str, value) -> str:
    """A param as a table shows it: blank where the model ignores it (the β of an AE)."""
    if value is None or (model == "ae" and name in VAE_ONLY):
        return "–"
    return str(value)
