"""Catalogs of every backend served through tiled (in process), read with
tiled's client and bluesky-tiled-plugins' client classes: the values, the
search results, the documents and the order are our own."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tiled.server")
pytest.importorskip("bluesky_tiled_plugins")

from bluesky_tiled_plugins.clients.bluesky_event_stream import (
    BlueskyEventStreamV2Mongo,
)
from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV2Mongo
from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import (
    CatalogOfBlueskyRuns,
)
from bluesky_tiled_plugins.queries import (
    PartialUID,
    ScanID,
    ScanIDRange,
    TimeRange,
)
from tiled.client import Context, from_context
from tiled.client.container import Container
from tiled.queries import (
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    Key,
    KeyPresent,
    KeysFilter,
    Like,
    NotEq,
    NotIn,
    Regex,
)

from intake_bluesky.tiled import build_app


def _helpers():
    name = "intake_bluesky_tiled_tests_serving"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("_serving.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


h = _helpers()


@contextmanager
def served(catalog, **kwargs):
    """A client of ``catalog`` served by an in-process tiled app."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = Context.from_app(build_app(catalog, **kwargs))
    with context:
        yield from_context(context)


# ------------------------------------------------------------------- stores
@pytest.fixture(scope="module")
def secantus():
    """A MongoDB wire-protocol server in this process (SecantusDB, in memory)."""
    import socket

    import secantus

    server = secantus.SecantusDBServer(storage_path=":memory:")
    server.start()
    yield server
    # Wake its accept() so that the port is freed at once (see the mongo
    # package's conftest).
    listening = getattr(server, "_socket", None)
    if listening is not None:
        try:
            listening.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    server.stop()


@pytest.fixture
def examples(tmp_path):
    return h.example_documents(tmp_path / "external")


@pytest.fixture(params=["memory", "jsonl", "msgpack", "mongomock", "secantus"])
def store(request, examples, tmp_path):
    """The kit's example runs in a store of each kind."""
    runs, registry = examples
    kind = request.param
    if kind == "memory":
        return h.memory_store(runs, registry)
    if kind in ("jsonl", "msgpack"):
        return h.file_store(kind, runs, registry, tmp_path / kind)
    if kind == "mongomock":
        import mongomock

        return h.mongo_store(mongomock.MongoClient()["mds"], runs, registry)
    import pymongo

    server = request.getfixturevalue("secantus")
    client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    name = f"serve_{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: (client.drop_database(name), client.close()))
    return h.mongo_store(client[name], runs, registry)


# -------------------------------------------------------------------- tests
def test_every_value_read_through_tiled_is_ours(store):
    with served(store) as client:
        assert isinstance(client, CatalogOfBlueskyRuns)
        assert list(client) == list(store)
        assert len(client) == len(store) == 5
        for uid in store:
            run = client[uid]
            assert isinstance(run, BlueskyRunV2Mongo)
            for name in run:
                assert isinstance(run[name], BlueskyEventStreamV2Mongo)
            h.assert_served_run(run, store[uid])


def test_lookups_and_order_are_ours(store):
    with served(store) as client:
        for n in (1, 2, 3, 5):
            assert client[-n].start["uid"] == store[-n].start["uid"]
        # scan_id 2 is used twice: the newest wins.
        assert client[2].start["uid"] == store[2].start["uid"]
        assert client[4].start["uid"] == store[4].start["uid"]
        with pytest.raises(KeyError):
            client[99]
        assert client["c0ffee"].start["uid"] == store["c0ffee"].start["uid"]
        with pytest.raises(KeyError):
            client["fffff"]
        uids = list(store)
        assert [r.start["uid"] for r in client.values()[1:4]] == uids[1:4]
        # tiled slices from the end newest first.
        assert [r.start["uid"] for r in client.values()[-1:-4:-1]] == uids[-1:-4:-1]
        assert list(client.keys().head(2)) == uids[:2]
        # Pages smaller than the catalog: every run once, in order.
        paged = Container._keys_slice(client, 0, None, 1, page_size=2)
        assert list(paged) == uids
        backwards = Container._keys_slice(client, 0, None, -1, page_size=2)
        assert list(backwards) == uids[::-1]


def test_sorting_is_the_stores(store):
    with served(store) as client:
        by_scan = client.sort(("start.scan_id", -1))
        want = [s["uid"] for s in store.driver.search({}, sort=(("scan_id", -1), ("time", 1)))]
        assert list(by_scan) == want
        assert [s for s, _ in by_scan.items()] == want
        assert list(client.sort(("start.time", -1))) == list(store)[::-1]
        with pytest.raises(Exception, match="start documents only"):
            list(client.sort(("stop.time", 1)))


def _queries(uids):
    """(tiled query, the same as a Mongo query) pairs over the example runs."""
    return [
        (Key("plan_name") == "scan", {"plan_name": "scan"}),
        (Eq("start.sample.name", "Fe"), {"sample.name": "Fe"}),
        (Key("scan_id") >= 2, {"scan_id": {"$gte": 2}}),
        (Key("scan_id") < 3, {"scan_id": {"$lt": 3}}),
        (Comparison("gt", "start.time", 1700000200.0), {"time": {"$gt": 1700000200.0}}),
        (NotEq("start.plan_name", "count"), {"plan_name": {"$ne": "count"}}),
        (In("start.plan_name", ["count", "fly"]), {"plan_name": {"$in": ["count", "fly"]}}),
        (NotIn("start.operator", ["bob"]), {"operator": {"$nin": ["bob"]}}),
        (Regex("start.operator", "^(al|ca)"), {"operator": {"$regex": "^(al|ca)"}}),
        (
            Regex("start.plan_name", "SCAN", case_sensitive=False),
            {"plan_name": {"$regex": "scan"}},
        ),
        (Contains("start.motors", "motor"), {"motors": "motor"}),
        (KeyPresent("start.num_points", True), {"num_points": {"$exists": True}}),
        (KeyPresent("start.num_points", False), {"num_points": {"$exists": False}}),
        (Like("start.uid", uids[2][:6] + "%"), {"uid": {"$regex": "^" + uids[2][:6]}}),
        (FullText("carol"), {"operator": "carol"}),
    ]


def test_search_results_are_ours(store):
    uids = list(store)
    with served(store) as client:
        for query, mongo in _queries(uids):
            want = list(store.search(mongo))
            assert want, mongo  # every query selects something
            assert list(client.search(query)) == want, query
            assert len(client.search(query)) == len(want), query
        # Nested searches narrow (AND), in our order.
        nested = client.search(Key("scan_id") >= 2).search(Key("plan_name") == "count")
        assert list(nested) == list(store.search({"scan_id": {"$gte": 2}, "plan_name": "count"}))
        # A key lookup inside search results only finds what they hold.
        scans = client.search(Key("plan_name") == "scan")
        assert scans[uids[0]].start["uid"] == uids[0]
        with pytest.raises(KeyError):
            scans[uids[1]]


def test_bluesky_queries_are_answered_by_the_server(store):
    """bluesky-tiled-plugins' query types, sent as they are (as older
    clients do), not rewritten by its client."""
    scan2 = list(store.search({"scan_id": 2}))
    start = store[uuid_of(store, 0)].start["time"]
    with served(store) as client:
        assert list(Container.search(client, ScanID(2))) == scan2[-1:]
        assert list(Container.search(client, ScanID(2, duplicates="all"))) == scan2
        assert list(Container.search(client, ScanID(1, 3))) == list(
            store.search({"scan_id": {"$in": [1, 3]}})
        )
        assert list(Container.search(client, ScanIDRange(1, 3))) == [
            list(store.search({"scan_id": 1}))[0],
            scan2[-1],
        ]
        assert list(Container.search(client, PartialUID("c0ffee"))) == list(
            store.search({"uid": {"$regex": "^c0ffee"}})
        )
        window = TimeRange(since=start + 50, until=start + 250, timezone="UTC")
        want = list(store.search({"time": {"$gte": start + 50, "$lt": start + 250}}))
        assert want and list(Container.search(client, window)) == want
        # The same through the client's own rewriting.
        assert list(client.search(window)) == want
        assert list(client.search(ScanIDRange(1, 3))) == list(
            store.search({"scan_id": {"$gte": 1, "$lt": 3}})
        )


def uuid_of(store, position: int) -> str:
    return list(store)[position]


def test_stop_keys_are_refused_clearly(store):
    with served(store) as client:
        with pytest.raises(Exception, match="start documents only"):
            list(client.search(Key("stop.exit_status") == "success"))


def test_keys_filter_and_unsupported_queries(examples):
    runs, registry = examples
    store = h.memory_store(runs, registry)
    uids = list(store)
    with served(store) as client:
        picked = Container.search(client, KeysFilter([uids[3], uids[1], "nope"]))
        assert list(picked) == [uids[1], uids[3]]
        # A query type the tree does not answer is a 400 naming it.
        response = client.context.http_client.get(
            "/api/v1/search/", params={"filter[structure_family][condition][value]": "array"}
        )
        assert response.status_code == 400
        assert "StructureFamilyQuery" in response.json()["detail"]


def test_documents_are_canonical(store):
    with served(store) as client:
        for uid in store:
            ours = [(name, h.as_json(doc)) for name, doc in store[uid].canonical(fill="no")]
            theirs = [(name, dict(doc)) for name, doc in client[uid].documents()]
            # bluesky-tiled-plugins' client reads datum pages only: a datum
            # comes as a one-row page.
            assert [n for n, _ in theirs] == ["datum_page" if n == "datum" else n for n, _ in ours]
            for (name, doc), (_, served_doc) in zip(ours, theirs, strict=True):
                if name == "datum":
                    assert served_doc["datum_id"] == [doc["datum_id"]]
                    assert served_doc["resource"] == doc["resource"]
                    assert served_doc["datum_kwargs"] == {
                        k: [v] for k, v in doc["datum_kwargs"].items()
                    }
                else:
                    assert served_doc == doc, name


def test_filled_documents_hold_the_external_data(examples):
    runs, registry = examples
    store = h.memory_store(runs, registry)
    with served(store) as client:
        for uid in store:
            ours = list(store[uid].canonical(fill="yes"))
            theirs = list(client[uid].documents(fill=True))
            assert [n for n, _ in theirs] == ["datum_page" if n == "datum" else n for n, _ in ours]
            for (name, doc), (_, served_doc) in zip(ours, theirs, strict=True):
                if name in ("event", "event_page"):
                    assert served_doc["filled"] == h.as_json(doc.get("filled", {}))
                    for key, value in doc["data"].items():
                        np.testing.assert_array_equal(served_doc["data"][key], value)


def test_tiff_store(tmp_path):
    store = h.tiff_store(tmp_path / "tiff")
    with served(store) as client:
        assert list(client) == list(store) and len(store) == 2
        for uid in store:
            h.assert_served_run(client[uid], store[uid])
        image = client[-1]["primary"]["data"]["image"].read()
        assert image.dtype == np.float32 and image.shape == (3, 3, 2)
        assert image[2].tolist() == (np.arange(6).reshape(3, 2) + 1200.0).tolist()


def test_ophyd_async_hdf5_runs(tmp_path):
    """Recorded ophyd-async runs (HDF5 step scan, fly scans without events, 3
    frames per event) in a JSONL store: frames come from the HDF5 files,
    in the chunks our readers use."""
    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    documents = h.ophyd_async_documents(tmp_path / "h5")
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for docs in documents.values():
        lines = [h.json.dumps([name, doc]) for name, doc in docs]
        (folder / f"{docs[0][1]['uid']}.jsonl").write_text("\n".join(lines) + "\n")
    store = BlueskyJSONLCatalog(str(folder))
    assert len(store) == len(documents)
    with served(store) as client:
        for uid in store:
            h.assert_served_run(client[uid], store[uid])
        fly = store.search({"plan_name": {"$regex": "fly"}})
        assert len(fly)
        for uid in fly:
            for name in store[uid]:
                ours = store[uid][name].read()
                frames = [k for k in ours.data_vars if ours[k].ndim >= 3]
                for key in frames:
                    served_array = client[uid][name]["data"][key]
                    # One block, read alone, is that block of the file.
                    first = store[uid][name].to_dask()[key].chunks[0][0]
                    np.testing.assert_array_equal(
                        served_array.read_block((0,) + (0,) * (ours[key].ndim - 1)),
                        ours[key].values[:first],
                    )


def test_api_key_is_required_and_checked(examples):
    runs, registry = examples
    store = h.memory_store(runs, registry)
    app = build_app(store, api_key="secret")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with Context.from_app(app, api_key="secret") as context:
            assert from_context(context)[-1].start["uid"] == store[-1].start["uid"]
        for key in ("wrong", None):
            with Context.from_app(app, api_key=key) as context:
                response = context.http_client.get("/api/v1/metadata/")
                assert response.status_code == 401, key
                uid = list(store)[0]
                response = context.http_client.get(f"/api/v1/documents/{uid}")
                assert response.status_code == 401, key


def test_public_app_reads_without_a_key_and_writes_nothing(examples):
    runs, registry = examples
    store = h.memory_store(runs, registry)
    uid = list(store)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = Context.from_app(build_app(store, public=True), api_key=None)
    with context:
        http = context.http_client
        assert http.get(f"/api/v1/metadata/{uid}").status_code == 200
        assert http.get(f"/api/v1/documents/{uid}").status_code == 200
        assert http.post(f"/api/v1/documents/{uid}", json={}).status_code == 405
        assert http.put(f"/api/v1/metadata/{uid}", json={}).status_code in (401, 403, 405)
        assert http.delete(f"/api/v1/metadata/{uid}").status_code in (401, 403, 405)
        assert len(store) == 5
        # Paths are uids looked up in the store, never file names.
        for path in ("%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2fetc%2fpasswd", "etc/passwd"):
            assert http.get(f"/api/v1/metadata/{path}").status_code in (404, 422), path
        assert http.get("/api/v1/documents/").status_code == 404
        assert http.get(f"/api/v1/documents/{uid}/primary").status_code == 404


def test_a_store_that_grows_is_served_as_it_grows(tmp_path, examples):
    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    runs, registry = examples
    folder = tmp_path / "growing"
    folder.mkdir()
    store = BlueskyJSONLCatalog(str(folder), **registry)

    def write(docs):
        lines = [h.json.dumps([n, d], default=h._plain) for n, d in docs]
        (folder / f"{docs[0][1]['uid']}.jsonl").write_text("\n".join(lines) + "\n")

    write(runs[0])
    with served(store) as client:
        assert len(client) == 1
        write(runs[1])
        time.sleep(1.1)  # tiled's client trusts a length it read for 1 s
        assert len(client) == 2
        assert client[-1].start["uid"] == runs[1][0][1]["uid"]
