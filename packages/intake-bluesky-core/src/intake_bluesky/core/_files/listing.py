"""Finding run files: paths, globs and directories, listed again only when a
directory changed.
"""

from __future__ import annotations

import fnmatch
import glob
import operator
import os
import stat
import time
import warnings
from collections.abc import Sequence

#: A directory modified less than this long before it was listed may change
#: again within the same mtime tick: it is listed again next time.
_RACY_NS = 2 * 10**9
#: A directory's listing is stored for new processes at most this often.
_STORE_EVERY_NS = 30 * 10**9


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
    changed. Not thread-safe: the driver serializes refreshes.

    ``stored(directory)`` (optional) returns ``(mtime, listing)`` kept from
    an earlier process (see :func:`encode_listing`): a directory whose mtime
    is still that one is not listed again. Directories taken from there are
    in :attr:`from_store` (until listed again); listings worth keeping (not
    racy) collect in :attr:`fresh` for the caller to store.
    """

    def __init__(self, paths, suffixes: Sequence[str], recursive: bool, stored=None):
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
        self._stored = stored
        self.from_store: set[str] = set()
        self.fresh: dict[str, _Dir] = {}
        self._stored_at: dict[str, int] = {}

    def _restore(self, directory: str, mtime: int) -> _Dir | None:
        """The listing an earlier process kept for a directory, if the
        directory has not changed since (same mtime)."""
        found = self._stored(directory) if self._stored is not None else None
        if found is None or found[0] != mtime:
            return None
        prefix = os.path.join(directory, "")
        suffixes = self.suffixes
        listing = _Dir(mtime, True)
        files, others = listing.files, listing.others
        try:
            names, inodes, dirs = _loads(found[1])
            listing.all_files = dict(zip(names, inodes, strict=True))
            for name in listing.all_files:
                lower = name.lower()
                if lower.endswith(suffixes):
                    files[prefix + name] = listing.all_files[name]
                else:
                    ext = os.path.splitext(lower)[1]
                    others[ext] = others.get(ext, 0) + 1
            listing.dirs = [str(name) for name in dirs]
        except (ValueError, TypeError, AttributeError):
            return None  # damaged: listed again
        listing.subdirs = [prefix + name for name in listing.dirs if not name.startswith(".")]
        self.from_store.add(directory)
        return listing

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
        if cached is None:
            restored = self._restore(directory, st.st_mtime_ns)
            if restored is not None:
                self.changed = True
                self._dirs[directory] = restored
                return restored
        self.from_store.discard(directory)
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
        if listing.trusted:
            # Kept for new processes: a directory's first listing here, then
            # at most every _STORE_EVERY_NS (a listing of 100,000 names is
            # 5 MB: not rewritten for each run a live directory gains).
            stored = self._stored_at.get(directory)
            if stored is None or time.monotonic_ns() - stored > _STORE_EVERY_NS:
                self.fresh[directory] = listing
        return listing

    def take_fresh(self) -> list[tuple[str, int, bytes]]:
        """``(directory, mtime, listing)`` of the directories listed since
        the last call whose listing holds until their mtime changes."""
        out = [(d, listing.mtime, encode_listing(listing)) for d, listing in self.fresh.items()]
        now = time.monotonic_ns()
        self._stored_at.update((d, now) for d in self.fresh)
        self.fresh.clear()
        return out

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


def encode_listing(listing: _Dir) -> bytes:
    """A directory listing as JSON: file names, their inodes, subdirectories."""
    return _dumps([list(listing.all_files), list(listing.all_files.values()), listing.dirs])


def _dumps(value) -> bytes:
    import orjson  # imported when a listing is first stored, as by the index

    return orjson.dumps(value)


def _loads(blob):
    import orjson

    return orjson.loads(blob)


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
