"""Each run file's start and stop documents, read once per file version and
kept in memory (the on-disk index, :mod:`.diskindex`, keeps them across
processes).

A file version is its size, mtime, ctime and inode (:func:`.format.file_version`):
a file rewritten in place with its old size and mtime is still told apart.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

from .format import FileFormat, Location, location_version

_version = location_version


# Headers of file versions already read in this process: a warm re-open of a
# catalog reads no file. Keyed by format (its index key) and location; valid
# for one version (see :func:`_version`). Bounded, least recently used dropped, so
# a long session over growing directories does not grow without limit.
_HEADERS: OrderedDict[tuple[str, Location], tuple[tuple, dict | None, dict | None]] = OrderedDict()
_HEADERS_MAX = 200_000
_HEADERS_LOCK = threading.Lock()


def _cached_header(fmt: str, location: Location, version: tuple):
    key = (fmt, location)
    with _HEADERS_LOCK:
        cached = _HEADERS.get(key)
        if cached is not None and cached[0] == version:
            _HEADERS.move_to_end(key)
            return cached
    return None


def _remember_header(fmt: str, location: Location, version, start, stop) -> None:
    key = (fmt, location)
    with _HEADERS_LOCK:
        _HEADERS[key] = (version, start, stop)
        _HEADERS.move_to_end(key)
        while len(_HEADERS) > _HEADERS_MAX:
            _HEADERS.popitem(last=False)


def _remember_headers(fmt: str, items: list[tuple[Location, tuple, dict | None, dict | None]]):
    """:func:`_remember_header` of many, under one lock (a directory being
    indexed: once per file)."""
    with _HEADERS_LOCK:
        for location, version, start, stop in items:
            key = (fmt, location)
            _HEADERS[key] = (version, start, stop)
            _HEADERS.move_to_end(key)
        while len(_HEADERS) > _HEADERS_MAX:
            _HEADERS.popitem(last=False)


def _read_header(fmt: FileFormat, location: Location):
    """``(start, stop)`` of a file, each None for a file that is skipped
    (said in a warning, once per file version)."""
    return _read_versioned_header(fmt, location, versioned=False)[1:]


def _read_versioned_header(fmt: FileFormat, location: Location, versioned: bool = True):
    """``(version, start, stop)``: :meth:`FileFormat.read_versioned_header`
    with the warnings of :func:`_read_header`; version None if a file is gone."""
    version = None
    try:
        if versioned:
            version, start, stop = fmt.read_versioned_header(location)
            if version is None:
                return None, None, None
        else:
            start, stop = fmt.read_header(location)
    except ValueError as err:
        # One damaged file must not make every other run unlistable; it is
        # named (once per file version), never silently dropped.
        warnings.warn(f"Skipping {location}: {err}", stacklevel=6)
        return (_version(location) if versioned else None), None, None
    except FileNotFoundError:
        return None, None, None
    if start is not None and start.get("uid") is None:
        # Without a uid the run can be neither listed nor looked up: said,
        # never hidden.
        warnings.warn(
            f"Skipping {location}: its start document has no 'uid', so the run cannot be "
            f"listed or looked up ({fmt.name}). Give the start document a uid (event-model "
            "requires one), or move the file out of the catalog's paths.",
            stacklevel=6,
        )
        return version, None, None
    if start is None and not fmt.reports_skipped_files:
        warnings.warn(
            f"Skipping {location}: it holds no start document, so it is not a bluesky "
            f"run ({fmt.name}). If a run is being written to it, it will appear once its "
            "start document is written.",
            stacklevel=6,
        )
    return version, start, stop
