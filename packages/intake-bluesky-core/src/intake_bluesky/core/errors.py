"""Every exception and warning intake-bluesky's core raises, in one place.

Each error's message names the run, document, file or field at fault and
what to do; the classes let callers catch by kind. They are importable from
:mod:`intake_bluesky.core` too.

Examples
--------
>>> from intake_bluesky.core.errors import MissingExternalFileError
>>> issubclass(MissingExternalFileError, FileNotFoundError)
True
"""

__all__ = [
    "BadDocumentError",
    "DataNotWrittenError",
    "DtypeMismatchError",
    "DtypeMismatchWarning",
    "ExportError",
    "FillError",
    "IndexUnavailableWarning",
    "MissingExternalFileError",
    "MissingHandlerError",
    "RunChangedError",
    "UnknownParameterWarning",
]

# --- documents and runs ---


class BadDocumentError(ValueError):
    """A document that cannot belong to its run (names run and document)."""


class RunChangedError(RuntimeError):
    """A run's files now hold another run (e.g. rewritten in place)."""


# --- external data ---


class FillError(RuntimeError):
    """External data could not be loaded; the message names run and document."""


class MissingExternalFileError(FillError, FileNotFoundError):
    """A file (or folder) that external data points at does not exist.

    Both a :class:`FillError` and a :class:`FileNotFoundError`: catch either.
    The message names the run, the document, the path tried (after
    ``root_map``) and the location the documents store, so that a
    ``root_map`` can be written.
    """


class DataNotWrittenError(FillError):
    """Rows asked for are not on disk yet (a detector file still being written).

    Stream readers raise it, naming the file and dataset and how many rows
    are there, instead of returning zeros or fewer rows; it is worth
    retrying once the writer has flushed more.
    """


class UnknownParameterWarning(UserWarning):
    """A stream_resource parameter a stream reader does not know was ignored.

    The message names the parameters and the file; if they change how the
    data are laid out, the rows read may be wrong.
    """


class MissingHandlerError(KeyError):
    """No handler for a resource spec, or no reader for a mimetype."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0])


# --- dtypes ---


class DtypeMismatchError(ValueError):
    """A dask chunk holds values that do not fit the dtype declared for it."""


class DtypeMismatchWarning(UserWarning):
    """Stored values do not fit the dtype their descriptor declares; they keep
    their own dtype (nothing is truncated)."""


# --- file catalogs and export ---


class IndexUnavailableWarning(UserWarning):
    """The on-disk index cannot be used; the catalog indexes in memory only."""


class ExportError(RuntimeError):
    """An export that cannot be done as asked (names the run/file and what to do)."""
