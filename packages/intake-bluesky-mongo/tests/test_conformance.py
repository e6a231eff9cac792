"""The core's conformance kit over both Mongo layouts, stored as
suitcase-mongo stores documents (see ``_suitcase.py``)."""

import pytest

from intake_bluesky.core._model.pages import unpack_datum_page, unpack_event_page
from intake_bluesky.core.testing import ConformanceTests, RunStore
from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog

#: Tests mongomock cannot run: name -> why (they run on the real server).
MONGOMOCK_LIMITS = {
    "test_follow_sees_every_document_as_written": (
        "mongomock is not thread-safe: the writer thread's replace_one clears and refills "
        "the stored header in place while the following thread copies it "
        "(RuntimeError: OrderedDict mutated during iteration)"
    ),
}


@pytest.fixture(autouse=True)
def _mongomock_limits(request):
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "mongo" not in callspec.params:
        return
    name = request.node.originalname
    kind = request.getfixturevalue("mongo").kind
    if kind == "mongomock" and name in MONGOMOCK_LIMITS:
        pytest.skip(MONGOMOCK_LIMITS[name])


class NormalizedStore(RunStore):
    """Normalized layout, metadatastore and asset registry in two databases."""

    #: BSON holds 64-bit signed integers only (for the kit's round trip).
    integer_range = (-(2**63), 2**63 - 1)

    def __init__(self, writer):
        self.mds, self.assets = writer.mds, writer.assets
        self.writer = writer

    def write_run(self, documents):
        self.writer.write(documents)

    def append_documents(self, documents, new):
        self.writer.append(new)

    def delete_run(self, uid):
        self.writer.delete(uid)

    def as_stored(self, documents):
        # One document per event and per datum, pages unpacked. Events and
        # datums live in separate collections, so their interleaving is not
        # stored: each datum comes back just before the first event using it.
        out, waiting = [], {}
        for name, doc in documents:
            if name == "event_page":
                events = [("event", event) for event in unpack_event_page(doc)]
            elif name == "event":
                events = [(name, doc)]
            elif name == "datum_page":
                waiting.update((d["datum_id"], d) for d in unpack_datum_page(doc))
                continue
            elif name == "datum":
                waiting[doc["datum_id"]] = doc
                continue
            else:
                if name == "stop":
                    out.extend(("datum", d) for d in waiting.values())
                out.append((name, doc))
                continue
            for name, event in events:
                for value in event["data"].values():
                    if isinstance(value, str) and value in waiting:
                        out.append(("datum", waiting.pop(value)))
                out.append((name, event))
        return out

    def catalog(self, **common):
        return BlueskyMongoCatalog(self.mds, self.assets, **common)


class EmbeddedStore(RunStore):
    """Embedded layout (header, event pages, datum pages)."""

    #: BSON holds 64-bit signed integers only (for the kit's round trip).
    integer_range = (-(2**63), 2**63 - 1)

    def __init__(self, writer):
        self.db = writer.db
        self.writer = writer

    def write_run(self, documents):
        self.writer.write(documents)

    def append_documents(self, documents, new):
        self.writer.append(documents, new)

    def delete_run(self, uid):
        self.writer.delete(uid)

    def as_stored(self, documents):
        return None  # events and datums regrouped into pages of page_size rows

    def catalog(self, **common):
        return BlueskyMongoEmbeddedCatalog(self.db, **common)


class TestNormalizedConformance(ConformanceTests):
    @pytest.fixture
    def store(self, mongo, layouts):
        return NormalizedStore(
            layouts.NormalizedWriter(mongo.database("mds"), mongo.database("assets"))
        )


class TestEmbeddedConformance(ConformanceTests):
    @pytest.fixture
    def store(self, mongo, layouts):
        return EmbeddedStore(layouts.EmbeddedWriter(mongo.database("datastore")))


class TestEmbeddedSmallPagesConformance(ConformanceTests):
    """Pages of 4 rows: descriptors span several pages, windows cut them."""

    @pytest.fixture
    def store(self, mongo, layouts):
        return EmbeddedStore(layouts.EmbeddedWriter(mongo.database("datastore"), page_size=4))
