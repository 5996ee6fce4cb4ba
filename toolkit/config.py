"""`RunConfig`: every knob of one training run, validated in one place."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass

from toolkit import ToolkitError

MODELS = ("vae", "ae")
ARCHITECTURES = ("mlp", "conv", "linear")
DATASETS = ("fashion-mnist", "mnist")
LIKELIHOODS = ("bernoulli", "gaussian")
FID_MODES = ("auto", "inception", "off")  # auto: the domain CNN always, Inception too when it is cheap
PRECISIONS = ("fp32", "bf16")
FIGURE_MODES = ("all", "off")  # off: none drawn at the end of training; `toolkit evaluate` draws them later
DECODER_SCALES = ("fixed", "learned")  # the Gaussian decoder's σ: fixed at `sigma`, or trained from it
BINARIZATIONS = ("none", "dynamic")  # grey levels as they are, or Bernoulli draws of them (Burda et al. 2015)
# σ of the reference notebooks' Gaussian decoder: σ² = ½, so its NLL is the squared error plus a constant
SQRT_HALF = math.sqrt(0.5)
VAE_ONLY = ("beta", "warmup_epochs", "free_bits", "iw_samples", "iw_images")  # fields an AE ignores, so does not log
MLP_ONLY = ("hidden",)  # fields the conv and linear architectures ignore, so do not log
GAUSSIAN_ONLY = ("decoder_scale", "sigma")  # fields the Bernoulli likelihood ignores, so does not log
NOT_MEASURED = ("figures",)  # fields that change what a run draws, not what it measures: never a setting apart
IMAGE_SIDE = 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE  # the width of a flattened image, the models' input and output
# Copies of the parameters that training holds at once: the weights, their gradients, Adam's two
# moments, the best epoch's weights and a checkpoint being written.
TRAINING_COPIES = 6
# What evaluation holds at once, for `memory_bytes`: the IW bound's K x IW_BATCH codes (with their
# noise, log-densities and a copy in flight: IW_COPIES of them), the codes of up to TRAIN_IMAGES
# training images (every run's fitted Gaussian and GMM samplers are fitted to them) and the
# covariances fitted to those codes (float64 and GMM_COMPONENTS of them for the GMM, with its
# working copies: COVARIANCE_COPIES).
IW_BATCH, IW_COPIES = 100, 4
MIN_IW_IMAGES = 2
MIN_FID_SAMPLES = 129  # more images than the domain CNN has features (128), for a covariance of full rank
TRAIN_IMAGES = 60_000
GMM_COMPONENTS, COVARIANCE_COPIES = 10, 3
# The conv architecture (`models.conv_encoder`): channels of its two stride-2 convolutions (28 -> 14 -> 7)
# and the width of the flattened 7 x 7 feature map that the latent head reads and the decoder starts from.
CONV_CHANNELS = (32, 64)
CONV_FEATURES = CONV_CHANNELS[-1] * (IMAGE_SIDE // 4) ** 2


def option(default, help: str, choices: tuple[str, ...] = ()):
    """A `RunConfig` field: its default, the help `toolkit train --help` shows, its allowed values."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


class ConfigError(ToolkitError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class RunConfig:
    model: str = option("vae", "the model", MODELS)
    architecture: str = option(
        "mlp",
        "encoder and decoder: mlp (784-hidden-latent and back), conv (two "
        "stride-2 convolutions 32-64 and their transposes) or linear (affine maps 784-latent and back, "
        "a VAE's posterior variance one learned vector for every image; the decoder's output is a Gaussian "
        "likelihood's mean itself, no sigmoid: with --likelihood gaussian, probabilistic PCA)",
        ARCHITECTURES,
    )
    dataset: str = option("fashion-mnist", "the images", DATASETS)
    latent_dim: int = option(20, "latent dimensions")
    hidden: tuple[int, ...] = option((400,), "hidden layer sizes of the mlp, e.g. 400 or 256,128")
    likelihood: str = option("bernoulli", "the decoder's p(x|z)", LIKELIHOODS)
    decoder_scale: str = option(
        "fixed",
        "the Gaussian decoder's standard deviation σ, one for every pixel: fixed "
        "at --sigma, or learned (a trained parameter starting at --sigma, as in the σ-VAE "
        "of Rybkin et al. 2021)",
        DECODER_SCALES,
    )
    sigma: float = option(
        SQRT_HALF,
        "the Gaussian decoder's σ (or its starting value when learned); the default "
        "√½ makes the NLL the squared error plus (784/2)·ln π",
    )
    binarize: str = option(
        "none",
        "the Bernoulli likelihood's pixels: grey levels as they are (a cross-entropy, "
        "not a likelihood of the images), or dynamic: every training batch drawn anew as "
        "Bernoulli samples of the grey levels, validation and test drawn once with a fixed "
        "seed (Burda et al. 2015), which makes the nats comparable with published "
        "binarised-MNIST likelihoods",
        BINARIZATIONS,
    )
    beta: float = option(1.0, "weight of the KL term (VAE)")
    warmup_epochs: int = option(0, "linear KL warm-up length (VAE)")
    free_bits: float = option(0.0, "nats per latent dimension below which KL is not penalised (VAE)")
    epochs: int = option(30, "at most this many epochs")
    batch_size: int = option(128, "training images per step")
    lr: float = option(1e-3, "Adam's learning rate")
    patience: int = option(5, "early stopping after this many epochs without a better validation loss; 0 turns it off")
    seed: int = option(42, "seeds the split, the initial weights and every sample")
    limit: int | None = option(None, "use only the first N training images")
    fid: str = option(
        "auto",
        "auto scores with the domain CNN always and with Inception too when its weights and a GPU are here",
        FID_MODES,
    )
    fid_samples: int = option(10_000, "generated images per FID")
    iw_samples: int = option(100, "K of the importance-weighted NLL bound (VAE); 0 skips it")
    iw_images: int = option(
        2000,
        "test images the IW bound is computed on; fewer than the test set's estimate the bound on "
        "every test image (the test set's -ELBO less these images' mean gap to their bound, with "
        "its standard error logged); 10000 computes it on every Fashion-MNIST or MNIST test image",
    )
    figures: str = option(
        "all",
        "the run's figures (figures/*.png): off skips drawing them, 2 to 4 s of every run's end, for "
        "large sweeps; `toolkit evaluate RUN_ID` draws them later from the logged model",
        FIGURE_MODES,
    )
    precision: str = option(
        "fp32",
        "of the training steps' forward pass: bf16 runs it under bfloat16 autocast "
        "(weights, gradients and losses stay fp32; evaluation is unchanged)",
        PRECISIONS,
    )

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in fields_of(type(self), float):  # 1 and 1.0 must log as the same param value
            if _is_int(getattr(self, name)):
                object.__setattr__(self, name, _as_float(getattr(self, name)))
        for name, problem in self._problems():
            raise ConfigError(f"{name}: {problem}")

    def _problems(self):
        wrong_type = self._type_problem()
        if wrong_type:
            yield wrong_type
            return  # the checks below compare numbers
        for name, allowed in choices(type(self)).items():
            value = getattr(self, name)
            if value not in allowed:
                yield name, f"unknown value {value!r}; choose one of {', '.join(allowed)}"
        for name in fields_of(type(self), float):
            if not math.isfinite(getattr(self, name)):
                yield name, f"must be a finite number, got {getattr(self, name)}"
                return  # nan compares false with everything: the checks below would not catch it
        if not 0 <= self.seed < 2**32:
            yield "seed", f"must be between 0 and 2**32 - 1, got {self.seed}"
        positive = ("latent_dim", "epochs", "batch_size", "lr", "sigma")
        for name in positive:
            if not getattr(self, name) > 0:
                yield name, f"must be > 0, got {getattr(self, name)}"
        if self.fid_samples < MIN_FID_SAMPLES:
            yield (
                "fid_samples",
                (
                    f"must be >= {MIN_FID_SAMPLES}, got {self.fid_samples}: the covariance of fewer "
                    f"images' {MIN_FID_SAMPLES - 1} features is singular"
                ),
            )
        for name in ("beta", "free_bits", "warmup_epochs", "patience", "iw_samples"):
            if getattr(self, name) < 0:
                yield name, f"must be >= 0, got {getattr(self, name)}"
        if self.iw_images < MIN_IW_IMAGES:
            yield "iw_images", f"must be >= {MIN_IW_IMAGES}, got {self.iw_images}: a standard error needs two images"
        if self.binarize != "none" and self.likelihood != "bernoulli":
            yield "binarize", f"binarised pixels go with the bernoulli likelihood, not {self.likelihood}"
        if self.limit is not None and self.limit <= 0:
            yield "limit", f"must be > 0 when given, got {self.limit}"
        if not self.hidden or any(h <= 0 for h in self.hidden):
            yield "hidden", f"needs one or more positive layer sizes, got {self.hidden}"

    def check_memory(self):
        """Refuse, naming the field to blame, a run this machine cannot hold (`memory_bytes`): called
        where training starts, before any work, not when a config is made (a run logged on a larger
        machine still reads back)."""
        if self.memory_bytes() > physical_memory():
            raise ConfigError("{}: {}".format(*self._memory_problem()))

    def _type_problem(self) -> tuple[str, str] | None:
        """The first field holding a value of the wrong type (a bool is not a number here), or None."""
        for name in fields_of(type(self), int):
            value = getattr(self, name)
            if not _is_int(value) and not (value is None and name in optional_fields(type(self))):
                return name, f"must be an integer, got {getattr(self, name)!r}"
        for name in fields_of(type(self), float):
            if not isinstance(getattr(self, name), float):
                return name, f"must be a number, got {getattr(self, name)!r}"
        if not isinstance(self.hidden, tuple) or not all(_is_int(h) for h in self.hidden):
            return "hidden", f"must be a list of integer layer sizes, got {self.hidden!r}"
        return None

    def parameter_count(self) -> int:
        """The model's parameters, weights and biases. MLP: encoder 784 -> hidden -> head (2 x
        latent_dim wide for a VAE: mean and log-variance), decoder latent_dim -> reversed hidden ->
        784. Conv: the 4x4 convolutions 1 -> 32 -> 64 and transposes 64 -> 32 -> 1, three batch
        norms (a scale and a shift per channel), head and decoder input linear to and from the 7 x 7 map.
        Linear: the MLP without hidden layers, its VAE head one log-variance per dimension (not per image)."""
        head = 2 * self.latent_dim if self.model == "vae" else self.latent_dim
        if self.architecture == "linear":
            head_weights = (INPUT_DIM + 1) * self.latent_dim + (head - self.latent_dim)
            return head_weights + (self.latent_dim + 1) * INPUT_DIM
        if self.architecture == "conv":
            a, b = CONV_CHANNELS
            convolutions = sum((16 * i + 1) * o for i, o in ((1, a), (a, b), (b, a), (a, 1)))
            return convolutions + 2 * (a + b + a) + (CONV_FEATURES + 1) * head + (self.latent_dim + 1) * CONV_FEATURES
        encoder = [INPUT_DIM, *self.hidden, head]
        decoder = [self.latent_dim, *reversed(self.hidden), INPUT_DIM]
        return sum((a + 1) * b for sizes in (encoder, decoder) for a, b in zip(sizes, sizes[1:]))

    def training_bytes(self) -> int:
        """A lower bound on the memory training takes: TRAINING_COPIES float32 copies of the
        parameters (activations of a batch of a few hundred images are small beside them)."""
        return self.parameter_count() * 4 * TRAINING_COPIES

    def evaluation_bytes(self) -> int:
        """A lower bound on the memory evaluation takes at its largest: the weights with the largest
        of the IW bound's codes (VAE) and the training images' codes with the covariances fitted
        to them (the GMM's, float64, the larger of the two samplers'), all float32 but the GMM's."""
        d = self.latent_dim
        iw = self.iw_samples * IW_BATCH * d * 4 * IW_COPIES if self.model == "vae" else 0
        images = min(self.limit or TRAIN_IMAGES, TRAIN_IMAGES)  # a limit beyond the data is refused when it is read
        codes = images * d * 4 + COVARIANCE_COPIES * GMM_COMPONENTS * d * d * 8
        return self.parameter_count() * 4 + max(iw, codes)

    def memory_bytes(self) -> int:
        """A lower bound on the most memory a run holds at once, in training or in evaluation:
        checked before any work, so that a run the machine cannot hold is refused, not killed."""
        return max(self.training_bytes(), self.evaluation_bytes())

    def _memory_problem(self) -> tuple[str, str]:
        """The too-large model, blamed on its widest part, with the stage that needs the memory."""
        name = "hidden" if self.architecture == "mlp" and self.latent_dim <= max(self.hidden) else "latent_dim"
        stage = (
            (
                f"training needs about {self.training_bytes() / 2**30:,.1f} GiB ({TRAINING_COPIES} float32 copies "
                f"of its {self.parameter_count():,} parameters: weights, gradients, Adam's two moments, best "
                "weights, checkpoint)"
            )
            if self.training_bytes() >= self.evaluation_bytes()
            else (
                f"evaluation needs about {self.evaluation_bytes() / 2**30:,.1f} GiB (the IW bound's K x "
                f"{IW_BATCH} codes, or the training images' codes and the covariances fitted to them)"
            )
        )
        return name, (
            f"{self.hidden if name == 'hidden' else self.latent_dim} makes a {self.model.upper()} whose "
            f"{stage}, more than this machine's {physical_memory() / 2**30:,.1f} GiB of memory; "
            "make it smaller"
        )

    def describe(self) -> str:
        """One sentence a person reads in the MLflow UI: the model, its latent size, its objective
        and how it was trained."""
        layers = "-".join(str(n) for n in (784, *self.hidden, self.latent_dim))
        network = {
            "mlp": f"MLP {layers}",
            "conv": f"conv {'-'.join(map(str, CONV_CHANNELS))}",
            "linear": f"linear 784-{self.latent_dim}",
        }[self.architecture]
        text = f"{self.model.upper()} with a {self.latent_dim}-d latent ({network}), {self.likelihood_text()}"
        if self.model == "vae":
            warmup = f"KL warm-up over {self.warmup_epochs} epochs" if self.warmup_epochs else "no KL warm-up"
            free_bits = f"{self.free_bits:g} free nats per dimension" if self.free_bits else "no free bits"
            text += f", β = {self.beta:g}, {warmup}, {free_bits}"
        stopping = f"patience {self.patience}" if self.patience else "no early stopping"
        stopping += ", bf16 autocast" if self.precision == "bf16" else ""
        return (
            f"{text}; up to {self.epochs} epochs (batch {self.batch_size}, lr {self.lr:g}, {stopping}), "
            f"seed {self.seed}, on {self.dataset}"
        )

    def likelihood_text(self) -> str:
        """The decoder's likelihood in words: 'Gaussian likelihood (σ = 0.707, fixed)', 'Bernoulli
        likelihood on grey levels', …"""
        if self.likelihood == "gaussian":
            scale = (
                f"σ = {self.sigma:.3g}, fixed" if self.decoder_scale == "fixed" else f"σ learned from {self.sigma:.3g}"
            )
            return f"Gaussian likelihood ({scale})"
        pixels = "grey levels" if self.binarize == "none" else "pixels binarised dynamically"
        return f"Bernoulli likelihood on {pixels}"

    def to_json(self) -> dict:
        """The fields this model, architecture and likelihood use, typed (`hidden` as a list, `limit`
        null when unset)."""
        unused = (
            (VAE_ONLY if self.model == "ae" else ())
            + (MLP_ONLY if self.architecture != "mlp" else ())
            + (GAUSSIAN_ONLY if self.likelihood != "gaussian" else ())
        )
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in unused}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def to_params(self) -> dict[str, str]:
        """`to_json` as flat MLflow params; a sequence like `hidden` is written as '400' or '256,128'."""
        return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in self.to_json().items()}

    @classmethod
    def from_params(cls, params: dict) -> RunConfig:
        """Inverse of `to_params` and `to_json` (strings or typed values); fields not given keep
        their defaults, unknown keys (e.g. from other tools) are ignored."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in params:
                values[field.name] = parse_value(field.name, params[field.name], cls)
        return cls(**values)


@functools.cache
def annotations(cls: type) -> dict[str, object]:
    """Each field's annotation, e.g. int, int | None, tuple[int, ...]."""
    return typing.get_type_hints(cls)


def fields_of(cls: type, *kinds) -> tuple[str, ...]:
    """The fields annotated with one of `kinds`, or with an optional one of them."""
    return tuple(name for name, kind in annotations(cls).items() if kind in kinds + tuple(k | None for k in kinds))


def optional_fields(cls: type) -> tuple[str, ...]:
    return tuple(name for name, kind in annotations(cls).items() if kind == (kind | None))


def choices(cls: type) -> dict[str, tuple[str, ...]]:
    """The fields with a fixed set of values, and those values."""
    return {f.name: f.metadata["choices"] for f in dataclasses.fields(cls) if f.metadata.get("choices")}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value: int) -> float:
    """An integer as a float; one too large for a float becomes an infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


@functools.cache
def physical_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_value(name: str, raw, cls: type | None = None):
    """A field of `cls` (a RunConfig) from its MLflow param or command-line word (a string), or from typed JSON."""
    cls = cls or RunConfig
    sequence = annotations(cls)[name] == tuple[int, ...]
    if not isinstance(raw, str):
        return tuple(raw) if sequence else raw
    if sequence:
        try:
            return tuple(int(part) for part in raw.split(","))
        except ValueError:
            raise ConfigError(
                f"{name}: expected comma-separated integers like '400' or '256,128', got {raw!r}"
            ) from None
    if name in optional_fields(cls) and raw == "None":
        return None
    kind = int if name in fields_of(cls, int) else float if name in fields_of(cls, float) else str
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind.__name__}") from None
