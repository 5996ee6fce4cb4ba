"""Experiment-tracked autoencoders and variational autoencoders."""
import signal


class ToolkitError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""


def stop_on_signals():
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, so an open run ends KILLED; SIGINT is restored
    even when the process was started with it ignored (as from a background shell)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
