"""Experiment-tracked autoencoders and variational autoencoders. Here: what every module shares,
the error a user can fix (`ToolkitError`), credentials masked (`masked`) and names kept inside
their folder (`path_in`)."""

import re
from pathlib import Path


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
