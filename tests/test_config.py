import subprocess
import sys

import pytest

from toolkit.config import ConfigError, RunConfig


@pytest.mark.parametrize("field, value", [
    ("latent_dim", 0), ("latent_dim", -3), ("beta", -0.1), ("free_bits", -1.0), ("lr", 0.0),
    ("dataset", "cifar10"), ("model", "gan"), ("likelihood", "poisson"), ("epochs", 0),
    ("batch_size", 0), ("hidden", (400, 0)), ("limit", 0), ("warmup_epochs", -1),
    ("fid", "kid"), ("fid_samples", 0), ("sampler", "flow"), ("iw_samples", -1),
])
def test_invalid_value_is_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        RunConfig(**{field: value})


def test_params_round_trip_through_strings():
    config = RunConfig(model="ae", hidden=(256, 128), beta=0.25, limit=500, free_bits=0.1, fid="off",
                       sampler="gmm", iw_samples=0)
    params = config.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert params["hidden"] == "256,128"
    assert RunConfig.from_params(params) == config


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
