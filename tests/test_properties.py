"""Property-based checks of bad input: every invalid setting of `RunConfig`, `toolkit train` and a
study script is refused with one line naming it (exit status 2) before any data is read or any
store is made; every valid one is accepted as given; a wrong dataset file is one line naming it."""

import dataclasses
import gzip
import io
import math
import os
import re
import signal
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from conftest import idx_bytes, write_idx_set
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import toolkit.data
import toolkit.pipeline
import toolkit.studies
from toolkit.cli import main, study_main
from toolkit.config import (
    ARCHITECTURES,
    BINARIZATIONS,
    DATASETS,
    DECODER_SCALES,
    FID_MODES,
    FIGURE_MODES,
    LIKELIHOODS,
    MODELS,
    PRECISIONS,
    ConfigError,
    RunConfig,
    fields_of,
    physical_memory,
)
from toolkit.data import FILES, IMAGES_MAGIC, LABELS_MAGIC
from toolkit.models import build
from toolkit.studies import PRUNERS, QUICK, Study

FAST = settings(max_examples=100, deadline=None)
N_TRAIN = 200  # images in the training file of the test data: 180 training, 20 validation
INT_FIELDS, FLOAT_FIELDS = fields_of(RunConfig, int), fields_of(RunConfig, float)
CHOICES = {
    "model": MODELS,
    "architecture": ARCHITECTURES,
    "dataset": DATASETS,
    "likelihood": LIKELIHOODS,
    "fid": FID_MODES,
    "precision": PRECISIONS,
    "figures": FIGURE_MODES,
    "decoder_scale": DECODER_SCALES,
    "binarize": BINARIZATIONS,
}
ABSURD = st.integers(10**12, 10**15)  # a layer this wide needs terabytes on any machine

VALID = {
    **{name: st.sampled_from(allowed) for name, allowed in CHOICES.items()},
    "binarize": st.just("none"),  # binary pixels go with the Bernoulli likelihood only (test_config checks that)
    "sigma": st.floats(1e-6, 1e3),
    "latent_dim": st.integers(1, 256),
    "hidden": st.lists(st.integers(1, 1024), min_size=1, max_size=3).map(tuple),
    "beta": st.floats(0, 1e6) | st.integers(0, 100),
    "free_bits": st.floats(0, 1e3),
    "lr": st.floats(0, 10, exclude_min=True),
    "warmup_epochs": st.integers(0, 10**6),
    "epochs": st.integers(1, 10**6),
    "batch_size": st.integers(1, 10**6),
    "patience": st.integers(0, 10**6),
    "seed": st.integers(0, 2**32 - 1),
    "limit": st.none() | st.integers(1, 10**9),
    "fid_samples": st.integers(129, 10**7),
    "iw_samples": st.integers(0, 10**3),  # K x 100 codes of up to 256 dimensions fit any test machine's memory
    "iw_images": st.integers(2, 10**9),
}
valid_values = st.fixed_dictionaries({}, optional=VALID)

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NOT_AN_INT = st.booleans() | st.floats() | st.text(max_size=5) | st.none()
INVALID = {
    **{
        name: st.text(max_size=20).filter(lambda v, allowed=allowed: v not in allowed) | st.none() | st.integers()
        for name, allowed in CHOICES.items()
    },
    "latent_dim": st.integers(max_value=0) | ABSURD | NOT_AN_INT,
    "hidden": (
        st.lists(st.integers(max_value=0), min_size=1, max_size=3)
        | st.lists(st.integers(1, 1024), max_size=0)
        | st.tuples(st.integers(1, 8), ABSURD)
        | st.integers()
        | st.text(max_size=5)
        | st.lists(st.booleans() | st.floats(), min_size=1, max_size=2)
    ),
    "beta": NON_FINITE
    | st.floats(max_value=0, exclude_max=True)
    | st.booleans()
    | st.text(max_size=5)
    | st.integers(min_value=10**400),
    "free_bits": NON_FINITE | st.floats(max_value=0, exclude_max=True) | st.booleans() | st.none(),
    "sigma": NON_FINITE | st.floats(max_value=0) | st.booleans() | st.text(max_size=5),
    "lr": NON_FINITE | st.floats(max_value=0) | st.integers(max_value=0) | st.booleans(),
    "warmup_epochs": st.integers(max_value=-1) | NOT_AN_INT,
    "epochs": st.integers(max_value=0) | NOT_AN_INT,
    "batch_size": st.integers(max_value=0) | NOT_AN_INT,
    "patience": st.integers(max_value=-1) | NOT_AN_INT,
    "seed": st.integers(max_value=-1) | st.integers(min_value=2**32) | NOT_AN_INT,
    "limit": st.integers(max_value=0) | st.booleans() | st.floats() | st.text(max_size=5),
    "fid_samples": st.integers(max_value=128) | NOT_AN_INT,
    "iw_samples": st.integers(max_value=-1) | NOT_AN_INT,
    "iw_images": st.integers(max_value=1) | NOT_AN_INT,
}


@st.composite
def one_invalid(draw):
    """Valid values for some fields and an invalid one for exactly one field: (values, that field)."""
    values = draw(valid_values)
    field = draw(st.sampled_from(sorted(INVALID)))
    values[field] = draw(INVALID[field])
    return mlp_for_hidden(values, field), field


def mlp_for_hidden(values: dict, field: str) -> dict:
    """Layer sizes too large for memory are refused for the MLP that has them (conv has no `hidden`)."""
    return {**values, "architecture": "mlp"} if field == "hidden" else values


@contextmanager
def fresh_cwd():
    """An empty working directory, so that ./mlruns is the store and ./data is empty; the signal
    handlers a command installs are put back afterwards."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        patch.delenv("TOOLKIT_DATA_DIR", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            yield Path(directory), patch
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)


def forbid_data_and_runs(patch):
    """Reading any dataset file, or reaching a training run or a study, fails the test loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("reached past validation")

    for module, name in (
        (toolkit.data, "find_files"),
        (toolkit.studies, "find_files"),
        (toolkit.studies, "run_study"),
        (toolkit.pipeline, "train_run"),
    ):
        patch.setattr(module, name, forbidden)


def run(entry, *args) -> tuple[int, list[str]]:
    """Call a command-line entry point; its exit status and its stderr lines."""
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            entry(*args)
            status = 0
        except SystemExit as exc:
            status = exc.code
    return status, err.getvalue().splitlines()


def assert_refused(status, lines, cwd, *names):
    """One `error:` line naming one of `names` (a field as `name: `, an option as `argument --name`), exit 2,
    and no store made in the working directory."""
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert re.match(rf"error: ({'|'.join(map(re.escape, names))})", lines[0]), lines
    assert not (cwd / "mlruns").exists() and not (cwd / "data").exists()


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def cli_text(value) -> str:
    """A value as it is written on the command line."""
    return (
        ",".join(map(str, value))
        if isinstance(value, tuple)
        else repr(value)
        if isinstance(value, float)
        else str(value)
    )


class Reached(Exception):
    """Raised by a stand-in for the work a command does, carrying what it was given."""


def options_in_help(entry, *args) -> list[str]:
    """The options a command's --help lists."""
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        entry(*args)
    return re.findall(r"--[a-z][a-z-]*", out.getvalue())


def unknown_flags(known: list[str]) -> st.SearchStrategy[str]:
    """Flags that are not in `known`, nor an abbreviation of one (argparse takes those as the option)."""
    return st.from_regex(r"\A--[a-z][a-z-]{0,12}\Z").filter(
        lambda text: not any(option.startswith(text) for option in known)
    )


TRAIN_OPTIONS = options_in_help(main, ["train", "--help"])


# RunConfig


@FAST
@given(valid_values)
def test_every_valid_config_is_accepted_and_round_trips_through_params(values):
    config = RunConfig(**values)
    assert RunConfig.from_params(config.to_params()).to_params() == config.to_params()
    assert all(type(getattr(config, name)) is float for name in FLOAT_FIELDS)


@settings(max_examples=500, deadline=None)
@given(one_invalid())
def test_every_invalid_config_is_refused_naming_its_field(case):
    values, field = case
    with pytest.raises(ConfigError) as info:
        RunConfig(**values).check_memory()  # refused when made or, too large for this machine, where a run starts
    assert str(info.value).startswith(f"{field}: ") and "\n" not in str(info.value)


@FAST
@given(
    st.dictionaries(
        st.sampled_from([field.name for field in dataclasses.fields(RunConfig)]),
        st.text(max_size=8) | st.integers().map(str) | st.floats().map(str),
    )
)
def test_params_read_back_from_a_store_give_a_config_or_one_line_naming_the_field(params):
    try:
        RunConfig.from_params(params)
    except ConfigError as exc:
        assert re.match(rf"({'|'.join(params)}): ", str(exc)) and "\n" not in str(exc)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.sampled_from(ARCHITECTURES),
    st.integers(1, 64),
    st.lists(st.integers(1, 64), min_size=1, max_size=3),
)
def test_the_parameter_estimate_is_the_built_models_count(model, architecture, latent_dim, hidden):
    config = RunConfig(model=model, architecture=architecture, latent_dim=latent_dim, hidden=hidden)
    assert config.parameter_count() == sum(p.numel() for p in build(config, "cpu").parameters())


@FAST
@given(st.sampled_from(MODELS), st.integers(1, 10**15), st.lists(st.integers(1, 10**15), min_size=1, max_size=3))
def test_a_model_is_refused_exactly_when_training_or_evaluating_it_needs_more_than_the_memory(
    model, latent_dim, hidden
):
    head = 2 * latent_dim if model == "vae" else latent_dim
    layers = [784, *hidden, head], [latent_dim, *reversed(hidden), 784]
    parameters = sum((a + 1) * b for sizes in layers for a, b in zip(sizes, sizes[1:]))
    training = parameters * 4 * 6  # weights, gradients, Adam's moments, best weights, checkpoint
    # the IW bound's 100 x 100 codes (VAE), or, for either model, 60,000 training codes and the 10 covariances
    # of the GMM fitted to them (float64, three working copies)
    iw = 100 * 100 * latent_dim * 4 * 4 if model == "vae" else 0
    evaluation = parameters * 4 + max(iw, 60_000 * latent_dim * 4 + 3 * 10 * latent_dim**2 * 8)
    too_large = max(training, evaluation) > physical_memory()
    config = RunConfig(model=model, latent_dim=latent_dim, hidden=hidden)  # any size reads back: a larger machine's
    try:
        config.check_memory()
    except ConfigError as exc:
        assert too_large
        name = "latent_dim" if latent_dim > max(hidden) else "hidden"
        stage = (
            rf"training needs about [\d,.]+ GiB \(6 float32 copies of its {parameters:,} parameters"
            if training >= evaluation
            else r"evaluation needs about [\d,.]+ GiB"
        )
        assert re.match(rf"{name}: .* whose {stage}.* more than this machine's [\d,.]+ GiB of memory", str(exc)), str(
            exc
        )
    else:
        assert not too_large


# toolkit train


def parses(kind, text: str) -> bool:
    try:
        kind(text)
        return True
    except ValueError:
        return False


def positive_sizes(text: str) -> bool:
    """Whether `text` is what --hidden accepts: comma-separated positive integers."""
    return all(parses(int, part) and int(part) > 0 for part in text.split(","))


def bad_numbers(field: str, kind) -> st.SearchStrategy[str]:
    """Command-line text for `field` that is not a `kind` at all, or one RunConfig refuses."""
    refused = INVALID[field].filter(lambda v: type(v) in (int, float)).map(cli_text)
    return refused | st.text(max_size=8).filter(lambda text: not parses(kind, text))


CLI_INVALID = {
    **{
        name: st.text(max_size=20).filter(lambda v, allowed=allowed: v not in allowed)
        for name, allowed in CHOICES.items()
    },
    **{name: bad_numbers(name, int) for name in (*INT_FIELDS, "limit")},
    **{name: bad_numbers(name, float) for name in FLOAT_FIELDS},
    "hidden": INVALID["hidden"]
    .filter(lambda v: isinstance(v, (list, tuple)) and all(type(h) is int for h in v))
    .map(lambda sizes: ",".join(map(str, sizes)))
    | st.text(max_size=12).filter(lambda text: not positive_sizes(text)),
}


def train_argv(values: dict) -> list[str]:
    return ["train", *[f"{flag(name)}={cli_text(value)}" for name, value in values.items() if value is not None]]


@FAST
@given(valid_values)
def test_every_valid_train_command_line_gives_the_config_built_directly(values):
    def stand_in(config, *args, **kwargs):
        raise Reached(config)

    with fresh_cwd() as (cwd, patch):
        patch.setattr(toolkit.pipeline, "train_run", stand_in)
        with pytest.raises(Reached) as info:
            run(main, [*train_argv(values), "--data-dir", "nowhere"])
    assert info.value.args[0] == RunConfig(**values)


@settings(max_examples=400, deadline=None)
@given(valid_values, st.sampled_from(sorted(CLI_INVALID)), st.data())
def test_every_invalid_train_value_is_one_line_naming_it_before_any_data_or_run(values, field, data):
    values = mlp_for_hidden({**values, field: data.draw(CLI_INVALID[field])}, field)
    with fresh_cwd() as (cwd, patch):
        forbid_data_and_runs(patch)
        status, lines = run(main, [*train_argv(values), "--data-dir", "nowhere"])
        assert_refused(status, lines, cwd, f"{field}: ", f"argument {flag(field)}: ")


@FAST
@given(valid_values, unknown_flags(TRAIN_OPTIONS), st.sampled_from(["", "=1", " 1"]))
def test_an_unknown_train_flag_is_one_line_naming_it(values, unknown, value):
    with fresh_cwd() as (cwd, patch):
        forbid_data_and_runs(patch)
        status, lines = run(main, [*train_argv(values), *f"{unknown}{value}".split()])
        assert_refused(status, lines, cwd, f"unrecognized arguments: {unknown}")


@FAST
@given(valid_values, st.sampled_from(sorted(VALID)))
def test_a_train_option_without_its_value_is_one_line_naming_it(values, field):
    with fresh_cwd() as (cwd, patch):
        forbid_data_and_runs(patch)
        status, lines = run(main, [*train_argv(values), flag(field)])
        assert_refused(status, lines, cwd, f"argument {flag(field)}: expected one argument")


def test_no_command_is_one_line_too(tmp_cwd):
    status, lines = run(main, [])
    assert status == 2 and lines == ["error: the following arguments are required: command; see toolkit --help"]


@pytest.fixture(scope="module")
def limit_data(tmp_path_factory) -> Path:
    """IDX files of N_TRAIN training and 20 test images."""
    return write_idx_set(tmp_path_factory.mktemp("tiny"), n_train=N_TRAIN, n_test=20)


@settings(max_examples=15, deadline=None)
@given(st.integers(N_TRAIN - N_TRAIN // 10 + 1, 10**12), valid_values)
def test_a_limit_beyond_the_training_images_is_refused_before_any_run(limit_data, limit, values):
    with fresh_cwd() as (cwd, _):
        status, lines = run(main, [*train_argv({**values, "limit": limit}), "--data-dir", str(limit_data)])
        assert_refused(status, lines, cwd, f"limit: {limit:,} is more than the {N_TRAIN - N_TRAIN // 10} training")


# study scripts

GRID = Study(
    "props-grid",
    RunConfig(epochs=3),
    grid={"vae": {"model": "vae"}, "ae": {"model": "ae"}},
    pruner="none",
    description="A grid of two points.",
)
SEARCH = Study(
    "props-search",
    RunConfig(epochs=3),
    space=lambda trial: {"beta": trial.suggest_float("beta", 0.1, 4)},
    trials=5,
    description="A search over beta.",
)


@st.composite
def study_options(draw, study: Study) -> dict:
    """Valid command-line settings of a study script: option -> value (True for a bare flag)."""
    options = {
        "--epochs": st.integers(1, 1000),
        "--workers": st.integers(1, os.cpu_count() or 1),
        "--dataset": st.sampled_from(DATASETS),
        "--seed": st.integers(0, 2**32 - 1),
        "--pruner": st.sampled_from(sorted(PRUNERS)),
        "--quick": st.just(True),
        "--storage": st.just("sqlite:///elsewhere/optuna.db"),
        "--name": st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"),
        "--out": st.just("out"),
        "--architecture": st.sampled_from(ARCHITECTURES),
        "--lr": st.floats(1e-5, 0.1),
        "--latent-dim": st.integers(1, 64),
        "--seeds": st.integers(1, 10),
    }
    if not study.grid:
        options |= {"--trials": st.integers(1, 1000), "--multi-objective": st.just(True)}
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True))
    return {option: draw(options[option]) for option in chosen}


def study_argv(options: dict) -> list[str]:
    return [text for option, value in options.items() for text in ([option] if value is True else [option, str(value)])]


def expected_study(study: Study, options: dict) -> Study:
    """The declared study with these settings, given the tiny data (fewer images than --quick's limit)."""
    quick = {**QUICK, "limit": None} if "--quick" in options else {}
    given = {
        field: options[flag(field)]
        for field in ("dataset", "seed", "epochs", "architecture", "lr", "latent_dim")
        if flag(field) in options
    }
    base = dataclasses.replace(study.base, **{**quick, **given})
    trials = options.get("--trials", 3 if quick else study.trials)
    seeds = options.get("--seeds", 1 if quick else study.seeds)
    return dataclasses.replace(
        study,
        base=base,
        trials=trials,
        pruner=options.get("--pruner", study.pruner),
        multi_objective="--multi-objective" in options,
        seeds=seeds,
    )


@FAST
@given(st.sampled_from([GRID, SEARCH]).flatmap(lambda study: st.tuples(st.just(study), study_options(study))))
def test_every_valid_study_command_line_runs_the_declared_study_with_its_settings(limit_data, case):
    study, options = case

    def stand_in(configured, run_execution):
        raise Reached(configured, run_execution)

    with fresh_cwd() as (cwd, patch):
        patch.setattr(toolkit.studies, "run_study", stand_in)
        with pytest.raises(Reached) as info:
            run(study_main, study, [*study_argv(options), "--data-dir", str(limit_data)])
    configured, run_execution = info.value.args
    assert dataclasses.replace(configured, name=study.name) == expected_study(study, options)
    assert configured.name == options.get("--name", configured.name)
    assert run_execution == toolkit.studies.Execution(
        options.get("--storage"), options.get("--workers", 1), str(limit_data)
    )


def study_mistakes(study: Study) -> st.SearchStrategy[tuple[list[str], tuple[str, ...]]]:
    """One wrong setting of a study script: its command-line words and what the error line may start with."""

    def number(option, refused, kind=int):
        field = option.removeprefix("--")
        return (refused.map(str) | st.text(max_size=6).filter(lambda text: not parses(kind, text))).map(
            lambda text: ([f"{option}={text}"], (f"{field}: ", f"argument {option}: "))
        )

    mistakes = [
        number("--epochs", st.integers(max_value=0)),
        number("--workers", st.integers(max_value=0) | st.integers(min_value=(os.cpu_count() or 1) + 1)),
        number("--seeds", st.integers(max_value=0)),
        number("--seed", st.integers(max_value=-1) | st.integers(min_value=2**32)),
        st.text(max_size=12)
        .filter(lambda text: text not in DATASETS)
        .map(lambda text: ([f"--dataset={text}"], ("dataset: ",))),
        st.text(max_size=12)
        .filter(lambda text: text not in PRUNERS)
        .map(lambda text: ([f"--pruner={text}"], ("argument --pruner: invalid choice",))),
        unknown_flags(options_in_help(study_main, SEARCH, ["--help"])).map(
            lambda text: ([text], (f"unrecognized arguments: {text}",))
        ),
    ]
    varied = ["--model", "ae"] if study.grid else ["--beta", "2"]  # what each study sets per trial
    mistakes.append(st.just((varied, (f"{varied[0][2:]}: this study sets it per trial; drop {varied[0]}",))))
    if study.grid:  # a grid runs every point once: no trial count, no multi-objective search
        mistakes.append(
            st.sampled_from([["--trials", "4"], ["--multi-objective"]]).map(
                lambda words: (words, (f"unrecognized arguments: {' '.join(words)}",))
            )
        )
    else:
        mistakes.append(number("--trials", st.integers(max_value=0)))
    return st.one_of(mistakes)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([GRID, SEARCH]).flatmap(
        lambda study: st.tuples(st.just(study), study_options(study), study_mistakes(study))
    )
)
def test_every_invalid_study_setting_is_one_line_before_any_data_storage_or_run(case):
    study, options, (words, names) = case
    with fresh_cwd() as (cwd, patch):
        forbid_data_and_runs(patch)
        status, lines = run(study_main, study, [*study_argv(options), *words, "--data-dir", "nowhere"])
        assert_refused(status, lines, cwd, *names)
        assert not (cwd / "elsewhere").exists()


# dataset files


def png_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG")
    return out.getvalue()


@st.composite
def wrong_file(draw, good: bytes, magic: int) -> tuple[bytes, bool]:
    """A wrong version of the IDX file `good` (plain bytes): its new content and whether it is gzipped."""
    gz = draw(st.booleans())
    magics = [kind.to_bytes(4, "big") for kind in (IMAGES_MAGIC, LABELS_MAGIC)]
    n = int.from_bytes(good[4:8], "big")
    content = draw(
        st.one_of(
            st.builds(png_bytes, st.integers(1, 40), st.integers(1, 40)),
            st.binary(max_size=64).filter(lambda raw: raw[:4] not in magics),
            st.integers(0, 2**32 - 1).filter(lambda m: m != magic).map(lambda m: m.to_bytes(4, "big") + good[4:]),
            st.integers(0, len(good) - 1).map(lambda cut: good[:cut]),  # truncated
            st.binary(min_size=1, max_size=16).map(lambda extra: good + extra),  # padded
            st.integers(0, 2**32 - 1)
            .filter(lambda m: m != n)
            .map(lambda m: good[:4] + m.to_bytes(4, "big") + good[8:]),
            st.just(good[: 8 if magic == LABELS_MAGIC else 16].replace(n.to_bytes(4, "big"), bytes(4), 1)),  # no items
        )
    )
    if gz and draw(st.booleans()):  # a gzip stream cut short
        compressed = gzip.compress(good)
        return compressed[: draw(st.integers(0, len(compressed) - 1))], True
    return (gzip.compress(content) if gz and draw(st.booleans()) else content), gz


@FAST
@given(st.sampled_from(sorted(FILES)), st.data())
def test_a_wrong_dataset_file_is_one_line_naming_it(key, data):
    with fresh_cwd() as (cwd, _):
        directory = write_idx_set(cwd / "idx", n_train=N_TRAIN, n_test=20)
        broken = directory / (FILES[key] + ".gz")
        good = gzip.decompress(broken.read_bytes())
        content, gz = data.draw(wrong_file(good, IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC))
        broken.unlink()
        broken = directory / (FILES[key] + (".gz" if gz else ""))
        broken.write_bytes(content)
        status, lines = run(main, ["data", "--data-dir", str(directory), "--no-download"])
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {broken}: "), lines


@FAST
@given(st.sampled_from(["train", "test"]), st.sampled_from(["images", "labels"]), st.integers(0, 60))
def test_images_and_labels_of_different_counts_are_one_line_naming_both(split, kind, count):
    n = N_TRAIN if split == "train" else 20
    assume(count != n)
    with fresh_cwd() as (cwd, _):
        directory = write_idx_set(cwd / "idx", n_train=N_TRAIN, n_test=20)
        shape = (count, 28, 28) if kind == "images" else (count,)
        (directory / (FILES[f"{split}_{kind}"] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.zeros(shape))))
        status, lines = run(main, ["data", "--data-dir", str(directory), "--no-download"])
    assert status == 2 and len(lines) == 1, lines
    names = [FILES[f"{split}_{kind}"]] if count == 0 else [FILES[f"{split}_images"], FILES[f"{split}_labels"]]
    assert all(name in lines[0] for name in names), lines
