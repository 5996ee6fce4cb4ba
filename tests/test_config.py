import contextlib
import dataclasses
import io
import json
import subprocess
import sys

import pytest

from toolkit.cli import Parser, add_run_arguments, config_from_args
from toolkit.config import MLP_ONLY, VAE_ONLY, ConfigError, RunConfig, option


@pytest.mark.parametrize(
    "field, value",
    [
        ("latent_dim", 0),
        ("latent_dim", -3),
        ("beta", -0.1),
        ("free_bits", -1.0),
        ("lr", 0.0),
        ("dataset", "cifar10"),
        ("model", "gan"),
        ("likelihood", "poisson"),
        ("epochs", 0),
        ("batch_size", 0),
        ("hidden", (400, 0)),
        ("limit", 0),
        ("warmup_epochs", -1),
        ("fid", "kid"),
        ("fid_samples", 0),
        ("iw_samples", -1),
        ("iw_images", 1),
        ("architecture", "transformer"),
        ("beta", float("nan")),
        ("beta", float("inf")),
        ("free_bits", float("nan")),
        ("free_bits", float("inf")),
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("seed", 2**70),
        ("seed", -1),
    ],
)
def test_invalid_value_is_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        RunConfig(**{field: value})


def test_params_round_trip_through_strings():
    config = RunConfig(hidden=(256, 128), beta=0.25, limit=500, free_bits=0.1, fid="off", iw_samples=0)
    params = config.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert params["hidden"] == "256,128"
    assert RunConfig.from_params(params) == config


def test_typed_json_round_trip():
    config = RunConfig(hidden=(256, 128), beta=0.25, warmup_epochs=3)
    typed = json.loads(json.dumps(config.to_json()))
    assert typed["hidden"] == [256, 128] and typed["limit"] is None and typed["beta"] == 0.25
    assert typed["warmup_epochs"] == 3 and typed["lr"] == 1e-3
    assert RunConfig.from_params(typed) == config


def test_an_ae_logs_only_the_settings_it_uses():
    params = RunConfig(model="ae", beta=4, free_bits=0.5, warmup_epochs=2).to_params()
    assert not set(VAE_ONLY) & set(params)
    assert {"model", "latent_dim", "hidden", "lr", "seed"} <= set(params)
    assert RunConfig.from_params(params) == RunConfig(model="ae")


def test_an_integer_beta_logs_like_the_float_default():
    assert RunConfig(beta=1, lr=1, free_bits=0).to_params() == RunConfig(lr=1.0).to_params()


def test_cli_refuses_bad_value_with_one_line_before_any_work(tmp_cwd, cli_env):
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "train", "--latent-dim", "0"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: latent_dim: must be > 0, got 0"
    assert not (tmp_cwd / "data").exists() and not (tmp_cwd / "mlruns").exists()


@pytest.mark.parametrize("argv", [["--epochs=--"], ["--workers=--"]])
def test_an_option_given_only_a_double_dash_is_refused_in_one_line(argv, capsys):
    """argparse drops the `--` of `--option=--` and hands on an empty list (found by Hypothesis)."""
    parser = Parser(prog="toolkit train")
    add_run_arguments(parser, RunConfig())
    parser.add_argument("--workers", type=int, default=1)
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(argv)
    option = argv[0].removesuffix("=--")
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"error: argument {option}: expected one argument; see toolkit train --help\n"


def test_cli_refuses_malformed_hidden_sizes(tmp_cwd, cli_env):
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "train", "--hidden", "400x2"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "hidden" in result.stderr and "Traceback" not in result.stderr


def test_the_likelihoods_settings_are_checked_and_logged_only_where_they_apply():
    with pytest.raises(ConfigError, match="^binarize: binarised pixels go with the bernoulli likelihood, not gaussian"):
        RunConfig(likelihood="gaussian", binarize="dynamic")
    with pytest.raises(ConfigError, match="^sigma: must be > 0, got 0.0"):
        RunConfig(likelihood="gaussian", sigma=0)
    assert not {"sigma", "decoder_scale"} & set(RunConfig(binarize="dynamic").to_params())
    gaussian = RunConfig(likelihood="gaussian", decoder_scale="learned")
    assert gaussian.to_params()["decoder_scale"] == "learned" and float(
        gaussian.to_params()["sigma"]
    ) ** 2 == pytest.approx(0.5)
    assert "Gaussian likelihood (σ learned from 0.707)" in gaussian.describe()
    assert "Bernoulli likelihood on grey levels" in RunConfig().describe()


def test_a_conv_model_logs_no_hidden_sizes_and_a_run_before_architectures_loads_as_mlp():
    params = RunConfig(architecture="conv", hidden=(128,)).to_params()
    assert params["architecture"] == "conv" and not set(MLP_ONLY) & set(params)
    assert RunConfig.from_params(params) == RunConfig(architecture="conv")
    older = {k: v for k, v in RunConfig().to_params().items() if k != "architecture"}
    assert RunConfig.from_params(older).architecture == "mlp"


def test_a_linear_model_logs_no_hidden_sizes_and_says_what_it_is():
    config = RunConfig(architecture="linear", likelihood="gaussian", decoder_scale="learned", hidden=(64,))
    params = config.to_params()
    assert params["architecture"] == "linear" and not set(MLP_ONLY) & set(params)
    assert RunConfig.from_params(params) == dataclasses.replace(config, hidden=RunConfig.hidden)
    assert "(linear 784-20), Gaussian likelihood (σ learned" in config.describe()


def parse(argv: list[str], base: RunConfig = RunConfig()):  # noqa: B008 (frozen: one shared default is safe)
    parser = Parser(prog="train")
    add_run_arguments(parser, base)
    return parser.parse_args(argv)


# A value for every field other than its default (but binarize: binary pixels go with the Bernoulli
# likelihood, σ with the Gaussian), as typed on a command line.
EVERY_FIELD = {
    "model": "ae",
    "architecture": "conv",
    "dataset": "mnist",
    "latent_dim": "7",
    "hidden": "64,32",
    "likelihood": "gaussian",
    "decoder_scale": "learned",
    "sigma": "0.2",
    "binarize": "none",
    "beta": "0.5",
    "warmup_epochs": "3",
    "free_bits": "0.25",
    "epochs": "4",
    "batch_size": "64",
    "lr": "0.002",
    "patience": "0",
    "seed": "9",
    "limit": "100",
    "fid": "off",
    "fid_samples": "500",
    "iw_samples": "5",
    "iw_images": "300",
    "figures": "off",
    "precision": "bf16",
}


def test_the_command_line_has_an_option_for_every_field_and_parses_it_to_the_field_type():
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(RunConfig)}
    argv = [word for name, value in EVERY_FIELD.items() for word in (f"--{name.replace('_', '-')}", value)]
    config = config_from_args(parse(argv))
    assert config == RunConfig.from_params(EVERY_FIELD)
    assert config_from_args(parse([])) == RunConfig()


@pytest.mark.parametrize(
    "option, word",
    [("--latent-dim", "seven"), ("--beta", "big"), ("--hidden", "400x2"), ("--limit", "1.5"), ("--seed", "")],
)
def test_a_word_that_is_not_the_fields_type_is_one_line_naming_the_field(option, word, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse([option, word])
    line = capsys.readouterr().err.strip()
    field = option.removeprefix("--").replace("-", "_")
    assert exit_info.value.code == 2 and "\n" not in line
    assert line.startswith(f"error: argument {option}: {field}: ") and line.endswith("see train --help")


def test_help_shows_each_fields_text_choices_and_default():
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        parse(["--help"])
    help_text = " ".join(text.getvalue().split())
    assert "--architecture ARCHITECTURE" in help_text and "one of mlp, conv, linear (default mlp)" in help_text
    assert "--hidden HIDDEN hidden layer sizes of the mlp, e.g. 400 or 256,128 (default 400)" in help_text
    assert "--limit LIMIT use only the first N training images" in help_text


@dataclasses.dataclass(frozen=True)
class WithDropout(RunConfig):
    dropout: float = option(0.0, "probability of dropping a hidden unit")
    schedule: str = option("constant", "the learning-rate schedule", ("constant", "cosine"))


def test_a_field_added_to_the_config_is_an_option_without_other_changes(capsys):
    config = config_from_args(parse(["--dropout", "0.3", "--schedule", "cosine"], WithDropout()), WithDropout)
    assert config == WithDropout(dropout=0.3, schedule="cosine")
    assert config.to_params()["dropout"] == "0.3"
    with pytest.raises(ConfigError, match="^schedule: unknown value 'linear'; choose one of constant, cosine"):
        config_from_args(parse(["--schedule", "linear"], WithDropout()), WithDropout)
    with pytest.raises(SystemExit):
        parse(["--dropout", "lots"], WithDropout())
    assert "argument --dropout: dropout: cannot read 'lots' as float" in capsys.readouterr().err
