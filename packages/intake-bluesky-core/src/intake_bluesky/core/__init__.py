"""intake-bluesky core: bluesky runs as intake catalogs.

The run/stream model, the driver protocol every storage backend implements
(:mod:`intake_bluesky.core.driver`), the shared machinery of file backends,
and the in-memory driver.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs, example_registry
>>> cat = BlueskyInMemoryCatalog(**example_registry("/tmp/intake-bluesky-doctest"))
>>> for name, doc in example_runs("/tmp/intake-bluesky-doctest")[0]:
...     cat(name, doc)
>>> run = cat[-1]
>>> run.primary.read()["det"].values.tolist()
[1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
"""

from ._faces.catalog import BlueskyCatalog, RunsView
from ._faces.docstrings import CATALOG_PARAMETERS, with_catalog_parameters
from ._faces.run import BlueskyEventStream, BlueskyRun
from ._faces.table import run_rows
from ._files.driver import (
    FileDriver,
    FileFormat,
    FileRunSource,
    Location,
    absolute_paths,
    expand_paths,
)
from ._gc import gc_paused
from ._memory import BlueskyInMemoryCatalog, MemoryDriver
from ._model.diff import RunDiff
from ._model.documents import DocumentRunSource, MergedPage
from ._model.filling import HandlerRegistry
from ._model.pages import COLUMNAR_ROWS, columnar_page
from ._model.uids import UidColumn
from ._progress import set_progress
from ._query.evaluate import and_queries, compile_query, normalize_query, validate_query
from ._query.time import TimeRange, to_epoch
from ._registry import backends
from ._version import __version__ as __version__
from .driver import Driver, RunSource, RunSourceBase, SummaryDriver
from .errors import (
    BadDocumentError,
    DataNotWrittenError,
    DtypeMismatchError,
    DtypeMismatchWarning,
    ExportError,
    FillError,
    IndexUnavailableWarning,
    MissingExternalFileError,
    MissingHandlerError,
    RunChangedError,
    UnknownParameterWarning,
)

# Public classes carry their public module, so that yaml(), pickles and reprs
# name intake_bluesky.core.X and not the private module that defines it.
for _cls in (BlueskyCatalog, BlueskyRun, BlueskyEventStream, BlueskyInMemoryCatalog, RunDiff):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "CATALOG_PARAMETERS",
    "COLUMNAR_ROWS",
    "BadDocumentError",
    "BlueskyCatalog",
    "BlueskyEventStream",
    "BlueskyInMemoryCatalog",
    "BlueskyRun",
    "DataNotWrittenError",
    "DocumentRunSource",
    "DtypeMismatchError",
    "DtypeMismatchWarning",
    "ExportError",
    "Driver",
    "FileDriver",
    "FileFormat",
    "FileRunSource",
    "FillError",
    "MissingExternalFileError",
    "MergedPage",
    "HandlerRegistry",
    "IndexUnavailableWarning",
    "Location",
    "MemoryDriver",
    "MissingHandlerError",
    "RunChangedError",
    "RunDiff",
    "RunSource",
    "RunSourceBase",
    "RunsView",
    "SummaryDriver",
    "TimeRange",
    "UidColumn",
    "UnknownParameterWarning",
    "absolute_paths",
    "and_queries",
    "backends",
    "columnar_page",
    "compile_query",
    "expand_paths",
    "gc_paused",
    "normalize_query",
    "run_rows",
    "set_progress",
    "to_epoch",
    "validate_query",
    "with_catalog_parameters",
]
