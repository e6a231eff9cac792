"""Everything the server can do is done there: observed in the queries sent."""

import numpy as np
import pytest
from event_model import compose_run

from intake_bluesky.core import BadDocumentError
from intake_bluesky.mongo import (
    BlueskyMongoCatalog,
    BlueskyMongoEmbeddedCatalog,
    EmbeddedDriver,
    NormalizedDriver,
)

T0 = 1_600_000_000.0


class Layout:
    """One layout's databases, writers, catalog/driver factories and names."""

    def __init__(self, name, mongo, layouts, page_size=1000):
        self.name = name
        self.mongo = mongo
        if name == "normalized":
            self.mds, self.assets = mongo.database("mds"), mongo.database("assets")
            self.writer = layouts.NormalizedWriter(self.mds, self.assets)
            self.runs_collection = "run_start"
            self.prefix = ""
        else:
            self.mds = self.assets = mongo.database("datastore")
            self.writer = layouts.EmbeddedWriter(self.mds, page_size=page_size)
            self.runs_collection = "header"
            self.prefix = "start."

    def catalog(self, **common):
        if self.name == "normalized":
            return BlueskyMongoCatalog(self.mds, self.assets, **common)
        return BlueskyMongoEmbeddedCatalog(self.mds, **common)

    def driver(self):
        if self.name == "normalized":
            return NormalizedDriver(self.mds, self.assets)
        return EmbeddedDriver(self.mds)

    def add_starts(self, starts):
        """Insert start documents only (fast, for many runs)."""
        if self.name == "normalized":
            self.mds.run_start.insert_many([dict(s) for s in starts])
        else:
            self.mds.header.insert_many([{"run_id": s["uid"], "start": [dict(s)]} for s in starts])

    def log(self):
        """The reads sent so far, to every database of the layout."""
        ops = list(self.mongo.log(self.mds))
        if self.assets is not self.mds:
            ops += self.mongo.log(self.assets)
        return ops

    def clear(self):
        self.mongo.log(self.mds).clear()
        self.mongo.log(self.assets).clear()

    def reads(self, collection=None, op=None):
        return [
            o
            for o in self.log()
            if (collection is None or o.collection == collection) and (op is None or o.op == op)
        ]

    def q(self, query):
        """What a start-document query looks like on the server."""
        from intake_bluesky.mongo import prefix_query

        return prefix_query(query) if self.prefix else query


@pytest.fixture(params=["normalized", "embedded"])
def lay(request, mongo, layouts):
    return Layout(request.param, mongo, layouts)


def _starts(n):
    return [
        {
            "uid": f"{i:08x}-0000-4000-8000-{i:012x}",
            "time": T0 + i,
            "scan_id": i % 7,
            "plan_name": "count" if i % 2 else "scan",
        }
        for i in range(n)
    ]


def _run_with_events(n, *, img=False, external=0):
    """A run with ``n`` events in ``primary`` (det, optional img) as single events."""
    bundle = compose_run(uid=None, time=T0, metadata={"scan_id": 1, "plan_name": "count"})
    data_keys = {"det": {"source": "s", "dtype": "number", "shape": [], "dtype_numpy": "<f8"}}
    if img:
        data_keys["img"] = {"source": "s", "dtype": "array", "shape": [2, 2], "dtype_numpy": "<i8"}
    if external:
        data_keys["ext"] = {"source": "s", "dtype": "array", "shape": [], "external": "FILESTORE:"}
    desc = bundle.compose_descriptor(name="primary", data_keys=data_keys, time=T0 + 0.1)
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    resource = None
    if external:
        resource = bundle.compose_resource(
            spec="ECHO", root="/", resource_path="x", resource_kwargs={}
        )
        docs.append(("resource", resource.resource_doc))
    for i in range(n):
        data = {"det": float(i)}
        if img:
            data["img"] = (np.arange(4).reshape(2, 2) + i).tolist()
        filled = {}
        if external:
            datum = resource.compose_datum(datum_kwargs={"value": i})
            docs.append(("datum", datum))
            data["ext"] = datum["datum_id"]
            filled = {"ext": False}
        docs.append(
            (
                "event",
                desc.compose_event(
                    data=data,
                    timestamps={k: T0 + i for k in data},
                    seq_num=i + 1,
                    time=T0 + 1 + i,
                    filled=filled,
                ),
            )
        )
    docs.append(("stop", bundle.compose_stop(time=T0 + n + 2)))
    return docs, desc.descriptor_doc["uid"]


# --- search, count, sort, paging ---------------------------------------------
def test_search_sends_filter_sort_skip_limit(lay):
    starts = _starts(40)
    lay.add_starts(starts)
    lay.clear()
    query = {"scan_id": {"$gt": 3}}
    found = list(lay.driver().search(query, sort=[("time", -1)], skip=2, limit=5))
    expected = sorted((s for s in starts if s["scan_id"] > 3), key=lambda s: -s["time"])[2:7]
    assert found == expected
    (op,) = lay.reads()
    assert op.collection == lay.runs_collection and op.op == "find"
    assert op.filter == lay.q(query)
    assert op.sort == [(lay.prefix + "time", -1), ("_id", -1)]
    assert (op.skip, op.limit) == (2, 5)


def test_search_is_lazy_and_limit_zero_sends_nothing(lay):
    lay.add_starts(_starts(5))
    lay.clear()
    driver = lay.driver()
    results = driver.search({})
    assert lay.reads() == []
    first = next(results)
    assert first["uid"] == _starts(1)[0]["uid"]
    assert len(lay.reads(lay.runs_collection, "find")) == 1
    assert list(driver.search({}, limit=0)) == []
    assert len(lay.reads()) == 1


def test_catalog_iterates_one_server_cursor(lay):
    starts = _starts(2500)
    lay.add_starts(starts)
    cat = lay.catalog()
    lay.clear()
    uids = iter(cat)
    assert [next(uids) for _ in range(3)] == [s["uid"] for s in starts[:3]]
    assert list(uids) == [s["uid"] for s in starts[3:]]
    finds = lay.reads(lay.runs_collection, "find")
    # One cursor, streamed in batches by the server: no skip paging, whose
    # cost grows quadratically over a million runs.
    assert [(o.skip, o.limit) for o in finds] == [(0, 0)]
    assert finds[0].sort[0] == (lay.prefix + "time", 1)


def test_len_counts_on_the_server(lay, monkeypatch):
    from intake_bluesky.mongo import _catalog

    starts = _starts(30)
    lay.add_starts(starts)
    cat = lay.catalog()
    lay.clear()
    assert len(cat) == 30
    assert [o.op for o in lay.reads()] == ["estimated_document_count"]
    lay.clear()
    # A search: its uids, in one query that the listing right after uses.
    sub = cat.search({"plan_name": "scan"})
    assert len(sub) == 15
    (op,) = lay.reads()
    assert op.op == "find" and op.filter == lay.q({"plan_name": "scan"})
    assert op.projection == {"_id": False, lay.prefix + "uid": True}
    assert op.limit == _catalog.LISTING_MAX + 1
    # More runs than that: counted on the server.
    monkeypatch.setattr(_catalog, "LISTING_MAX", 10)
    lay.clear()
    assert len(sub) == 15
    assert [o.op for o in lay.reads()] == ["find", "count_documents"]


def test_listing_a_search_is_one_query(lay, monkeypatch):
    from intake_bluesky.mongo import _catalog

    starts = _starts(30)
    lay.add_starts(starts)
    cat = lay.catalog()
    lay.clear()
    expected = [s["uid"] for s in starts if s["plan_name"] == "scan"]
    assert list(cat.search({"plan_name": "scan"})) == expected
    assert [o.op for o in lay.reads()] == ["find"]
    # len() of one search does not answer the listing of another.
    sub = cat.search({"plan_name": "scan"})
    len(sub)
    other = sub.search({"scan_id": {"$lt": 10}})
    assert list(other) == [
        s["uid"] for s in starts if s["plan_name"] == "scan" and s["scan_id"] < 10
    ]
    # A listing fetched by len() answers only an iteration that follows at
    # once: later, runs written since show up.
    monkeypatch.setattr(_catalog, "LISTING_FRESH", 0.0)
    assert len(sub) == len(expected)
    lay.add_starts([{**starts[0], "uid": "new-run", "time": T0 + 1000}])
    lay.clear()
    assert [uid for uid in sub] == [*expected, "new-run"]
    assert [o.op for o in lay.reads()] == ["find"]


def test_nested_searches_are_and_on_the_server(lay):
    starts = _starts(30)
    lay.add_starts(starts)
    cat = lay.catalog(query={"plan_name": "count"})
    sub = cat.search({"scan_id": {"$in": [1, 3]}}).search(
        {"$or": [{"time": {"$lt": T0 + 10}}, {"scan_id": 3}]}
    )
    lay.clear()
    expected = [
        s["uid"]
        for s in starts
        if s["plan_name"] == "count"
        and s["scan_id"] in (1, 3)
        and (s["time"] < T0 + 10 or s["scan_id"] == 3)
    ]
    assert list(sub) == expected
    (op,) = lay.reads(lay.runs_collection, "find")
    assert op.filter == lay.q(
        {
            "$and": [
                {"plan_name": "count"},
                {"scan_id": {"$in": [1, 3]}},
                {"$or": [{"time": {"$lt": T0 + 10}}, {"scan_id": 3}]},
            ]
        }
    ) or op.filter == lay.q(
        {
            "$and": [
                {"$and": [{"plan_name": "count"}, {"scan_id": {"$in": [1, 3]}}]},
                {"$or": [{"time": {"$lt": T0 + 10}}, {"scan_id": 3}]},
            ]
        }
    )


def test_getitem_sugar_is_bounded_server_queries(lay):
    starts = _starts(50)
    starts[10]["uid"] = "abcdef12-0000-4000-8000-000000000010"
    starts[20]["uid"] = "abcd9999-0000-4000-8000-000000000020"
    lay.add_starts(starts)
    cat = lay.catalog()
    u = lay.prefix + "uid"

    lay.clear()
    assert cat["abcdef"].metadata["start"]["uid"] == starts[10]["uid"]
    finds = lay.reads(lay.runs_collection, "find")
    assert finds[0].filter == {u: "abcdef"} and finds[0].limit == 1
    assert finds[1].filter == {u: {"$regex": "^abcdef"}} and finds[1].limit == 11

    lay.clear()
    with pytest.raises(ValueError, match="ambiguous"):
        cat["abcd"]
    assert all(o.limit for o in lay.reads(lay.runs_collection, "find"))

    lay.clear()
    assert cat[-3].metadata["start"]["uid"] == starts[-3]["uid"]
    find = lay.reads(lay.runs_collection, "find")[0]
    assert find.sort[0] == (lay.prefix + "time", -1)
    assert (find.skip, find.limit) == (2, 1)

    lay.clear()
    newest_with_5 = [s for s in starts if s["scan_id"] == 5][-1]
    assert cat[5].metadata["start"]["uid"] == newest_with_5["uid"]
    find = lay.reads(lay.runs_collection, "find")[0]
    assert find.filter == lay.q({"scan_id": 5})
    assert find.sort[0] == (lay.prefix + "time", -1) and find.limit == 1


def test_refused_operators_never_reach_the_server(lay):
    lay.add_starts(_starts(3))
    cat = lay.catalog()
    driver = lay.driver()
    lay.clear()
    for bad in (
        {"$where": "this.scan_id > 1"},
        {"scan_id": {"$where": "1"}},
        {"$or": [{"scan_id": 1}, {"$and": [{"$function": {"body": "x", "args": []}}]}]},
        {"$nor": [{"$accumulator": {}}]},
        {"$expr": {"$function": {"body": "return true", "args": [], "lang": "js"}}},
    ):
        for call in (
            driver.search,
            driver.count,
            # The catalog refuses when searching or, at the latest, when it
            # asks the driver for runs.
            lambda q: list(cat.search(q)),
            lambda q: len(cat.search(q)),
        ):
            with pytest.raises(ValueError, match="refused"):
                call(bad)
    assert lay.reads() == []


def test_a_query_too_large_for_mongodb_is_a_clear_error(lay):
    lay.add_starts(_starts(3))
    cat = lay.catalog()
    driver = lay.driver()
    lay.clear()
    # ~20 MiB of uids: past MongoDB's 16 MiB limit (pymongo: DocumentTooLarge).
    uids = [f"{i:0200d}" for i in range(100_000)]
    for call in (driver.search, driver.count, lambda q: list(cat.search(q))):
        with pytest.raises(ValueError) as info:
            call({"uid": {"$in": uids}})
        message = str(info.value)
        assert "The query is 20.2 MiB as BSON" in message
        assert "('uid.$in' lists 100,000 values)" in message
        assert "at most 16 MiB" in message and "Narrow it" in message
    assert lay.reads() == []  # nothing was sent


def test_expr_queries_address_start_documents(lay):
    starts = _starts(20)
    lay.add_starts(starts)
    cat = lay.catalog()
    sub = cat.search({"$expr": {"$gt": ["$scan_id", 4]}})
    assert list(sub) == [s["uid"] for s in starts if s["scan_id"] > 4]


# --- run contents --------------------------------------------------------------
def test_descriptors_and_stop_queries(lay):
    docs, _ = _run_with_events(3)
    lay.writer.write(docs)
    uid = docs[0][1]["uid"]
    lay.clear()
    src = lay.driver().run(uid)
    assert src.descriptors()[0]["name"] == "primary"
    if lay.name == "normalized":
        (op,) = lay.reads("event_descriptor")
        assert op.filter == {"run_start": uid} and op.sort[0] == ("time", 1)
    else:
        op = lay.reads("header")[-1]
        assert op.filter == {"start.uid": uid} and op.limit == 1


def test_field_selection_is_a_projection(lay):
    docs, desc = _run_with_events(5, img=True)
    lay.writer.write(docs)
    run = lay.catalog()[docs[0][1]["uid"]]
    lay.clear()
    ds = run.primary(include=["det"]).read()
    assert ds["det"].values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert "img" not in ds
    finds = lay.reads("event", "find")
    assert finds, "events were read"
    for op in finds:
        assert op.filter["descriptor"] == desc
        assert op.projection["data.det"] and "data.img" not in op.projection
        assert op.projection.get("_id") is False


def test_row_windows_normalized(mongo, layouts):
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(2500)
    lay.writer.write(docs)
    src = lay.driver().run(docs[0][1]["uid"])
    lay.clear()
    pages = list(src.event_pages(desc, fields=["det"], rows=(1000, 2200)))
    values = [v for p in pages for v in p["data"]["det"]]
    assert values == [float(i) for i in range(1000, 2200)]
    assert [s for p in pages for s in p["seq_num"]] == list(range(1001, 2201))
    # Pages of at most the page size, built from one windowed, sorted query.
    assert [len(p["seq_num"]) for p in pages] == [1000, 200]
    (op,) = lay.reads("event", "find")
    assert op.filter == {"descriptor": desc}
    assert op.sort == [("time", 1)]
    assert (op.skip, op.limit) == (1000, 1200)
    assert src.event_count(desc) == 2500
    (count,) = lay.reads("event", "count_documents")
    assert count.filter == {"descriptor": desc}


def test_row_windows_embedded(mongo, layouts):
    lay = Layout("embedded", mongo, layouts, page_size=100)
    docs, desc = _run_with_events(1000)
    lay.writer.write(docs)
    src = lay.driver().run(docs[0][1]["uid"])
    lay.clear()
    pages = list(src.event_pages(desc, fields=["det"], rows=(250, 420)))
    values = [v for p in pages for v in p["data"]["det"]]
    assert values == [float(i) for i in range(250, 420)]
    assert [len(p["seq_num"]) for p in pages] == [50, 100, 20]
    assert all("first_index" not in p and "size" not in p for p in pages)
    (op,) = lay.reads("event", "find")
    assert op.filter == {
        "descriptor": desc,
        "first_index": {"$lt": 420},
        "last_index": {"$gte": 250},
    }
    assert op.sort == [("first_index", 1)]
    assert op.projection["data.det"] and "data.img" not in op.projection
    lay.clear()
    assert src.event_count(desc) == 1000
    (op,) = lay.reads("event", "find")
    assert op.limit == 1 and op.sort == [("last_index", -1)]


def test_to_dask_chunks_fetch_windows(lay):
    docs, desc = _run_with_events(300, img=True)
    lay.writer.write(docs)
    run = lay.catalog()[docs[0][1]["uid"]]
    lazy = run.primary.to_dask()
    lay.clear()
    ds = lazy.compute()
    np.testing.assert_array_equal(ds["det"].values, np.arange(300.0))
    np.testing.assert_array_equal(ds["img"].values[7], np.arange(4).reshape(2, 2) + 7)
    assert lay.reads("event", "find"), "events read at compute time"


def test_whole_descriptor_reads_send_only_what_they_use(mongo, layouts):
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(2500, img=True)
    lay.writer.write(docs)
    run = lay.catalog()[docs[0][1]["uid"]]
    lean = {"_id": False, "time": True, "seq_num": True}
    lay.clear()
    lazy = run.primary.to_dask()
    # The row index: times and seq_nums only, in the server's natural order
    # (no sort: events are inserted in time order).
    (index,) = lay.reads("event", "find")
    assert index.filter == {"descriptor": desc}
    assert index.projection == lean
    assert not index.sort
    np.testing.assert_array_equal(lazy["time"].values, T0 + 1 + np.arange(2500))
    lay.clear()
    ds = lazy.compute()
    np.testing.assert_array_equal(ds["det"].values, np.arange(2500.0))
    np.testing.assert_array_equal(ds["img"].values[1234], np.arange(4).reshape(2, 2) + 1234)
    assert ds["img"].dtype == np.int64
    finds = lay.reads("event", "find")
    assert finds
    for op in finds:
        # No uids, timestamps or filled flags: the data read does not use them.
        assert set(op.projection) - {"data.det", "data.img"} == set(lean), op.projection
    assert {k for op in finds for k in op.projection if k.startswith("data.")} == {
        "data.det",
        "data.img",
    }
    lay.clear()
    eager = run.primary.read()
    (whole,) = lay.reads("event", "find")
    assert not whole.sort
    assert whole.projection == {**lean, "data.det": True, "data.img": True}
    np.testing.assert_array_equal(eager["det"].values, np.arange(2500.0))
    np.testing.assert_array_equal(eager["time"].values, T0 + 1 + np.arange(2500))
    lay.clear()
    stamps = run.primary.timestamps.read()
    np.testing.assert_array_equal(stamps["det"].values, T0 + np.arange(2500))
    (whole,) = lay.reads("event", "find")
    assert whole.projection == {**lean, "timestamps.det": True, "timestamps.img": True}


def test_events_inserted_out_of_time_order_are_read_in_order(mongo, layouts):
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(2500)
    events = [d for d in docs if d[0] == "event"]
    # Newest first: the natural order is not time order, so the read sorts on
    # the server after all.
    lay.writer.write([d for d in docs if d[0] != "event"] + events[::-1])
    run = lay.catalog()[docs[0][1]["uid"]]
    lay.clear()
    ds = run.primary.read()
    np.testing.assert_array_equal(ds["det"].values, np.arange(2500.0))
    np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 2501))
    unsorted, by_time = lay.reads("event", "find")
    assert not unsorted.sort and by_time.sort == [("time", 1)]
    lazy = run.primary.to_dask(chunks={"det": 700})
    assert lazy["det"].data.numblocks == (4,)
    np.testing.assert_array_equal(lazy["det"].values, np.arange(2500.0))
    np.testing.assert_array_equal(lazy["time"].values, T0 + 1 + np.arange(2500))
    # The run source remembers: its next whole read sorts on the server at once.
    lay.clear()
    np.testing.assert_array_equal(run.primary.read()["det"].values, np.arange(2500.0))
    (op,) = lay.reads("event", "find")
    assert op.sort == [("time", 1)]


@pytest.mark.parametrize(
    "key, how", [("time", "unset"), ("seq_num", "unset"), ("seq_num", "null")]
)
def test_an_event_missing_its_time_or_seq_num_is_named(mongo, layouts, key, how):
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(5)
    events = [d for n, d in docs if n == "event"]
    lay.writer.write(docs)
    change = {"$unset": {key: ""}} if how == "unset" else {"$set": {key: None}}
    lay.mds.event.update_one({"uid": events[2]["uid"]}, change)
    run_uid = docs[0][1]["uid"]
    run = lay.catalog()[run_uid]
    for face in (run.primary.read, run.primary.to_dask):
        with pytest.raises(BadDocumentError) as info:
            face()
        message = str(info.value)
        assert f"Run {run_uid!r}" in message
        assert f"event {events[2]['uid']!r}" in message, message
        assert f"has no {key!r}" in message


def test_events_with_equal_times_keep_their_rows_across_windows(mongo, layouts):
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(2500)
    for name, doc in docs:
        if name == "event":
            doc["time"] = T0 + 1  # a coarse clock: every event at one time
    lay.writer.write(docs)
    run = lay.catalog()[docs[0][1]["uid"]]
    eager = run.primary.read()
    lazy = run.primary.to_dask(chunks={"det": 700})
    assert lazy["det"].data.numblocks == (4,)
    for ds in (eager, lazy.compute()):
        np.testing.assert_array_equal(ds["det"].values, np.arange(2500.0))
        np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 2501))


@pytest.mark.parametrize("page_size", [2, 3, 4])
def test_equal_times_inserted_out_of_seq_order_keep_every_chunk_aligned(mongo, layouts, page_size):
    # Sorting by time alone, the server may order events with equal times
    # differently in a window (skip/limit) than in the whole descriptor the
    # row index was read from: each chunk checks it got the indexed events.
    lay = Layout("normalized", mongo, layouts)
    docs, desc = _run_with_events(6)
    events = [d for n, d in docs if n == "event"]
    for event in events:
        event["time"] = T0 + 1
    by_seq = {e["seq_num"]: e for e in events}
    order = [by_seq[s] for s in (1, 2, 4, 3, 5, 6)]
    lay.writer.write([(n, d) for n, d in docs if n != "event"] + [("event", e) for e in order])
    cat = lay.catalog()
    # Page size 4: the swapped pair is inside one page; 2 and 3: across two.
    cat.driver.event_page_size = page_size
    run = cat[docs[0][1]["uid"]]
    lazy = run.primary.to_dask(chunks={"det": 3})
    assert lazy["det"].data.numblocks == (2,)
    for ds in (run.primary.read(), lazy.compute()):
        np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 7))
        np.testing.assert_array_equal(ds["det"].values, np.arange(6.0))


class EchoHandler:
    """Returns the datum kwarg: external data without files."""

    calls = 0

    def __init__(self, path, **kwargs):
        pass

    def __call__(self, value):
        EchoHandler.calls += 1
        return np.float64(value)


def test_datums_fetched_in_bulk(lay):
    docs, desc = _run_with_events(50, external=True)
    lay.writer.write(docs)
    uid = docs[0][1]["uid"]
    src = lay.driver().run(uid)
    ids = [d["datum_id"] for n, d in docs if n == "datum"]
    lay.clear()
    found = src.datums(ids[::-1])
    assert list(found) == ids[::-1] or set(found) == set(ids)
    assert [found[i]["datum_kwargs"]["value"] for i in ids] == list(range(50))
    (op,) = lay.reads("datum", "find")
    assert op.filter == {"datum_id": {"$in": ids[::-1]}}
    # Filling a whole column: datums in one query, not one per event.
    cat = lay.catalog(handler_registry={"ECHO": EchoHandler})
    lay.clear()
    ds = cat[uid].primary.read()
    assert ds["ext"].values.tolist() == [float(i) for i in range(50)]
    assert len(lay.reads("datum", "find")) == 1


def test_estimated_count_not_used_with_a_query(lay):
    lay.add_starts(_starts(20))
    driver = lay.driver()
    lay.clear()
    assert driver.count({"scan_id": 3}) == 3
    assert [o.op for o in lay.reads()] == ["count_documents"]
