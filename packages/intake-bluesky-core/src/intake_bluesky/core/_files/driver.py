"""What every file backend shares: finding run files, indexing their start and
stop documents once per file version (in memory and on disk), and reading a
growing run file incrementally.

A file format implements :class:`FileFormat` (reading documents out of one
file); :class:`FileDriver` turns it into a complete
:class:`~intake_bluesky.core.driver.Driver`.

What is noticed when (an open catalog, on ``len()``, ``list()``, ``cat[...]``
and ``search()``):

* New, deleted and renamed files: at once. Each directory is listed again only
  when its mtime changed (creating, deleting or renaming a file changes it),
  so an unchanged catalog costs one ``stat`` per directory, not per file.
* Runs in progress (no stop yet) and files without a start document: their
  files are stat'ed on every access, so new events and the stop show up.
* A finished run's file rewritten in place under the same name: when that run
  is next read (or in a new process, which stats every file once).

Examples
--------
>>> import tempfile
>>> FileDriver(tempfile.mkdtemp(), FileFormat(), index_path=False).count({})
0
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from .._progress import progress
from .._query.starts import search_starts, sorted_matches
from .._registry import known_file_formats
from ..driver import DEFAULT_SORT, Sort
from ..errors import RunChangedError
from .diskindex import decode, open_index, resolve_index_path
from .format import FileFormat, Location, _location_key
from .headers import _cached_header, _read_header, _remember_header, _version
from .listing import _Listing, absolute_paths, expand_paths, holds_files
from .runsource import FileRunSource

__all__ = [
    "FileFormat",
    "FileDriver",
    "FileRunSource",
    "RunChangedError",
    "expand_paths",
    "absolute_paths",
    "holds_files",
    "Location",
]


if TYPE_CHECKING:
    from event_model.documents import RunStart

#: Suffixes of the formats of intake-bluesky's backends, for the warning when
#: a catalog's paths hold only another backend's files.
_KNOWN_FORMATS = known_file_formats()


class _Entry:
    """What the driver knows of one location.

    From the on-disk index, ``uid`` and ``has_stop`` come first; the start
    and stop documents are decoded when first needed (``start`` is
    ``_PENDING`` until then), so counting runs decodes nothing.
    """

    __slots__ = ("location", "inodes", "version", "start", "stop", "uid", "has_stop")

    def __init__(self, location, inodes, version):
        self.location = location
        self.inodes = inodes
        self.version = version
        self.start = self.stop = None
        self.uid = None
        self.has_stop = False

    def set_documents(self, start, stop) -> None:
        self.start, self.stop = start, stop
        self.uid = start.get("uid") if start is not None else None
        self.has_stop = stop is not None

    @property
    def live(self) -> bool:
        # In progress (its stop may arrive) or not a run yet (its start may).
        return self.uid is None or not self.has_stop


_PENDING = object()


class FileDriver:
    """A :class:`~intake_bluesky.core.driver.Driver` over run files.

    Parameters
    ----------
    paths : str, path, glob, directory, or list of them
        Where the run files are. Checked again on every search, so new,
        changed and deleted files are noticed (see the module notes).
    fmt : FileFormat
        How to read one file.
    index_path : str, path, False or None
        The on-disk index of start/stop documents. None (default): the
        ``INTAKE_BLUESKY_INDEX`` environment variable if set, else
        ``file-index.sqlite`` in the user's cache directory; a path: that
        file; False: none (an in-memory index only).

    Examples
    --------
    >>> import tempfile
    >>> from intake_bluesky.core import FileFormat
    >>> FileDriver(tempfile.mkdtemp(), FileFormat(), index_path=False).count({})
    0
    """

    def __init__(self, paths, fmt: FileFormat, index_path=None):
        self.paths = paths
        self.fmt = fmt
        self.index_path = index_path
        self._index = open_index(resolve_index_path(index_path))
        self._fmt_key = fmt.index_key()
        self._listing = _Listing(paths, fmt.suffixes, fmt.recursive)
        self._entries: dict[str, _Entry] = {}
        self._loaded_dirs: set[str] = set()
        self._disk: dict[str, tuple] = {}
        self._pending: dict[str, _Entry] = {}
        self._live: set[str] = set()  # keys of runs in progress, files without start
        self._files: dict[str, int] | None = None  # the last listing
        # Sorted matches per (query, sort), valid while nothing changed: a
        # catalog asks the same search for len() and then for its entries.
        self._generation = 0
        self._matches: OrderedDict[tuple, tuple[int, list[RunStart]]] = OrderedDict()
        self._runs: dict[str, _Entry] = {}
        self._suspects: set[str] = set()
        self._warned: set = set()
        self._lock = threading.RLock()

    @classmethod
    def for_catalog(cls, catalog, paths, fmt: FileFormat, index_path=None) -> FileDriver:
        """The driver of a file catalog, called from the catalog's ``__init__``.

        ``paths`` are made absolute, in the driver and in the arguments intake
        recorded for ``catalog.yaml()`` and pickling, so that the YAML opens
        the same files from any working directory. Sets ``catalog.paths``.

        Examples
        --------
        >>> import tempfile
        >>> from intake_bluesky.core import BlueskyCatalog
        >>> class MyCatalog(BlueskyCatalog):
        ...     def __init__(self, paths, *, index_path=None, **common):
        ...         driver = FileDriver.for_catalog(self, paths, FileFormat(), index_path)
        ...         super().__init__(driver, **common)
        >>> len(MyCatalog(tempfile.mkdtemp(), index_path=False))
        0
        """
        paths = absolute_paths(paths)
        args = getattr(catalog, "_captured_init_args", None)
        kwargs = getattr(catalog, "_captured_init_kwargs", None)
        if kwargs is not None and "paths" in kwargs:
            kwargs["paths"] = paths
        elif args:
            catalog._captured_init_args = (paths, *args[1:])
        catalog.paths = paths
        return cls(paths, fmt, index_path=index_path)

    def __repr__(self):
        return f"{type(self).__name__}({self.paths!r}, {self.fmt.name})"

    def __getstate__(self):
        return {"paths": self.paths, "fmt": self.fmt, "index_path": self.index_path}

    def __setstate__(self, state):
        self.__init__(state["paths"], state["fmt"], state.get("index_path"))

    # --- keeping the index current -----------------------------------------
    def refresh(self) -> None:
        """Bring the index up to date with the files, paying only for changes.

        Directories are stat'ed (and listed again if their mtime changed);
        files are stat'ed only if new, replaced, in progress or suspected of
        change; headers are read only for file versions not indexed in memory
        or on disk.
        """
        # Indexing allocates a few objects per file and frees none: collections
        # would only walk a growing heap again and again.
        with self._lock, gc_paused():
            listing = self._listing
            listing.changed = False
            files = listing.files()
            changed = listing.changed or self._files is None
            updates: list = []
            if changed:
                self._relist(files, updates)
            for key in [*self._live, *self._suspects]:
                entry = self._entries.get(key)
                if entry is not None and self._restat(key, entry, updates):
                    changed = True
            self._suspects.clear()
            if updates and self._index is not None:
                self._index.put(self._fmt_key, updates, self.fmt.json_documents)
            if changed:
                self._generation += 1
                self._rebuild_runs()
                self._warn_other_formats()

    def _relist(self, files: dict[str, int], updates: list) -> None:
        old = self._entries
        previous, self._files = self._files, files
        if previous is not None and type(self.fmt).split_runs is FileFormat.split_runs:
            # One file per run: only the files that appeared, went or were
            # replaced (another inode) are looked at.
            gone = list(previous.keys() - files.keys())
            fresh: list[tuple[str, str | tuple[str, ...], tuple[int | None, ...]]] = [
                (path, path, (inode,)) for path, inode in files.items() - previous.items()
            ]
            for key in gone:
                self._drop(key)
            for key, _, _ in fresh:
                self._drop(key)
            new = old
        else:
            new = {}
            fresh = []
            for location in self.fmt.split_runs(list(files)):
                key = _location_key(location)
                inodes: tuple[int | None, ...]
                if type(location) is str:
                    inodes = (files.get(location),)
                else:
                    inodes = tuple(files.get(p) for p in location)
                entry = old.get(key)
                if entry is not None and entry.inodes == inodes:
                    new[key] = entry
                else:
                    fresh.append((key, location, inodes))
            gone = [k for k in old if k not in new]
            for key in gone:
                self._live.discard(key)
                self._pending.pop(key, None)
        if fresh:
            self._load_disk(loc for _, loc, _ in fresh)
        # The first index of a large directory is the long work here.
        for key, location, inodes in progress(fresh, desc="Indexing run files", unit="run"):
            version = _version(location)
            if version is None:
                continue  # deleted between listing and stat
            entry = _Entry(location, inodes, version)
            self._fill_header(key, entry, updates)
            new[key] = entry
        if gone and self._index is not None:
            self._index.forget(self._fmt_key, gone)
        self._entries = new

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._live.discard(key)
        self._pending.pop(key, None)

    def _restat(self, key: str, entry: _Entry, updates: list) -> bool:
        version = _version(entry.location)
        if version == entry.version:
            return False
        if version is None:
            return True  # gone: the next listing drops it (its directory changed)
        entry.version = version
        self._fill_header(key, entry, updates)
        return True

    def _fill_header(self, key: str, entry: _Entry, updates: list) -> None:
        self._pending.pop(key, None)
        cached = _cached_header(self._fmt_key, entry.location, entry.version)
        disk = self._disk.pop(key, None) if cached is None else None
        if cached is not None:
            entry.set_documents(cached[1], cached[2])
        elif disk is not None and disk[0] == entry.version:
            entry.uid, entry.has_stop = disk[1], disk[2]
            entry.start = entry.stop = _PENDING
            self._pending[key] = entry
        else:
            start, stop = _read_header(self.fmt, entry.location)
            entry.set_documents(start, stop)
            _remember_header(self._fmt_key, entry.location, entry.version, start, stop)
            updates.append((key, entry.version, start, stop))
        if entry.live:
            self._live.add(key)
        else:
            self._live.discard(key)

    def _load_disk(self, locations) -> None:
        """Entries of the on-disk index under the directories of these locations."""
        if self._index is None:
            return
        for location in locations:
            first = location if type(location) is str else location[0]
            directory = first.rpartition(os.sep)[0]
            if directory not in self._loaded_dirs:
                self._loaded_dirs.add(directory)
                self._disk.update(self._index.get_under(self._fmt_key, directory))

    def _ensure_documents(self) -> None:
        """Decode the start/stop documents of entries listed from the index."""
        if not self._pending:
            return
        with self._lock, gc_paused():
            pending, self._pending = self._pending, {}
            if not pending:
                return
            # Entries are pending only when they were listed from the index.
            assert self._index is not None
            stored: dict[str, tuple] = {}
            directories = {
                (e.location if type(e.location) is str else e.location[0]).rpartition(os.sep)[0]
                for e in pending.values()
            }
            for directory in directories:
                stored.update(self._index.documents_under(self._fmt_key, directory))
            updates = []
            for key, entry in pending.items():
                found = stored.get(key)
                try:
                    if found is None or found[0] != entry.version:
                        raise ValueError("changed in the index meanwhile (another process)")
                    start, stop = decode(found[1]), decode(found[2])
                except ValueError:  # or a damaged entry: read the file
                    start, stop = _read_header(self.fmt, entry.location)
                    updates.append((key, entry.version, start, stop))
                entry.set_documents(start, stop)
                _remember_header(self._fmt_key, entry.location, entry.version, start, stop)
            if updates:
                self._index.put(self._fmt_key, updates, self.fmt.json_documents)
            self._generation += 1
            if any(e.uid != (e.start or {}).get("uid") for e in pending.values()):
                self._rebuild_runs()

    def _rebuild_runs(self) -> None:
        runs: dict[str, _Entry] = {}
        for entry in self._entries.values():
            uid = entry.uid
            if uid is None:
                continue
            if uid in runs:
                self._warn_duplicate(uid, runs[uid].location, entry.location)
                continue
            runs[uid] = entry
        self._runs = runs

    def _warn_duplicate(self, uid, kept, skipped):
        key = (uid, skipped)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(
            f"Run {uid!r} is stored twice: in {kept} and in {skipped}. Only the first is "
            "listed; remove the copy, or open the two places as separate catalogs.",
            stacklevel=5,
        )

    def _warn_other_formats(self) -> None:
        if not self._entries and not self.fmt.recursive:
            self._warn_runs_in_subfolders()
        for entry, others in self._listing.others.items():
            known = {ext: n for ext, n in others.items() if ext in _KNOWN_FORMATS}
            if not known or ("other", entry) in self._warned:
                continue
            self._warned.add(("other", entry))
            found = ", ".join(
                f"{n} {ext} file{'s' if n > 1 else ''} ({_KNOWN_FORMATS[ext]})"
                for ext, n in sorted(known.items())
            )
            warnings.warn(
                f"{entry!r} holds no {self.fmt.name} files ({', '.join(self.fmt.suffixes)}) "
                f"but {found}: open it with the catalog of that format instead.",
                stacklevel=5,
            )

    def _warn_runs_in_subfolders(self) -> None:
        """An empty catalog over a folder whose subfolders hold run files
        (a parent folder given by mistake) says so, once."""
        paths = [self.paths] if isinstance(self.paths, str | os.PathLike) else self.paths
        for path in map(os.fspath, paths):
            if ("subfolders", path) in self._warned or not os.path.isdir(path):
                continue
            self._warned.add(("subfolders", path))
            try:
                with os.scandir(path) as entries:
                    folders = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
                holding = []
                for folder in folders:
                    with os.scandir(folder.path) as entries:
                        if any(e.name.endswith(tuple(self.fmt.suffixes)) for e in entries):
                            holding.append(folder.name)
            except OSError:
                continue
            if holding:
                shown = ", ".join(sorted(holding)[:5]) + (", ..." if len(holding) > 5 else "")
                warnings.warn(
                    f"{path!r} holds no {self.fmt.name} files ({', '.join(self.fmt.suffixes)}) "
                    f"itself, but its subfolders {shown} do: open those folders, or a glob "
                    f"such as {os.path.join(path, '*', '*' + self.fmt.suffixes[0])!r}.",
                    stacklevel=5,
                )

    def suspect(self, location: Location) -> None:
        """Have the next refresh stat this location again (its file may have
        been rewritten in place)."""
        with self._lock:
            self._suspects.add(_location_key(location))

    # --- the Driver protocol -------------------------------------------------
    def search(
        self,
        query: Mapping[str, Any],
        *,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[RunStart]:
        known = self._known_uid(query)
        if known is not None:
            # A lookup by full uid of an indexed, unchanged file: answered
            # from the index after one stat, not a listing of every file.
            return search_starts([known], query, sort=sort, skip=skip, limit=limit)
        matched = self._sorted(query, sort)
        return islice(iter(matched), skip, None if limit is None else skip + limit)

    def _sorted(self, query: Mapping[str, Any], sort: Sort) -> list[RunStart]:
        self.refresh()
        self._ensure_documents()
        try:
            key = (repr(query), tuple(map(tuple, sort)))
        except TypeError:
            key = None
        with self._lock:
            cached = self._matches.get(key) if key is not None else None
            if key is not None and cached is not None and cached[0] == self._generation:
                self._matches.move_to_end(key)
                return cached[1]
            starts = [entry.start for entry in self._runs.values()]
        matched = sorted_matches(starts, query, sort)
        with self._lock:
            if key is not None:
                self._matches[key] = (self._generation, matched)
                while len(self._matches) > 8:
                    self._matches.popitem(last=False)
        return matched

    def _known_uid(self, query: Mapping[str, Any]) -> RunStart | None:
        uid = _uid_of(query)
        entry = self._runs.get(uid) if uid is not None else None
        if entry is None:
            return None
        self._ensure_documents()
        if _version(entry.location) != entry.version:
            self.suspect(entry.location)
            return None
        return entry.start

    def count(self, query) -> int:
        if not query:
            self.refresh()
            return len(self._runs)
        return len(self._sorted(query, DEFAULT_SORT))

    def run(self, uid: str) -> FileRunSource:
        entry = self._runs.get(uid)
        if entry is None:
            self.refresh()
            entry = self._runs.get(uid)
        if entry is None:
            raise KeyError(uid)
        self._ensure_documents()
        return FileRunSource(
            entry.location,
            self.fmt,
            uid,
            header=(entry.version, entry.start, entry.stop),
            on_change=self.suspect,
        )

    def location(self, uid: str) -> Location:
        """Where a run is stored (for messages and tools)."""
        return self.run(uid).location


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


# ---------------------------------------------------------------------------
# Reading runs.
