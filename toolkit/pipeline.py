"""One tracked run from start to end: config -> data -> model -> fit -> evaluate -> MLflow."""

from __future__ import annotations

import contextlib
import gc
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from toolkit import fid, figures, names
from toolkit.config import IMAGE_SIDE, RunConfig
from toolkit.data import CLASS_NAMES, load_splits
from toolkit.diagnostics import (
    INFORMATIVE_NATS,
    NEAREST_QUERIES,
    PR_IMAGES,
    PROBE_TRAIN,
    RateSplit,
    nearest,
    nearest_ratio,
    precision_recall,
    probe_accuracy,
    rate_split,
    traversal_codes,
    traversal_dims,
)
from toolkit.evaluate import BF16_TOLERANCE, EVAL_SEED, best_sigma, elbo_metrics, iw_nll
from toolkit.group import Member, fit_group
from toolkit.machine import compute_tags
from toolkit.models import build, default_device
from toolkit.objectives import pixel_entropy
from toolkit.samplers import (
    AggregatePosterior,
    FittedGaussian,
    FittedMixture,
    LaplacePrior,
    NormalPrior,
    decode_images,
    generate,
    interpolation_codes,
    latent_means,
    manifold_codes,
    posteriors,
)
from toolkit.store.reading import RunRecord, existing_run, load_checkpoint, metric_histories
from toolkit.store.writing import RunStopped, continue_run, prepare_model_logging, start_run
from toolkit.train import fit

FIGURE_SAMPLES = 64  # an 8 x 8 grid
NEAREST_SHOWN = 10  # samples shown beside their nearest training images


NAME_PREFIX = {
    "warmup_epochs": "warmup",
    "free_bits": "fb",
    "hidden": "h",
    "batch_size": "bs",
    "likelihood": "",
    "dataset": "",
    "fid": "fid-",
    "decoder_scale": "sigma-",
    "binarize": "binarize-",
}  # in run names; others: the field


def run_name(config: RunConfig, base: RunConfig | None = None) -> str:
    """`vae-z20-beta1`, `ae-z20` or `vae-conv-z20-beta1`, then every setting that differs from `base`
    (a study's fixed settings), so that siblings are told apart: `vae-z20-beta1-warmup10-fb0.05`."""
    head = (config.model, *([config.architecture] if config.architecture != "mlp" else []), f"z{config.latent_dim}")
    name = "-".join(head) + (f"-beta{config.beta:g}" if config.model == "vae" else "")
    if base is None:
        return name
    fixed = base.to_json()
    for key, value in config.to_json().items():
        if key not in ("model", "architecture", "latent_dim", "beta") and value != fixed.get(key, value):
            shown = (
                "x".join(map(str, value))
                if isinstance(value, list)
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )
            name += f"-{NAME_PREFIX.get(key, key)}{shown}"
    return name


@dataclass
class RunResult:
    run_id: str
    best: dict[str, float]  # the metrics of the epoch whose weights were kept
    final: dict[str, float]  # test metrics and FIDs


def train_run(
    config: RunConfig,
    experiment: str | None = None,
    data_dir=None,
    quiet: bool = False,
    tags: dict[str, str] | None = None,
    callbacks=(),
    fid_weights: str | None = None,
    on_start: Callable[[str], None] | None = None,
    name: str | None = None,
    note: str = "",
    resume: str | None = None,
) -> RunResult:
    """Train, evaluate and log one run, named `name` (default `run_name(config)`) and described by
    `note` (e.g. its place in a study) followed by its settings. `on_start` receives the run id as
    soon as the run exists. With `resume`, the id of an interrupted run of this config, that run
    goes on from its last checkpoint instead (`resume_run`).

    Data and FID references are prepared before the run is created, so a missing dataset or
    weights file leaves no empty run behind. References use the full training split even when
    `config.limit` trims the model's, so every run of a dataset is scored by the same extractor.
    """
    if resume and (finished := finished_result(resume)):  # a trial whose worker died after its run ended
        if on_start:
            on_start(resume)
        return finished
    config.check_memory()
    device = default_device()
    splits, references, skipped = prepare(config, data_dir, fid_weights, device)
    freeze_start_up()
    checkpoint = load_checkpoint(resume) if resume else None
    model = build(config, device)
    run_tags = _run_tags(config, splits, references, skipped, device, note, tags)
    with _opened(config, experiment, name, run_tags, resume) as run:
        if on_start:
            on_start(run.run_id)
        if not resume:
            run.log_params(config.to_params())
        prepare_model_logging()
        try:
            result = fit(
                model, splits, config, _logged(run, checkpoint, callbacks), quiet, run.save_checkpoint, checkpoint
            )
        except RunStopped:  # pruned: it will not be resumed
            run.drop_checkpoints()
            raise
        return _evaluated(run, model, config, splits, references, result, resume)


def _run_tags(config: RunConfig, splits, references, skipped: list[str], device, note: str, tags) -> dict[str, str]:
    """A training run's tags: its model and data, the machine, the FID references it is scored
    against (and why any was skipped), its description (`note` and its settings) and `tags`."""
    return {
        names.MODEL: config.model,
        names.DATASET: config.dataset,
        names.DATA_DIR: str(splits.source.resolve()),
        names.TRAIN_IMAGES: str(len(splits.train)),
        **compute_tags(device),
        **{names.extractor_hash(r.extractor.name): r.extractor.content_hash for r in references},
        **{names.reference_run(r.extractor.name): r.run_id for r in references},
        **({names.FID_SKIPPED: " | ".join(skipped)} if skipped else {}),
        names.NOTE: f"{note}{config.describe()}; {len(splits.train):,} training images.",
        **(tags or {}),
    }


def _opened(config: RunConfig, experiment: str | None, name: str | None, run_tags: dict, resume: str | None):
    """The run a training writes to, as a context that ends it (`writing.start_run`): a new one, or
    the interrupted run `resume`."""
    if resume:
        return continue_run(resume, run_tags)
    return start_run(config.dataset if experiment is None else experiment, name or run_name(config), run_tags)


def _evaluated(run, model, config: RunConfig, splits, references, result, resume: str | None) -> RunResult:
    """Evaluate a trained run and log it all (`evaluate_and_log`); its checkpoints go."""
    already = set(existing_run(run.run_id).metrics) if resume else set()
    metrics = evaluate_and_log(run, model, config, splits, references, result, already)
    run.drop_checkpoints()
    return RunResult(run.run_id, result.history[result.best_epoch - 1], metrics)


@dataclass
class RunRequest:
    """One run of `train_group`: `train_run`'s arguments but those its group shares."""

    config: RunConfig
    experiment: str | None = None
    tags: dict[str, str] | None = None
    callbacks: list = field(default_factory=list)
    on_start: Callable[[str], None] | None = None
    name: str | None = None
    note: str = ""
    resume: str | None = None


def train_group(requests: list[RunRequest], data_dir=None, fid_weights: str | None = None) -> list:
    """`train_run` of every request, their training done together (`group.fit_group`: all of one
    `group.group_key`). Each is its own run, logged, checkpointed, evaluated and ended as if alone.
    Returns each request's `RunResult`, or the exception that ended its run (a pruned run's
    RunStopped, a diverged one's TrainingDiverged, any error of its own), so that one run's end
    is not the others'. Ctrl-C ends them all."""
    outcomes: dict[int, object] = {}
    for i, request in enumerate(requests):
        if request.resume and (finished := finished_result(request.resume)):
            if request.on_start:
                request.on_start(request.resume)
            outcomes[i] = finished
    pending = [i for i in range(len(requests)) if i not in outcomes]
    if pending:
        outcomes |= _train_together([requests[i] for i in pending], pending, data_dir, fid_weights)
    return [outcomes[i] for i in range(len(requests))]


def _train_together(requests: list[RunRequest], indices: list[int], data_dir, fid_weights) -> dict[int, object]:
    """`train_group` of the requests to train (at `indices` of its list): one preparation of the
    data and FID references, a run opened per request, one `fit_group`, then each run evaluated
    and ended on its own. Returns each index's RunResult or exception."""
    first = requests[0].config
    first.check_memory()
    device = default_device()
    splits, references, skipped = prepare(first, data_dir, fid_weights, device)
    freeze_start_up()
    opened: dict[int, tuple] = {}  # index -> (its run, the context that ends it, its member)
    outcomes: dict[int, object] = {}
    try:
        for i, request in zip(indices, requests):
            ending = contextlib.ExitStack()
            tags = _run_tags(request.config, splits, references, skipped, device, request.note, request.tags)
            tags[names.GROUP_SIZE] = str(len(requests))
            run = ending.enter_context(_opened(request.config, request.experiment, request.name, tags, request.resume))
            opened[i] = (run, ending, None)
            if request.on_start:
                request.on_start(run.run_id)
            if not request.resume:
                run.log_params(request.config.to_params())
            checkpoint = load_checkpoint(request.resume) if request.resume else None
            try:
                callbacks = _logged(run, checkpoint, request.callbacks)
            except RunStopped as exc:  # pruned on the epochs it had trained before
                outcomes[i] = _ended(run, ending, exc)
                continue
            opened[i] = (run, ending, Member(request.config, callbacks, run.save_checkpoint, checkpoint))
        prepare_model_logging()
        fit_group([member for i, (_, _, member) in opened.items() if i not in outcomes], splits)
        for i, request in zip(indices, requests):
            if i not in outcomes:
                run, ending, member = opened[i]
                outcomes[i] = _ended_member(run, ending, member, splits, references, request.resume)
    except BaseException as exc:  # Ctrl-C, or a failure of the whole group: every run still open ends with it
        for i, (_, ending, _) in opened.items():
            if i not in outcomes:
                ending.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return outcomes


def _ended_member(run, ending: contextlib.ExitStack, member: Member, splits, references, resume: str | None):
    """A trained member evaluated and logged, its run ended FINISHED; or, if it stopped with an
    error, its run ended as that error ends a run alone. Returns its RunResult or the error."""
    try:
        if member.error is not None:
            raise member.error
        torch.set_rng_state(member.progress.torch_rng)  # as its run alone has it after training
        result = _evaluated(run, member.model, member.config, splits, references, member.result, resume)
    except Exception as exc:
        return _ended(run, ending, exc)
    ending.close()
    return result


def _ended(run, ending: contextlib.ExitStack, exc: Exception) -> Exception:
    """End a run with `exc` as `writing.start_run` ends one it is raised in (KILLED for RunStopped,
    whose run keeps no checkpoint, FAILED otherwise); returns `exc`."""
    if isinstance(exc, RunStopped):
        run.drop_checkpoints()
    ending.__exit__(type(exc), exc, exc.__traceback__)
    return exc


def freeze_start_up():
    """Collect what was allocated before a run trains (modules, the store's clients, the data) and
    freeze it: not scanned again by every full collection, one of which otherwise lands in the
    evaluation tail (0.3 s there on the 2-core CPU; `benchmarks/eval_speed.py`). What an earlier run
    of this process froze (a study's earlier trial) is unfrozen first, so that whatever of it is
    garbage now is collected here. It stays frozen when the process ends: unfreezing then would cost
    its exit a full collection, a second."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def prepare(config: RunConfig, data_dir, fid_weights: str | None, device):
    """The splits a run of `config` trains and is tested on, the FID references it is scored
    against (from the full training split, whatever `config.limit`) and why any was skipped
    (each also printed as a warning)."""
    splits = load_splits(config.dataset, data_dir, config.limit, device)
    full = splits if config.limit is None else load_splits(config.dataset, data_dir, None, device)
    if config.binarize == "dynamic":
        splits = splits.binarized()
    references, skipped = fid.references(config.dataset, full, config.fid, fid_weights)
    if config.limit is not None:  # its samples can only copy the images it trains on
        references = [ref.against(splits.train.images, full.test.images) for ref in references]
    for reason in skipped:
        print(f"warning: {reason}", file=sys.stderr)
    return splits, references, skipped


def resume_run(run: RunRecord, data_dir=None, quiet: bool = False, fid_weights: str | None = None) -> RunResult:
    """Continue an interrupted run (FAILED or KILLED, e.g. by Ctrl-C, SIGKILL or a full disk; as
    `writing.resumable_run` found it) in the same MLflow run from its last checkpoint: its metric
    history goes on at the next epoch and it ends with the metrics an uninterrupted run would have had."""
    config = RunConfig.from_params(run.params)
    return train_run(config, data_dir=data_dir, quiet=quiet, fid_weights=fid_weights, resume=run.run_id)


def finished_result(run_id: str) -> RunResult | None:
    """The result of a run that FINISHED, read back from the store; None for any other run."""
    run = existing_run(run_id)
    if run.status != "FINISHED":
        return None
    best_epoch = int(run.metrics[names.BEST_EPOCH])
    final = {key: value for key, value in run.metrics.items() if key.startswith(names.FINAL_PREFIXES)}
    best = {
        key: next(m.value for m in metric_histories([run_id], [key]).itertuples() if m.step == best_epoch)
        for key in run.metrics
        if key not in final
    }
    return RunResult(run_id, best, final)


def _logged(run, checkpoint: dict | None, callbacks) -> list:
    """The callbacks of a run's training: every epoch logged, then `callbacks`. Resuming, the epochs
    done before are first replayed to them (a new trial's pruner sees them) and logged where the run
    lacks them; an epoch logged after the last checkpoint is trained again (to the same numbers)
    but not logged twice."""
    logged = run.logged_steps(names.TRAIN_LOSS) if checkpoint else 0

    def log_epoch(epoch: int, metrics: dict[str, float]):
        if epoch > logged:
            run.log_epoch(epoch, metrics)

    for epoch, metrics in enumerate(checkpoint["history"] if checkpoint else [], 1):
        for callback in (log_epoch, *callbacks):
            callback(epoch, metrics)
    return [log_epoch, *callbacks]


def evaluate_and_log(
    run, model, config: RunConfig, splits, references, result, already: set[str] = frozenset()
) -> dict[str, float]:
    """Evaluate a trained model and log it all into `run`: the model, the per-dimension KL, the
    figures and their images, then the test metrics, the IW bound, the latent space's and the
    samples' diagnostics and the FIDs (but those in `already`, which a resumed run logged before it
    was stopped). Returns the final metrics."""
    found = evaluation(model, config, splits, references)
    metrics = found.metrics | {
        names.BEST_EPOCH: result.best_epoch,
        names.EPOCHS_TRAINED: len(result.history),
        names.CONVERGED: float(result.stopped_early),
    }
    seconds = [h[names.EPOCH_SECONDS] for h in result.history if names.EPOCH_SECONDS in h]  # not in old checkpoints
    if seconds:
        metrics[names.MEAN_EPOCH_SECONDS] = sum(seconds) / len(seconds)
    if model.variational and config.iw_samples:
        bound = iw_nll(
            model, splits.test, config.likelihood, config.iw_samples, config.iw_images, found.test[names.NEG_ELBO]
        )
        metrics[names.TEST_NLL_IW] = bound.nats
        if bound.standard_error is not None:
            metrics[names.TEST_NLL_IW_SE] = bound.standard_error
        run.set_tags(
            {
                names.NLL_IW_PRECISION: bound.precision
                if bound.bf16_shift is None
                else f"{bound.precision} (bf16 moved the first 100 test images' bound by {bound.bf16_shift:+.4f} nats "
                f"from fp32; bf16 is used within ±{BF16_TOLERANCE})"
            }
        )
    run.log_model(model, config)
    log_evaluation(run, model, config, splits.test, found, result.history, draw=config.figures == "all")
    run.log_metrics({key: value for key, value in metrics.items() if key not in already})
    return metrics


@dataclass
class Evaluation:
    """What evaluating a trained model gives, besides the IW bound: its test metrics and diagnostics
    (metric keys), the images its figures show, the samplers they show samples of and the dimensions traversed."""

    test: dict[str, float]  # `elbo_metrics` of the test split, unprefixed
    metrics: dict[str, float]
    images: dict[str, torch.Tensor]
    shown_samplers: dict
    traversed: list[int]


def evaluation(model, config: RunConfig, splits, references) -> Evaluation:
    """Every test metric and diagnostic of a trained model but the IW bound, and its figures' images.
    The model is left in eval mode: a conv model's batch norm uses (and keeps) its running
    statistics for every code, sample and figure, as for the test metrics."""
    model.eval()
    test = elbo_metrics(model, splits.test, config, by_class=True)
    metrics = {names.test(k): v for k, v in test.items()}
    if config.likelihood == "bernoulli":  # the cross-entropy's floor on grey levels; 0 for binary pixels
        metrics[names.TEST_PIXEL_ENTROPY] = float(pixel_entropy(splits.test.images).mean())
    if config.likelihood == "gaussian" and config.decoder_scale == "fixed":
        metrics |= at_best_sigma(test, config.sigma, splits.test.images.shape[1])
    train = encoded(model, splits.train.images)  # once, for the rate split, the probe and the fitted samplers
    latent, rate = latent_metrics(model, splits, train)
    samplers = generation_samplers(model, config, splits.train.images, train[0])
    scored, nearest_images = sample_metrics(model, samplers, splits, references, config.fid_samples)
    shown_samplers = figure_samplers(model, config, samplers)
    images = figure_images(model, config, splits.test, shown_samplers) | nearest_images
    traversed = []
    if model.variational:
        traversed = traversal_dims(per_dim(test, "", config.latent_dim))
        centre = latent_means(model, images[names.ORIGINALS][:1])[0]
        images[names.TRAVERSAL] = decode_images(model, traversal_codes(centre, traversed, rate.codes).to(centre.device))
    return Evaluation(test, metrics | latent | scored, images, shown_samplers, traversed)


def at_best_sigma(test: dict[str, float], sigma: float, pixels: int) -> dict[str, float]:
    """A fixed-σ Gaussian run's test reconstruction and −ELBO scored again at the σ that maximises
    the likelihood of its reconstructions (`evaluate.best_sigma`); the KL does not depend on σ."""
    best, recon = best_sigma(test[names.RECON], sigma, pixels)
    found = {names.TEST_BEST_SIGMA: best, names.TEST_RECON_BEST_SIGMA: recon}
    if names.KL in test:
        found[names.TEST_NEG_ELBO_BEST_SIGMA] = recon + test[names.KL]
    return found


def log_evaluation(
    run,
    model,
    config: RunConfig,
    test,
    found: Evaluation,
    history: list[dict[str, float]],
    figures_logged: set[str] = frozenset(),
    draw: bool = True,
):
    """A VAE's kl_per_dim.json, images.npz and, if `draw`, every figure not in `figures_logged`."""
    if model.variational:
        run.log_json(
            {
                names.KL_TEST: per_dim(found.test, "", config.latent_dim),
                names.KL_VAL_BY_EPOCH: [per_dim(h, names.val(""), config.latent_dim) for h in history],
                names.TRAVERSAL_DIMS: found.traversed,
            },
            names.KL_PER_DIM_JSON,
        )
    run.log_bytes(images_npz(found.images), names.IMAGES_NPZ)
    if not draw:
        return
    drawing = run_figures(
        model, config, test, found.images, found.shown_samplers, history, found.test | found.metrics, found.traversed
    )
    for name, figure in drawing.items():
        if name not in figures_logged:
            run.log_figure(figure(), name)


def per_dim(metrics: dict[str, float], prefix: str, latent_dim: int) -> list[float]:
    """The KL of every latent dimension from a metrics dict, its keys prefixed by `prefix` (`names.val("")`)."""
    return [metrics[f"{prefix}{names.kl_dim(d)}"] for d in range(latent_dim)]


def encoded(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The posterior means and log-variances of `images` (a VAE), or the codes and None (an AE)."""
    return posteriors(model, images) if model.variational else (latent_means(model, images), None)


def latent_metrics(model, splits, train: tuple) -> tuple[dict[str, float], RateSplit | None]:
    """`test/probe_accuracy` for every run; for a VAE also the rate split of its test posteriors, the
    training posteriors (`train`, as `encoded` gives them) pooled into its lower end
    (`rate_metrics`), returned with the aggregate posterior's codes it drew."""
    mu, logvar = encoded(model, splits.test.images)
    labels = splits.train.labels[:PROBE_TRAIN]
    metrics = {names.TEST_PROBE_ACCURACY: probe_accuracy(train[0][:PROBE_TRAIN], labels, mu, splits.test.labels)}
    if logvar is None:
        return metrics, None
    generator = torch.Generator(device=mu.device).manual_seed(EVAL_SEED)
    rate = rate_split(mu, logvar, generator, pool=train)
    return metrics | rate_metrics(rate), rate


def rate_metrics(rate: RateSplit) -> dict[str, float]:
    """The rate split as metrics: each part's bracket, the lower end's two mixture estimates with
    their ceilings, each dimension's information bracket and marginal KL, and the informative units:
    the dimensions whose information is above INFORMATIVE_NATS for certain (its bracket's low end)."""
    dims = rate.dims_information
    return {
        names.TEST_MUTUAL_INFO_LOW: rate.information.low,
        names.TEST_MUTUAL_INFO_HIGH: rate.information.high,
        names.TEST_MARGINAL_KL_LOW: rate.marginal_kl.low,
        names.TEST_MARGINAL_KL_HIGH: rate.marginal_kl.high,
        names.TEST_MUTUAL_INFO_MIXTURE: rate.mixture,
        names.TEST_MUTUAL_INFO_CEILING: rate.ceiling,
        names.TEST_MUTUAL_INFO_POOLED: rate.pooled_mixture,
        names.TEST_MUTUAL_INFO_POOLED_CEILING: rate.pooled_ceiling,
        names.TEST_INFORMATIVE_UNITS: sum(b.low > INFORMATIVE_NATS for b in dims),
        **{names.test(names.marginal_kl_dim(d)): v for d, v in enumerate(rate.marginal_kl_dims)},
        **{names.test(names.mutual_info_dim(d, "low")): b.low for d, b in enumerate(dims)},
        **{names.test(names.mutual_info_dim(d, "high")): b.high for d, b in enumerate(dims)},
    }


def generation_samplers(
    model, config: RunConfig, train_images: torch.Tensor, codes: torch.Tensor | None = None
) -> dict:
    """Samplers whose images are scored by FID, keyed by the metric's kind: for a VAE its prior and
    its aggregate posterior; for either model a Gaussian and a 10-component GMM fitted to the
    training images' posterior means (the AE's codes), so that AE and VAE samples are compared
    drawn the same way. `codes`: those posterior means, where the caller has them."""
    samplers = {}
    if model.variational:
        samplers[names.SAMPLES] = NormalPrior(model.latent_dim)
        samplers[names.AGGREGATE_POSTERIOR] = AggregatePosterior(model, train_images)
    codes = latent_means(model, train_images) if codes is None else codes
    samplers[names.SAMPLES_GAUSSIAN] = FittedGaussian(codes)
    if len(codes) > 1:  # a mixture needs two codes to fit; a one-image run has only its Gaussian
        samplers[names.SAMPLES_GMM] = FittedMixture(codes, seed=config.seed)
    return samplers


def sample_metrics(model, samplers: dict, splits, references, n: int) -> tuple[dict[str, float], dict]:
    """For `n` images of each sampler and the test set's reconstructions, in each reference's
    features: `fid/<extractor>/<name>`, and beside every sampler's FID `precision/<extractor>/<name>`
    and `recall/<extractor>/<name>` (PR_IMAGES of them against the reference's test images); for a VAE
    `prior_hole/<extractor>`, FID(prior samples) - FID(aggregate posterior's). For the model's own
    samples (its prior's where it has one, else the fitted Gaussian's) `nearest/<extractor>/samples`
    and `nearest/pixels/samples`, the memorisation ratio against every training image. Also the
    nearest-neighbour figure's images."""
    if not references:
        return {}, {}
    images = {name: generate(model, sampler, n, EVAL_SEED) for name, sampler in samplers.items()}
    images[names.RECONSTRUCTIONS] = decode_images(model, latent_means(model, splits.test.images))
    own = names.SAMPLES if names.SAMPLES in images else names.SAMPLES_GAUSSIAN
    train, samples = splits.train.images, images[own][:NEAREST_QUERIES]
    distances, closest = nearest(samples, train)
    metrics = {names.nearest(names.PIXELS): nearest_ratio(distances, references[0].real.test_nearest_pixels)}
    shown = {names.NEAREST_SAMPLES: samples[:NEAREST_SHOWN], names.NEAREST_PIXELS: train[closest[:NEAREST_SHOWN]]}
    for ref in references:
        name, real = ref.extractor.name, ref.real
        features = {kind: ref.features(x) for kind, x in images.items()}
        for kind, found in features.items():
            metrics[names.fid(name, kind)] = ref.fid_of_features(found.numpy())
            if kind != names.RECONSTRUCTIONS:
                metrics[names.precision(name, kind)], metrics[names.recall(name, kind)] = precision_recall(
                    real.test, found[:PR_IMAGES], real_radii=real.radii
                )
        if names.AGGREGATE_POSTERIOR in features:
            metrics[names.prior_hole(name)] = (
                metrics[names.fid(name, names.SAMPLES)] - metrics[names.fid(name, names.AGGREGATE_POSTERIOR)]
            )
        distances, closest = nearest(features[own][:NEAREST_QUERIES], real.train)
        metrics[names.nearest(name)] = nearest_ratio(distances, real.test_nearest)
        shown.setdefault(names.NEAREST_FEATURES, train[closest[:NEAREST_SHOWN]])
    return metrics, shown


def showcase_indices(labels: torch.Tensor) -> torch.Tensor:
    """The first test image of each class: the same pictures for every run of a dataset."""
    return torch.stack([(labels == c).nonzero()[0, 0] for c in labels.unique()])


def figure_samplers(model, config: RunConfig, samplers: dict) -> dict:
    """The samplers whose samples the figures show, keyed by figure name: both priors, the VAE's
    aggregate posterior, and the Gaussian and the mixture fitted to either model's codes."""
    shown_samplers = {
        names.NORMAL_PRIOR_SAMPLES: NormalPrior(config.latent_dim),
        names.LAPLACE_PRIOR_SAMPLES: LaplacePrior(config.latent_dim),
    }
    if model.variational:
        shown_samplers[names.AGGREGATE_SAMPLES] = samplers[names.AGGREGATE_POSTERIOR]
    return shown_samplers | {
        kind: samplers[kind] for kind in (names.SAMPLES_GAUSSIAN, names.SAMPLES_GMM) if kind in samplers
    }


def figure_images(model, config: RunConfig, test, shown_samplers: dict) -> dict[str, torch.Tensor]:
    """The images the run's image figures show, keyed by name: `originals` (the showcase test
    images) and their `reconstructions`, 64 samples from each of `shown_samplers`, the
    `interpolation` between the first and last originals and, for a 2-D latent, the `manifold` grid."""
    originals = test.images[showcase_indices(test.labels)]
    device = test.images.device
    images = {
        names.ORIGINALS: originals,
        names.RECONSTRUCTION_IMAGES: decode_images(model, latent_means(model, originals)),
    }
    for name, sampler in shown_samplers.items():
        z = sampler(FIGURE_SAMPLES, torch.Generator().manual_seed(EVAL_SEED))
        images[name] = decode_images(model, z.to(device))
    images[names.INTERPOLATION] = decode_images(model, interpolation_codes(model, originals[0], originals[-1]))
    if config.latent_dim == 2:
        own = None if model.variational else latent_means(model, test.images)
        images[names.MANIFOLD] = decode_images(model, manifold_codes(codes=own).to(device))
    return images


def images_npz(images: dict[str, torch.Tensor]) -> bytes:
    """The figures' images as 8-bit grey levels (N, 28, 28), for reports to lay out anew."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        **{
            name: (x.cpu().view(-1, IMAGE_SIDE, IMAGE_SIDE) * 255).round().to(torch.uint8).numpy()
            for name, x in images.items()
        },
    )
    return buffer.getvalue()


def run_figures(
    model, config: RunConfig, test, images: dict, shown_samplers: dict, history, test_metrics, traversed: list[int]
) -> dict:
    """The figures logged under figures/ for every run, by name, each drawn only when called (a
    run re-evaluated draws only those it lacks)."""
    classes = CLASS_NAMES[config.dataset]
    found = {
        names.RECONSTRUCTION_IMAGES: lambda: figures.reconstructions(
            images[names.ORIGINALS], images[names.RECONSTRUCTION_IMAGES]
        )
    }
    for name, sampler in shown_samplers.items():
        found[name] = lambda name=name, title=sampler.title: figures.samples(images[name], f"samples: {title}")
    found[names.INTERPOLATION] = lambda: figures.interpolation(images[names.INTERPOLATION])
    found[names.LATENT_PCA] = lambda: figures.latent_pca(model, test.images, test.labels, classes)
    found[names.LATENT_TSNE] = lambda: figures.latent_tsne(model, test.images, test.labels, classes)
    if names.MANIFOLD in images:
        found[names.MANIFOLD] = lambda: figures.manifold(images[names.MANIFOLD])
    if model.variational:
        kl = per_dim(test_metrics, "", config.latent_dim)
        low = [test_metrics.get(names.test(names.mutual_info_dim(d, "low")), 0.0) for d in range(config.latent_dim)]
        found[names.KL_PER_DIM] = lambda: figures.kl_bars(kl, low, config.free_bits, test_metrics[names.ACTIVE_UNITS])
        found[names.KL_HEATMAP] = lambda: figures.kl_heatmap(
            [per_dim(h, names.val(""), config.latent_dim) for h in history]
        )
        found[names.TRAVERSALS] = lambda: figures.traversals(
            images[names.TRAVERSAL], traversed, [kl[d] for d in traversed]
        )
    if names.NEAREST_SAMPLES in images:
        found[names.NEAREST_TRAINING] = lambda: figures.nearest_training(
            images[names.NEAREST_SAMPLES],
            images[names.NEAREST_PIXELS],
            images.get(names.NEAREST_FEATURES),
            fid.DOMAIN_NAMES[config.dataset],
        )
    found[names.LOSS_CURVES] = lambda: figures.loss_curves(history)
    return found
