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

import fnmatch
import glob
import itertools
import operator
import os
import stat
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from .._model.documents import DelegatingRunSource, DocumentRunSource
from .._progress import progress
from .._query.starts import search_starts, sorted_matches
from .._registry import known_file_formats
from ..driver import DEFAULT_SORT, Sort
from ..errors import RunChangedError
from .diskindex import decode, open_index, resolve_index_path

if TYPE_CHECKING:
    from event_model.documents import RunStart

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

#: Where one run is stored: a file, or a tuple of files.
Location = str | tuple[str, ...]

#: A directory modified less than this long before it was listed may change
#: again within the same mtime tick: it is listed again next time.
_RACY_NS = 2 * 10**9

#: Suffixes of the formats of intake-bluesky's backends, for the warning when
#: a catalog's paths hold only another backend's files.
_KNOWN_FORMATS = known_file_formats()


def _files_of(location: Location) -> tuple[str, ...]:
    return (location,) if isinstance(location, str) else tuple(location)


def _location_key(location: Location) -> str:
    return location if isinstance(location, str) else "\n".join(location)


class FileFormat:
    """How to read bluesky documents out of one file of a format.

    Subclasses set :attr:`suffixes` and implement :meth:`read_documents`;
    they should override :meth:`read_header` to read only the first and last
    records, and may implement :meth:`read_appended` so that a growing file is
    read incrementally. Instances must be picklable (no open handles).
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
    #: True if :meth:`read_header` returns only JSON types (dict, list, str,
    #: int, float, bool, None), e.g. documents decoded from JSON: they are
    #: stored in the on-disk index without a check of every value.
    json_documents: bool = False
    #: Bump when :meth:`read_header` changes what it returns for the same
    #: bytes: entries of the on-disk index made by older versions are ignored.
    index_version: int = 1

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store`` holds files of this format (by :attr:`suffixes`).

        What a file backend's catalog class answers when asked whether it
        recognises a store: see :func:`holds_files`.
        """
        return holds_files(store, cls.suffixes)

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

    def read_appended(self, location: Location, resume):
        """Lists of the documents after ``resume``, from a generator that
        *returns* the next ``resume`` (lists, not single documents: a run of
        100,000 events then passes through a few generator steps, not
        100,000).

        ``resume`` is None (read from the beginning) or what the previous call
        returned; its first item must be the byte offset just after the last
        complete record read. Implement it to read a growing file
        incrementally; the core checks that the bytes before that offset are
        unchanged (else it reads from the beginning again). Formats that do
        not implement it are read whole again when their file changes.
        """
        raise NotImplementedError

    def split_runs(self, paths: Sequence[str]) -> list[Location]:
        """Group the listed files into runs.

        A location is one path (one file per run, the default) or a tuple of
        paths (a run made of several files, e.g. a TIFF series); it is what
        :meth:`read_header` and :meth:`read_documents` receive.
        """
        return list(paths)

    def index_key(self) -> str:
        """What distinguishes this format's entries in the on-disk index
        (class, :attr:`index_version` and options)."""
        options = sorted((k, repr(v)) for k, v in vars(self).items())
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}/{self.index_version}/{options!r}"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in vars(self).items()))))


def _incremental(fmt: FileFormat) -> bool:
    return type(fmt).read_appended is not FileFormat.read_appended


# ---------------------------------------------------------------------------
# Listing.


class _Dir:
    """One directory listing, valid while the directory's mtime is unchanged."""

    __slots__ = ("mtime", "trusted", "all_files", "dirs", "files", "others", "subdirs")

    def __init__(self, mtime: int, trusted: bool):
        self.mtime = mtime
        self.trusted = trusted
        self.all_files: dict[str, int] = {}  # name -> inode of every file
        self.dirs: list[str] = []  # names of subdirectories
        # path -> inode of the format's files, counts of other suffixes,
        # paths of (non-hidden) subdirectories, for recursive listings.
        self.files: dict[str, int] = {}
        self.others: dict[str, int] = {}
        self.subdirs: list[str] = []


_NAME = operator.attrgetter("name")


class _Listing:
    """The files a catalog's paths name, listed again only where a directory
    changed. Not thread-safe: the driver serializes refreshes."""

    def __init__(self, paths, suffixes: Sequence[str], recursive: bool):
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.entries = [os.fspath(p) for p in paths]
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.recursive = recursive
        self._dirs: dict[str, _Dir] = {}
        self.changed = True
        self._missing_warned: set[str] = set()
        self._kinds: dict[str, str] = {}  # path entry -> "dir" or "file"
        # Per path entry: what else its directories hold (for the warning
        # when they hold only another format's files).
        self.others: dict[str, dict[str, int]] = {}

    def _scan(self, directory: str) -> _Dir | None:
        """The listing of a directory: one stat if unchanged."""
        try:
            st = os.stat(directory)
        except OSError:
            if self._dirs.pop(directory, None) is not None:
                self.changed = True
            return None
        cached = self._dirs.get(directory)
        if cached is not None and cached.trusted and cached.mtime == st.st_mtime_ns:
            return cached
        listing = _Dir(st.st_mtime_ns, time.time_ns() - st.st_mtime_ns > _RACY_NS)
        prefix = os.path.join(directory, "")
        suffixes = self.suffixes
        all_files, files, others = listing.all_files, listing.files, listing.others
        try:
            with os.scandir(directory) as it:
                items = sorted(it, key=_NAME)
        except OSError:
            if self._dirs.pop(directory, None) is not None:
                self.changed = True
            return None
        for item in items:
            name = item.name
            try:
                if item.is_file():
                    inode = all_files[name] = item.inode()
                    lower = name.lower()
                    if lower.endswith(suffixes):
                        files[prefix + name] = inode
                    else:
                        ext = os.path.splitext(lower)[1]
                        others[ext] = others.get(ext, 0) + 1
                elif item.is_dir():
                    listing.dirs.append(name)
                    if not name.startswith("."):
                        listing.subdirs.append(prefix + name)
            except OSError:
                continue  # vanished while listed
        if cached is None or cached.all_files != all_files or cached.dirs != listing.dirs:
            self.changed = True
        self._dirs[directory] = listing
        return listing

    def _dir_files(self, directory: str, found: dict, others: dict) -> None:
        listing = self._scan(directory)
        if listing is None:
            return
        found.update(listing.files)
        for ext, n in listing.others.items():
            others[ext] = others.get(ext, 0) + n
        if self.recursive:
            for sub in listing.subdirs:
                self._dir_files(sub, found, others)

    def files(self) -> dict[str, int]:
        """``path -> inode`` of every listed file; sets :attr:`changed`."""
        found: dict[str, int] = {}
        for entry in self.entries:
            others: dict[str, int] = {}
            before = len(found)
            if glob.has_magic(entry):
                matched = self._glob(entry, found, others)
            else:
                matched = self._plain(entry, found, others)
            if not matched and entry not in self._missing_warned:
                self._missing_warned.add(entry)
                warnings.warn(
                    f"{entry!r} names no file or directory (nothing matches it); the catalog "
                    "lists no runs from it. Check the path.",
                    stacklevel=5,
                )
            if len(found) == before:
                self.others[entry] = others
            else:
                self.others.pop(entry, None)
        return found

    def _plain(self, entry: str, found: dict, others: dict) -> bool:
        path = os.path.abspath(entry)
        kind = self._kinds.get(path)
        if kind is None:
            # First time: one stat tells a directory from a file.
            try:
                kind = "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "file"
            except OSError:
                return False
            self._kinds[path] = kind
        if kind == "dir":
            before = path in self._dirs
            self._dir_files(path, found, others)
            if path in self._dirs or not before:
                return path in self._dirs
            self._kinds.pop(path, None)  # gone, or replaced by a file
            return self._plain(entry, found, others)
        # A file: its parent's listing says whether it is still there, so a
        # list of files costs a stat per directory, not per file.
        parent, name = os.path.split(path)
        listing = self._scan(parent)
        if listing is None:
            return False
        inode = listing.all_files.get(name)
        if inode is not None:
            found[path] = inode
            return True
        if name in listing.dirs:
            self._kinds.pop(path, None)  # now a directory
            return self._plain(entry, found, others)
        return False

    def _glob(self, entry: str, found: dict, others: dict) -> bool:
        head, pattern = os.path.split(os.path.abspath(entry))
        if glob.has_magic(head):
            # Directories matched by the head: one stat per directory.
            directories = sorted(d for d in glob.glob(head) if os.path.isdir(d))
        else:
            directories = [head]
        hidden_ok = pattern.startswith(".")
        matched = False
        for directory in directories:
            listing = self._scan(directory)
            if listing is None:
                continue
            names = fnmatch.filter([*listing.all_files, *listing.dirs], pattern)
            for name in sorted(names):
                if name.startswith(".") and not hidden_ok:
                    continue
                matched = True
                path = os.path.join(directory, name)
                inode = listing.all_files.get(name)
                if inode is not None:
                    found[path] = inode
                else:
                    self._dir_files(path, found, others)
        return matched


def expand_paths(paths, suffixes: Sequence[str], recursive: bool = False) -> list[str]:
    """Files named by a path, a glob, a directory, or a list of them.

    Directories contribute the files ending in ``suffixes`` (case-insensitive;
    with ``recursive``, in subdirectories too); explicit files are taken
    whatever their name. Paths come back absolute.

    Examples
    --------
    >>> import tempfile
    >>> expand_paths(tempfile.mkdtemp(), (".jsonl",))
    []
    """
    return list(_Listing(paths, suffixes, recursive).files())


def holds_files(store, suffixes: Sequence[str]) -> bool:
    """Whether a path, glob or directory names a file ending in ``suffixes``.

    Case-insensitive; directories are searched with their subdirectories
    (hidden ones left out), and the search stops at the first such file. A
    URI or a path that does not exist holds none.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> holds_files(folder, (".jsonl",))
    False
    >>> open(os.path.join(folder, "a.JSONL"), "w").close()
    >>> holds_files(folder, (".jsonl",)), holds_files(folder + "/*", (".msgpack",))
    (True, False)
    """
    suffixes = tuple(s.lower() for s in suffixes)
    if not suffixes:
        return False
    store = os.fspath(store)
    paths = sorted(glob.glob(store)) if glob.has_magic(store) else [store]
    for path in paths:
        if not os.path.isdir(path):
            if os.path.isfile(path) and path.lower().endswith(suffixes):
                return True
            continue
        for _, dirnames, names in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if any(n.lower().endswith(suffixes) for n in names):
                return True
    return False


def absolute_paths(paths):
    """``paths`` (a path, glob, or list of them) with each one made absolute.

    Examples
    --------
    >>> import os
    >>> absolute_paths(["a", "/b/*.jsonl"]) == [os.path.abspath("a"), "/b/*.jsonl"]
    True
    """
    if isinstance(paths, str | os.PathLike):
        return os.path.abspath(os.path.expanduser(os.fspath(paths)))
    return [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]


def _version(location: Location) -> tuple | None:
    """Size, mtime, ctime and inode of every file of a location; None if one
    is gone.

    Size and mtime alone miss a file rewritten in place to the same size whose
    mtime was then set back (``os.utime``, ``touch -r``, ``cp -p``, ``rsync``):
    its ctime cannot be set back, and a file replaced by another has another
    inode.
    """
    out = []
    for path in _files_of(location):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        out.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


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


def _read_header(fmt: FileFormat, location: Location):
    try:
        start, stop = fmt.read_header(location)
    except ValueError as err:
        # One damaged file must not make every other run unlistable; it is
        # named (once per file version), never silently dropped.
        warnings.warn(f"Skipping {location}: {err}", stacklevel=5)
        return None, None
    except FileNotFoundError:
        return None, None
    if start is not None and start.get("uid") is None:
        # Without a uid the run can be neither listed nor looked up: said,
        # never hidden.
        warnings.warn(
            f"Skipping {location}: its start document has no 'uid', so the run cannot be "
            f"listed or looked up ({fmt.name}). Give the start document a uid (event-model "
            "requires one), or move the file out of the catalog's paths.",
            stacklevel=5,
        )
        return None, None
    if start is None and not fmt.reports_skipped_files:
        warnings.warn(
            f"Skipping {location}: it holds no start document, so it is not a bluesky "
            f"run ({fmt.name}). If a run is being written to it, it will appear once its "
            "start document is written.",
            stacklevel=5,
        )
    return start, stop


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

#: Bytes compared, before the resume offset and at the file's start, to tell
#: a file that grew from one rewritten.
_FINGERPRINT = 256


def _fingerprint(path: str, offset: int) -> tuple | None:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            head = f.read(min(_FINGERPRINT, offset))
            f.seek(max(0, offset - _FINGERPRINT))
            tail = f.read(min(_FINGERPRINT, offset))
    except OSError:
        return None
    return (st.st_dev, st.st_ino, head, tail)


class _ParsedRunFile:
    """One run file as parsed so far: its run source for one version of the
    file, with what is needed to parse only the bytes appended later."""

    def __init__(self):
        self.lock = threading.Lock()
        self.version = None
        self.source: DocumentRunSource | None = None
        self.resume = None
        self.fingerprint = None

    def update(self, fmt: FileFormat, location: Location, uid: str, version) -> None:
        """Bring :attr:`source` to ``version`` (call with :attr:`lock` held)."""
        if self.source is not None and version == self.version:
            return
        if not _incremental(fmt):
            self.source = DocumentRunSource(
                fmt.read_documents(location), uid=uid, keep_documents=False
            )
            self.version = version
            return
        (path,) = _files_of(location)
        resume = self.resume
        if self.source is not None and resume is not None:
            # A serializer only appends: a file that did not grow was
            # rewritten in place (same size) or truncated; one that
            # grew keeps its bytes up to where we stopped (checked by sample).
            grew = self.version is not None and version[0][0] > self.version[0][0]
            now = _fingerprint(path, resume[0]) if grew else None
            if now is None or now != self.fingerprint:
                resume = None  # truncated or rewritten: start over
        result: list = []

        def batches():
            result.append((yield from fmt.read_appended(location, resume)))

        documents = itertools.chain.from_iterable(batches())
        try:
            if resume is None or self.source is None:
                self.source = DocumentRunSource(documents, uid=uid, keep_documents=False)
            else:
                self.source.extend(documents)
        except BaseException:
            # Part of the appended documents may have been taken: the next
            # access reads the file from the start (and reports the error).
            self.source = self.resume = self.fingerprint = self.version = None
            raise
        self.resume = result[0] if result else None
        self.fingerprint = _fingerprint(path, self.resume[0]) if self.resume else None
        self.version = version


# Runs recently read in this process, so that looking a run up again
# (``cat[-1]`` twice) does not parse its file again. Small: each entry holds a
# run's columns.
_SOURCES: OrderedDict[tuple[FileFormat, Location], _ParsedRunFile] = OrderedDict()
_SOURCES_MAX = 2


def _parsed_run_file(fmt: FileFormat, location: Location) -> _ParsedRunFile:
    """The shared parse of a run file (the most recent few are kept)."""
    key = (fmt, location)
    with _HEADERS_LOCK:
        parsed = _SOURCES.get(key)
        if parsed is None:
            parsed = _SOURCES[key] = _ParsedRunFile()
        _SOURCES.move_to_end(key)
        while len(_SOURCES) > _SOURCES_MAX:
            _SOURCES.popitem(last=False)
    return parsed


class FileRunSource(DelegatingRunSource):
    """A run stored in files, read again (only the appended bytes, where the
    format allows) whenever a file's size, mtime, ctime or inode changes.

    So a live run's new events and its stop show up on the next access.
    """

    def __init__(self, location: Location, fmt: FileFormat, uid: str, header=None, on_change=None):
        self.location = location
        self.fmt = fmt
        self.uid = uid
        # (version, start, stop) from the index: start/stop without reading
        # the whole file while the file is unchanged.
        self._header = header
        self._on_change = on_change
        self._parsed: _ParsedRunFile | None = None

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
        parsed = self._parsed
        if parsed is None or parsed.version != version:
            # Shared with other run objects of the same file in this process;
            # kept here too, so a followed run stays incremental even when
            # other runs are read meanwhile.
            if parsed is None:
                parsed = self._parsed = _parsed_run_file(self.fmt, self.location)
        with parsed.lock:
            parsed.update(self.fmt, self.location, self.uid, version)
            source = parsed.source
        # update() always leaves a source (it raises when it cannot).
        assert source is not None
        if source.start()["uid"] != self.uid:
            self._raise_more_than_one_run(source.start()["uid"])
            raise RunChangedError(
                f"Run {self.uid!r} no longer exists: its file(s) {self.location} changed "
                f"and now hold run {source.start()['uid']!r}. Look it up again."
            )
        return source

    def _raise_more_than_one_run(self, other) -> None:
        """ValueError if the file still begins with this run: then the run
        read last (``other``) is a second run in the same file, not a sign
        that the file changed."""
        try:
            first = self.fmt.read_header(self.location)[0]
        except (OSError, ValueError):
            return
        if first is not None and first.get("uid") == self.uid:
            raise ValueError(
                f"{self.location} holds more than one run: it begins with the start document "
                f"of run {self.uid!r} and has another, of run {other!r}, after it. A run file "
                "holds one run: split it into one file per run, or move it out of the "
                "catalog's paths."
            )

    def _valid_header(self):
        header = self._header
        if header is not None:
            if header[0] == self._check_version():
                return header
            if self._on_change is not None:
                self._on_change(self.location)
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
