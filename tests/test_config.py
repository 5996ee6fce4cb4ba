import json
import subprocess
import sys

import pytest

from toolkit.config import VAE_ONLY, ConfigError, RunConfig


@pytest.mark.parametrize("field, value", [
    ("latent_dim", 0), ("latent_dim", -3), ("beta", -0.1), ("free_bits", -1.0), ("lr", 0.0),
    ("dataset", "cifar10"), ("model", "gan"), ("likelihood", "poisson"), ("epochs", 0),
    ("batch_size", 0), ("hidden", (400, 0)), ("limit", 0), ("warmup_epochs", -1),
    ("fid", "kid"), ("fid_samples", 0), ("sampler", "flow"), ("iw_samples", -1),
    ("beta", float("nan")), ("beta", float("inf")), ("free_bits", float("nan")), ("free_bits", float("inf")),
    ("lr", float("inf")), ("lr", float("nan")), ("seed", 2 ** 70), ("seed", -1),
])
def test_invalid_value_is_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        RunConfig(**{field: value})


def test_params_round_trip_through_strings():
    config = RunConfig(hidden=(256, 128), beta=0.25, limit=500, free_bits=0.1, fid="off", sampler="gmm", iw_samples=0)
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
    assert {"model", "latent_dim", "hidden", "lr", "seed", "sampler"} <= set(params)
    assert RunConfig.from_params(params) == RunConfig(model="ae")


def test_an_integer_beta_logs_like_the_float_default():
    assert RunConfig(beta=1, lr=1, free_bits=0).to_params() == RunConfig(lr=1.0).to_params()


def test_cli_refuses_bad_value_with_one_line_before_any_work(tmp_cwd, cli_env):
    result = subprocess.run([sys.executable, "-m", "toolkit.cli", "train", "--latent-dim", "0"],
                            capture_output=True, text=True, env=cli_env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: latent_dim: must be > 0, got 0"
    assert not (tmp_cwd / "data").exists() and not (tmp_cwd / "mlruns").exists()


def test_cli_refuses_malformed_hidden_sizes(tmp_cwd, cli_env):
    result = subprocess.run([sys.executable, "-m", "toolkit.cli", "train", "--hidden", "400x2"],
                            capture_output=True, text=True, env=cli_env, timeout=120)
    assert result.returncode == 2
    assert "hidden" in result.stderr and "Traceback" not in result.stderr
