"""`RunConfig`: every knob of one training run, validated in one place."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from toolkit import ToolkitError

MODELS = ("vae", "ae")
DATASETS = ("fashion-mnist", "mnist")
LIKELIHOODS = ("bernoulli", "gaussian")
FID_MODES = ("auto", "inception", "off")  # auto: the domain CNN always, Inception too when it is cheap
SAMPLERS = ("default", "gmm")  # default: the VAE's prior, a Gaussian fitted to the AE's codes
VAE_ONLY = ("beta", "warmup_epochs", "free_bits", "iw_samples")  # fields an AE ignores, so does not log


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
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("beta", "free_bits", "lr"):  # 1 and 1.0 must log as the same param value
            if isinstance(getattr(self, name), int):
                object.__setattr__(self, name, float(getattr(self, name)))
        for name, problem in self._problems():
            raise ConfigError(f"{name}: {problem}")

    def _problems(self):
        choices = {"model": MODELS, "dataset": DATASETS, "likelihood": LIKELIHOODS, "fid": FID_MODES,
                   "sampler": SAMPLERS}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                yield name, f"unknown value {value!r}; choose one of {', '.join(allowed)}"
        for name in ("beta", "free_bits", "lr"):
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
        if not self.hidden or any(h <= 0 for h in self.hidden):
            yield "hidden", f"needs one or more positive layer sizes, got {self.hidden}"
        if self.limit is not None and self.limit <= 0:
            yield "limit", f"must be > 0 when given, got {self.limit}"

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
    if name == "limit":
        return None if raw == "None" else int(raw)
    default = RunConfig.__dataclass_fields__[name].default
    try:
        return type(default)(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {type(default).__name__}") from None
