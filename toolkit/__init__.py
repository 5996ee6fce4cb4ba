"""Experiment-tracked autoencoders and variational autoencoders."""
import errno
import signal
import sys
from contextlib import contextmanager

UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `toolkit ui` serves the MLflow UI of a local store
DASHBOARD_PORT = 8080  # where `toolkit dashboard` serves optuna-dashboard


# How a database server that is down or restarting shows in its driver's errors.
UNREACHABLE_SIGNS = ("connection refused", "could not connect", "server closed the connection",
                     "terminating connection", "the database system is shutting down",
                     "the database system is starting up")


class ToolkitError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""


def stop_on_signals():
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, so an open run ends KILLED; SIGINT is restored
    even when the process was started with it ignored (as from a background shell)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
        if number in (errno.EACCES, errno.EPERM, errno.EROFS) or "readonly" in text or "permission denied" in text \
                or "unable to open database" in text:
            return "unwritable", seen
        if "not a database" in text or "malformed" in text:
            return "damaged", seen
        if any(sign in text for sign in UNREACHABLE_SIGNS):
            return "unreachable", seen
        seen = seen.__cause__ or seen.__context__
    return None


def _storage_problem(exc: BaseException) -> str | None:
    """One line for a full disk, a path that cannot be written or a database server gone; None for
    anything else."""
    found = storage_failure(exc)
    if found is None or found[0] == "damaged":
        return None
    kind, seen = found
    if kind == "unreachable":
        return (f"the database server does not answer: {str(seen).splitlines()[0]}; when it is back, rerun the same "
                "command (finished runs and trials are kept, interrupted ones resume)")
    where = f" ({seen.filename})" if isinstance(seen, OSError) and seen.filename else ""
    what = "the disk is full" if kind == "full" else "a file could not be written"
    todo = ("free some space" if kind == "full" else "make it writable, run from a directory you can write to "
            "(the store is ./mlruns)") + ", or set MLFLOW_TRACKING_URI to another store"
    return f"{what}{where}: {str(seen).splitlines()[0]}; {todo}, then rerun (finished runs are kept)"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def command(interrupted: str):
    """The body of a command-line entry point: a ToolkitError becomes one line on stderr and exit
    status 2; Ctrl-C or SIGTERM prints `interrupted` and exits with status 130."""
    stop_on_signals()
    try:
        yield
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        problem = _storage_problem(exc)
        if problem is None:
            raise  # a bug: its traceback is what a developer needs
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)
