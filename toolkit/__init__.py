"""Experiment-tracked autoencoders and variational autoencoders."""
import signal
import sys
from contextlib import contextmanager

UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `toolkit ui` serves the MLflow UI of a local store
DASHBOARD_PORT = 8080  # where `toolkit dashboard` serves optuna-dashboard


class ToolkitError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""


def stop_on_signals():
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, so an open run ends KILLED; SIGINT is restored
    even when the process was started with it ignored (as from a background shell)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        sys.exit(130)
