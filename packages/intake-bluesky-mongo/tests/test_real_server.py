"""What only a real MongoDB server shows: authentication, BSON encoding,
cursor batches (getMore), query plans, and a server that goes away.

``real_mongo`` is the session's real server (SecantusDB in-process, or the
``INTAKE_BLUESKY_TEST_MONGO_URI`` one). Authentication and the server that
goes away need a server of their own (users provisioned, a server this test
may stop): a SecantusDB server on a temporary directory, whatever the session
runs against.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pymongo
import pytest
from event_model import compose_run

from intake_bluesky.mongo import (
    BlueskyMongoCatalog,
    BlueskyMongoEmbeddedCatalog,
    EmbeddedDriver,
    MongoConnectionError,
    NormalizedDriver,
    create_embedded_indexes,
    create_indexes,
)

T0 = 1_700_000_000.0
PASSWORD = "Right-pw-7Kq"
WRONG = "Wrong-pw-3Xz"


def _run(n, *, scan_id=7, t0=T0):
    """A run: ``n`` events of det (float) and idx (int) in primary."""
    bundle = compose_run(time=t0, metadata={"scan_id": scan_id, "plan_name": "count"})
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "det": {"source": "s", "dtype": "number", "shape": [], "dtype_numpy": "<f8"},
            "idx": {"source": "s", "dtype": "integer", "shape": [], "dtype_numpy": "<i8"},
        },
        time=t0 + 0.1,
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(n):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"det": i / 2, "idx": scan_id + i},
                    timestamps={"det": t0 + i, "idx": t0 + i},
                    seq_num=i + 1,
                    time=t0 + 1 + i,
                ),
            )
        )
    docs.append(("stop", bundle.compose_stop(time=t0 + n + 2)))
    return docs, desc.descriptor_doc["uid"]


# --- authentication -----------------------------------------------------------
@pytest.fixture
def auth_server(secantus, layouts):
    """A server that requires authentication; user alice may read/write mds."""
    docs, _ = _run(3)
    setup = secantus.start()
    port = setup.address[1]
    # SecantusDB (like mongod) is provisioned without authentication, then
    # restarted with it on the same data.
    with pymongo.MongoClient(setup.uri, serverSelectionTimeoutMS=5000) as client:
        client.mds.command(
            "createUser", "alice", pwd=PASSWORD, roles=[{"role": "readWrite", "db": "mds"}]
        )
        layouts.NormalizedWriter(client.mds).write(docs)
    secantus.stop(setup)
    secantus.start(port=port, require_auth=True)
    return f"127.0.0.1:{port}", docs


def test_authenticated_user_reads(auth_server):
    where, docs = auth_server
    cat = BlueskyMongoCatalog(f"mongodb://alice:{PASSWORD}@{where}/mds")
    assert list(cat) == [docs[0][1]["uid"]]
    assert cat[7].primary.read()["det"].values.tolist() == [0.0, 0.5, 1.0]
    assert PASSWORD not in repr(cat) and PASSWORD not in cat.yaml()
    assert "alice:***@" in repr(cat)


@pytest.mark.parametrize("userinfo", [f"alice:{WRONG}@", ""], ids=["wrong-password", "no-user"])
def test_refused_access_is_clear_and_never_shows_a_password(auth_server, userinfo, caplog):
    where, _ = auth_server
    uri = f"mongodb://{userinfo}{where}/mds"
    caplog.set_level(logging.DEBUG)
    cat = BlueskyMongoCatalog(uri, server_selection_timeout_ms=500)
    shown = [repr(cat), cat.yaml(), repr(cat.driver)]
    for action in (len, list, lambda c: c[7], lambda c: c.search({"scan_id": 7})[-1]):
        t0 = time.monotonic()
        with pytest.raises(MongoConnectionError) as info:
            action(cat)
        assert time.monotonic() - t0 < 10
        message = str(info.value)
        assert where in message and "'mds'" in message and "refused access" in message
        assert "user name, password and authSource" in message
        shown.append(message)
    shown += [r.getMessage() for r in caplog.records]
    shown += [str(r.args) for r in caplog.records]
    for text in shown:
        assert WRONG not in text and PASSWORD not in text


# --- BSON encoding --------------------------------------------------------------
@pytest.mark.parametrize("layout", ["normalized", "embedded"])
def test_numpy_values_and_tuples_from_a_dataset_in_queries(real_mongo, layouts, layout):
    if layout == "normalized":
        db = real_mongo.database("mds")
        layouts.NormalizedWriter(db).write(_run(3, scan_id=7)[0])
        layouts.NormalizedWriter(db).write(_run(2, scan_id=9, t0=T0 + 100)[0])
        cat = BlueskyMongoCatalog(db)
    else:
        db = real_mongo.database("datastore")
        layouts.EmbeddedWriter(db).write(_run(3, scan_id=7)[0])
        layouts.EmbeddedWriter(db).write(_run(2, scan_id=9, t0=T0 + 100)[0])
        cat = BlueskyMongoEmbeddedCatalog(db)
    first, second = list(cat)
    ds = cat[first].primary.read()
    idx = ds["idx"].values  # int64: [7, 8, 9]
    assert idx.dtype == np.int64
    # pymongo refuses numpy.int64 (mongomock takes it): the server must never
    # see one.
    with pytest.raises(Exception, match="cannot encode"):
        db.run_start.find_one({"scan_id": idx[0]})
    assert list(cat.search({"scan_id": idx[0]})) == [first]
    assert list(cat.search({"scan_id": {"$in": list(idx)}})) == [first, second]
    assert list(cat.search({"scan_id": {"$in": idx}})) == [first, second]
    assert list(cat.search({"scan_id": {"$in": (np.int32(9), 10)}})) == [second]
    assert list(cat.search({"scan_id": {"$gt": np.float32(7.5)}})) == [second]
    assert list(cat.search({"$and": [{"scan_id": idx[2]}, {"plan_name": np.str_("count")}]})) == [
        second
    ]
    assert len(cat.search({"scan_id": {"$lte": np.uint8(9)}})) == 2
    assert list(cat.search({"scan_id": ds["det"].values[2] + 8})) == [second]  # float64 9.0
    with pytest.raises(ValueError, match="cannot be sent to MongoDB"):
        list(cat.search({"scan_id": 1 + 2j}))
    with pytest.raises(ValueError, match="cannot be sent to MongoDB"):
        len(cat.search({"scan_id": np.uint64(2**64 - 1)}))


def test_text_search_without_text_index_is_a_clear_error(real_mongo, layouts):
    db = real_mongo.database("mds")
    layouts.NormalizedWriter(db).write(_run(1)[0])
    cat = BlueskyMongoCatalog(db)
    # mongod: no text index; SecantusDB: no text search at all.
    with pytest.raises(ValueError, match=r"\$text") as info:
        list(cat.search({"$text": {"$search": "count"}}))
    assert "full error" not in str(info.value)


@pytest.mark.parametrize("layout", ["normalized", "embedded"])
def test_positional_path_into_nested_arrays(mongo, layout):
    # hints.dimensions is a list of [fields, stream] pairs: ".0.0" is a list,
    # which mongod (and mongomock) match by any element. SecantusDB 0.7.0b3
    # does not (README: where SecantusDB differs from mongod).
    start = {"uid": "u", "time": T0, "hints": {"dimensions": [[["motor"], "primary"]]}}
    db = mongo.database(layout)
    if layout == "normalized":
        db.run_start.insert_one(dict(start))
        cat = BlueskyMongoCatalog(db)
    else:
        db.header.insert_one({"run_id": "u", "start": [dict(start)]})
        cat = BlueskyMongoEmbeddedCatalog(db)
    assert list(cat.search({"hints.dimensions.0.1": "primary"})) == ["u"]
    assert list(cat.search({"hints.dimensions.0.0": ["motor"]})) == ["u"]
    expected = [] if mongo.kind == "secantus" else ["u"]
    assert list(cat.search({"hints.dimensions.0.0": "motor"})) == expected


# --- cursors longer than one batch ---------------------------------------------
def test_search_and_event_pages_span_several_batches(real_mongo, layouts):
    mds = real_mongo.database("mds")
    log = real_mongo.log(mds)
    starts = [
        {"uid": f"run-{i:05d}", "time": T0 + i, "scan_id": i, "plan_name": "scan"}
        for i in range(250)
    ]
    mds.run_start.insert_many([dict(s) for s in starts])
    docs, desc = _run(350, scan_id=1000, t0=T0 + 1000)
    layouts.NormalizedWriter(mds).write(docs)
    log.clear()
    # The server's first batch is 101 documents; the rest come by getMore.
    cat = BlueskyMongoCatalog(mds)
    found = list(cat.search({"plan_name": "scan"}))
    assert found == [s["uid"] for s in starts]
    assert len(log.of("run_start", "getMore")) >= 1
    log.clear()
    src = NormalizedDriver(mds, event_page_size=100).run(docs[0][1]["uid"])
    pages = list(src.event_pages(desc))
    assert [len(p["seq_num"]) for p in pages] == [100, 100, 100, 50]
    assert [v for p in pages for v in p["seq_num"]] == list(range(1, 351))
    assert [v for p in pages for v in p["data"]["idx"]] == list(range(1000, 1350))
    (find,) = log.of("event", "find")
    assert find.command["batchSize"] == 100
    assert len(log.of("event", "getMore")) >= 3


def test_embedded_pages_span_several_batches(real_mongo, layouts):
    db = real_mongo.database("datastore")
    docs, desc = _run(1000)
    layouts.EmbeddedWriter(db, page_size=4).write(docs)  # 250 page documents
    log = real_mongo.log(db)
    log.clear()
    src = EmbeddedDriver(db).run(docs[0][1]["uid"])
    pages = list(src.event_pages(desc, fields=["det"]))
    assert len(pages) == 250
    assert [v for p in pages for v in p["data"]["det"]] == [i / 2 for i in range(1000)]
    assert len(log.of("event", "getMore")) >= 1
    window = list(src.event_pages(desc, rows=(2, 999)))
    assert [v for p in window for v in p["seq_num"]] == list(range(3, 1000))


# --- query plans --------------------------------------------------------------
def _stages(plan: dict) -> list[tuple[str, str | None]]:
    out = [(plan.get("stage"), plan.get("indexName"))]
    if "inputStage" in plan:
        out += _stages(plan["inputStage"])
    for sub in plan.get("inputStages", []):
        out += _stages(sub)
    return out


def _plan(db, op) -> list[tuple[str, str | None]]:
    """The winning plan of a find the catalog sent (as sent), by explain()."""
    cmd = {
        k: op.command[k] for k in ("find", "filter", "sort", "skip", "limit") if k in op.command
    }
    explained = db.command("explain", cmd, verbosity="queryPlanner")
    return _stages(explained["queryPlanner"]["winningPlan"])


def _uses(plan, index_name, kind, in_order=False):
    """The plan scans an index (that one, on SecantusDB), never the collection;
    ``in_order``: on mongod the index also gives the sort order (no SORT)."""
    stages = [s for s, _ in plan]
    assert "IXSCAN" in stages and "COLLSCAN" not in stages, plan
    if kind == "secantus":
        # Measured on SecantusDB 0.7.0b3, which also adds a blocking SORT above
        # the IXSCAN whenever the filter has an equality prefix (README).
        assert ("IXSCAN", index_name) in plan, plan
    elif in_order:
        # mongod may pick another index after its trial runs; whichever it
        # picks must deliver the order itself.
        assert "SORT" not in stages, plan


def test_normalized_reads_use_indexes(real_mongo, layouts):
    mds = real_mongo.database("mds")
    log = real_mongo.log(mds)
    for i in range(30):
        layouts.NormalizedWriter(mds).write(_run(5, scan_id=i % 4, t0=T0 + 10 * i)[0])
    create_indexes(mds)
    cat = BlueskyMongoCatalog(mds)
    kind = real_mongo.kind

    def sent(action, collection):
        log.clear()
        action()
        return [o for o in log.of(collection, "find")]

    (listing,) = sent(lambda: list(cat), "run_start")
    _uses(_plan(mds, listing), "time_1__id_1", kind, in_order=True)
    newest = sent(lambda: cat[-1], "run_start")[0]
    assert newest.skip == 0 and newest.limit == 1
    _uses(_plan(mds, newest), "time_1__id_1", kind, in_order=True)
    uid = list(cat)[5]
    by_uid = sent(lambda: cat[uid], "run_start")[0]
    _uses(_plan(mds, by_uid), "uid_1", kind)
    (search,) = sent(lambda: list(cat.search({"scan_id": 2})), "run_start")
    _uses(_plan(mds, search), "scan_id_1_time_1__id_1", kind, in_order=True)
    by_scan_id = sent(lambda: cat[3], "run_start")[0]
    _uses(_plan(mds, by_scan_id), "scan_id_1_time_1__id_1", kind, in_order=True)
    run = cat[uid]
    log.clear()
    assert run.primary.read()["det"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    for op in log.of("event", "find"):
        _uses(_plan(mds, op), "descriptor_1_time_1", kind, in_order=True)
    for op in log.of("event_descriptor", "find"):
        _uses(_plan(mds, op), "run_start_1_time_1", kind)


def test_embedded_reads_use_indexes(real_mongo, layouts):
    db = real_mongo.database("datastore")
    log = real_mongo.log(db)
    for i in range(30):
        layouts.EmbeddedWriter(db, page_size=2).write(_run(5, scan_id=i % 4, t0=T0 + 10 * i)[0])
    create_embedded_indexes(db)
    cat = BlueskyMongoEmbeddedCatalog(db)
    kind = real_mongo.kind
    uid = list(cat)[5]
    log.clear()
    cat[uid]
    _uses(_plan(db, log.of("header", "find")[0]), "start.uid_1", kind)
    log.clear()
    list(cat.search({"scan_id": 2}))
    (search,) = log.of("header", "find")
    plan = _plan(db, search)
    # The start-document array makes start.* indexes multikey: they filter,
    # but mongod cannot sort by them either.
    assert ("IXSCAN", "start.scan_id_1_start.time_1__id_1") in plan
    assert "COLLSCAN" not in [s for s, _ in plan]
    src = cat[uid]
    log.clear()
    assert src.primary.read()["det"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    (whole,) = log.of("event", "find")
    _uses(_plan(db, whole), "descriptor_1_first_index_1", kind, in_order=True)
    driver_src = EmbeddedDriver(db).run(uid)
    desc = driver_src.descriptors()[0]["uid"]
    log.clear()
    window = list(driver_src.event_pages(desc, rows=(1, 3)))
    assert [v for p in window for v in p["seq_num"]] == [2, 3]
    plan = _plan(db, log.of("event", "find")[0])
    if kind == "mongod":
        assert "COLLSCAN" not in [s for s, _ in plan], plan
    else:
        # SecantusDB 0.7.0b3 plans a filter with ranges on two fields
        # (first_index < hi, last_index >= lo) as a collection scan, even with
        # an index on each (see the README); one range gets an IXSCAN.
        assert plan[-1] == ("COLLSCAN", None), plan


# --- a server that goes away ---------------------------------------------------
def test_server_going_away_mid_read_then_back(secantus, layouts):
    docs, desc = _run(600)
    server = secantus.start()
    port = server.address[1]
    with pymongo.MongoClient(server.uri) as client:
        layouts.NormalizedWriter(client.mds).write(docs)
    uid = docs[0][1]["uid"]
    cat = BlueskyMongoCatalog(f"mongodb://127.0.0.1:{port}/mds", server_selection_timeout_ms=500)
    expected = [i / 2 for i in range(600)]
    assert cat[uid].primary.read()["det"].values.tolist() == expected
    src = NormalizedDriver(
        f"mongodb://127.0.0.1:{port}/mds", server_selection_timeout_ms=500, event_page_size=100
    ).run(uid)
    pages = src.event_pages(desc)
    assert next(pages)["seq_num"] == list(range(1, 101))  # a cursor is open
    secantus.stop(server)
    t0 = time.monotonic()
    with pytest.raises(MongoConnectionError) as info:
        list(pages)
    assert time.monotonic() - t0 < 10
    assert f"127.0.0.1:{port}" in str(info.value) and "'mds'" in str(info.value)
    for action in (len, lambda c: c[uid].primary.read()):
        t0 = time.monotonic()
        with pytest.raises(MongoConnectionError, match="within 500 ms"):
            action(cat)
        assert time.monotonic() - t0 < 10
    # Back on the same port, same data: the same catalog works again.
    secantus.start(port=port)
    # pymongo's monitor re-checks a lost server at most every 500 ms; one
    # server-selection timeout (500 ms here) may pass before it is seen.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert len(cat) == 1
            break
        except MongoConnectionError:
            if time.monotonic() > deadline:
                raise
    assert cat[uid].primary.read()["det"].values.tolist() == expected
    assert [v for p in src.event_pages(desc) for v in p["seq_num"]] == list(range(1, 601))
