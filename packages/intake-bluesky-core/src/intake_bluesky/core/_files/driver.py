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
  is next read (or in a new process whose directory changed since the on-disk
  index stored its listing: that process stats every file once).

A new process takes what the on-disk index stored (:mod:`.diskindex`): a
directory whose mtime is the one stored with its listing is not listed again
and its files are not stat'ed (but runs in progress); a search is answered by
SQL over the stored start documents (:mod:`.._query.sql`), the core's
evaluator deciding what SQL cannot, and only the runs it returns are decoded.

Examples
--------
>>> import tempfile
>>> FileDriver(tempfile.mkdtemp(), FileFormat(), index_path=False).count({})
0
"""

from __future__ import annotations

import glob
import os
import stat
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from .._progress import progress
from .._query.sql import _BIT, compile_sql
from .._query.starts import matcher, search_starts, sort_key
from .._registry import known_file_formats
from ..driver import DEFAULT_SORT, Sort
from ..errors import RunChangedError
from .diskindex import (
    COMPLETE as _COMPLETE,
)
from .diskindex import (
    NO_DUPLICATES as _NO_DUPLICATES,
)
from .diskindex import (
    _version_text,
    decode,
    decode_start,
    open_index,
    parse_version,
    resolve_index_path,
)
from .format import FileFormat, Location, _location_key
from .headers import (
    _HEADERS,
    _cached_header,
    _read_header,
    _read_versioned_header,
    _remember_headers,
    _version,
)
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

    From the on-disk index, ``uid``, ``has_stop`` and the start time come
    first, and the version as stored (text, parsed when first compared); the
    start and stop documents are decoded when first needed (``start`` is
    ``_PENDING`` until then), so counting and ordering runs decode nothing.
    """

    __slots__ = (
        "location",
        "inodes",
        "_version",
        "start",
        "stop",
        "uid",
        "has_stop",
        "time",
        "stored",
    )

    def __init__(self, location, inodes, version):
        self.location = location
        self.inodes = inodes
        self._version = version
        self.start = self.stop = None
        self.uid = None
        self.has_stop = False
        self.time = _ODD  # the start's time, when known without the document
        # (version, form, start, stop) as a search read them from the index,
        # still encoded: decoded if the run is returned.
        self.stored: tuple | None = None

    @property
    def version(self):
        version = self._version
        if type(version) is str:
            version = self._version = parse_version(version)
        return version

    @version.setter
    def version(self, value):
        self._version = value

    def same_version(self, stored: str) -> bool:
        """Whether a version as the index stores it is this entry's."""
        mine = self._version
        if type(mine) is str:
            return mine == stored
        return parse_version(stored) == mine

    def set_documents(self, start, stop) -> None:
        self.start, self.stop = start, stop
        self.uid = start.get("uid") if start is not None else None
        self.has_stop = stop is not None

    @property
    def live(self) -> bool:
        # In progress (its stop may arrive) or not a run yet (its start may).
        return self.uid is None or not self.has_stop


#: ``_Entry.time`` when only the document tells (not a plain number or string).
_ODD = object()
_TIME_BIT = _BIT["time"]
_PENDING = object()
#: More pending entries than this are decoded by scanning their directories.
_DECODE_BY_DIRECTORY = 2_000
#: New entries from one refresh written by the index's writer thread rather
#: than before the refresh returns (see FileDriver._store): a directory's first
#: index. Fewer (a run or a few added) are written at once.
_DEFER_WRITES = 1_000


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
        stored = None
        if self._index is not None:
            index, key = self._index, self._fmt_key
            stored = lambda directory: index.listing(key, directory)  # noqa: E731
        self._listing = _Listing(paths, fmt.suffixes, fmt.recursive, stored)
        self._entries: dict[str, _Entry] = {}
        self._loaded_dirs: set[str] = set()
        self._disk: dict[str, tuple] = {}
        self._pending: dict[str, _Entry] = {}
        self._live: set[str] = set()  # keys of runs in progress, files without start
        self._files: dict[str, int] | None = None  # the last listing
        # Sorted matches per (query, sort), valid while nothing changed: a
        # catalog asks the same search for len() and then for its entries.
        self._generation = 0
        self._matches: OrderedDict[tuple, tuple[int, list[_Entry]]] = OrderedDict()
        self._runs: dict[str, _Entry] = {}
        self._suspects: set[str] = set()
        self._warned: set = set()
        # What a stored listing's flags say (see _store).
        self._duplicate_dirs: set[str] = set()
        self._memory_only_dirs: set[str] = set()
        # Before the first listing: runs found by searches answered from the
        # index alone, and those answers (see _lazy_sorted).
        self._lazy_runs: dict[str, _Entry] = {}
        self._lazy_answers: OrderedDict[tuple, tuple[tuple, list[_Entry]]] = OrderedDict()
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
            # A directory's listing is stored with the entries of its files, in
            # one transaction, so a new process finding the directory unchanged
            # takes both without listing it or statting its files.
            listings = listing.take_fresh() if self._index is not None else []
            if changed:
                self._generation += 1
                self._rebuild_runs()
            if (updates or listings) and self._index is not None:
                self._store(updates, listings)
            elif updates:
                _remember_headers(self._fmt_key, self._by_location(updates))
            if changed:
                self._warn_other_formats()

    def _by_location(self, updates: list) -> list:
        """``updates`` (keyed by location key) keyed by location, as this
        process's memory of headers keeps them (see :mod:`.headers`)."""
        if type(self.fmt).split_runs is FileFormat.split_runs:
            return updates  # keys are the paths
        where = {_location_key(e.location): e.location for e in self._entries.values()}
        return [(where.get(k, k), *rest) for k, *rest in updates]

    def _store(self, updates: list, listings: list[tuple[str, int, bytes]]) -> None:
        """Entries and directory listings into the on-disk index, with what a
        new process may conclude from a listing without reading it (see
        :meth:`_lazy_sorted`).

        Many entries (a directory's first index) are written by the index's
        writer thread, after the caller has its answer: the first open of a
        large directory costs the reading of its files, not also the write
        (nor the keeping of their headers in this process's memory). Every
        later use of the index waits for the write.
        """
        index = self._index
        assert index is not None
        remembered = self._by_location(updates) if updates else []

        @gc_paused()  # (as refresh: many objects made, none freed)
        def write() -> None:
            _remember_headers(self._fmt_key, remembered)
            flagged = []
            for directory, mtime, blob in listings:
                # Membership only: the sets may grow in another thread.
                flags = _NO_DUPLICATES if directory not in self._duplicate_dirs else 0
                if directory not in self._memory_only_dirs:
                    flags |= _COMPLETE
                flagged.append((directory, mtime, blob, flags))
            skipped = index.put(self._fmt_key, updates, self.fmt.json_documents, flagged)
            self._memory_only_dirs.update(loc.rpartition(os.sep)[0] for loc in skipped)

        if len(updates) >= _DEFER_WRITES:
            index.defer(write)
        else:
            write()

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
        # Directories unchanged since an earlier process stored their listing
        # with the entries: an entry of the same inode is taken as stored,
        # without a stat (files rewritten in place are noticed when read, as
        # in an open catalog; runs in progress are stat'ed on every refresh).
        unchanged = self._listing.from_store
        disk, pending, live = self._disk, self._pending, self._live
        fmt_key = self._fmt_key
        # The first index of a large directory is the long work here.
        for key, location, inodes in progress(fresh, desc="Indexing run files", unit="run"):
            stored = disk.get(key) if unchanged else None
            if (
                stored is not None
                and stored[1] == inodes[0]
                and len(inodes) == 1
                and key.rpartition(os.sep)[0] in unchanged
            ):
                # What _fill_header does for an entry of the index, inline:
                # this runs once per file of a directory of 100,000.
                del disk[key]
                entry = _Entry(location, inodes, stored[0])
                _, _, uid, has_stop, time, odd = stored
                entry.uid, entry.has_stop = uid, has_stop
                entry.time = _ODD if odd & _TIME_BIT else time
                entry.start = entry.stop = _PENDING
                pending[key] = entry
                if uid is None or not has_stop:
                    live.add(key)
                new[key] = entry
                continue
            if key not in disk and (not _HEADERS or (fmt_key, location) not in _HEADERS):
                # Seen neither in this process nor in the index: read, its
                # version taken from the open file (one path lookup, not two).
                version, start, stop = _read_versioned_header(self.fmt, location)
                if version is None:
                    continue  # deleted since it was listed
                entry = _Entry(location, inodes, version)
                if pending:
                    pending.pop(key, None)
                self._set_read(key, entry, start, stop, updates)
            else:
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
        cached = _cached_header(self._fmt_key, entry.location, entry.version) if _HEADERS else None
        disk = self._disk.pop(key, None) if cached is None else None
        if cached is not None:
            entry.set_documents(cached[1], cached[2])
        elif disk is not None and entry.same_version(disk[0]):
            _, _, entry.uid, has_stop, time, odd = disk
            entry.has_stop = bool(has_stop)
            entry.time = _ODD if odd & _TIME_BIT else time
            entry.start = entry.stop = _PENDING
            self._pending[key] = entry
        else:
            start, stop = _read_header(self.fmt, entry.location)
            self._set_read(key, entry, start, stop, updates)
            return
        self._track_live(key, entry)

    def _set_read(self, key: str, entry: _Entry, start, stop, updates: list) -> None:
        """An entry's documents as just read from its file."""
        entry.set_documents(start, stop)
        # Remembered in this process with the index's updates (refresh).
        updates.append((key, entry.version, start, stop))
        self._track_live(key, entry)

    def _track_live(self, key: str, entry: _Entry) -> None:
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
        """Decode the start/stop documents of every entry listed from the index."""
        if self._pending:
            self._decode(list(self._pending.values()))

    def _decode(self, entries: list[_Entry]) -> None:
        """Decode the documents of these entries (those still pending)."""
        with self._lock, gc_paused():
            pending = [e for e in entries if e.start is _PENDING]
            if not pending:
                return
            # Entries are pending only when they were listed from the index.
            assert self._index is not None
            keys = [_location_key(e.location) for e in pending]
            stored: dict[str, tuple] = {}
            if all(e.stored is not None for e in pending):
                # Read by the search that found them.
                stored = {k: e.stored for k, e in zip(keys, pending, strict=True) if e.stored}
            elif (
                self._loaded_dirs
                and len(pending) > _DECODE_BY_DIRECTORY
                and 2 * len(pending) > len(self._pending)
            ):
                # Most of a directory: one range scan, not a lookup per key.
                for directory in self._loaded_dirs:
                    stored.update(self._index.documents_under(self._fmt_key, directory))
            else:
                stored = self._index.documents(self._fmt_key, keys)
            self._settle(zip(keys, pending), stored)

    def _settle(self, pairs, stored: Mapping[str, tuple]) -> bool:
        """Give entries their documents from rows of the index
        (``key -> (version, form, start, stop)``), reading the file where
        the row is missing, of another version or damaged. True if a file
        was read."""
        updates = []
        remembered: list = []
        for key, entry in pairs:
            self._pending.pop(key, None)
            found = stored.get(key)
            try:
                if found is None or not entry.same_version(found[0]):
                    raise ValueError("changed in the index meanwhile (another process)")
                start, stop = decode_start(found[1], found[2]), decode(found[3])
            except ValueError:  # or a damaged entry: read the file
                start, stop = _read_header(self.fmt, entry.location)
                updates.append((key, entry.version, start, stop))
            uid = entry.uid
            entry.set_documents(start, stop)
            entry.time, entry.stored = _ODD, None
            remembered.append((entry.location, entry.version, start, stop))
            if entry.uid != uid:
                self._rebuild_runs()
        _remember_headers(self._fmt_key, remembered)
        if updates:
            assert self._index is not None
            self._index.put(self._fmt_key, updates, self.fmt.json_documents)
            self._generation += 1  # documents changed: cached answers are stale
        return bool(updates)

    def _rebuild_runs(self) -> None:
        runs: dict[str, _Entry] = {}
        self._duplicate_dirs.clear()
        for entry in self._entries.values():
            uid = entry.uid
            if uid is None:
                continue
            if uid in runs:
                kept = runs[uid].location
                self._warn_duplicate(uid, kept, entry.location)
                for location in (kept, entry.location):
                    first = location if type(location) is str else location[0]
                    self._duplicate_dirs.add(first.rpartition(os.sep)[0])
                continue
            runs[uid] = entry
        self._runs = runs
        self._lazy_runs.clear()

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
        chosen = matched[skip : None if limit is None else skip + limit]
        # Only the runs returned are decoded.
        self._decode(chosen)
        return iter([entry.start for entry in chosen if entry.start is not None])

    def _sorted(self, query: Mapping[str, Any], sort: Sort) -> list[_Entry]:
        """The entries of the runs matching ``query``, sorted; cached until
        something changes."""
        match = matcher(query)  # a malformed query fails here, before any work
        if match is not None and self._files is None and self._index is not None:
            lazy = self._lazy_sorted(query, match, sort)
            if lazy is not None:
                return lazy
        self.refresh()
        try:
            key = (repr(query), tuple(map(tuple, sort)))
        except TypeError:
            key = None
        with self._lock:
            cached = self._matches.get(key) if key is not None else None
            if key is not None and cached is not None and cached[0] == self._generation:
                self._matches.move_to_end(key)
                return cached[1]
            generation = self._generation
            runs = list(self._runs.values())
        with gc_paused():
            matched = runs if match is None else self._matching(query, match, runs)
            matched = self._order(matched, sort)
        with self._lock:
            if key is not None and generation == self._generation:
                self._matches[key] = (generation, matched)
                while len(self._matches) > 8:
                    self._matches.popitem(last=False)
        return matched

    def _matching(self, query, match, runs: list[_Entry]) -> list[_Entry]:
        """The entries (of ``runs``, same order) whose start matches: those
        still in the index by SQL there (:mod:`.._query.sql`), the rest by
        the evaluator."""
        sure: set[int] = set()
        compiled = compile_sql(query) if self._pending else None
        if compiled is not None:
            assert self._index is not None
            found: list[tuple] = []
            for directory in self._loaded_dirs:
                rows = self._index.candidates(self._fmt_key, directory, *compiled)
                if rows is None:
                    found = []
                    compiled = None  # the index failed: every document is evaluated
                    break
                found.extend(rows)
            pending = self._pending
            unsure = []
            stored = {}
            for location, version, *_, is_sure, form, start, stop in found:
                entry = pending.get(location)
                if entry is None:
                    continue  # not listed, or its documents are in memory
                if is_sure and entry.same_version(version):
                    sure.add(id(entry))
                    entry.stored = (version, form, start, stop)
                else:
                    unsure.append((location, entry))
                    stored[location] = (version, form, start, stop)
            # Candidates SQL could not decide: decoded and evaluated below.
            with self._lock:
                self._settle(unsure, stored)
        if compiled is None:
            self._ensure_documents()
        out = []
        for entry in runs:
            start = entry.start
            if start is _PENDING:
                if id(entry) in sure:
                    out.append(entry)  # SQL decided; pending entries it left out do not match
            elif start is not None and match(start):
                out.append(entry)
        return out

    def _lazy_sorted(self, query, match, sort: Sort) -> list[_Entry] | None:
        """The answer of a search from the on-disk index alone, before this
        driver has listed anything (a new process): no listing, no stat of
        every file, no document decoded but those SQL could not decide. None
        when the index cannot tell (then the files are listed as usual).

        The index tells when every path is a directory whose mtime is the one
        stored with its listing (no file added, removed or renamed since),
        whose files all have entries, no two of them the same run, and whose
        runs in progress and files without a start are as indexed (each is
        stat'ed). Each run found is stat'ed too: gone, it is left out;
        rewritten, its header is read again.
        """
        compiled = compile_sql(query)
        directories = self._lazy_directories()
        if compiled is None or directories is None:
            return None
        index = self._index
        assert index is not None
        live = []
        for directory, _ in directories:
            for location, version in index.live_under(self._fmt_key, directory):
                if _version(location) != parse_version(version):
                    return None  # a run in progress grew, or a start arrived
                live.append((location, version))
        state = (tuple(directories), tuple(live))
        key = (repr(query), tuple(map(tuple, sort)))
        with self._lock:
            cached = self._lazy_answers.get(key)
            if cached is not None and cached[0] == state:
                return cached[1]
        entries: list[_Entry] = []
        uids: set[str] = set()
        updates: list = []
        with gc_paused():
            for directory, _ in directories:
                rows = index.candidates(self._fmt_key, directory, *compiled)
                if rows is None:
                    return None
                skip = len(directory) + 1
                for location, version, ino, uid, has_stop, time, odd, sure, form, a, b in rows:
                    if uid is None or os.sep in location[skip:]:
                        continue  # not a run, or in a subdirectory
                    now = _version(location)
                    if now is None:
                        continue  # removed (its directory changed since: not here)
                    # Compared as text: the stored version is then the entry's,
                    # and later comparisons with the index need no parsing.
                    same = _version_text(now) == version
                    entry = _Entry(location, (ino,), version if same else now)
                    if not same:
                        start, stop = _read_header(self.fmt, location)
                        updates.append((location, now, start, stop))
                        entry.set_documents(start, stop)
                        if start is None or not match(start):
                            continue
                    elif sure:
                        entry.uid, entry.has_stop = uid, bool(has_stop)
                        entry.time = _ODD if odd & _TIME_BIT else time
                        entry.start = entry.stop = _PENDING
                        entry.stored = (version, form, a, b)
                    else:
                        try:
                            entry.set_documents(decode_start(form, a), decode(b))
                        except ValueError:
                            return None  # damaged: the usual way reads the file
                        if not match(entry.start):
                            continue
                    if entry.uid in uids:
                        return None  # two files of one run: the listing decides
                    uids.add(entry.uid)
                    entries.append(entry)
            if updates:
                self._store(updates, [])
            ordered = self._order(entries, sort)
        with self._lock:
            if self._files is None:
                self._lazy_runs.update((e.uid, e) for e in ordered)
                self._lazy_answers[key] = (state, ordered)
                while len(self._lazy_answers) > 8:
                    self._lazy_answers.popitem(last=False)
        return ordered

    def _lazy_directories(self) -> list[tuple[str, int]] | None:
        """``(directory, mtime)`` of the paths, if every one is a directory
        whose stored listing still holds (see :meth:`_lazy_sorted`)."""
        fmt = self.fmt
        if fmt.recursive or type(fmt).split_runs is not FileFormat.split_runs:
            return None
        assert self._index is not None
        out = []
        for entry in self._listing.entries:
            if glob.has_magic(entry):
                return None
            path = os.path.abspath(entry)
            try:
                st = os.stat(path)
            except OSError:
                return None
            if not stat.S_ISDIR(st.st_mode):
                return None
            stored = self._index.listing_flags(self._fmt_key, path)
            if stored != (st.st_mtime_ns, _COMPLETE | _NO_DUPLICATES):
                return None
            out.append((path, st.st_mtime_ns))
        return out

    def _order(self, entries: list[_Entry], sort: Sort) -> list[_Entry]:
        """``entries`` sorted as :func:`.._query.starts.sorted_matches` sorts
        start documents; by time without decoding them."""
        entries = list(entries)
        for key, direction in reversed(list(sort)):
            keyfunc = sort_key(key)
            if key == "time":
                self._decode([e for e in entries if e.start is _PENDING and e.time is _ODD])
                times: list[Any] = [
                    e.time if e.start is _PENDING else (e.start or {}).get("time") for e in entries
                ]
                if all(type(t) is float or type(t) is int for t in times):
                    # Plain numbers (the usual case) sort several times
                    # faster than (class, value) keys, in the same order.
                    if direction < 0:
                        entries.reverse()
                        times.reverse()
                    order = sorted(range(len(times)), key=times.__getitem__, reverse=direction < 0)
                    entries = [entries[i] for i in order]
                    continue

                def by(entry, keyfunc=keyfunc):
                    if entry.start is _PENDING:
                        value = entry.time
                        if value is None:
                            return (0, 0)
                        return (2, value) if type(value) is str else (1, value)
                    return keyfunc(entry.start)
            else:
                self._decode(entries)

                def by(entry, keyfunc=keyfunc):
                    return keyfunc(entry.start)

            # Stable; a descending key reverses ties too (see sorted_matches).
            if direction < 0:
                entries.reverse()
            entries.sort(key=by, reverse=direction < 0)
        return entries

    def _known_uid(self, query: Mapping[str, Any]) -> RunStart | None:
        uid = _uid_of(query)
        entry = self._runs.get(uid) if uid is not None else None
        if entry is None and uid is not None and self._files is None:
            entry = self._lazy_runs.get(uid)
        if entry is None:
            return None
        self._decode([entry])
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
        if entry is None and self._files is None:
            entry = self._lazy_runs.get(uid)  # found by a search before any listing
        if entry is None:
            self.refresh()
            entry = self._runs.get(uid)
        if entry is None:
            raise KeyError(uid)
        self._decode([entry])
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
