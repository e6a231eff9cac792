"""The on-disk index of file catalogs: start and stop documents per file version.

A new process opening a directory it has seen before reads no file's
contents: each run file's ``(start, stop)`` is looked up here by format,
absolute path and file version (size, mtime, ctime and inode: a file
rewritten in place with its old size and mtime is read again). The store is
an SQLite database (the standard library's ``sqlite3``), by default
``file-index.sqlite`` in the user's cache directory
(``platformdirs.user_cache_dir("intake-bluesky")``).

What it holds (schema :data:`SCHEMA`; an index of another schema has its
tables dropped and rebuilt from the files, never misread):

* one row per run file: its version, the start document as JSON text (SQLite's
  ``json_extract`` reads it, so searches run as SQL: :mod:`.._query.sql`),
  side columns of the keys searched most (``uid``, ``time``, ``scan_id``,
  ``plan_name``), and the stop document;
* one listing per directory (names and inodes) with the directory's mtime:
  while the mtime is unchanged, a new process takes it instead of listing
  the directory and statting its files;
* format keys by number (rows stay small).

* Several processes may read and write it at once (WAL journal, a busy
  timeout, one transaction per batch of new entries); readers never block.
* A read-only location or a full disk: the catalog keeps its in-memory index
  and warns once (:class:`IndexUnavailableWarning`); never an error.
* Only a file recognisably this index is ever changed, deleted or rebuilt:
  an SQLite database whose application id (``PRAGMA application_id``) is
  :data:`APPLICATION_ID`, or whose only tables are those of this index (as
  older versions wrote it, without the id). Anything else at that path (a
  text file, a run file, another program's database) is left untouched: the
  catalog warns (:class:`IndexUnavailableWarning`) and indexes in memory.
* A corrupt index is deleted and rebuilt, with a warning.

Where it lives: the ``index_path`` argument of every file catalog (a path,
or ``False`` for no on-disk index), else the environment variable
``INTAKE_BLUESKY_INDEX`` (a path, or ``off``), else the cache directory.

Examples
--------
>>> import os, tempfile
>>> index = DiskIndex(os.path.join(tempfile.mkdtemp(), "index.sqlite"))
>>> index.put("JSONL", [("/data/a.jsonl", ((10, 5),), {"uid": "a"}, None)])  # none skipped
[]
>>> index.get_all("JSONL")["/data/a.jsonl"]
(((10, 5),), {'uid': 'a'}, None)
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import os
import re
import sqlite3
import stat
import sys
import threading
import urllib.parse
import warnings
import weakref
from collections.abc import Iterable

from .._query.sql import SIDE_KEYS, side_values
from ..errors import IndexUnavailableWarning

__all__ = ["DiskIndex", "IndexUnavailableWarning", "default_index_path", "resolve_index_path"]

#: Bumped when what is stored changes meaning: the tables of older schemas
#: are dropped (their entries rebuilt from the files), never misread.
SCHEMA = 7
#: The tables of this schema: format keys by number, one row per run file
#: (start document as JSON text for SQL, side columns of the keys searched
#: most, see :mod:`.._query.sql`), one listing per directory.
_TABLE = f"headers_v{SCHEMA}"
_FORMATS = f"formats_v{SCHEMA}"
_DIRS = f"dirs_v{SCHEMA}"
_TABLES = (_TABLE, _FORMATS, _DIRS)
_LIVE = f"live_v{SCHEMA}"
#: Flags of a stored listing: every file of it has an entry (none is kept in
#: memory only), and no two of its files hold the same run.
COMPLETE, NO_DUPLICATES = 1, 2
_FILE_NAME = "file-index.sqlite"
_ENV = "INTAKE_BLUESKY_INDEX"
_BUSY_MS = 10_000
#: ``PRAGMA application_id`` of an intake-bluesky index ("iBsk"): how a file
#: is recognised as one, so that nothing else is ever deleted or changed.
APPLICATION_ID = int.from_bytes(b"iBsk", "big")
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: The tables of an index (those of older versions too, which were written
#: before it had an application id).
_OUR_TABLES = re.compile(r"(headers|formats|dirs)_v\d+(_m\d+)?")


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
# catalog over the same index shares one connection; held weakly, so an
# index no catalog uses any more closes its connection (a process opening
# catalogs over many index files does not keep a file handle for each).
_OPEN: weakref.WeakValueDictionary[str, DiskIndex] = weakref.WeakValueDictionary()
# Indexes that could not be used stay for the life of the process (they hold
# no connection): their warning is given once, however many catalogs come.
_UNUSABLE: dict[str, DiskIndex] = {}
_OPEN_LOCK = threading.Lock()


def open_index(path: str | None) -> DiskIndex | None:
    if path is None:
        return None
    with _OPEN_LOCK:
        index = _OPEN.get(path)
        if index is None or index._pid != os.getpid():
            index = _OPEN[path] = DiskIndex(path, create_on_write=True)
        return index


# Entries are JSON, never marshal or pickle: the index is a file that anyone
# who can write to the cache folder can change, and decoding must not be able
# to run code or build arbitrary objects. A document is stored in one of two
# forms, told apart by its first byte:
#
# * ``J``: plain JSON (orjson). Used when every value comes back exactly as
#   it was: dicts with string keys, lists, strings, bools, None, finite
#   floats and integers orjson reads back exactly (-2**63 .. 2**64-1).
#   orjson decodes faster than marshal did.
# * ``T``: tagged JSON for everything else the index keeps exactly (tuples,
#   keys that are not strings, bytes, complex numbers, NaN and infinities,
#   integers of any size): each container or special value becomes a list
#   whose first item says what it was. Slower, and rare.
#
# Documents holding anything else (numpy scalars and arrays, other classes)
# are indexed in memory only.
_PLAIN = b"J"
_TAGGED = b"T"
_SCALARS = frozenset({str, int, float, bool, type(None)})
_EXACT = _SCALARS | {bytes, complex}
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


_orjson = None


def _fast_json():
    """orjson, imported when the index is first used: importing the core
    stays as light as importing it without file catalogs."""
    global _orjson
    if _orjson is None:
        import orjson

        _orjson = orjson
    return _orjson


def _needs_tags(doc) -> bool:
    """Whether ``doc`` needs the tagged form; TypeError if it holds a value
    the index cannot give back exactly."""
    stack = [doc]
    tagged = False
    while stack:
        obj = stack.pop()
        kind = type(obj)
        if kind is dict:
            for key in obj:
                if type(key) is not str:
                    tagged = True
                    stack.append(key)
            stack.extend(obj.values())
        elif kind is list:
            stack.extend(obj)
        elif kind is tuple:
            tagged = True
            stack.extend(obj)
        elif kind is float:
            if obj - obj != 0.0:  # NaN or an infinity
                tagged = True
        elif kind is int:
            if not _INT_MIN <= obj <= _INT_MAX:
                tagged = True
        elif kind not in _EXACT:
            raise TypeError(f"{kind.__name__} is not stored exactly")
        elif kind is not str and kind is not bool and obj is not None:
            tagged = True  # bytes, complex
    return tagged


def _tag(obj):
    """``obj`` as JSON-able values that say what each container was."""
    kind = type(obj)
    if kind is dict:
        out = ["d"]
        for key, value in obj.items():
            out.append(_tag(key))
            out.append(_tag(value))
        return out
    if kind is list:
        return ["l", *map(_tag, obj)]
    if kind is tuple:
        return ["t", *map(_tag, obj)]
    if kind is float and obj - obj != 0.0:
        return ["f", repr(obj)]  # 'nan', 'inf', '-inf'
    if kind is bytes:
        return ["b", base64.b64encode(obj).decode("ascii")]
    if kind is complex:
        return ["c", _tag(obj.real), _tag(obj.imag)]
    return obj  # str, int (any size: the standard json module keeps it), ...


def _untag(obj):
    if type(obj) is not list:
        return obj
    kind = obj[0] if obj else None
    if kind == "d":
        items = obj[1:]
        if len(items) % 2:
            raise ValueError("an odd number of dict items")
        return {_untag(items[i]): _untag(items[i + 1]) for i in range(0, len(items), 2)}
    if kind == "l":
        return [_untag(item) for item in obj[1:]]
    if kind == "t":
        return tuple(_untag(item) for item in obj[1:])
    if kind == "f" and len(obj) == 2 and obj[1] in ("nan", "inf", "-inf"):
        return float(obj[1])
    if kind == "b" and len(obj) == 2 and type(obj[1]) is str:
        return base64.b64decode(obj[1], validate=True)
    if kind == "c" and len(obj) == 3:
        return complex(_untag(obj[1]), _untag(obj[2]))
    raise ValueError(f"an unknown tag {kind!r}")


def _encode(doc, plain: bool = False) -> bytes | None:
    if doc is None:
        return None
    if plain:
        # JSON types only (as decoded from JSON): orjson checks the integers
        # itself (TypeError beyond 64 bits) but writes NaN and infinities as
        # null, so a document with a null is looked at closely.
        try:
            blob = _fast_json().dumps(doc)
        except TypeError:
            return _encode(doc)
        if b"null" in blob and _needs_tags(doc):
            return _encode(doc)
        return _PLAIN + blob
    if _needs_tags(doc):
        try:
            return _TAGGED + json.dumps(_tag(doc), separators=(",", ":")).encode()
        except RecursionError:
            raise TypeError("nested too deeply to be stored") from None
    return _PLAIN + _fast_json().dumps(doc)


def _encode_start(doc, plain: bool) -> tuple[int, bytes]:
    """``(form, JSON)`` of a start document, as the ``start`` column holds it:
    form 0 is plain JSON SQLite reads exactly, 1 plain JSON holding a NUL
    character (SQLite's ``json_extract`` cuts strings at NUL, so SQL leaves
    such rows to Python), 2 the tagged form (see above)."""
    blob = _encode(doc, plain)
    assert blob is not None
    body = blob[1:]
    if blob[:1] == _TAGGED:
        return _FORM_TAGGED, body
    return (1 if b"\\u0000" in body else 0), body


_FORM_TAGGED = 2


def decode_start(form: int, text) -> dict:
    """A start document as :meth:`DiskIndex.put` stored it (``form``, text).

    Raises ``ValueError`` if the stored text is damaged.
    """
    if type(text) is str:
        text = text.encode("utf-8", "surrogatepass")
    return decode((_TAGGED if form == _FORM_TAGGED else _PLAIN) + text)


def decode(blob: bytes | None):
    """A document stored by :meth:`DiskIndex.put` (None stays None).

    Raises ``ValueError`` if the stored bytes are damaged.
    """
    if blob is None:
        return None
    try:
        form, body = blob[:1], memoryview(blob)[1:]
        if form == _PLAIN:
            doc = (_orjson or _fast_json()).loads(body)
        elif form == _TAGGED:
            doc = _untag(json.loads(bytes(body)))
        else:
            raise ValueError("an unknown form")
    except (TypeError, ValueError, RecursionError, binascii.Error) as err:
        raise ValueError(f"a damaged entry of the on-disk index ({err})") from None
    if type(doc) is not dict:
        raise ValueError("a damaged entry of the on-disk index (not a document)")
    return doc


class DiskIndex:
    """``(format, location) -> (version, start, stop)`` in an SQLite file.

    Parameters
    ----------
    path : str
        The database file (created, with its directory, if missing).
    create_on_write : bool
        If the file does not exist yet, create it when something is first
        written, not now: reads find nothing until then, and creating it
        (a few milliseconds of file-system work) happens with the first write,
        which may be deferred (:meth:`defer`).
    """

    def __init__(self, path: str, create_on_write: bool = False):
        self.path = path
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._failed = False
        self._formats: dict[str, int] = {}
        # Writes handed to the writer thread (see defer): pending, and whether
        # one is being written; every read waits for both.
        self._jobs: collections.deque = collections.deque()
        self._writing = False
        self._writer: threading.Thread | None = None
        self._jobs_changed = threading.Condition(threading.Lock())
        self._unopened = create_on_write and not os.path.exists(path)
        if not self._unopened:
            self._connect()

    def __repr__(self):
        state = "unavailable" if self._failed else "open"
        return f"DiskIndex({self.path!r}, {state})"

    def __del__(self) -> None:
        # Closed with the index, not whenever the garbage collector reaches
        # objects still referring to the connection: its file handles go at
        # once, and a forked child never closes its parent's connection.
        conn = getattr(self, "_conn", None)
        if conn is not None and getattr(self, "_pid", None) == os.getpid():
            try:
                conn.close()
            except Exception:
                pass

    # --- connection and failure handling ----------------------------------
    def _connect(self) -> None:
        try:
            foreign = _not_ours(self.path)
        except OSError as err:
            self._give_up(err)
            return
        if foreign is not None:
            self._refuse(foreign)
            return
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
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                # A new file (or one of an older version): marked as ours
                # before anything else is written, and checkpointed, so that
                # the id is in the file's own header, where it is looked for.
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            # WAL: readers never block the one writer, and a crash mid-write
            # leaves the previous state intact.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_FORMATS} ("
                " id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)"
            )
            # Side columns before the documents: a search reading only them
            # does not walk past the JSON. Columns without a declared type
            # keep each value's own type (an int stays an int, '5' text).
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} ("
                " fmt INTEGER NOT NULL, location TEXT NOT NULL, version TEXT NOT NULL,"
                " ino INTEGER, has_stop INTEGER NOT NULL,"
                f" {', '.join(SIDE_KEYS)}, odd INTEGER NOT NULL,"
                " form INTEGER NOT NULL, start TEXT, stop BLOB,"
                " PRIMARY KEY (fmt, location)) WITHOUT ROWID"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_DIRS} ("
                " fmt INTEGER NOT NULL, directory TEXT NOT NULL, mtime INTEGER NOT NULL,"
                " flags INTEGER NOT NULL, listing BLOB NOT NULL,"
                " PRIMARY KEY (fmt, directory)) WITHOUT ROWID"
            )
            # The few files whose state may change without their directory
            # changing (runs in progress, files without a start yet): found
            # without a scan of every row.
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {_LIVE} ON {_TABLE} (fmt, location) "
                "WHERE uid IS NULL OR has_stop = 0"
            )
            for (old,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall():
                if old not in _TABLES and _OUR_TABLES.fullmatch(old):
                    conn.execute(f"DROP TABLE IF EXISTS {old}")
            conn.execute(f"SELECT count(*) FROM {_TABLE} WHERE fmt = -1").fetchone()
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
            _UNUSABLE[self.path] = self
            warnings.warn(
                f"The on-disk index of file catalogs at {self.path} cannot be used "
                f"({type(err).__name__}: {err}); catalogs keep their index in memory only, so "
                "a new process reads each run file's first and last record again. Give the "
                "catalog index_path=<a writable file>, or index_path=False to silence this.",
                IndexUnavailableWarning,
                stacklevel=5,
            )

    def _refuse(self, reason: str) -> None:
        self._failed = True
        _UNUSABLE[self.path] = self
        warnings.warn(
            f"{self.path} is not an index of intake-bluesky's file catalogs ({reason}), so it "
            "is left untouched, and catalogs keep their index in memory only (a new process "
            "reads each run file's first and last record again). Give the catalog "
            "index_path= (or set INTAKE_BLUESKY_INDEX to) a new file name or a folder, or "
            "index_path=False to silence this.",
            IndexUnavailableWarning,
            stacklevel=5,
        )

    def _rebuild(self, err: BaseException) -> None:
        try:
            foreign = _not_ours(self.path)
        except OSError as again:
            foreign = str(again)
        if foreign is not None:
            # Not recognisably ours (any more): never deleted.
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
            self._refuse(f"{foreign}; {err}")
            return
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
            self._formats = {}
            self._conn = self._open()
        except (OSError, sqlite3.Error) as again:
            self._give_up(again)

    # --- writes deferred to a thread -----------------------------------------
    def defer(self, job) -> None:
        """Run ``job()`` (writes to this index) in a writer thread, so the
        caller goes on at once.

        Jobs run one at a time, in the order given. Every later read or write
        of this index in this process first waits for them (:meth:`flush`), so
        nothing reads the index as it was before a deferred write. The thread
        is not a daemon: a process that ends (a script, a CLI command) writes
        what it deferred before it exits.
        """
        if self._pid != os.getpid():
            job()  # a forked child: the writer thread stayed in the parent
            return
        with self._jobs_changed:
            self._jobs.append(job)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_deferred, name=f"intake-bluesky index {self.path}"
                )
                self._writer.start()

    def _write_deferred(self) -> None:
        while True:
            with self._jobs_changed:
                if not self._jobs:
                    self._writer = None
                    self._jobs_changed.notify_all()
                    return
                job = self._jobs.popleft()
                self._writing = True
            try:
                job()
            except Exception:
                # A defect, not a storage failure (those degrade in _run): shown
                # as any thread's exception is, and the next job still runs.
                threading.excepthook(
                    threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread()))
                )
            finally:
                with self._jobs_changed:
                    self._writing = False
                    self._jobs_changed.notify_all()

    def flush(self) -> None:
        """Wait until every deferred write of this index is done (at once if
        none is pending; never from the writer thread itself)."""
        if not (self._jobs or self._writing) or self._pid != os.getpid():
            return  # (in a forked child, the jobs copied are the parent's to write)
        writer = self._writer
        if writer is not None and writer is threading.current_thread():
            return
        with self._jobs_changed:
            while self._jobs or self._writing:
                self._jobs_changed.wait()

    def _run(self, work, default, write: bool = False):
        """``work(conn)``, degrading to ``default`` (and one warning) on
        failure; after the deferred writes."""
        self.flush()
        with self._lock:
            if self._unopened and (write or os.path.exists(self.path)):
                # Created by this first write (or by another process meanwhile).
                self._unopened = False
                self._connect()
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
    def _fmt(self, conn: sqlite3.Connection, fmt: str, create: bool) -> int | None:
        """The number of a format key in this file (added if ``create``)."""
        number = self._formats.get(fmt)
        if number is None:
            row = conn.execute(f"SELECT id FROM {_FORMATS} WHERE key = ?", (fmt,)).fetchone()
            if row is None:
                if not create:
                    return None
                number = conn.execute(
                    f"INSERT INTO {_FORMATS} (key) VALUES (?) RETURNING id", (fmt,)
                ).fetchone()[0]
            else:
                number = row[0]
            self._formats[fmt] = number
        return number

    def _read(self, fmt: str, sql: str, args) -> list[tuple]:
        """Rows of ``sql`` whose first parameter is the format's number
        (``:fmt`` when ``args`` is a dict); none for an unknown format."""

        def work(conn):
            number = self._fmt(conn, fmt, create=False)
            if number is None:
                return []
            if isinstance(args, dict):
                return conn.execute(sql, {**args, "fmt": number}).fetchall()
            return conn.execute(sql, (number, *args)).fetchall()

        return self._run(work, [])

    def get_all(self, fmt: str) -> dict[str, tuple]:
        """``location -> (version, start, stop)`` of every entry of a format."""
        found = self._read(
            fmt, f"SELECT location, version, form, start, stop FROM {_TABLE} WHERE fmt = ?", ()
        )
        out = {}
        for loc, v, form, a, b in found:
            try:
                out[loc] = (_version(v), decode_start(form, a), decode(b))
            except ValueError:
                continue
        return out

    def get_under(self, fmt: str, directory: str) -> dict[str, tuple]:
        """``location -> (version text, inode, uid, has_stop, time, odd)`` of
        the locations under a directory: enough to list and order runs
        without decoding any document (see :func:`parse_version`)."""
        found = self._read(
            fmt,
            f"SELECT location, version, ino, uid, has_stop, time, odd FROM {_TABLE} "
            "WHERE fmt = ? AND location >= ? AND location < ?",
            _prefix_range(directory),
        )
        return {row[0]: row[1:] for row in found}

    def documents(self, fmt: str, locations: list[str]) -> dict[str, tuple]:
        """``location -> (version text, form, start, stop)`` of some
        locations, the documents still encoded (see :func:`decode_start`)."""
        out: dict[str, tuple] = {}
        for i in range(0, len(locations), _BATCH):
            batch = locations[i : i + _BATCH]
            marks = ", ".join("?" * len(batch))
            for row in self._read(
                fmt,
                f"SELECT location, version, form, start, stop FROM {_TABLE} "
                f"WHERE fmt = ? AND location IN ({marks})",
                batch,
            ):
                out[row[0]] = row[1:]
        return out

    def documents_under(self, fmt: str, directory: str) -> dict[str, tuple]:
        """:meth:`documents` of every location under a directory."""
        found = self._read(
            fmt,
            f"SELECT location, version, form, start, stop FROM {_TABLE} "
            "WHERE fmt = ? AND location >= ? AND location < ?",
            _prefix_range(directory),
        )
        return {row[0]: row[1:] for row in found}

    def candidates(
        self, fmt: str, directory: str, sup: str, sub: str, params: dict
    ) -> list[tuple] | None:
        """``(location, version text, inode, uid, has_stop, time, odd, sure,
        form, start, stop)`` of the rows under a directory where the SQL
        condition ``sup`` holds (see :func:`.._query.sql.compile_sql`);
        ``sure`` when ``sub`` holds too. The documents come encoded (see
        :func:`decode_start`): read in the same pass, they cost less than a
        second lookup of the runs returned. None if the index cannot answer
        (the caller then evaluates every document itself, and so also when
        :meth:`live_under` answered nothing because of the same failure)."""
        low, high = _prefix_range(directory)
        sql = (
            "SELECT location, version, ino, uid, has_stop, time, odd, sure, form, start, stop"
            " FROM (SELECT location, version, ino, uid, has_stop, time, odd, form, start, stop,"
            f" ({sub}) AS sure FROM {_TABLE}"
            f" WHERE fmt = :fmt AND location >= :low AND location < :high AND ({sup}))"
        )
        failed: list = []

        def work(conn):
            number = self._fmt(conn, fmt, create=False)
            if number is None:
                return []
            return conn.execute(
                sql, {**params, "fmt": number, "low": low, "high": high}
            ).fetchall()

        found = self._run(work, failed)
        return None if found is failed else found

    def listing(self, fmt: str, directory: str) -> tuple[int, bytes] | None:
        """``(mtime, listing)`` stored for a directory by :meth:`put`."""
        found = self._read(
            fmt,
            f"SELECT mtime, listing FROM {_DIRS} WHERE fmt = ? AND directory = ?",
            (directory,),
        )
        return (found[0][0], found[0][1]) if found else None

    def listing_flags(self, fmt: str, directory: str) -> tuple[int, int] | None:
        """``(mtime, flags)`` of a stored listing, without the listing."""
        found = self._read(
            fmt, f"SELECT mtime, flags FROM {_DIRS} WHERE fmt = ? AND directory = ?", (directory,)
        )
        return (found[0][0], found[0][1]) if found else None

    def live_under(self, fmt: str, directory: str) -> list[tuple[str, str]]:
        """``(location, version text)`` of the entries under a directory of
        runs in progress and files without a start document (none if the
        index cannot answer: see :meth:`candidates`)."""
        return self._read(
            fmt,
            f"SELECT location, version FROM {_TABLE} INDEXED BY {_LIVE} "
            "WHERE fmt = ? AND location >= ? AND location < ? AND (uid IS NULL OR has_stop = 0)",
            _prefix_range(directory),
        )

    def put(
        self,
        fmt: str,
        entries: Iterable[tuple[str, tuple, dict | None, dict | None]],
        plain: bool = False,
        listings: Iterable[tuple[str, int, bytes, int]] = (),
    ) -> list[str]:
        """Store ``(location, version, start, stop)`` entries and
        ``(directory, mtime, listing, flags)`` listings in one transaction.

        ``plain``: the documents hold only JSON types (as decoded from JSON),
        so they need no check before they are stored.

        Returns the locations not stored (their documents hold values the
        index would not give back exactly: kept in memory only); a listing
        holding one of them is stored without :data:`COMPLETE`.
        """
        rows = []
        skipped: list[str] = []
        for location, version, start, stop in entries:
            try:
                location.encode()  # a name that is not UTF-8 cannot be a TEXT key
                uid = start.get("uid") if start is not None else None
                if type(uid) is str:
                    uid.encode()  # nor a uid (the run's name in the index)
                if start is None:
                    form, text = 0, None
                else:
                    form, text = _encode_start(start, plain)
                rows.append(
                    (
                        location,
                        _version_text(version),
                        _inode(version),
                        stop is not None,
                        *side_values(start),
                        form,
                        text,
                        _encode(stop, plain),
                    )
                )
            except (TypeError, ValueError):
                skipped.append(location)  # kept in memory only (see _encode)
        listings = list(listings)
        if skipped and listings:
            gone_dirs = {loc.rpartition(os.sep)[0] for loc in skipped}
            listings = [
                (d, mtime, blob, flags & ~COMPLETE if d in gone_dirs else flags)
                for d, mtime, blob, flags in listings
            ]
        if not rows and not listings:
            return skipped
        columns = (
            f"location, version, ino, has_stop, {', '.join(SIDE_KEYS)}, odd, form, start, stop"
        )
        values = ", ".join(["?"] * (len(SIDE_KEYS) + 8))
        # The start column is TEXT (what json_extract reads); the encoded
        # bytes become text in SQLite, without a copy in Python.
        values = values[: values.rindex("?", 0, -3)] + "CAST(? AS TEXT), ?"

        def work(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                number = self._fmt(conn, fmt, create=True)
                insert = f"INSERT OR REPLACE INTO {_TABLE} (fmt, {columns})"
                conn.executemany(f"{insert} VALUES ({number}, {values})", rows)
                conn.executemany(
                    f"INSERT OR REPLACE INTO {_DIRS} (fmt, directory, mtime, listing, flags) "
                    f"VALUES ({number}, ?, ?, ?, ?)",
                    listings,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                self._formats.pop(fmt, None)  # its number may have been rolled back
                raise
            conn.execute("COMMIT")

        self._run(work, None, write=True)
        return skipped

    def forget(self, fmt: str, locations: Iterable[str], directories: Iterable[str] = ()) -> None:
        """Drop entries of files that are gone (and listings of directories
        that are)."""
        rows = [(loc,) for loc in locations]
        dirs = [(d,) for d in directories]
        if not rows and not dirs:
            return

        def work(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                number = self._fmt(conn, fmt, create=False)
                if number is not None:
                    conn.executemany(
                        f"DELETE FROM {_TABLE} WHERE fmt = {number} AND location = ?", rows
                    )
                    conn.executemany(
                        f"DELETE FROM {_DIRS} WHERE fmt = {number} AND directory = ?", dirs
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(work, None, write=True)


#: Locations asked for in one statement (SQLite's limit of parameters is 32,766).
_BATCH = 10_000


def parse_version(text: str) -> tuple | None:
    """A version as stored (see :func:`_version_text`); None if damaged."""
    return _version(text)


def _version_text(version: tuple) -> str:
    # Per file of a location, what identifies its version (size, mtime,
    # ctime, inode): "size,mtime,ctime,inode;size,mtime,ctime,inode"
    if len(version) == 1 and len(version[0]) == 4:
        return "{:d},{:d},{:d},{:d}".format(*version[0])  # the usual case, faster
    return ";".join(",".join(str(int(part)) for part in parts) for parts in version)


def _inode(version: tuple) -> int | None:
    # The first file's inode, in a column: compared with a listing's inodes
    # without parsing the version text.
    first: tuple[int, ...] = version[0] if version else ()
    return first[3] if len(first) == 4 else None


def _version(text: str) -> tuple | None:
    try:
        return tuple(tuple(map(int, pair.split(","))) for pair in text.split(";"))
    except (ValueError, AttributeError):
        return None  # damaged: matches no file version, so the file is read


def _prefix_range(directory: str) -> tuple[str, str]:
    prefix = os.path.join(directory, "")
    # Every string starting with prefix sorts in [prefix, prefix + U+10FFFF).
    return prefix, prefix + "\U0010ffff"


def _not_ours(path: str) -> str | None:
    """None if ``path`` is missing, empty or an index of ours (safe to write,
    and to rebuild if corrupt); else why it is something else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_size == 0:
        return None  # holds nothing; or an index just created (its pages in the WAL)
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        return "it is not an SQLite database"
    found = int.from_bytes(header[68:72], "big")
    if found == APPLICATION_ID:
        return None
    if found != 0:
        return f"it is an SQLite database of another application (application id {found:#x})"
    # No id in the header: an index written by an older version (known by its
    # tables), or one whose id is still in its WAL. Read without writing.
    uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000)
        try:
            found = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = [
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
        finally:
            conn.close()
    except sqlite3.Error as err:
        return f"an SQLite database that cannot be read as an index ({err})"
    if found == APPLICATION_ID or all(_OUR_TABLES.fullmatch(name) for name in tables):
        return None
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return f"an SQLite database of something else, with tables {shown}"


def _is_corrupt(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(err).lower()
    return "not a database" in text or "malformed" in text
