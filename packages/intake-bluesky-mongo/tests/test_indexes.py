"""Index creation: what reads need, idempotent, aware of suitcase-mongo's."""

import pytest

from intake_bluesky.mongo import (
    BlueskyMongoCatalog,
    BlueskyMongoEmbeddedCatalog,
    create_embedded_indexes,
    create_indexes,
)


def _keys(db, collection):
    return {
        tuple((k, int(d)) for k, d in v["key"])
        for v in db[collection].index_information().values()
    }


def _load_dump_indexes(db, dump):
    """Create the indexes suitcase-mongo had made (as in the dump)."""
    for collection, content in dump.items():
        for name, spec in content["indexes"].items():
            keys = [(k, d) for k, d in spec["key"]]
            if name == "_id_" or not all(isinstance(d, int) for _, d in keys):
                continue  # _id exists; text indexes are not needed here
            db[collection].create_index(keys, name=name, unique=spec.get("unique", False))


def test_normalized_indexes_created_once(mongo):
    mds, assets = mongo.database("mds"), mongo.database("assets")
    created = create_indexes(mds, assets)
    assert created == [
        "run_start: uid_1",
        "run_start: time_1__id_1",
        "run_start: scan_id_1_time_1__id_1",
        "run_stop: run_start_1",
        "event_descriptor: run_start_1_time_1",
        "event: descriptor_1_time_1",
        "resource: run_start_1",
        "resource: uid_1",
        "datum: datum_id_1",
        "datum: resource_1",
        "stream_resource: run_start_1",
        "stream_resource: uid_1",
        "stream_datum: descriptor_1",
    ]
    assert (("datum_id", 1),) in _keys(assets, "datum")
    assert (("descriptor", 1), ("time", 1)) in _keys(mds, "event")
    assert "datum" not in mds.list_collection_names()
    before = {c: _keys(mds, c) for c in ("run_start", "event")}
    assert create_indexes(mds, assets) == []
    assert {c: _keys(mds, c) for c in ("run_start", "event")} == before


def test_suitcase_indexes_are_reused(mongo, dumps):
    mds, assets = mongo.database("mds"), mongo.database("assets")
    _load_dump_indexes(mds, dumps["mds"])
    _load_dump_indexes(assets, dumps["assets"])
    created = create_indexes(mds, assets)
    # suitcase-mongo's uid_1, time_-1__id_-1, run_start_1, run_start_-1_time_-1,
    # descriptor_-1_time_1, datum_id_1, resource_1 serve the same reads.
    assert created == [
        "run_start: scan_id_1_time_1__id_1",
        "resource: run_start_1",
        "stream_resource: run_start_1",
        "stream_resource: uid_1",
        "stream_datum: descriptor_1",
    ]
    assert create_indexes(mds, assets) == []


def test_embedded_indexes_created_once(mongo):
    db = mongo.database("datastore")
    created = create_embedded_indexes(db)
    assert created == [
        "header: start.uid_1",
        "header: start.time_1__id_1",
        "header: start.scan_id_1_start.time_1__id_1",
        "event: descriptor_1_first_index_1",
        "event: descriptor_1_last_index_1",
        "datum: resource_1_first_index_1",
        "datum: datum_id_1",
        "stream_datum: descriptor_1",
    ]
    assert create_embedded_indexes(db) == []


@pytest.mark.parametrize("layout", ["normalized", "embedded"])
def test_reads_same_with_indexes(mongo, normalized_samples, embedded_samples, layout):
    if layout == "normalized":
        mds, assets = normalized_samples
        cat = BlueskyMongoCatalog(mds, assets)
        before = (list(cat), cat[1].primary(exclude=["img"]).read())
        create_indexes(mds, assets)
    else:
        cat = BlueskyMongoEmbeddedCatalog(embedded_samples)
        before = (list(cat), cat[1].primary(exclude=["img"]).read())
        create_embedded_indexes(embedded_samples)
    assert list(cat) == before[0]
    assert cat[1].primary(exclude=["img"]).read().identical(before[1])
    assert cat["1b33"].metadata["start"]["scan_id"] == 1


def test_index_functions_take_uris(dead_port_uri):
    from intake_bluesky.mongo import MongoConnectionError

    with pytest.raises(MongoConnectionError) as info:
        create_indexes(dead_port_uri, server_selection_timeout_ms=100)
    assert "secret" not in str(info.value)


@pytest.fixture
def dead_port_uri():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"mongodb://u:secret@127.0.0.1:{port}/mds"
