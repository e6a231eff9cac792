"""Fixtures: a fresh database per test, on mongomock and on a real server;
the queries sent to it; writers of suitcase-mongo's two layouts.

Every test that takes the ``mongo`` fixture runs twice: on mongomock (whose
collections are wrapped by a spy recording every read) and on a real MongoDB
wire-protocol server, where reads are observed with pymongo command
monitoring. The real server is a SecantusDB server started in this process
once per session (in memory), or, when ``INTAKE_BLUESKY_TEST_MONGO_URI`` is set
(``nox -s mongo_real``), the server it names. On a real server each test gets
uniquely named databases, dropped afterwards.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mongomock
import pymongo
import pytest
from pymongo import monitoring

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
URI_ENV = "INTAKE_BLUESKY_TEST_MONGO_URI"
REAL_URI = os.environ.get(URI_ENV)


def _load_helpers():
    # Loaded by path: tests run with --import-mode=importlib, so this folder
    # is not on sys.path, and a unique name avoids clashes with other packages.
    name = "intake_bluesky_mongo_tests_suitcase"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "_suitcase.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


suitcase = _load_helpers()


# --- observing queries ------------------------------------------------------
@dataclass
class Op:
    """One read sent to the server, in a form common to mongomock and pymongo."""

    collection: str
    op: str  # find | count_documents | estimated_document_count | distinct | getMore
    filter: Any = None
    projection: Any = None
    sort: list | None = None
    skip: int = 0
    limit: int = 0
    #: The command as sent (real servers only): for explain().
    command: Any = None


class QueryLog(list):
    """The reads sent to one database, oldest first."""

    def of(self, collection: str | None = None, op: str | None = None) -> list[Op]:
        return [
            o
            for o in self
            if (collection is None or o.collection == collection) and (op is None or o.op == op)
        ]


def _sort_list(sort) -> list | None:
    if sort is None:
        return None
    if isinstance(sort, dict):
        return [(k, int(v)) for k, v in sort.items()]
    if isinstance(sort, str):
        return [(sort, 1)]
    return [(k, int(v)) for k, v in sort]


class _SpyCollection:
    """A mongomock collection that records reads before performing them."""

    def __init__(self, collection, log: QueryLog):
        self._collection = collection
        self._log = log

    def __getattr__(self, name):
        return getattr(self._collection, name)

    def _find_args(self, args, kwargs):
        names = ("filter", "projection", "skip", "limit")
        merged = {**dict(zip(names, args)), **kwargs}
        return merged

    def find(self, *args, **kwargs):
        a = self._find_args(args, kwargs)
        self._log.append(
            Op(
                self._collection.name,
                "find",
                copy.deepcopy(a.get("filter")),
                a.get("projection"),
                _sort_list(a.get("sort")),
                a.get("skip") or 0,
                a.get("limit") or 0,
            )
        )
        return self._collection.find(*args, **kwargs)

    def find_one(self, *args, **kwargs):
        a = self._find_args(args, kwargs)
        self._log.append(
            Op(
                self._collection.name,
                "find",
                copy.deepcopy(a.get("filter")),
                a.get("projection"),
                _sort_list(a.get("sort")),
                0,
                1,
            )
        )
        return self._collection.find_one(*args, **kwargs)

    def count_documents(self, filter, *args, **kwargs):
        self._log.append(Op(self._collection.name, "count_documents", copy.deepcopy(filter)))
        return self._collection.count_documents(filter, *args, **kwargs)

    def estimated_document_count(self, *args, **kwargs):
        self._log.append(Op(self._collection.name, "estimated_document_count"))
        return self._collection.estimated_document_count(*args, **kwargs)

    def distinct(self, key, filter=None, *args, **kwargs):
        self._log.append(Op(self._collection.name, "distinct", copy.deepcopy(filter)))
        return self._collection.distinct(key, filter, *args, **kwargs)


class _SpyDatabase(mongomock.Database):
    """mongomock's Database whose collections are spies (set by class swap)."""

    def get_collection(self, name, *args, **kwargs):
        collection = super().get_collection(name, *args, **kwargs)
        return _SpyCollection(collection, self._spy_log)

    def __getitem__(self, name):
        return self.get_collection(name)


class _Listener(monitoring.CommandListener):
    """Records reads sent to a real server, per database."""

    def __init__(self):
        self.logs: dict[str, QueryLog] = {}

    def started(self, event):
        log = self.logs.get(event.database_name)
        if log is None:
            return
        cmd = event.command
        name = event.command_name
        if name == "find":
            limit = cmd.get("limit", 0)
            log.append(
                Op(
                    cmd["find"],
                    "find",
                    cmd.get("filter", {}),
                    cmd.get("projection"),
                    _sort_list(cmd.get("sort")),
                    cmd.get("skip", 0),
                    abs(limit),
                    command=dict(cmd),
                )
            )
        elif name == "aggregate":
            pipeline = cmd.get("pipeline", [])
            match = next((s["$match"] for s in pipeline if "$match" in s), {})
            log.append(Op(cmd["aggregate"], "count_documents", match))
        elif name == "count":
            log.append(Op(cmd["count"], "estimated_document_count", cmd.get("query")))
        elif name == "distinct":
            log.append(Op(cmd["distinct"], "distinct", cmd.get("query")))
        elif name == "getMore":
            log.append(Op(cmd["collection"], "getMore", command=dict(cmd)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


#: The real-server parametrization's test id: the in-process SecantusDB, or
#: the server the URI names (its kind is asked: ``Server.kind``).
SERVER_KIND = "uri" if REAL_URI else "secantus"


@dataclass
class Server:
    """The session's real server: its URI, a monitored client, the listener."""

    kind: str
    uri: str
    client: Any
    listener: _Listener


def start_secantus(**kwargs):
    """A started in-process SecantusDB server (in memory unless told)."""
    from secantus import SecantusDBServer

    kwargs.setdefault("storage_path", ":memory:")
    server = SecantusDBServer(**kwargs)
    server.start()
    return server


def stop_secantus(server) -> None:
    """Stop a SecantusDB server and free its port at once.

    SecantusDB 0.7.0b3's ``stop()`` closes its listening socket while its
    accept thread is blocked in ``accept()``, which keeps the port bound (a
    restart on it fails with EADDRINUSE) and costs a 2 s join timeout; shutting
    the socket down first wakes ``accept()`` (Linux), so the thread ends.
    """
    import socket

    listening = getattr(server, "_socket", None)
    if listening is not None:
        try:
            listening.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    server.stop()


@pytest.fixture(scope="session")
def mongo_server():
    """The real MongoDB wire-protocol server the tests share (started once per run)."""
    secantus = None
    if REAL_URI:
        uri = REAL_URI
    else:
        secantus = start_secantus()
        uri = secantus.uri
    listener = _Listener()
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, event_listeners=[listener])
    # SecantusDB reports MongoDB's version plus its own; tests that check
    # query plans expect each server's documented behaviour.
    kind = "secantus" if "secantusVersion" in client.admin.command("buildInfo") else "mongod"
    try:
        yield Server(kind, uri, client, listener)
    finally:
        client.close()
        if secantus is not None:
            stop_secantus(secantus)


def uri_with_database(uri: str, name: str) -> str:
    """``uri`` with its database path replaced by ``name`` (options kept)."""
    scheme, rest = uri.split("://", 1)
    rest, question, options = rest.partition("?")
    at = rest.rfind("@")
    slash = rest.find("/", at + 1)
    authority = rest if slash < 0 else rest[:slash]
    return f"{scheme}://{authority}/{name}{question}{options}"


class MongoEnv:
    """Fresh databases for one test; dropped when the test ends."""

    def __init__(self, server: Server | None):
        self.real = server is not None
        self.kind = server.kind if server is not None else "mongomock"
        self._server = server
        self._created: list = []
        self._logs: dict[str, QueryLog] = {}

    def database(self, tag: str = "db"):
        name = f"ibtest_{uuid.uuid4().hex[:10]}_{tag}"
        log = QueryLog()
        if self.real:
            self._server.listener.logs[name] = log
            db = self._server.client[name]
        else:
            db = mongomock.MongoClient()[name]
            db._spy_log = log
            db.__class__ = _SpyDatabase
        self._logs[name] = log
        self._created.append(db)
        return db

    def log(self, db) -> QueryLog:
        return self._logs[db.name]

    def uri(self, db) -> str | None:
        """A URI naming ``db`` on the real server (None with mongomock)."""
        return uri_with_database(self._server.uri, db.name) if self.real else None

    def cleanup(self):
        for db in self._created:
            try:
                db.client.drop_database(db.name)
            except Exception:  # a test that broke the connection on purpose
                pass
        if self.real:
            for db in self._created:
                self._server.listener.logs.pop(db.name, None)


@pytest.fixture(params=["mongomock", SERVER_KIND])
def mongo(request):
    """Fresh databases on mongomock, then on the real server."""
    server = None if request.param == "mongomock" else request.getfixturevalue("mongo_server")
    env = MongoEnv(server)
    yield env
    env.cleanup()


class OwnServers:
    """SecantusDB servers of one test, on one data directory (so a server
    restarted on the same port finds the same data); stopped at the end."""

    def __init__(self, path):
        self.path = path
        self.started = []

    def start(self, port: int = 0, **kwargs):
        server = start_secantus(port=port, storage_path=str(self.path), **kwargs)
        self.started.append(server)
        return server

    @staticmethod
    def stop(server) -> None:
        stop_secantus(server)

    def stop_all(self) -> None:
        for server in self.started:
            try:
                stop_secantus(server)
            except Exception:  # stopped by the test already
                pass


@pytest.fixture
def secantus(tmp_path):
    """Start SecantusDB servers this test owns (it may stop them)."""
    servers = OwnServers(tmp_path / "secantus-data")
    yield servers
    servers.stop_all()


@pytest.fixture
def real_mongo(mongo_server):
    """Fresh databases on the real server only (what mongomock cannot show)."""
    env = MongoEnv(mongo_server)
    yield env
    env.cleanup()


@pytest.fixture(scope="session")
def layouts():
    """Writers of suitcase-mongo's layouts (module ``_suitcase``)."""
    return suitcase


# --- sample data ------------------------------------------------------------
def _read_json(name):
    with open(SAMPLES / name) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def dumps() -> dict:
    """The sample dumps written by suitcase-mongo: mds, assets, embedded."""
    return {name: _read_json(f"{name}.json") for name in ("mds", "assets", "embedded")}


@pytest.fixture(scope="session")
def emitted() -> list[list[tuple[str, dict]]]:
    """What the RunEngine emitted for the two sample runs (ground truth)."""
    return [[(n, d) for n, d in _read_json(f"run{i}_documents.json")] for i in (0, 1)]


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture
def normalized_samples(mongo, dumps):
    """(mds, assets) databases holding the normalized sample dump."""
    mds, assets = mongo.database("mds"), mongo.database("assets")
    suitcase.load_dump(mds, dumps["mds"])
    suitcase.load_dump(assets, dumps["assets"])
    mongo.log(mds).clear()
    mongo.log(assets).clear()
    return mds, assets


@pytest.fixture
def embedded_samples(mongo, dumps):
    """A database holding the embedded sample dump."""
    db = mongo.database("embedded")
    suitcase.load_dump(db, dumps["embedded"])
    mongo.log(db).clear()
    return db
