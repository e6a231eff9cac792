"""The error the command line reports without a traceback."""

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user error: printed on stderr as ``intake-bluesky: error: ...``, exit 1."""
