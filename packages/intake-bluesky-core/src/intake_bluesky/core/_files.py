"""What every file backend shares: finding run files, indexing their start and
stop documents once per file version, and re-reading a run whose file grew.

A file format implements :class:`FileFormat` (reading documents out of one
file); :class:`FileDriver` turns it into a complete
:class:`~intake_bluesky.core.driver.Driver`.
"""

from __future__ import annotations

import glob
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from ._documents import DelegatingRunSource, DocumentRunSource
from ._index import search_starts
from ._progress import progress
from .driver import DEFAULT_SORT

__all__ = [
    "FileFormat",
    "FileDriver",
    "FileRunSource",
    "RunChangedError",
    "expand_paths",
    "Location",
]

#: Where one run is stored: a file, or a tuple of files.
Location = str | tuple[str, ...]


class RunChangedError(RuntimeError):
    """A run's files now hold another run (e.g. rewritten in place)."""


def _files_of(location: Location) -> tuple[str, ...]:
    return (location,) if isinstance(location, str) else tuple(location)


class FileFormat:
    """How to read bluesky documents out of one file of a format.

    Subclasses set :attr:`suffixes` and implement :meth:`read_documents`;
    they should override :meth:`read_header` to read only the first and last
    records. Instances must be picklable (no open handles).
    """

    #: File name endings this format claims inside a directory.
    suffixes: tuple[str, ...] = ()
    #: Short name for messages.
    name: str = "file"
    #: Whether directories are searched recursively.
    recursive: bool = False
    #: True if :meth:`read_header` warns itself about files it cannot use
    #: (returning ``(None, None)``); otherwise the core warns for it.
    reports_skipped_files: bool = False

    def read_documents(self, location: Location) -> Iterator[tuple[str, dict]]:
        """Every ``(name, doc)`` in the file, stored order.

        A truncated last record is a run being written: stop there silently.
        A corrupt record before the end raises ``ValueError`` naming the file
        and the (1-based) line or byte offset.
        """
        raise NotImplementedError

    def read_header(self, location: Location) -> tuple[dict | None, dict | None]:
        """``(start, stop)`` of a run file; ``stop`` is None while running.

        The default reads every document; formats should read the first and
        last records only.
        """
        start = stop = None
        for name, doc in self.read_documents(location):
            if name == "start" and start is None:
                start = doc
            elif name == "stop":
                stop = doc
        return start, stop

    def split_runs(self, paths: Sequence[str]) -> list[Location]:
        """Group the listed files into runs.

        A location is one path (one file per run, the default) or a tuple of
        paths (a run made of several files, e.g. a TIFF series); it is what
        :meth:`read_header` and :meth:`read_documents` receive.
        """
        return list(paths)

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in vars(self).items()))))


def expand_paths(paths, suffixes: Sequence[str], recursive: bool = False) -> list[str]:
    """Files named by a path, a glob, a directory, or a list of them.

    Directories contribute the files ending in ``suffixes`` (case-insensitive;
    with ``recursive``, in subdirectories too); explicit files are taken
    whatever their name.
    """
    suffixes = tuple(s.lower() for s in suffixes)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: dict[str, None] = {}
    for entry in paths:
        entry = os.fspath(entry)
        if glob.has_magic(entry):
            matches = sorted(glob.glob(entry))
        else:
            matches = [entry] if os.path.exists(entry) else []
        if not matches:
            warnings.warn(
                f"{entry!r} names no file or directory (nothing matches it); the catalog "
                "lists no runs from it. Check the path.",
                stacklevel=3,
            )
        for match in matches:
            if os.path.isdir(match):
                for path in _walk(match, suffixes, recursive):
                    found[path] = None
            elif os.path.isfile(match):
                found[os.path.abspath(match)] = None
    return list(found)


def _walk(directory: str, suffixes: tuple[str, ...], recursive: bool) -> Iterator[str]:
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for item in entries:
        if item.is_file() and item.name.lower().endswith(suffixes):
            yield os.path.abspath(item.path)
        elif recursive and item.is_dir() and not item.name.startswith("."):
            yield from _walk(item.path, suffixes, recursive)


def _version(location: Location) -> tuple | None:
    """Size and mtime of every file of a location; None if one is gone."""
    out = []
    for path in _files_of(location):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


# Headers of file versions already read in this process: a warm re-open of a
# catalog reads no file. Keyed by format (with its options) and location; valid
# for one version (sizes and mtimes). Bounded, least recently used dropped, so
# a long session over growing directories does not grow without limit.
_HEADERS: OrderedDict[tuple[FileFormat, Location], tuple[tuple, dict | None, dict | None]] = (
    OrderedDict()
)
_HEADERS_MAX = 200_000
_HEADERS_LOCK = threading.Lock()


def _header(fmt: FileFormat, location: Location, version: tuple):
    key = (fmt, location)
    with _HEADERS_LOCK:
        cached = _HEADERS.get(key)
        if cached is not None and cached[0] == version:
            _HEADERS.move_to_end(key)
            return cached[1], cached[2]
    try:
        start, stop = fmt.read_header(location)
    except ValueError as err:
        # One damaged file must not make every other run unlistable; it is
        # named (once per file version), never silently dropped.
        warnings.warn(f"Skipping {location}: {err}", stacklevel=4)
        start = stop = None
    else:
        if start is None and not fmt.reports_skipped_files:
            warnings.warn(
                f"Skipping {location}: it holds no start document, so it is not a bluesky "
                f"run ({fmt.name}). If a run is being written to it, it will appear once its "
                "start document is written.",
                stacklevel=4,
            )
    with _HEADERS_LOCK:
        _HEADERS[key] = (version, start, stop)
        _HEADERS.move_to_end(key)
        while len(_HEADERS) > _HEADERS_MAX:
            _HEADERS.popitem(last=False)
    return start, stop


class FileDriver:
    """A :class:`~intake_bluesky.core.driver.Driver` over run files.

    Parameters
    ----------
    paths : str, path, glob, directory, or list of them
        Where the run files are. Listed again on every search, so new,
        changed and deleted files are noticed.
    fmt : FileFormat
        How to read one file.

    Examples
    --------
    >>> import tempfile
    >>> from intake_bluesky.core import FileFormat
    >>> FileDriver(tempfile.mkdtemp(), FileFormat()).count({})
    0
    """

    def __init__(self, paths, fmt: FileFormat):
        self.paths = paths
        self.fmt = fmt
        self._runs: dict[str, tuple[Location, dict, dict | None, tuple]] = {}
        self._warned: set = set()

    def __repr__(self):
        return f"{type(self).__name__}({self.paths!r}, {self.fmt.name})"

    def __getstate__(self):
        return {"paths": self.paths, "fmt": self.fmt}

    def __setstate__(self, state):
        self.__init__(state["paths"], state["fmt"])

    def refresh(self) -> None:
        """List the files again; read headers of new or changed ones only."""
        files = expand_paths(self.paths, self.fmt.suffixes, self.fmt.recursive)
        runs: dict[str, tuple[Location, dict, dict | None, tuple]] = {}
        locations = self.fmt.split_runs(files)
        for location in progress(locations, desc="Indexing run files", unit="run"):
            version = _version(location)
            if version is None:
                continue  # deleted between listing and stat
            start, stop = _header(self.fmt, location, version)
            if start is None:
                continue
            uid = start["uid"]
            if uid in runs:
                self._warn_duplicate(uid, runs[uid][0], location)
                continue
            runs[uid] = (location, start, stop, version)
        self._runs = runs

    def _warn_duplicate(self, uid, kept, skipped):
        key = (uid, skipped)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(
            f"Run {uid!r} is stored twice: in {kept} and in {skipped}. Only the first is "
            "listed; remove the copy, or open the two places as separate catalogs.",
            stacklevel=4,
        )

    def search(self, query, *, sort=DEFAULT_SORT, skip=0, limit=None) -> Iterator[dict]:
        known = self._known_uid(query)
        if known is not None:
            # A lookup by full uid of an indexed, unchanged file: answered
            # from the index after one stat, not a listing of every file.
            return search_starts([known], query, sort=sort, skip=skip, limit=limit)
        self.refresh()
        return search_starts(
            (entry[1] for entry in self._runs.values()),
            query,
            sort=sort,
            skip=skip,
            limit=limit,
        )

    def _known_uid(self, query) -> dict | None:
        uid = _uid_of(query)
        entry = self._runs.get(uid) if uid is not None else None
        if entry is None or _version(entry[0]) != entry[3]:
            return None
        return entry[1]

    def count(self, query) -> int:
        if not query:
            self.refresh()
            return len(self._runs)
        return sum(1 for _ in self.search(query))

    def run(self, uid: str) -> FileRunSource:
        entry = self._runs.get(uid)
        if entry is None or _version(entry[0]) is None:
            self.refresh()
            entry = self._runs.get(uid)
        if entry is None:
            raise KeyError(uid)
        location, start, stop, version = entry
        return FileRunSource(location, self.fmt, uid, header=(version, start, stop))

    def location(self, uid: str) -> Location:
        """Where a run is stored (for messages and tools)."""
        return self.run(uid).location


# Organized runs recently read in this process, so that looking a run up
# again (``cat[-1]`` twice) does not parse its file again. Small: each entry
# holds a run's columns.
_SOURCES: OrderedDict[tuple[FileFormat, Location], tuple[tuple, DocumentRunSource]] = OrderedDict()
_SOURCES_MAX = 2


def _uid_of(query) -> str | None:
    """The full uid a query pins, if it has ``{'uid': <str>}`` at its top
    level or in a top-level ``$and``."""
    if not isinstance(query, dict):
        return None
    uid = query.get("uid")
    if isinstance(uid, str):
        return uid
    for part in query.get("$and", ()):
        uid = _uid_of(part)
        if uid is not None:
            return uid
    return None


class FileRunSource(DelegatingRunSource):
    """A run stored in files; re-read whenever a file's size or mtime changes.

    So a live run's new events and its stop show up on the next access.
    """

    def __init__(self, location: Location, fmt: FileFormat, uid: str, header=None):
        self.location = location
        self.fmt = fmt
        self.uid = uid
        # (version, start, stop) from the index: start/stop without reading
        # the whole file while the file is unchanged.
        self._header = header
        self._version = None
        self._source: DocumentRunSource | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"location": self.location, "fmt": self.fmt, "uid": self.uid}

    def __setstate__(self, state):
        self.__init__(state["location"], state["fmt"], state["uid"])

    def _check_version(self):
        version = _version(self.location)
        if version is None:
            raise FileNotFoundError(
                f"Run {self.uid!r}: its file(s) {self.location} were removed after the catalog "
                "was opened."
            )
        return version

    def __repr__(self):
        return f"{type(self).__name__}({self.location!r}, uid={self.uid!r})"

    @property
    def _current(self) -> DocumentRunSource:
        version = self._check_version()
        with self._lock:
            if self._source is None or version != self._version:
                source = self._read(version)
                if source.start()["uid"] != self.uid:
                    raise RunChangedError(
                        f"Run {self.uid!r} no longer exists: its file(s) {self.location} changed "
                        f"and now hold run {source.start()['uid']!r}. Look it up again."
                    )
                self._source, self._version = source, version
            return self._source

    def _read(self, version) -> DocumentRunSource:
        key = (self.fmt, self.location)
        with _HEADERS_LOCK:
            cached = _SOURCES.get(key)
            if cached is not None and cached[0] == version:
                _SOURCES.move_to_end(key)
                return cached[1]
        docs = self.fmt.read_documents(self.location)
        source = DocumentRunSource(docs, uid=self.uid, keep_documents=False)
        with _HEADERS_LOCK:
            _SOURCES[key] = (version, source)
            while len(_SOURCES) > _SOURCES_MAX:
                _SOURCES.popitem(last=False)
        return source

    def _valid_header(self):
        header = self._header
        if header is not None and header[0] == self._check_version():
            return header
        self._header = None
        return None

    def start(self):
        header = self._valid_header()
        return header[1] if header is not None else self._current.start()

    def stop(self):
        header = self._valid_header()
        return header[2] if header is not None else self._current.stop()

    def documents(self):
        # Streamed from the file: the organized view keeps no raw documents.
        return self.fmt.read_documents(self.location)
