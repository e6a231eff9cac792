"""intake-bluesky core: bluesky runs as intake catalogs.

The run/stream model, the driver protocol every storage backend implements,
and the in-memory driver.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> for name, doc in example_runs()[0]:
...     cat(name, doc)
>>> run = cat[-1]
>>> ds = run.primary.read()
"""

from ._documents import BadDocumentError, DocumentRunSource
from ._files import FileDriver, FileFormat, FileRunSource, Location, expand_paths
from ._query import and_queries, compile_query, validate_query
from .driver import Driver, RunSource, RunSourceBase

__all__ = [
    "BadDocumentError",
    "DocumentRunSource",
    "Driver",
    "FileDriver",
    "FileFormat",
    "FileRunSource",
    "Location",
    "RunSource",
    "RunSourceBase",
    "and_queries",
    "compile_query",
    "expand_paths",
    "validate_query",
]
