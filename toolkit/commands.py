"""How a command line runs and ends: Ctrl-C and SIGTERM stop it (an open run ends KILLED), a write
to the store is never cut in half by them, and an error the user can fix is one line with exit
status 2 (130 when interrupted)."""

import signal
import sys
from contextlib import contextmanager

from toolkit import ToolkitError, masked


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
