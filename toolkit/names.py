"""Every name the toolkit's writers and readers share: the metric keys a run logs, its tags and
artifacts, and the Optuna user attributes of a study. Training, evaluation and the studies write
these; reports, resuming and `toolkit evaluate` read them. No other module types them, so a name
is renamed here or nowhere (`tests/test_names.py` checks that a real run logs what reports read).
"""

from __future__ import annotations

from typing import NamedTuple

# --- metrics -------------------------------------------------------------------------------------
# The terms `evaluate.elbo_metrics` and the trainer measure, unprefixed; logged as `train/<term>`
# and `val/<term>` every epoch and as `test/<term>` at the end.
LOSS, RECON, KL, NEG_ELBO, MSE = "loss", "recon", "kl", "neg_elbo", "mse"
ACTIVE_UNITS, INFORMATIVE_UNITS, DECODER_SIGMA = "active_units", "informative_units", "decoder_sigma"


def of_split(split: str, term: str) -> str:
    """A term measured on a split ("train", "val" or "test"): `val/recon`."""
    return f"{split}/{term}"


def train(term: str) -> str:
    return of_split("train", term)


def val(term: str) -> str:
    return of_split("val", term)


def test(term: str) -> str:
    return of_split("test", term)


def kl_dim(d: int) -> str:
    """The KL of latent dimension `d`, a term (`test/kl_dim/07`, `val/kl_dim/07`)."""
    return f"kl_dim/{d:02d}"


def recon_class(c: int) -> str:
    """The reconstruction of the test images of class `c`, a term (`test/recon_class/03`)."""
    return f"recon_class/{c:02d}"


TEST_RECON, TEST_KL, TEST_NEG_ELBO, TEST_MSE = map(test, (RECON, KL, NEG_ELBO, MSE))
TEST_ACTIVE_UNITS, TEST_INFORMATIVE_UNITS, TEST_DECODER_SIGMA = map(
    test, (ACTIVE_UNITS, INFORMATIVE_UNITS, DECODER_SIGMA)
)
VAL_LOSS, VAL_RECON, VAL_KL, VAL_NEG_ELBO = map(val, (LOSS, RECON, KL, NEG_ELBO))
TRAIN_LOSS, TRAIN_RECON, TRAIN_KL = map(train, (LOSS, RECON, KL))
BETA_EFF = "beta_eff"  # the epoch's mean β after warm-up
EPOCH_SECONDS = "time/epoch_s"  # wall seconds of an epoch: its training pass and its validation
MEAN_EPOCH_SECONDS = "time/mean_epoch_s"
BEST_EPOCH = "best_epoch"
EPOCHS_TRAINED = "epochs_trained"  # fewer than the `epochs` param: the run stopped early
CONVERGED = (
    "converged"  # 1 when early stopping ended the run (validation stopped improving), 0 when the epoch limit did
)
TEST_NLL_IW = test("nll_iw")  # the importance-weighted bound
TEST_NLL_IW_SE = test("nll_iw_se")  # its standard error, where it is estimated from a subset of the test images
TEST_PIXEL_ENTROPY = test("pixel_entropy")  # the cross-entropy's floor on grey levels
# The rate split (`diagnostics.rate_split`): each part's bracket, and the lower end's mixture estimates
# over the test posteriors and over the test and training posteriors pooled, each with its log N.
TEST_MUTUAL_INFO_LOW, TEST_MUTUAL_INFO_HIGH = test("mutual_info_low"), test("mutual_info_high")
TEST_MARGINAL_KL_LOW, TEST_MARGINAL_KL_HIGH = test("marginal_kl_low"), test("marginal_kl_high")
TEST_MUTUAL_INFO_MIXTURE, TEST_MUTUAL_INFO_CEILING = test("mutual_info_mixture"), test("mutual_info_ceiling")
TEST_MUTUAL_INFO_POOLED, TEST_MUTUAL_INFO_POOLED_CEILING = (
    test("mutual_info_pooled"),
    test("mutual_info_pooled_ceiling"),
)
TEST_PROBE_ACCURACY = test("probe_accuracy")
# Derived by the reports from what runs log, never logged: a Bernoulli run's reconstruction and -ELBO
# above their floor, the test pixels' entropy (TEST_PIXEL_ENTROPY).
RECON_EXCESS, NEG_ELBO_EXCESS = "derived/recon_excess", "derived/neg_elbo_excess"
# A fixed-σ Gaussian run scored again at the one σ that maximises its test likelihood (`evaluate.best_sigma`).
TEST_BEST_SIGMA, TEST_RECON_BEST_SIGMA, TEST_NEG_ELBO_BEST_SIGMA = map(
    test, ("best_sigma", "recon_best_sigma", "neg_elbo_best_sigma")
)


# The anchor (`toolkit.anchor`), logged into a linear-Gaussian VAE's run after its training: its exact
# test -log p(x) and -ELBO (`toolkit.ppca`), that of probabilistic PCA's maximum-likelihood fit to the
# same training images, and the IW bound at each K on every test image with the standard error of
# its mean gap to the exact value.
def anchor(term: str) -> str:
    return f"anchor/{term}"


ANCHOR_NLL_EXACT, ANCHOR_NEG_ELBO_EXACT, ANCHOR_NLL_PPCA_FIT = map(
    anchor, ("nll_exact", "neg_elbo_exact", "nll_ppca_fit")
)
ANCHOR_NEG_ELBO_GAP_SE = anchor("neg_elbo_gap_se")  # of the mean gap between the exact -ELBO and -log p(x)


def anchor_nll_iw(k: int) -> str:
    """The IW bound with K = k on every test image (`anchor/nll_iw/1000`)."""
    return anchor(f"nll_iw/{k}")


def anchor_nll_iw_gap_se(k: int) -> str:
    """The standard error of the mean gap between that bound and the exact -log p(x)."""
    return anchor(f"nll_iw_gap_se/{k}")


def parse_anchor_nll_iw(key: str) -> int | None:
    """The K of an `anchor_nll_iw` key; None for any other key."""
    kind, _, k = key.rpartition("/")
    return int(k) if kind == anchor("nll_iw") and k.isdigit() else None


def marginal_kl_dim(d: int) -> str:
    """KL(q(z_d) || N(0, 1)), a term (`test/marginal_kl_dim/07`)."""
    return f"marginal_{kl_dim(d)}"


def mutual_info_dim(d: int, end: str) -> str:
    """The `end` ("low" or "high") of the bracket of I(x; z_d), a term (`test/mutual_info_dim_low/07`)."""
    return f"mutual_info_dim_{end}/{d:02d}"


# Samples and their diagnostics, one key per FID extractor (`fid/fmnist-cnn/samples`). The kinds
# of images scored, and how a table names each: the VAE's prior (SAMPLES) and aggregate posterior;
# for either model a Gaussian and a GMM fitted to its training images' posterior means, the same
# samplers on both sides of any comparison of AE against VAE; the reconstructions.
SAMPLES, AGGREGATE_POSTERIOR, RECONSTRUCTIONS = "samples", "aggregate_posterior", "recon"
SAMPLES_GAUSSIAN, SAMPLES_GMM = "samples_fitted_gaussian", "samples_gmm"
FID_KIND_HEADERS = {
    SAMPLES: "FID prior samples",
    AGGREGATE_POSTERIOR: "FID q(z) samples",
    SAMPLES_GAUSSIAN: "FID fitted-Gaussian samples",
    SAMPLES_GMM: "FID GMM samples",
    RECONSTRUCTIONS: "FID recon",
}
PIXELS = "pixels"  # the memorisation check's other space, beside the extractors'


class FidKey(NamedTuple):
    extractor: str
    kind: str


def fid(extractor: str, kind: str) -> str:
    return f"fid/{extractor}/{kind}"


def parse_fid(key: str) -> FidKey | None:
    """The extractor and kind of a FID score's key; None for any other key (a floor, a tag)."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "fid" and parts[2] in FID_KIND_HEADERS:
        return FidKey(parts[1], parts[2])
    return None


def fid_floor(extractor: str) -> str:
    """The real-vs-real FID of a reference run."""
    return f"fid/{extractor}/real_floor"


REAL = "real"  # of a reference run: real images scored as samples are (training images against the test set)
PIXEL_PROBE_ACCURACY = "probe_accuracy/pixels"  # of the domain reference run: the linear probe on raw pixels


def precision(extractor: str, kind: str) -> str:
    return f"precision/{extractor}/{kind}"


def recall(extractor: str, kind: str) -> str:
    return f"recall/{extractor}/{kind}"


def prior_hole(extractor: str) -> str:
    return f"prior_hole/{extractor}"


def nearest(space: str) -> str:
    """The memorisation ratio of the model's own samples (its prior's, else its fitted Gaussian's) in an
    extractor's features or PIXELS."""
    return f"nearest/{space}/{SAMPLES}"


# logged once at the end; the others once per epoch
FINAL_PREFIXES = (
    "test/",
    "anchor/",
    "fid/",
    "precision/",
    "recall/",
    "nearest/",
    "prior_hole/",
    BEST_EPOCH,
    EPOCHS_TRAINED,
    CONVERGED,
    MEAN_EPOCH_SECONDS,
)

# --- tags ----------------------------------------------------------------------------------------
NOTE = "mlflow.note.content"  # the tag MLflow shows as the description of a run or an experiment
PARENT_RUN = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
MODEL, DATASET, DATA_DIR = "model", "dataset", "data_dir"
TRAIN_IMAGES = "train_images"  # the number of images the model was trained on
STUDY, TRIAL = "study", "trial"
GROUP_SIZE = "group_size"  # runs trained together as one stacked model (`pipeline.train_group`), this one included
END_REASON = "end_reason"  # why a run ended FAILED or KILLED
HEARTBEAT = "heartbeat"  # when the run's process last said it was alive (seconds since the epoch)
PROCESS_TABLE = "process_table"  # the boot id and pid namespace the run's pid belongs to
HOST, PID = "host", "pid"
GIT_COMMIT, GIT_DIRTY = "git_commit", "git_dirty"
EVALUATED_BY = "evaluated_by"  # the code version (git commit) that last added metrics to the run
NLL_IW_PRECISION = "nll_iw_precision"  # the IW bound's decoder precision, and by how much bf16 moved it
FID_SKIPPED = "fid/skipped"
MACHINE_CPU, MACHINE_GPU, MACHINE_THREADS, MACHINE_TORCH = (
    "machine/cpu",
    "machine/gpu",
    "machine/threads",
    "machine/torch",
)


def extractor_hash(extractor: str) -> str:
    return f"fid/{extractor}/extractor_hash"


def reference_run(extractor: str) -> str:
    return f"fid/{extractor}/reference_run"


def hashed_extractor(tag: str) -> str | None:
    """The extractor whose `extractor_hash` tag this is; None for any other tag."""
    parts = tag.split("/")
    return parts[1] if len(parts) == 3 and tag == extractor_hash(parts[1]) else None


# --- figures and images --------------------------------------------------------------------------
# A run's figures (`figures/<name>.png`) and the arrays of images.npz that reports lay out anew;
# the fitted Gaussian's and the GMM's samples are SAMPLES_GAUSSIAN and SAMPLES_GMM, the names of their FID kinds.
ORIGINALS, RECONSTRUCTION_IMAGES, INTERPOLATION = "originals", "reconstructions", "interpolation"
NORMAL_PRIOR_SAMPLES, LAPLACE_PRIOR_SAMPLES = "samples_normal_prior", "samples_laplace_prior"
AGGREGATE_SAMPLES = "samples_aggregate_posterior"  # the fitted Gaussian's samples are SAMPLES_GAUSSIAN
MANIFOLD, TRAVERSAL, TRAVERSALS = "manifold", "traversal", "traversals"  # TRAVERSAL: the images, TRAVERSALS: the figure
NEAREST_SAMPLES, NEAREST_PIXELS, NEAREST_FEATURES = "nearest_samples", "nearest_pixels", "nearest_features"
LATENT_PCA, LATENT_TSNE, LOSS_CURVES, NEAREST_TRAINING = "latent_pca", "latent_tsne", "loss_curves", "nearest_training"
KL_PER_DIM, KL_HEATMAP = "kl_per_dim", "kl_heatmap"
# the fields of kl_per_dim.json
KL_TEST, KL_VAL_BY_EPOCH, TRAVERSAL_DIMS = "test", "val_by_epoch", "traversal_dims"

# --- artifacts -----------------------------------------------------------------------------------
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"  # a logged model as load_model reads it
CHECKPOINTS = "checkpoint"  # folder of a run's training state, kept until the run finishes
FIGURES = "figures"  # folder of a run's figures, one PNG each
IMAGES_NPZ = "images.npz"  # the figures' images, for reports to lay out anew
KL_PER_DIM_JSON = "kl_per_dim.json"
REPORT = "report"  # folder of a study's parent run: the report written at its end
TEST_STATISTICS_FILE, REAL_SIDE_FILE = "test_statistics.npz", "real_side.npz"  # of a FID reference run

# --- Optuna user attributes ----------------------------------------------------------------------
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # of a study: its MLflow parent run
RUN_ID, RUN_IDS, RESUME = "mlflow_run_id", "mlflow_run_ids", "resume_runs"  # of a trial
BY_SEED, SEED_SD = "objective_by_seed", "objective_sd"
POINT = "point"  # of a trial: the label of the grid point it runs
QUEUED = "queued_params"  # of a queued trial: the params it was queued with (a grid point's settings and seed)
ERROR = "error"  # of a trial: why it failed, credentials masked
SURPLUS = "surplus"  # of a trial: asked for when the budget was already full
RETRY_OF = "retry_of"  # of a trial: the first trial of the point and seed it runs again
SEEDS, BASE = "seeds", "base"  # of a study: the seeds per grid point, its fixed settings
