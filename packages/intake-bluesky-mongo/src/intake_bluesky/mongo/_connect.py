"""Connections: a database given as a ``Database`` or a URI, kept picklable.

Drivers and run sources travel inside dask graphs, so they never hold a client
in their pickled state; they hold a :class:`DatabaseRef`, which knows how to
get the database back in whatever process it lands in:

* from a URI: a client is created lazily, once per process (cached here), so a
  dask worker running a thousand tasks opens one connection pool, not one per
  task. This is what a dask.distributed cluster needs: pass URIs.
* from a ``Database`` object: the same object while in the process that made it
  (a per-process registry), which is also the only way a mongomock database
  can be found again; in another process a pymongo database is reconnected by
  its seed hosts and name (without credentials, which pymongo does not expose),
  and a mongomock one cannot be, which is reported clearly on first use.

Credentials never leave this module in text: reprs and errors use
:func:`redact_uri`.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import uuid
import weakref
from contextlib import contextmanager
from typing import Any

__all__ = [
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "DatabaseRef",
    "MongoConnectionError",
    "redact_uri",
    "translate_errors",
]

#: pymongo waits 30 s for a server by default; a catalog that hangs that long
#: before saying the server is down looks broken, so the default is shorter.
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000


class MongoConnectionError(ConnectionError):
    """The MongoDB server cannot be reached or refused the connection.

    The message names host(s) and port(s), never credentials.
    """


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*@)?")
# authMechanismProperties may carry secrets (AWS session tokens).
_SECRET_OPTIONS = re.compile(r"(?i)(AWS_SESSION_TOKEN:)[^,&]*")


def redact_uri(uri: str) -> str:
    """A MongoDB URI with its password (and secret options) replaced by ``***``.

    Parameters
    ----------
    uri : str
        Any ``mongodb://`` or ``mongodb+srv://`` URI.

    Returns
    -------
    str
        The URI safe to show: ``mongodb://user:***@host:27017/db``.

    Examples
    --------
    >>> redact_uri("mongodb://alice:s3cret@db.example.org:27017/mds?authSource=admin")
    'mongodb://alice:***@db.example.org:27017/mds?authSource=admin'
    >>> redact_uri("mongodb://localhost/mds")
    'mongodb://localhost/mds'
    """
    uri = str(uri)
    scheme_end = uri.find("://")
    if scheme_end < 0:
        return _SECRET_OPTIONS.sub(r"\1***", uri)
    head, rest = uri[: scheme_end + 3], uri[scheme_end + 3 :]
    # The userinfo ends at the last '@' before the options: a password that
    # was not percent-encoded may itself hold '@' or '/', and must not leak.
    options_at = rest.find("?")
    at = rest.rfind("@", 0, options_at if options_at >= 0 else len(rest))
    if at >= 0:
        userinfo, rest = rest[:at], rest[at:]
        user, sep, _ = userinfo.partition(":")
        rest = f"{user}{':***' if sep else ''}{rest}"
    return _SECRET_OPTIONS.sub(r"\1***", head + rest)


def _classify(obj: Any) -> str | None:
    """``"pymongo"``/``"mongomock"`` for a database, ``"client"`` for a client."""
    import sys

    from pymongo import MongoClient
    from pymongo.database import Database

    if isinstance(obj, Database):
        return "pymongo"
    if isinstance(obj, MongoClient):
        return "client"
    # mongomock is a test dependency only: recognized if already imported.
    mongomock = sys.modules.get("mongomock")
    if mongomock is not None:
        if isinstance(obj, mongomock.Database):
            return "mongomock"
        if isinstance(obj, mongomock.MongoClient):
            return "client"
    return None


# Database objects handed to a DatabaseRef in this process, by token. Weak, so
# a catalog does not keep a dropped test database alive. A forked child
# inherits it: the same object is used there (a mongomock database's data was
# copied with the process; pymongo resets its pools after fork and keeps the
# credentials, which a reconnection by seed hosts could not).
_REGISTRY: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

# Clients made from URIs (or reconnected seeds), one per process and settings.
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


@atexit.register
def _close_clients() -> None:
    # pymongo warns about clients still open at exit; these are ours to close.
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # closing at exit is best effort
            pass


class DatabaseRef:
    """A picklable handle on one MongoDB database.

    Parameters
    ----------
    target : str or Database
        A URI naming the database (``mongodb://host:27017/mds``) or a
        ``pymongo.database.Database`` (``mongomock`` databases work within one
        process).
    server_selection_timeout_ms : int, optional
        How long to wait for a reachable server before failing. For a URI, the
        default is the URI's ``serverSelectionTimeoutMS`` if it has one, else
        :data:`DEFAULT_SERVER_SELECTION_TIMEOUT_MS`. Ignored for a ``Database``
        (its client was configured by whoever made it), except when it must be
        reconnected in another process.
    role : str
        The parameter name, for messages (``metadatastore_db``...).

    Raises
    ------
    ValueError
        A URI that is malformed or names no database.
    TypeError
        Neither a string nor a database (e.g. a ``MongoClient``).
    """

    def __init__(self, target, *, server_selection_timeout_ms=None, role="database"):
        self.role = role
        self._timeout_ms = server_selection_timeout_ms
        self._db = None
        self._db_pid = None
        if isinstance(target, str | bytes):
            self._init_uri(target.decode() if isinstance(target, bytes) else target)
        elif _classify(target) in ("pymongo", "mongomock"):
            self._init_database(target)
        else:
            hint = ""
            if _classify(target) == "client":
                hint = " It is a client: pass client['<database name>'] instead."
            raise TypeError(
                f"{role} must be a MongoDB URI naming the database (mongodb://host:27017/mds) "
                f"or a pymongo Database, not {type(target).__name__}.{hint}"
            )

    # --- construction -------------------------------------------------------
    def _init_uri(self, uri: str) -> None:
        self.uri: str | None = uri
        self.kind: str | None = "uri"
        self.token: str | None = None
        self.name: str | None
        if uri.startswith("mongodb+srv://"):
            # parse_uri would resolve the SRV record here; opening a catalog
            # stays offline and cheap, and DNS problems surface on first use.
            self.name, self.hosts, uri_timeout = _split_srv(uri)
        else:
            from pymongo.errors import ConfigurationError, InvalidURI
            from pymongo.uri_parser import parse_uri

            try:
                parsed = parse_uri(uri, validate=True, warn=False)
            except (InvalidURI, ConfigurationError, ValueError) as err:
                raise ValueError(
                    f"{self.role}: {redact_uri(uri)!r} is not a valid MongoDB URI: "
                    f"{_redact_text(str(err), uri)}"
                ) from None
            self.name = parsed.get("database")
            self.hosts = [f"{h}:{p}" if p else h for h, p in parsed.get("nodelist", [])]
            options = {k.lower(): v for k, v in (parsed.get("options") or {}).items()}
            uri_timeout = options.get("serverselectiontimeoutms")
        if not self.name:
            raise ValueError(
                f"{self.role}: the URI {redact_uri(uri)!r} names no database; add it as the path, "
                "e.g. mongodb://host:27017/metadatastore"
            )
        if self._timeout_ms is None and uri_timeout is None:
            self._timeout_ms = DEFAULT_SERVER_SELECTION_TIMEOUT_MS

    def _init_database(self, db) -> None:
        self.uri = None
        self.name = db.name
        self.kind = _classify(db)
        if self.kind == "mongomock":
            self.hosts = []
        else:
            self.hosts = _client_hosts(db.client)
        self.token = uuid.uuid4().hex
        _REGISTRY[self.token] = db
        # A database given by the caller is valid in any process it is found in.
        self._db, self._db_pid = db, None

    # --- pickling: parameters only, reconnect lazily -------------------------
    def __getstate__(self):
        return {
            "role": self.role,
            "uri": self.uri,
            "kind": self.kind,
            "name": self.name,
            "hosts": self.hosts,
            "token": self.token,
            "timeout_ms": self._timeout_ms,
        }

    def __setstate__(self, state):
        self.role = state["role"]
        self.uri = state["uri"]
        self.kind = state["kind"]
        self.name = state["name"]
        self.hosts = state["hosts"]
        self.token = state["token"]
        self._timeout_ms = state["timeout_ms"]
        self._db = None
        self._db_pid = None

    def __eq__(self, other):
        if not isinstance(other, DatabaseRef):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash((self.uri, self.token, self.name))

    # --- use ----------------------------------------------------------------
    @property
    def timeout_ms(self) -> int | None:
        return self._timeout_ms

    def describe(self) -> str:
        """Where the database is, without credentials (for reprs and errors)."""
        if self.kind == "uri" and self.uri is not None:
            return redact_uri(self.uri)
        if self.kind == "mongomock":
            return f"mongomock:{self.name}"
        return f"mongodb://{','.join(self.hosts)}/{self.name}"

    def __repr__(self):
        return f"DatabaseRef({self.describe()!r})"

    @property
    def db(self):
        """The database object, connecting (lazily, once per process) if needed."""
        pid = os.getpid()
        if self._db is not None and self._db_pid in (None, pid):
            return self._db
        db = _REGISTRY.get(self.token) if self.token is not None else None
        if db is not None:
            self._db, self._db_pid = db, None
            return db
        if self.kind == "mongomock":
            raise MongoConnectionError(
                f"{self.role} {self.describe()!r} was a mongomock database, which lives only "
                "in the process that created it and cannot be reached from this one. "
                "Open the catalog with a MongoDB URI to use it from other processes "
                "(e.g. dask.distributed workers)."
            )
        # Clients made here are per process: a forked child makes its own.
        self._db, self._db_pid = self._connect(), pid
        return self._db

    def __getitem__(self, collection: str):
        return self.db[collection]

    def _connect(self):
        import pymongo

        kwargs = {}
        if self._timeout_ms is not None:
            kwargs["serverSelectionTimeoutMS"] = self._timeout_ms
        if self.kind == "uri":
            key = (self.uri, self._timeout_ms, os.getpid())
            host = self.uri
        else:
            # A Database passed in another process: its seeds and name are all
            # that can be carried over (pymongo keeps credentials private).
            kwargs.setdefault("serverSelectionTimeoutMS", DEFAULT_SERVER_SELECTION_TIMEOUT_MS)
            key = (tuple(self.hosts), self._timeout_ms, os.getpid())
            host = list(self.hosts)
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                try:
                    # connect=False: no thread/socket until first use, so
                    # unpickling in a worker is free until it reads.
                    client = pymongo.MongoClient(host, connect=False, **kwargs)
                except Exception as err:  # pymongo's configuration errors
                    raise ValueError(
                        f"{self.role}: cannot configure a client for {self.describe()!r}: "
                        f"{self.redact(str(err))}"
                    ) from None
                _CLIENTS[key] = client
        return client[self.name]

    def redact(self, text: str) -> str:
        """``text`` with this reference's URI password removed."""
        return _redact_text(text, self.uri) if self.uri else text


def _redact_text(text: str, uri: str | None) -> str:
    if not uri:
        return text
    text = text.replace(uri, redact_uri(uri))
    password = _password_of(uri)
    if password:
        from urllib.parse import unquote

        for secret in {password, unquote(password)}:
            if secret:
                text = text.replace(secret, "***")
    return text


def _password_of(uri: str) -> str | None:
    m = _USERINFO.match(uri)
    if not m:
        return None
    rest = uri[len(m.group("scheme")) :]
    options_at = rest.find("?")
    at = rest.rfind("@", 0, options_at if options_at >= 0 else len(rest))
    if at < 0:
        return None
    _, sep, password = rest[:at].partition(":")
    return password if sep else None


def _split_srv(uri: str) -> tuple[str | None, list[str], str | None]:
    """``(database, [host], serverSelectionTimeoutMS or None)`` of a +srv URI."""
    rest = redact_uri(uri).split("://", 1)[1]
    rest, _, options = rest.partition("?")
    host, _, database = rest.rpartition("@")[2].partition("/")
    timeout = None
    for option in options.split("&"):
        key, _, value = option.partition("=")
        if key.lower() == "serverselectiontimeoutms":
            timeout = value
    return database or None, [host], timeout


def _client_hosts(client) -> list[str]:
    try:
        servers = client.topology_description.server_descriptions()
        hosts = [f"{h}:{p}" if p is not None else str(h) for h, p in servers]
    except Exception:  # not a pymongo client: best effort
        address = getattr(client, "address", None)
        hosts = [f"{address[0]}:{address[1]}"] if address else []
    return sorted(hosts)


@contextmanager
def translate_errors(*refs: DatabaseRef):
    """Turn pymongo's connection failures into :class:`MongoConnectionError`.

    The message names the database's host(s) and port(s), the timeout, and
    what to check; it never contains credentials. Other server errors keep
    their type, with any password scrubbed from their message.
    """
    try:
        yield
    except Exception as err:
        translated = _translated(err, refs)
        if translated is err:
            raise
        raise translated from None


def _translated(err: Exception, refs) -> Exception:
    try:
        from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return err
    if not isinstance(err, PyMongoError):
        return err
    text = str(err)
    for ref in refs:
        text = ref.redact(text)
    where = " and ".join(dict.fromkeys(_where(ref) for ref in refs))
    # The server's reply ("full error: {...}") repeats the message amid
    # cluster-time bookkeeping: not worth showing.
    reason = text.split(", full error:")[0]
    refused = getattr(err, "code", None) in (13, 18)
    if isinstance(err, ConnectionFailure) and _AUTH_FAILED.search(text):
        # pymongo marks a server whose handshake failed authentication as
        # unusable, so later operations time out in server selection with the
        # authentication error as the reason: still a refusal, not a network
        # problem.
        refused = True
    if refused:
        return MongoConnectionError(
            f"MongoDB at {where} refused access: {reason.split(', Timeout:')[0]}. Check the "
            "user name, password and authSource of the URI."
        )
    if isinstance(err, ConnectionFailure):
        timeout = next((r.timeout_ms for r in refs if r.timeout_ms is not None), None)
        within = f" within {timeout} ms" if timeout is not None else ""
        reason = reason.split(", Timeout:")[0]
        return MongoConnectionError(
            f"Cannot reach MongoDB at {where}{within}: {reason}. Check that the server is "
            "running and reachable from this machine; the wait is set by "
            "server_selection_timeout_ms (or serverSelectionTimeoutMS in the URI)."
        )
    if isinstance(err, OperationFailure) and "text index required" in text:
        return ValueError(
            f"$text search needs a text index on the collection at {where}: {reason}. "
            "Create one (db.run_start.create_index([('$**', 'text')]), as suitcase-mongo "
            "does) or search without $text."
        )
    if isinstance(err, OperationFailure) and "unknown top level operator: $text" in text:
        # SecantusDB has no text search (it refuses text indexes).
        return ValueError(
            f"The server at {where} does not support $text search: {reason}. Search "
            "with $regex on the fields instead."
        )
    if text == str(err):
        return err  # nothing to scrub: the original, traceback and all
    # Same class, scrubbed message, so callers can still catch pymongo errors.
    try:
        if isinstance(err, OperationFailure):
            return type(err)(text, err.code)
        return type(err)(text)
    except Exception:
        return RuntimeError(text)


_AUTH_FAILED = re.compile(r"(?i)authentication failed|'code': 18\b|Unauthorized|'code': 13\b")


def _where(ref: DatabaseRef) -> str:
    hosts = ",".join(ref.hosts) if ref.hosts else ref.describe()
    return f"{hosts} (database {ref.name!r})"
