"""Where the tracking store is and how it is opened to read: `mlruns/mlflow.db` (SQLite) plus
`mlruns/artifacts/`, or whatever `MLFLOW_TRACKING_URI` names (an `mlflow server` for many
machines); the studies' Optuna storage beside it; the UI's links. Opening to read writes nothing,
so reports and the UI work on a store the user may only read."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from toolkit import ToolkitError
from toolkit.machine import file_lock
from toolkit.storage_errors import cannot_open_store
from toolkit.store import maintenance

STORE_DIR = Path("mlruns")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading cached references is routine
# MLflow logs every database error with its traceback before raising it; the error reaches the
# command line anyway, as one line when it is the machine's (a full disk) and whole when a bug.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
WRITING: set[str] = set()  # the store URIs this process opened to write (`writing.writer`), maintenance done


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def optuna_storage() -> str:
    """The studies' default Optuna storage: its own SQLite file in the store directory (never
    MLflow's database: both use Alembic's `alembic_version` table)."""
    return f"sqlite:///{(STORE_DIR / 'optuna.db').resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (MLflow's or Optuna's), None for any other URL."""
    return Path(unquote(url.removeprefix("sqlite:///"))) if url.startswith("sqlite:///") else None


def existing_optuna_storage(url: str | None) -> str:
    """The Optuna storage to read (`url`, default the store's own): a local file that is not there
    is an error, not a new storage."""
    url = url or optuna_storage()
    if (database := sqlite_path(url)) is not None and not database.is_file():
        raise ToolkitError(f"no Optuna storage at {url} yet: run a study first (make demo), or pass --storage URL")
    return url


def artifact_root(uri: str) -> Path | None:
    """Artifacts of a local SQLite store go beside the database; a server chooses its own."""
    database = sqlite_path(uri)
    return None if database is None else database.resolve().parent / "artifacts"


@contextmanager
def store_lock():
    """While held, no other process of this machine opens the local store to write for the first
    time, creates a study's parent run or a FID reference in it. A no-op for a tracking server,
    which serialises its own writes."""
    root = artifact_root(tracking_uri())
    if root is None:
        yield
        return
    with file_lock(root.parent / ".lock"):
        yield


def existing_store():
    """For what only reads the store: a local store that is not there is an error, not a new store."""
    root = artifact_root(tracking_uri())
    if root is not None and not (root.parent / "mlflow.db").is_file():
        raise ToolkitError(
            f"no tracking store at {root.parent / 'mlflow.db'}: run from the directory that holds "
            "mlruns/, or set MLFLOW_TRACKING_URI to the store"
        )


def writable() -> bool:
    """Whether this process may write the local store, or create it where there is none yet (a
    tracking server: assumed so). A read-only file system counts, even for root."""
    database = sqlite_path(tracking_uri())
    if database is None:
        return True
    folder = database.parent
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK) and (not database.exists() or os.access(database, os.W_OK))


def reader():
    """A client that only reads the store. A local store that was moved or copied, and not yet
    opened to write here (which points it at its own files), is read through a relocated copy of
    its database in a temporary file, so that its runs' files are found where they now are."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    return MlflowClient(uri if uri in WRITING else _reading_uri(uri))


@functools.cache
def _reading_uri(uri: str) -> str:
    """The URI `reader` opens, checked once per process: a local store that is not there is an
    error, not a new store, and a wrong URI fails deep inside SQLAlchemy, so it is said here in one
    line naming the setting to fix."""
    from mlflow.tracking import MlflowClient

    existing_store()
    root = artifact_root(uri)
    if root is not None and maintenance.moved(root.parent):
        folder = Path(tempfile.mkdtemp(prefix="toolkit-store-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        maintenance.relocated_copy(root.parent, folder / "mlflow.db")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        raise cannot_open_store(tracking_uri(), exc) from None
    return uri


def use_store_globally(client) -> None:
    """Point MLflow's global (fluent) API at the store `client` opened: the one place the toolkit
    sets it. Logging a model and `mlflow.search_runs` (the runs as a DataFrame) go through it, and
    parts of them have no `tracking_uri` argument. MLflow also copies the URI into the environment
    for subprocesses; the user's `MLFLOW_TRACKING_URI` is put back, so that a reader's relocated
    copy (`reader`) never becomes the store a later write goes to."""
    import mlflow

    user = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(client.tracking_uri)
    if user is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user


def ui_url() -> str:
    """The MLflow UI of the store: the tracking server itself, or `toolkit ui` for a local store."""
    from toolkit.ui import UI_HOST, UI_PORT

    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://{UI_HOST}:{UI_PORT}"


def run_url(experiment: str, run_id: str) -> str:
    return f"{ui_url()}/#/experiments/{experiment}/runs/{run_id}"
