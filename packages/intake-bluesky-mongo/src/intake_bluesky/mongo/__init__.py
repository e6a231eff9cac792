"""Bluesky runs stored in MongoDB, as intake catalogs.

Reads both layouts that suitcase-mongo writes: normalized
(:class:`BlueskyMongoCatalog`: ``run_start``, ``run_stop``,
``event_descriptor``, ``event``, ``resource``, ``datum``) and embedded
(:class:`BlueskyMongoEmbeddedCatalog`: ``header``, ``event`` pages, ``datum``
pages). Searching, counting, sorting, paging, field selection and row windows
run on the server.

Examples
--------
Store a small run the way suitcase-mongo's normalized serializer does (one
document per event) in a mongomock database, and read it back:

>>> import mongomock
>>> from event_model import compose_run
>>> db = mongomock.MongoClient()["mds"]
>>> bundle = compose_run(metadata={"plan_name": "count", "scan_id": 1})
>>> desc = bundle.compose_descriptor(
...     name="primary",
...     data_keys={"det": {"source": "sim", "dtype": "number", "shape": []}},
... )
>>> events = [desc.compose_event(data={"det": v}, timestamps={"det": 0.0}) for v in (1.5, 2.5)]
>>> _ = db.run_start.insert_one(dict(bundle.start_doc))
>>> _ = db.event_descriptor.insert_one(dict(desc.descriptor_doc))
>>> _ = db.event.insert_many([dict(e) for e in events])
>>> _ = db.run_stop.insert_one(dict(bundle.compose_stop()))
>>> cat = BlueskyMongoCatalog(db)
>>> run = cat[1]
>>> run.primary.read()["det"].values.tolist()
[1.5, 2.5]
>>> list(cat.search({"plan_name": "count"})) == [bundle.start_doc["uid"]]
True

With a server, pass URIs that name the databases (passwords are never shown):

>>> cat = BlueskyMongoCatalog("mongodb://user:secret@localhost:27017/mds")  # doctest: +SKIP
"""

from ._catalog import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog
from ._connect import (
    DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    DatabaseRef,
    MongoConnectionError,
    redact_uri,
)
from ._embedded import EmbeddedDriver, EmbeddedRunSource, prefix_query
from ._indexes import create_embedded_indexes, create_indexes
from ._normalized import NormalizedDriver, NormalizedRunSource

__all__ = [
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "BlueskyMongoCatalog",
    "BlueskyMongoEmbeddedCatalog",
    "DatabaseRef",
    "EmbeddedDriver",
    "EmbeddedRunSource",
    "MongoConnectionError",
    "NormalizedDriver",
    "NormalizedRunSource",
    "create_embedded_indexes",
    "create_indexes",
    "prefix_query",
    "redact_uri",
]
