"""Recognising a MongoDB URI and opening it in the layout its database holds
(what ``intake-bluesky ls mongodb://...`` asks of the catalogs)."""

from __future__ import annotations

import pytest

from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog
from intake_bluesky.mongo._layout import open_uri


def test_the_normalized_catalog_recognises_mongodb_uris():
    assert BlueskyMongoCatalog.guess_can_open("mongodb://host:27017/mds")
    assert BlueskyMongoCatalog.guess_can_open("mongodb+srv://db.facility/mds")
    assert not BlueskyMongoCatalog.guess_can_open("data/runs")
    assert not BlueskyMongoCatalog.guess_can_open("s3://bucket/runs")
    # One recogniser per URI: the layout is told by open_store.
    assert not BlueskyMongoEmbeddedCatalog.guess_can_open("mongodb://host:27017/mds")


def test_what_cannot_be_opened_says_why():
    with pytest.raises(ValueError, match="opened from a URI"):
        BlueskyMongoCatalog.open_store("data/runs")
    with pytest.raises(ValueError, match="normalized layout only"):
        open_uri("mongodb://host/db", layout="embedded", assets="mongodb://host/assets")
    with pytest.raises(ValueError, match="must be one of"):
        open_uri("mongodb://host/db", layout="flat")
    with pytest.raises(ValueError, match="contradicts --layout normalized"):
        BlueskyMongoEmbeddedCatalog.open_store("mongodb://host/db", layout="normalized")


@pytest.fixture
def databases(real_mongo, layouts, dumps):
    """URIs of databases holding the samples in each layout, and an empty one."""
    names = {}
    for tag, dump in (("mds", "mds"), ("assets", "assets"), ("embedded", "embedded")):
        db = real_mongo.database(tag)
        layouts.load_dump(db, dumps[dump])
        names[tag] = real_mongo.uri(db)
    names["empty"] = real_mongo.uri(real_mongo.database("empty"))
    return names


def test_open_store_tells_the_layout(databases):
    normalized = BlueskyMongoCatalog.open_store(databases["mds"], assets=databases["assets"])
    assert type(normalized) is BlueskyMongoCatalog and len(normalized) == 2
    embedded = BlueskyMongoCatalog.open_store(databases["embedded"], root_map={"/a": "/b"})
    assert type(embedded) is BlueskyMongoEmbeddedCatalog and len(embedded) == 2
    with pytest.raises(ValueError, match="normalized layout only"):
        BlueskyMongoCatalog.open_store(databases["embedded"], assets=databases["assets"])
    with pytest.raises(ValueError, match="no runs in either layout"):
        BlueskyMongoCatalog.open_store(databases["empty"])
    # Given, a layout is not detected: an empty database is just empty.
    assert len(BlueskyMongoCatalog.open_store(databases["empty"], layout="normalized")) == 0
    assert len(BlueskyMongoEmbeddedCatalog.open_store(databases["mds"])) == 0


def test_a_database_with_runs_in_both_layouts(real_mongo, layouts, dumps):
    db = real_mongo.database("both")
    layouts.load_dump(db, {"run_start": dumps["mds"]["run_start"]})
    layouts.load_dump(db, {"header": dumps["embedded"]["header"]})
    with pytest.raises(ValueError, match=r"both layouts \(2 normalized, 2 embedded\)"):
        BlueskyMongoCatalog.open_store(real_mongo.uri(db))
