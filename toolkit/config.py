"""`RunConfig`: every knob of one training run, validated in one place."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass

from toolkit import ToolkitError

MODELS = ("vae", "ae")
DATASETS = ("fashion-mnist", "mnist")
LIKELIHOODS = ("bernoulli", "gaussian")
FID_MODES = ("auto", "inception", "off")  # auto: the domain CNN always, Inception too when it is cheap
SAMPLERS = ("default", "gmm")  # default: the VAE's prior, a Gaussian fitted to the AE's codes
VAE_ONLY = ("beta", "warmup_epochs", "free_bits", "iw_samples")  # fields an AE ignores, so does not log
INT_FIELDS = ("latent_dim", "warmup_epochs", "epochs", "batch_size", "patience", "seed", "fid_samples", "iw_samples")
FLOAT_FIELDS = ("beta", "free_bits", "lr")
INPUT_DIM = 28 * 28  # the MLPs' input and output width
# Copies of the parameters that training holds at once: the weights, their gradients, Adam's two
# moments, the best epoch's weights and a checkpoint being written.
TRAINING_COPIES = 6


class ConfigError(ToolkitError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class RunConfig:
    model: str = "vae"
    dataset: str = "fashion-mnist"
    latent_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    likelihood: str = "bernoulli"
    beta: float = 1.0
    warmup_epochs: int = 0
    free_bits: float = 0.0
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 5
    seed: int = 42
    limit: int | None = None
    fid: str = "auto"
    fid_samples: int = 10_000
    sampler: str = "default"
    iw_samples: int = 100  # 0 skips the importance-weighted bound

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in FLOAT_FIELDS:  # 1 and 1.0 must log as the same param value
            if _is_int(getattr(self, name)):
                object.__setattr__(self, name, _as_float(getattr(self, name)))
        for name, problem in self._problems():
            raise ConfigError(f"{name}: {problem}")

    def _problems(self):
        wrong_type = self._type_problem()
        if wrong_type:
            yield wrong_type
            return  # the checks below compare numbers
        choices = {"model": MODELS, "dataset": DATASETS, "likelihood": LIKELIHOODS, "fid": FID_MODES,
                   "sampler": SAMPLERS}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                yield name, f"unknown value {value!r}; choose one of {', '.join(allowed)}"
        for name in FLOAT_FIELDS:
            if not math.isfinite(getattr(self, name)):
                yield name, f"must be a finite number, got {getattr(self, name)}"
                return  # nan compares false with everything: the checks below would not catch it
        if not 0 <= self.seed < 2 ** 32:
            yield "seed", f"must be between 0 and 2**32 - 1, got {self.seed}"
        positive = ("latent_dim", "epochs", "batch_size", "lr", "fid_samples")
        for name in positive:
            if not getattr(self, name) > 0:
                yield name, f"must be > 0, got {getattr(self, name)}"
        for name in ("beta", "free_bits", "warmup_epochs", "patience", "iw_samples"):
            if getattr(self, name) < 0:
                yield name, f"must be >= 0, got {getattr(self, name)}"
        if self.limit is not None and self.limit <= 0:
            yield "limit", f"must be > 0 when given, got {self.limit}"
        if not self.hidden or any(h <= 0 for h in self.hidden):
            yield "hidden", f"needs one or more positive layer sizes, got {self.hidden}"
            return  # the memory estimate needs the sizes
        if self.training_bytes() > physical_memory():
            yield self._memory_problem()

    def _type_problem(self) -> tuple[str, str] | None:
        """The first field holding a value of the wrong type (a bool is not a number here), or None."""
        for name in INT_FIELDS + (("limit",) if self.limit is not None else ()):
            if not _is_int(getattr(self, name)):
                return name, f"must be an integer, got {getattr(self, name)!r}"
        for name in FLOAT_FIELDS:
            if not isinstance(getattr(self, name), float):
                return name, f"must be a number, got {getattr(self, name)!r}"
        if not isinstance(self.hidden, tuple) or not all(_is_int(h) for h in self.hidden):
            return "hidden", f"must be a list of integer layer sizes, got {self.hidden!r}"
        return None

    def parameter_count(self) -> int:
        """The MLP's parameters: encoder 784 -> hidden -> head (2 x latent_dim wide for a VAE: mean
        and log-variance), decoder latent_dim -> reversed hidden -> 784, each layer weights and bias."""
        head = 2 * self.latent_dim if self.model == "vae" else self.latent_dim
        encoder = [INPUT_DIM, *self.hidden, head]
        decoder = [self.latent_dim, *reversed(self.hidden), INPUT_DIM]
        return sum((a + 1) * b for sizes in (encoder, decoder) for a, b in zip(sizes, sizes[1:]))

    def training_bytes(self) -> int:
        """A rough lower bound on the memory training takes: TRAINING_COPIES float32 copies of the
        parameters. Activations are left out: batches of a few hundred images are small beside them."""
        return self.parameter_count() * 4 * TRAINING_COPIES

    def _memory_problem(self) -> tuple[str, str]:
        """The too-large model, blamed on its widest part."""
        name = "latent_dim" if self.latent_dim > max(self.hidden) else "hidden"
        return name, (f"{self.hidden if name == 'hidden' else self.latent_dim} makes a {self.model.upper()} of "
                      f"{self.parameter_count():,} parameters whose training needs about "
                      f"{self.training_bytes() / 2 ** 30:,.1f} GiB ({TRAINING_COPIES} float32 copies: weights, "
                      f"gradients, Adam's two moments, best weights, checkpoint), more than this machine's "
                      f"{physical_memory() / 2 ** 30:,.1f} GiB of memory; make it smaller")

    def describe(self) -> str:
        """One sentence a person reads in the MLflow UI: the model, its latent size, its objective
        and how it was trained."""
        layers = "-".join(str(n) for n in (784, *self.hidden, self.latent_dim))
        text = f"{self.model.upper()} with a {self.latent_dim}-d latent (MLP {layers}), {self.likelihood} likelihood"
        if self.model == "vae":
            warmup = f"KL warm-up over {self.warmup_epochs} epochs" if self.warmup_epochs else "no KL warm-up"
            free_bits = f"{self.free_bits:g} free nats per dimension" if self.free_bits else "no free bits"
            text += f", β = {self.beta:g}, {warmup}, {free_bits}"
        stopping = f"patience {self.patience}" if self.patience else "no early stopping"
        return (f"{text}; up to {self.epochs} epochs (batch {self.batch_size}, lr {self.lr:g}, {stopping}), "
                f"seed {self.seed}, on {self.dataset}")

    def to_json(self) -> dict:
        """The fields an AE or VAE uses, typed (`hidden` as a list, `limit` null when unset)."""
        values = dataclasses.asdict(self)
        values["hidden"] = list(self.hidden)
        return {k: v for k, v in values.items() if not (self.model == "ae" and k in VAE_ONLY)}

    def to_params(self) -> dict[str, str]:
        """`to_json` as flat MLflow params; `hidden` is written as '400' or '256,128'."""
        params = self.to_json()
        params["hidden"] = ",".join(str(h) for h in self.hidden)
        return {k: str(v) for k, v in params.items()}

    @classmethod
    def from_params(cls, params: dict) -> "RunConfig":
        """Inverse of `to_params` and `to_json` (strings or typed values); fields not given keep
        their defaults, unknown keys (e.g. from other tools) are ignored."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in params:
                values[field.name] = parse_value(field.name, params[field.name])
        return cls(**values)


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


def parse_hidden(text: str) -> tuple[int, ...]:
    """'256,128' -> (256, 128), with a clear error for anything else."""
    try:
        return tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise ConfigError(f"hidden: expected comma-separated integers like '400' or '256,128', got {text!r}") from None


def parse_value(name: str, raw):
    """A field's value from its MLflow param (a string) or from typed JSON."""
    if not isinstance(raw, str):
        return tuple(raw) if name == "hidden" else raw
    if name == "hidden":
        return parse_hidden(raw)
    if name == "limit" and raw == "None":
        return None
    kind = int if name == "limit" else type(RunConfig.__dataclass_fields__[name].default)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind.__name__}") from None
