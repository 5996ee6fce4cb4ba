"""What went wrong with a store or a storage, and what to do about it, in one line: the one place
the toolkit reads storage errors (a full disk, a file it may not write, a damaged database, a
server that does not answer) and words them, for the MLflow store and the Optuna storage alike.
Every URL in these lines is masked."""

from __future__ import annotations

import errno

from toolkit import ToolkitError, masked

# How a database server that is down or restarting shows in its driver's errors.
UNREACHABLE_SIGNS = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
)


def storage_failure(exc: BaseException) -> tuple[str, BaseException] | None:
    """What the machine's storage did wrong, found anywhere in the exception's chain: ("full",
    the error), ("unwritable", …), ("damaged", …) for a file that is not a database or
    ("unreachable", …) for a database server that does not answer; None when the storage is not to
    blame. The one place that reads such errors, for every message about them."""
    seen = exc
    while seen is not None:
        text, number = str(seen).lower(), getattr(seen, "errno", None) if isinstance(seen, OSError) else None
        if number == errno.ENOSPC or "disk is full" in text:
            return "full", seen
        if (
            number in (errno.EACCES, errno.EPERM, errno.EROFS)
            or "readonly" in text
            or "permission denied" in text
            or "unable to open database" in text
        ):
            return "unwritable", seen
        if "not a database" in text or "malformed" in text:
            return "damaged", seen
        if any(sign in text for sign in UNREACHABLE_SIGNS):
            return "unreachable", seen
        seen = seen.__cause__ or seen.__context__
    return None


RERUN = "rerun the same command (finished runs and trials are kept, interrupted ones resume)"


def storage_problem(exc: BaseException, again: str = RERUN) -> str | None:
    """One line for a full disk, a path that cannot be written or a database server gone (`again`:
    how to go on once it is back); None for anything else."""
    found = storage_failure(exc)
    if found is None or found[0] == "damaged":
        return None
    kind, seen = found
    if kind == "unreachable":
        return f"the database server does not answer: {str(seen).splitlines()[0]}; when it is back, {again}"
    where = f" ({seen.filename})" if isinstance(seen, OSError) and seen.filename else ""
    what = "the disk is full" if kind == "full" else "a file could not be written"
    todo = (
        "free some space"
        if kind == "full"
        else "make it writable, run from a directory you can write to (the store is ./mlruns)"
    ) + ", or set MLFLOW_TRACKING_URI to another store"
    return f"{what}{where}: {str(seen).splitlines()[0]}; {todo}, then rerun (finished runs are kept)"


STORE_HINTS = {
    "damaged": "its database file is damaged: move mlflow.db aside to start a new store, or set MLFLOW_TRACKING_URI",
    "full": "the disk is full: free some space, or set MLFLOW_TRACKING_URI to a store elsewhere",
    "unwritable": "it is not writable here: make it writable, or set MLFLOW_TRACKING_URI to a store you can write to",
    "unreachable": "its server does not answer: start it, or check the host and port in MLFLOW_TRACKING_URI",
}


def store_hint(exc: Exception) -> str:
    """What to do about a store that would not open, from what went wrong."""
    found = storage_failure(exc)
    return STORE_HINTS[found[0]] if found else "check MLFLOW_TRACKING_URI"


def cannot_open_store(uri: str, exc: Exception) -> ToolkitError:
    """The MLflow store at `uri` would not open."""
    return ToolkitError(f"cannot open the MLflow store {masked(uri)!r} ({_first_line(exc)}); {store_hint(exc)}")


def optuna_storage_hint(url: str, exc: Exception) -> str:
    """What to do about a storage that would not open, from what went wrong."""
    if url.startswith("postgresql://") and (isinstance(exc, ImportError) or "psycopg" in str(exc).lower()):
        return "write postgresql+psycopg2://… (SQLAlchemy reads plain postgresql:// as psycopg 3, not installed here)"
    kind = (storage_failure(exc) or ("unwritable" if isinstance(exc, OSError) else None, None))[0]
    if kind == "damaged":
        return "its database file is damaged: move it aside to start a new storage, or pass another --storage"
    if kind == "unreachable":
        return "its database server does not answer: start it, or check the host and port in --storage"
    if kind is not None:
        return "its file cannot be made or written there: pass a --storage you can write to"
    return "check --storage"


def cannot_open_optuna_storage(url: str, exc: Exception) -> ToolkitError:
    """The Optuna storage at `url` would not open (a bad URL, a server down, a damaged file)."""
    return ToolkitError(
        f"cannot open the Optuna storage {masked(url)!r} ({_first_line(exc)}); {optuna_storage_hint(url, exc)}"
    )


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
