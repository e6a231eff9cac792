"""The on-disk index of file catalogs: start and stop documents per file version.

A new process opening a directory it has seen before reads no file's
contents: each run file's ``(start, stop)`` is looked up here by format,
absolute path, size and mtime (ns). The store is an SQLite database (the
standard library's ``sqlite3``), by default ``file-index.sqlite`` in the
user's cache directory (``platformdirs.user_cache_dir("intake-bluesky")``).

* Several processes may read and write it at once (WAL journal, a busy
  timeout, one transaction per batch of new entries).
* A read-only location or a full disk: the catalog keeps its in-memory index
  and warns once (:class:`IndexUnavailableWarning`); never an error.
* A corrupt file is deleted and rebuilt, with a warning.

Where it lives: the ``index_path`` argument of every file catalog (a path,
or ``False`` for no on-disk index), else the environment variable
``INTAKE_BLUESKY_INDEX`` (a path, or ``off``), else the cache directory.

Examples
--------
>>> import os, tempfile
>>> index = DiskIndex(os.path.join(tempfile.mkdtemp(), "index.sqlite"))
>>> index.put("JSONL", [("/data/a.jsonl", ((10, 5),), {"uid": "a"}, None)])
>>> index.get_all("JSONL")["/data/a.jsonl"]
(((10, 5),), {'uid': 'a'}, None)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterable

__all__ = ["DiskIndex", "IndexUnavailableWarning", "default_index_path", "resolve_index_path"]

#: Bumped when what is stored changes meaning: older entries are ignored.
SCHEMA = 1
_FILE_NAME = "file-index.sqlite"
_ENV = "INTAKE_BLUESKY_INDEX"
_BUSY_MS = 10_000


class IndexUnavailableWarning(UserWarning):
    """The on-disk index cannot be used; the catalog indexes in memory only."""


def default_index_path() -> str:
    """``file-index.sqlite`` in the user's cache directory for intake-bluesky."""
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("intake-bluesky"), _FILE_NAME)


def resolve_index_path(index_path) -> str | None:
    """Where the on-disk index is for a catalog argument; None for none.

    ``None``: the environment variable ``INTAKE_BLUESKY_INDEX`` if set (a path,
    or ``off``/empty for none), else :func:`default_index_path`. ``False``:
    none. A path: that file (a directory: ``file-index.sqlite`` in it).
    """
    if index_path is False:
        return None
    if index_path is None or index_path is True:
        env = os.environ.get(_ENV)
        if env is not None:
            if env.strip().lower() in ("", "off", "0", "false", "none"):
                return None
            index_path = env
        else:
            return default_index_path()
    path = os.path.abspath(os.path.expanduser(os.fspath(index_path)))
    if os.path.isdir(path):
        path = os.path.join(path, _FILE_NAME)
    return path


# One DiskIndex per file per process, so a failure warns once and every
# catalog over the same index shares one connection.
_OPEN: dict[str, DiskIndex] = {}
_OPEN_LOCK = threading.Lock()


def open_index(path: str | None) -> DiskIndex | None:
    if path is None:
        return None
    with _OPEN_LOCK:
        index = _OPEN.get(path)
        if index is None or index._pid != os.getpid():
            index = _OPEN[path] = DiskIndex(path)
        return index


def _encode(doc) -> str | None:
    if doc is None:
        return None
    text = json.dumps(doc, allow_nan=True)
    # Only documents that come back exactly are stored (numpy values, tuples
    # or non-string keys would not): the others are indexed in memory only.
    if json.loads(text) != doc:
        raise TypeError("does not round-trip through JSON")
    return text


class DiskIndex:
    """``(format, location) -> (version, start, stop)`` in an SQLite file.

    Parameters
    ----------
    path : str
        The database file (created, with its directory, if missing).
    """

    def __init__(self, path: str):
        self.path = path
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._failed = False
        self._connect()

    def __repr__(self):
        state = "unavailable" if self._failed else "open"
        return f"DiskIndex({self.path!r}, {state})"

    # --- connection and failure handling ----------------------------------
    def _connect(self) -> None:
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as err:
            if _is_corrupt(err):
                self._rebuild(err)
            else:
                self._give_up(err)
        except OSError as err:
            self._give_up(err)

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_MS / 1000, check_same_thread=False, isolation_level=None
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            # WAL: readers never block the one writer, and a crash mid-write
            # leaves the previous state intact.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS headers ("
                " fmt TEXT NOT NULL, location TEXT NOT NULL, version TEXT NOT NULL,"
                " start TEXT, stop TEXT, PRIMARY KEY (fmt, location))"
            )
            conn.execute("SELECT count(*) FROM headers WHERE fmt = ''").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _give_up(self, err: BaseException) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None
        if not self._failed:
            self._failed = True
            warnings.warn(
                f"The on-disk index of file catalogs at {self.path} cannot be used "
                f"({type(err).__name__}: {err}); catalogs keep their index in memory only, so "
                "a new process reads each run file's first and last record again. Give the "
                "catalog index_path=<a writable file>, or index_path=False to silence this.",
                IndexUnavailableWarning,
                stacklevel=5,
            )

    def _rebuild(self, err: BaseException) -> None:
        warnings.warn(
            f"The on-disk index of file catalogs at {self.path} is corrupt ({err}); it is "
            "deleted and rebuilt (run files are read again once).",
            IndexUnavailableWarning,
            stacklevel=5,
        )
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)
            self._conn = self._open()
        except (OSError, sqlite3.Error) as again:
            self._give_up(again)

    def _run(self, work, default):
        """``work(conn)``, degrading to ``default`` (and one warning) on failure."""
        with self._lock:
            if self._conn is None:
                return default
            try:
                return work(self._conn)
            except sqlite3.DatabaseError as err:
                if _is_corrupt(err):
                    self._rebuild(err)
                    if self._conn is not None:
                        try:
                            return work(self._conn)
                        except sqlite3.Error as again:
                            self._give_up(again)
                else:
                    self._give_up(err)
            except OSError as err:
                self._give_up(err)
            return default

    # --- the index ----------------------------------------------------------
    def get_all(self, fmt: str) -> dict[str, tuple]:
        """``location -> (version, start, stop)`` of every entry of a format."""
        return self._select(
            "SELECT location, version, start, stop FROM headers WHERE fmt = ?",
            (f"{SCHEMA}:{fmt}",),
        )

    def get_under(self, fmt: str, directory: str) -> dict[str, tuple]:
        """Like :meth:`get_all`, for the locations under one directory."""
        prefix = os.path.join(directory, "")
        # Every string starting with prefix sorts in [prefix, prefix + U+10FFFF).
        return self._select(
            "SELECT location, version, start, stop FROM headers "
            "WHERE fmt = ? AND location >= ? AND location < ?",
            (f"{SCHEMA}:{fmt}", prefix, prefix + "\U0010ffff"),
        )

    def _select(self, sql: str, args: tuple) -> dict[str, tuple]:
        def work(conn):
            rows = conn.execute(sql, args).fetchall()
            out = {}
            loads = json.loads
            for location, version, start, stop in rows:
                out[location] = (
                    _tuples(loads(version)),
                    loads(start) if start is not None else None,
                    loads(stop) if stop is not None else None,
                )
            return out

        return self._run(work, {})

    def put(self, fmt: str, entries: Iterable[tuple[str, tuple, dict | None, dict | None]]):
        """Store ``(location, version, start, stop)`` entries in one transaction."""
        rows = []
        key = f"{SCHEMA}:{fmt}"
        for location, version, start, stop in entries:
            try:
                location.encode()  # a name that is not UTF-8 cannot be a TEXT key
                rows.append((key, location, json.dumps(version), _encode(start), _encode(stop)))
            except (TypeError, ValueError):
                continue  # kept in memory only (see _encode)
        if not rows:
            return

        def work(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO headers (fmt, location, version, start, stop) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(work, None)

    def forget(self, fmt: str, locations: Iterable[str]) -> None:
        """Drop entries of files that are gone."""
        rows = [(f"{SCHEMA}:{fmt}", loc) for loc in locations]
        if not rows:
            return

        def work(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM headers WHERE fmt = ? AND location = ?", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(work, None)


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _is_corrupt(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(err).lower()
    return "not a database" in text or "malformed" in text
