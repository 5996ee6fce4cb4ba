"""Shared fixtures: tiny IDX files written by the tests, the real Fashion-MNIST, a private MLflow store,
a PostgreSQL server."""

import gzip
import os

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest-xdist's workers fill the cores already: torch in each (and in the commands they start)
    # takes one thread, rather than several that spin waiting for cores the others hold.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from toolkit.config import RunConfig
from toolkit.data import FILES

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x08 0x<ndim>, big-endian sizes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, n_train=200, n_test=50, gz=True, fill=None, side=28) -> Path:
    """Write the four IDX files; `fill` sets every pixel to one value so tests can tell sets apart."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, side, side)) if fill is None else np.full((n, side, side), fill)
        labels = rng.integers(0, 10, n)
        for kind, array in (("images", images), ("labels", labels)):
            name = FILES[f"{split}_{kind}"]
            data = idx_bytes(array)
            if gz:
                (directory / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)
    return directory


ROOT = Path(__file__).resolve().parent.parent  # the checkout: its studies/ and README
TOOLKIT = str(Path(sys.executable).parent / "toolkit")  # the command line, as installed beside this Python
GRID_STUDY = [sys.executable, str(ROOT / "tests" / "grid_study.py"), "--quick"]  # a study script's command line
GRID_STUDY_NAME, GRID_POINTS = "grid-study-quick", 4  # the name --quick gives it, its points (one seed each)
# A run of a few seconds on `tiny_data`, for tests of what surrounds training (studies, the store)
TINY = RunConfig(latent_dim=2, hidden=(16,), epochs=1, fid="off", iw_samples=0, figures="off")


# Fixtures that train on real data or start servers: every test using one is marked slow.
SLOW_FIXTURES = {"real_subset", "report_store", "postgres_server", "mlflow_server", "uninterrupted_dir"}
# Module fixtures that take up to a minute to build: the tests using one run in one pytest-xdist
# worker (`--dist loadgroup`), so that it is built once.
MODULE_FIXTURES = {"report_store", "trained", "uninterrupted_dir", "workdir", "screenshots"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Marks as above; then the longest work first, so that the workers end together: the module
    fixtures' groups, the other slow tests, the rest (a stable sort: each in its file's order)."""
    for item in items:
        fixtures = set(item.fixturenames)
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if MODULE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: (not item.get_closest_marker("xdist_group"), not item.get_closest_marker("slow")))


@pytest.fixture
def tiny_data(tmp_path) -> str:
    """IDX files of 300 training and 60 test images: a real run of a few seconds."""
    return str(write_idx_set(tmp_path / "tiny", n_train=300, n_test=60))


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run in an empty directory with no TOOLKIT_DATA_DIR, so ./data and the env are under test control."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """The database of a store with its tables made and nothing in it, made once per session by
    the toolkit itself: each test's `store` starts as a copy of it instead of running MLflow's
    schema migrations again (2 s each). Making a fresh store is tested where it is the point: the
    commands started in an empty directory (test_faults)."""
    directory = tmp_path_factory.mktemp("empty-store")
    database = directory / "mlflow.db"
    subprocess.run(
        [sys.executable, "-c", "from toolkit.store.writing import writer; writer()"],
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{database}"},
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return database


def store_client(directory: Path):
    """A client of the local store a toolkit command makes in `directory`, None until one has made
    it. MlflowClient creates and migrates the database it is pointed at, and two processes doing
    that at once break it for good, so the toolkit makes a store holding its lock
    (`location.store_lock`): the client is made holding that lock too."""
    from mlflow import MlflowClient

    from toolkit.machine import file_lock

    database = directory / "mlruns" / "mlflow.db"
    if not database.is_file():
        return None
    with file_lock(database.parent / ".lock"):
        return MlflowClient(f"sqlite:///{database}")


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    """A private MLflow store for the test (an empty one, `empty_store`); returns its tracking URI."""
    (tmp_path / "store").mkdir()
    shutil.copyfile(empty_store, tmp_path / "store" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real Fashion-MNIST from Debian's dataset-fashion-mnist; its absence is a failure, not a skip."""
    if not (REAL_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST missing at {REAL_FASHION_MNIST}: apt-get install dataset-fashion-mnist")
    return REAL_FASHION_MNIST


@pytest.fixture
def cli_env(store):
    """Environment for running the `toolkit` command as a subprocess against the private store."""
    return {**os.environ, "MLFLOW_TRACKING_URI": store}


@pytest.fixture(scope="session")
def real_subset(tmp_path_factory, real_data) -> Path:
    """The first 3,000 real training and 500 real test images, written as IDX files."""
    from toolkit.data import IMAGES_MAGIC, LABELS_MAGIC, find_files, read_idx

    directory = tmp_path_factory.mktemp("fashion-subset")
    files = find_files("fashion-mnist", real_data, download=False)
    for key, path in files.items():
        array = read_idx(path, IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC)
        (directory / FILES[key]).write_bytes(idx_bytes(array[: 3000 if key.startswith("train") else 500]))
    return directory


@dataclass
class PostgresServer:
    url: str
    control: Callable[..., None]  # pg_ctl's action and options, e.g. control("stop", "-m", "fast")


@pytest.fixture
def postgres_server(tmp_path):
    """A PostgreSQL server on a free local port (installed by .ci/run from Debian's packages)."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does this)")
    bin_dir = Path(initdb).resolve().parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses to run as root
    data = Path(tempfile.mkdtemp(prefix="toolkit-pg-"))
    if as_postgres:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )

    def control(action: str, *options: str):
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(data / "log"),
                "-o",
                f"-p {port} -k {data} -h 127.0.0.1",
                *options,
                action,
            ],
            check=True,
            capture_output=True,
        )

    control("start")
    try:
        yield PostgresServer(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", control)
    finally:
        try:
            control("stop", "-m", "immediate")
        except subprocess.CalledProcessError:  # a test left it stopped
            pass
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server) -> str:
    """The URL of a fresh PostgreSQL server's database `postgres`."""
    return postgres_server.url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(argv: list[str], base: str, ready: str = "/health", timeout: float = 120, **popen):
    """Run a server (`argv`, listening at `base`) in a process group of its own while the block
    runs: it is entered once `ready` answers, and the whole group is stopped at the end."""
    process = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(base + ready, timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail(f"{argv[0]} did not answer at {base}{ready}")
                time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_mlflow_server(backend_uri: str, artifacts: Path):
    """An `mlflow server` on a free port with this backend store, serving artifacts itself from
    `artifacts` (clients see `mlflow-artifacts:` URIs); yields its URL."""
    import sys

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        url,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ):
        yield url
