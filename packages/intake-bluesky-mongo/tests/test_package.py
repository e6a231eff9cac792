"""Packaging: entry points, intake registration, YAML catalogs, docstrings."""

import doctest
import importlib
import socket
from importlib.metadata import entry_points

import intake
import pytest

from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog


def test_namespace_package_has_no_init():
    import os

    import intake_bluesky.core
    import intake_bluesky.mongo

    assert getattr(intake_bluesky, "__file__", None) is None
    for entry in intake_bluesky.__path__:
        assert not os.path.exists(os.path.join(entry, "__init__.py"))


@pytest.mark.parametrize(
    ("group", "name", "cls"),
    [
        ("intake.drivers", "bluesky_mongo_normalized_catalog", BlueskyMongoCatalog),
        ("intake.drivers", "bluesky_mongo_embedded_catalog", BlueskyMongoEmbeddedCatalog),
        ("intake_bluesky.backends", "mongo_normalized", BlueskyMongoCatalog),
        ("intake_bluesky.backends", "mongo_embedded", BlueskyMongoEmbeddedCatalog),
    ],
)
def test_entry_points(group, name, cls):
    (ep,) = [ep for ep in entry_points(group=group) if ep.name == name]
    assert ep.load() is cls


def test_core_lists_the_backends():
    from intake_bluesky.core import backends

    found = backends()
    assert found["mongo_normalized"] is BlueskyMongoCatalog
    assert found["mongo_embedded"] is BlueskyMongoEmbeddedCatalog


def test_intake_openers(normalized_samples, embedded_samples):
    mds, assets = normalized_samples
    cat = intake.open_bluesky_mongo_normalized_catalog(mds, assets, query={"scan_id": 2})
    assert isinstance(cat, BlueskyMongoCatalog)
    assert list(cat) == ["e263406e-e0d7-4e17-9c66-1e01c44c4b14"]
    cat = intake.open_bluesky_mongo_embedded_catalog(embedded_samples)
    assert len(cat) == 2


@pytest.mark.parametrize(
    "driver",
    [
        "bluesky_mongo_normalized_catalog",
        "intake_bluesky.mongo.BlueskyMongoCatalog",
        "bluesky_mongo_embedded_catalog",
        "intake_bluesky.mongo.BlueskyMongoEmbeddedCatalog",
    ],
)
def test_yaml_catalog_file(tmp_path, driver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    arg = "datastore_db" if "mbedded" in driver else "metadatastore_db"
    path = tmp_path / "catalog.yml"
    path.write_text(
        "sources:\n"
        "  runs:\n"
        f"    driver: {driver}\n"
        "    args:\n"
        f"      {arg}: mongodb://alice:s3cret@127.0.0.1:{port}/mds\n"
        "      server_selection_timeout_ms: 100\n"
        "      query: {plan_name: scan}\n"
    )
    top = intake.open_catalog(str(path))
    cat = top["runs"]
    expected = BlueskyMongoEmbeddedCatalog if "mbedded" in driver else BlueskyMongoCatalog
    assert type(cat) is expected
    assert cat.query == {"plan_name": "scan"}
    assert "s3cret" not in repr(cat) and "s3cret" not in cat.yaml()


@pytest.mark.parametrize(
    "module",
    [
        "intake_bluesky.mongo",
        "intake_bluesky.mongo._catalog",
        "intake_bluesky.mongo._connect",
        "intake_bluesky.mongo._embedded",
        "intake_bluesky.mongo._indexes",
        "intake_bluesky.mongo._normalized",
    ],
)
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module == "intake_bluesky.mongo":
        assert result.attempted >= 10


def test_public_names():
    import intake_bluesky.mongo as mongo

    for name in mongo.__all__:
        assert getattr(mongo, name).__doc__, name
