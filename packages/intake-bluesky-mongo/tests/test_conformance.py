"""The core's conformance kit over both Mongo layouts, stored as
suitcase-mongo stores documents (see ``_suitcase.py``)."""

import pytest

from intake_bluesky.core._model.pages import unpack_datum_page, unpack_event_page
from intake_bluesky.core.testing import ConformanceTests, RunStore
from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog

#: Why a store over mongomock cannot append while a run is followed (these
#: tests run on the real server).
MONGOMOCK_THREADS = (
    "mongomock is not thread-safe: the writer thread's replace_one clears and refills "
    "the stored header in place while the following thread copies it "
    "(RuntimeError: OrderedDict mutated during iteration)"
)
#: BSON holds 64-bit signed integers only (for the kit's round trip).
BSON_INTEGERS = "BSON holds 64-bit signed integers only"


def _on(store, mongo):
    """``store`` with the capabilities of the ``mongo`` server it writes to."""
    if mongo.kind == "mongomock":
        store.supports_concurrent_appends = False
        store.limits = {**store.limits, "supports_concurrent_appends": MONGOMOCK_THREADS}
    return store


class NormalizedStore(RunStore):
    """Normalized layout, metadatastore and asset registry in two databases."""

    integer_range = (-(2**63), 2**63 - 1)
    limits = {"integer_range": BSON_INTEGERS}

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

    integer_range = (-(2**63), 2**63 - 1)
    # Events and datums are regrouped into pages of page_size rows.
    keeps_event_form = False
    limits = {"integer_range": BSON_INTEGERS}

    def __init__(self, writer):
        self.db = writer.db
        self.writer = writer

    def write_run(self, documents):
        self.writer.write(documents)

    def append_documents(self, documents, new):
        self.writer.append(documents, new)

    def delete_run(self, uid):
        self.writer.delete(uid)

    def catalog(self, **common):
        return BlueskyMongoEmbeddedCatalog(self.db, **common)


class TestNormalizedConformance(ConformanceTests):
    @pytest.fixture
    def store(self, mongo, layouts):
        return _on(
            NormalizedStore(
                layouts.NormalizedWriter(mongo.database("mds"), mongo.database("assets"))
            ),
            mongo,
        )


class TestEmbeddedConformance(ConformanceTests):
    @pytest.fixture
    def store(self, mongo, layouts):
        return _on(EmbeddedStore(layouts.EmbeddedWriter(mongo.database("datastore"))), mongo)


class TestEmbeddedSmallPagesConformance(ConformanceTests):
    """Pages of 4 rows: descriptors span several pages, windows cut them."""

    @pytest.fixture
    def store(self, mongo, layouts):
        store = EmbeddedStore(layouts.EmbeddedWriter(mongo.database("datastore"), page_size=4))
        return _on(store, mongo)
