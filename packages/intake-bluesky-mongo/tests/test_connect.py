"""Connections: URIs and Database objects, redaction, unreachable servers,
pickling for dask."""

import pickle
import socket
import subprocess
import sys
import textwrap
import time

import mongomock
import pymongo
import pytest

from intake_bluesky.mongo import (
    BlueskyMongoCatalog,
    BlueskyMongoEmbeddedCatalog,
    DatabaseRef,
    EmbeddedDriver,
    MongoConnectionError,
    NormalizedDriver,
    _connect,
    redact_uri,
)

SECRET = "hunter2-Zq9"


@pytest.fixture
def dead_port():
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- redaction ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "mongodb://alice:hunter2@db.example.org:27017/mds",
            "mongodb://alice:***@db.example.org:27017/mds",
        ),
        (
            "mongodb://alice:p%40ss%2Fw@h1:1,h2:2/mds?authSource=admin&replicaSet=rs0",
            "mongodb://alice:***@h1:1,h2:2/mds?authSource=admin&replicaSet=rs0",
        ),
        (
            "mongodb+srv://bob:s3cret@cluster0.example.net/datastore?retryWrites=true",
            "mongodb+srv://bob:***@cluster0.example.net/datastore?retryWrites=true",
        ),
        # Not percent-encoded (invalid, but must not leak either).
        ("mongodb://carol:a@b/c@host:27017/mds", "mongodb://carol:***@host:27017/mds"),
        (
            "mongodb://x509user@host/mds?authMechanism=MONGODB-X509",
            "mongodb://x509user@host/mds?authMechanism=MONGODB-X509",
        ),
        ("mongodb://host:27017/mds", "mongodb://host:27017/mds"),
        (
            "mongodb://u:p@host/mds?authMechanism=MONGODB-AWS&authMechanismProperties="
            "AWS_SESSION_TOKEN:tok123",
            "mongodb://u:***@host/mds?authMechanism=MONGODB-AWS&authMechanismProperties="
            "AWS_SESSION_TOKEN:***",
        ),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_uri_reference_parses_without_connecting():
    ref = DatabaseRef(f"mongodb://alice:{SECRET}@h1:27018,h2/mds?replicaSet=rs0")
    assert ref.name == "mds"
    assert ref.hosts == ["h1:27018", "h2:27017"]
    assert SECRET not in repr(ref) and SECRET not in ref.describe()
    assert ref.timeout_ms == _connect.DEFAULT_SERVER_SELECTION_TIMEOUT_MS
    assert DatabaseRef("mongodb://h/mds?serverSelectionTimeoutMS=250").timeout_ms is None
    assert DatabaseRef("mongodb://h/mds", server_selection_timeout_ms=300).timeout_ms == 300


def test_bad_arguments_are_clear_and_redacted():
    with pytest.raises(ValueError, match="names no database") as info:
        DatabaseRef(f"mongodb://alice:{SECRET}@host:27017")
    assert SECRET not in str(info.value) and "alice:***@host" in str(info.value)
    with pytest.raises(ValueError, match="not a valid MongoDB URI") as info:
        DatabaseRef(f"mongodb://alice:{SECRET}@host:notaport/mds")
    assert SECRET not in str(info.value)
    with pytest.raises(TypeError, match=r"client\['<database name>'\]"):
        BlueskyMongoCatalog(mongomock.MongoClient())
    with pytest.raises(TypeError, match="URI"):
        BlueskyMongoEmbeddedCatalog(42)


def test_reprs_never_show_the_password(dead_port):
    uri = f"mongodb://alice:{SECRET}@127.0.0.1:{dead_port}/mds"
    assets = f"mongodb://alice:{SECRET}@127.0.0.1:{dead_port}/assets"
    driver = NormalizedDriver(uri, assets, server_selection_timeout_ms=100)
    assert repr(driver) == (
        f"NormalizedDriver(mongodb://alice:***@127.0.0.1:{dead_port}/mds, "
        f"assets=mongodb://alice:***@127.0.0.1:{dead_port}/assets)"
    )
    assert SECRET not in repr(EmbeddedDriver(uri))
    cat = BlueskyMongoCatalog(uri, asset_registry_db=assets, server_selection_timeout_ms=100)
    # The server is down: the repr says so instead of raising.
    text = repr(cat)
    assert SECRET not in text and "alice:***@" in text
    assert "runs unknown: MongoConnectionError" in text
    assert SECRET not in str(cat.yaml())
    assert "alice:***@" in cat.yaml()
    assert SECRET not in repr(cat.search({"plan_name": "scan"}).driver)


# --- unreachable server -------------------------------------------------------
def test_unreachable_server_fails_fast_with_host_and_port(dead_port):
    uri = f"mongodb://alice:{SECRET}@127.0.0.1:{dead_port}/mds"
    cat = BlueskyMongoCatalog(uri, server_selection_timeout_ms=200)  # no I/O yet
    for action in (len, list, lambda c: c[-1], lambda c: c.driver.run("abc")):
        t0 = time.monotonic()
        with pytest.raises(MongoConnectionError) as info:
            action(cat)
        assert time.monotonic() - t0 < 5
        message = str(info.value)
        assert f"127.0.0.1:{dead_port}" in message
        assert "200 ms" in message and "mds" in message
        assert SECRET not in message and "alice" not in message
        assert info.value.__suppress_context__
    assert isinstance(info.value, ConnectionError)


def test_unreachable_timeout_from_the_uri(dead_port):
    driver = EmbeddedDriver(
        f"mongodb://bob:{SECRET}@127.0.0.1:{dead_port}/datastore?serverSelectionTimeoutMS=150"
    )
    t0 = time.monotonic()
    with pytest.raises(MongoConnectionError) as info:
        driver.count({})
    assert time.monotonic() - t0 < 5
    assert f"127.0.0.1:{dead_port}" in str(info.value) and SECRET not in str(info.value)


# --- pickling -----------------------------------------------------------------
def _write_sample(mongo, layouts):
    from event_model import compose_run

    bundle = compose_run(metadata={"scan_id": 7, "plan_name": "count"})
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"det": {"source": "s", "dtype": "number", "shape": [], "dtype_numpy": "<f8"}},
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    docs += [
        ("event", desc.compose_event(data={"det": v}, timestamps={"det": 0.0}, seq_num=i))
        for i, v in enumerate([1.5, 2.5, 3.5], 1)
    ]
    docs.append(("stop", bundle.compose_stop()))
    db = mongo.database("mds")
    layouts.NormalizedWriter(db).write(docs)
    return db, bundle.start_doc["uid"]


def test_driver_run_source_and_catalog_pickle_in_process(mongo, layouts):
    db, uid = _write_sample(mongo, layouts)
    driver = NormalizedDriver(db)
    clone = pickle.loads(pickle.dumps(driver))
    assert [s["uid"] for s in clone.search({})] == [uid]
    src = pickle.loads(pickle.dumps(driver.run(uid)))
    (page,) = src.event_pages(src.descriptors()[0]["uid"])
    assert list(page["data"]["det"]) == [1.5, 2.5, 3.5]
    cat = BlueskyMongoCatalog(db)
    sub = cat.search({"scan_id": 7})
    clone = pickle.loads(pickle.dumps(sub))
    assert type(clone) is BlueskyMongoCatalog
    assert clone.query == {"scan_id": 7}
    assert list(clone) == [uid]
    assert clone[7].primary.read()["det"].values.tolist() == [1.5, 2.5, 3.5]
    empty = pickle.loads(pickle.dumps(sub.search({"scan_id": 8})))
    assert list(empty) == []


def test_uri_catalog_pickles_without_connecting(dead_port):
    uri = f"mongodb://alice:{SECRET}@127.0.0.1:{dead_port}/datastore"
    cat = BlueskyMongoEmbeddedCatalog(uri, server_selection_timeout_ms=100)
    clone = pickle.loads(pickle.dumps(cat.search({"scan_id": 2})))
    assert clone.driver.db.uri == uri
    assert clone.driver.db.timeout_ms == 100
    assert clone.query == {"scan_id": 2}
    with pytest.raises(MongoConnectionError):
        len(clone)


def test_pymongo_database_reconnects_by_seed_hosts_elsewhere(monkeypatch, dead_port):
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{dead_port}", connect=False)
    ref = DatabaseRef(client["mds"])
    assert ref.kind == "pymongo" and ref.hosts == [f"127.0.0.1:{dead_port}"]
    clone = pickle.loads(pickle.dumps(ref))
    assert clone.db.client is client  # same process: the very same client
    # In another process (simulated: the object is not in this process's
    # registry) it is rebuilt from its seed hosts and name.
    other = pickle.loads(pickle.dumps(ref))
    monkeypatch.delitem(_connect._REGISTRY, ref.token)
    db = other.db
    assert db.name == "mds" and db.client is not client
    seeds = db.client.topology_description.server_descriptions()
    assert list(seeds) == [("127.0.0.1", dead_port)]
    client.close()


def test_mongomock_in_another_process_is_a_clear_error(mongo, layouts, tmp_path):
    db, uid = _write_sample(mongo, layouts)
    if mongo.real:
        pytest.skip("about mongomock databases")
    path = tmp_path / "driver.pickle"
    path.write_bytes(pickle.dumps(NormalizedDriver(db)))
    code = textwrap.dedent(
        f"""
        import pickle
        from intake_bluesky.mongo import MongoConnectionError
        driver = pickle.loads(open({str(path)!r}, "rb").read())
        try:
            driver.count({{}})
        except MongoConnectionError as err:
            print("ERROR:", err)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ERROR:" in out.stdout
    assert "mongomock" in out.stdout and "URI" in out.stdout


def test_real_server_by_uri_and_in_another_process(mongo, layouts, tmp_path):
    if not mongo.real:
        pytest.skip("needs a real server: the secantus/mongod parametrization")
    db, uid = _write_sample(mongo, layouts)
    uri = mongo.uri(db)
    cat = BlueskyMongoCatalog(uri)
    assert list(cat) == [uid]
    assert redact_uri(uri) in repr(cat)
    path = tmp_path / "catalog.pickle"
    path.write_bytes(pickle.dumps(cat.search({"scan_id": 7})))
    code = textwrap.dedent(
        f"""
        import pickle
        cat = pickle.loads(open({str(path)!r}, "rb").read())
        print(list(cat), cat[-1].primary.read()["det"].values.tolist())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{[uid]} [1.5, 2.5, 3.5]"


def test_server_errors_are_scrubbed():
    from pymongo.errors import OperationFailure

    ref = DatabaseRef(f"mongodb://alice:{SECRET}@db.example.org:27017/mds")
    with pytest.raises(MongoConnectionError, match="refused access") as info:
        with _connect.translate_errors(ref):
            raise OperationFailure("Authentication failed.", 18)
    assert "db.example.org:27017" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(OperationFailure) as info:
        with _connect.translate_errors(ref):
            raise OperationFailure(f"bad thing near {ref.uri}", 2)
    assert SECRET not in str(info.value) and info.value.code == 2
    original = OperationFailure("unknown operator: $foo", 2)
    with pytest.raises(OperationFailure) as info:
        with _connect.translate_errors(ref):
            raise original
    assert info.value is original
    with pytest.raises(KeyError):
        with _connect.translate_errors(ref):
            raise KeyError("not a server error")
