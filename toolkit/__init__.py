"""Experiment-tracked autoencoders and variational autoencoders."""


class ToolkitError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""
