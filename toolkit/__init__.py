"""Experiment-tracked autoencoders and variational autoencoders."""

import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `toolkit ui` serves the MLflow UI of a local store
DASHBOARD_PORT = 8080  # where `toolkit dashboard` serves optuna-dashboard


class ToolkitError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""


# A URL's password (scheme://user:password@host) and the values of secret-looking query parameters.
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s/:@]*:)([^\s/]+)(@)")
SECRET_PARAMETER = re.compile(
    r"([?&;](?:password|passwd|pwd|token|secret|api_key|access_key)=)([^&;\s'\"]+)", re.IGNORECASE
)


def masked(text: str) -> str:
    """`text` (a URL, a message, a report) with the credentials of every URL in it replaced by
    ***: the one place that masks them, applied to all the toolkit prints, logs or writes."""
    return SECRET_PARAMETER.sub(r"\1***", URL_PASSWORD.sub(r"\1***\3", str(text)))


def path_in(folder: Path, name: str, what: str) -> Path:
    """`folder / name` for a name a user or a store gave (an experiment's artifacts, a report's
    default folder): the one place such names become paths. A name that is empty, or that leads
    outside `folder` (absolute, `..`, a link out), is refused in one line naming `what`."""
    if not name or not name.strip():
        raise ToolkitError(f"{what}: the name is empty; give a name")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise ToolkitError(
            f"{what} {name!r}: the name leads outside {folder}/ (it is absolute or has '..'); "
            "choose a name without them"
        )
    return Path(folder) / name  # as given (relative stays relative), once checked


def stop_on_signals():
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, so an open run ends KILLED; SIGINT is restored
    even when the process was started with it ignored (as from a background shell)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


_held: list[tuple[int, object]] = []  # signals that arrived while interrupts were held, with their frames
_holding = 0  # how many `interrupts_held` blocks are open (they nest)


@contextmanager
def interrupts_held():
    """Ctrl-C and SIGTERM arriving inside the block take effect when it ends, not in the middle of
    it: a write to the store cut in half leaves a database connection holding its lock, and the
    run could then not even be marked KILLED ("database is locked"). Outside the main thread,
    where signals cannot be handled, the block runs as it is."""
    global _holding
    try:
        previous = (
            {
                s: signal.signal(s, lambda signum, frame: _held.append((signum, frame)))
                for s in (signal.SIGINT, signal.SIGTERM)
            }
            if _holding == 0
            else {}
        )
    except ValueError:  # not the main thread
        yield
        return
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if _holding == 0:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if _held:
                signum, frame = _held[0]
                _held.clear()
                handler = previous[signum]
                if callable(handler):
                    handler(signum, frame)


@contextmanager
def command(interrupted: str, again: str | None = None):
    """The body of a command-line entry point: a ToolkitError becomes one line on stderr and exit
    status 2 (`again` says how to go on after a database server was gone); Ctrl-C or SIGTERM prints
    `interrupted` and exits with status 130."""
    from toolkit.storage_errors import RERUN, storage_problem

    stop_on_signals()
    try:
        yield
    except ToolkitError as exc:
        print(f"error: {masked(exc)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        problem = storage_problem(exc, again or RERUN)
        if problem is None:
            raise  # a bug: its traceback is what a developer needs
        print(f"error: {masked(problem)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)
