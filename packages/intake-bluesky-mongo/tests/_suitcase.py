"""Write bluesky documents into MongoDB the way suitcase-mongo lays them out.

Written for these tests from the layouts observed in the sample dumps
(``samples/mds.json``, ``assets.json``, ``embedded.json``), not from
suitcase-mongo's code:

* normalized: ``run_start``, ``run_stop``, ``event_descriptor``, ``event``
  (one document per event, pages unpacked), ``resource``, ``datum`` (one per
  datum, pages unpacked) — plus ``stream_resource``/``stream_datum``, where
  this package reads them (suitcase-mongo itself drops them);
* embedded: ``header`` (``run_id``, ``start: [doc]``, ``descriptors``,
  ``resources``, ``stop: [doc]``, counts), ``event`` column pages per
  descriptor with ``size``/``first_index``/``last_index``, ``datum`` pages per
  resource likewise — plus ``header.stream_resources`` and ``stream_datum``.

numpy values become plain lists/scalars, as BSON requires.
"""

from __future__ import annotations

import copy
from collections import defaultdict

from intake_bluesky.core.testing import plain


def unpack_event_page(page):
    for i, uid in enumerate(page["uid"]):
        yield {
            "descriptor": page["descriptor"],
            "uid": uid,
            "time": page["time"][i],
            "seq_num": page["seq_num"][i],
            "data": {k: v[i] for k, v in page["data"].items()},
            "timestamps": {k: v[i] for k, v in page["timestamps"].items()},
            "filled": {k: v[i] for k, v in page.get("filled", {}).items()},
        }


def unpack_datum_page(page):
    for i, datum_id in enumerate(page["datum_id"]):
        yield {
            "resource": page["resource"],
            "datum_id": datum_id,
            "datum_kwargs": {k: v[i] for k, v in page["datum_kwargs"].items()},
        }


def _events(documents):
    for name, doc in documents:
        if name == "event":
            yield doc
        elif name == "event_page":
            yield from unpack_event_page(doc)


def _datums(documents):
    for name, doc in documents:
        if name == "datum":
            yield doc
        elif name == "datum_page":
            yield from unpack_datum_page(doc)


def _of(documents, wanted):
    return [plain(copy.deepcopy(doc)) for name, doc in documents if name == wanted]


class NormalizedWriter:
    """suitcase.mongo_normalized's layout, into ``mds`` (and ``assets``)."""

    def __init__(self, mds, assets=None):
        self.mds = mds
        self.assets = mds if assets is None else assets

    def write(self, documents):
        """Store a run; a run already stored is replaced (a longer list)."""
        documents = list(documents)
        uid = documents[0][1]["uid"]
        self.delete(uid)
        self.append(documents)

    def append(self, documents):
        """Insert more documents of a run, as a live serializer does."""
        for name, doc in documents:
            doc = plain(copy.deepcopy(doc))
            if name == "start":
                self.mds.run_start.insert_one(doc)
            elif name == "stop":
                self.mds.run_stop.insert_one(doc)
            elif name == "descriptor":
                self.mds.event_descriptor.insert_one(doc)
            elif name == "event":
                self.mds.event.insert_one(doc)
            elif name == "event_page":
                self.mds.event.insert_many([plain(e) for e in unpack_event_page(doc)])
            elif name == "resource":
                self.assets.resource.insert_one(doc)
            elif name == "datum":
                self.assets.datum.insert_one(doc)
            elif name == "datum_page":
                self.assets.datum.insert_many([plain(d) for d in unpack_datum_page(doc)])
            elif name == "stream_resource":
                self.assets.stream_resource.insert_one(doc)
            elif name == "stream_datum":
                self.assets.stream_datum.insert_one(doc)

    def delete(self, uid):
        descriptors = [d["uid"] for d in self.mds.event_descriptor.find({"run_start": uid})]
        resources = [r["uid"] for r in self.assets.resource.find({"run_start": uid})]
        self.mds.run_start.delete_many({"uid": uid})
        self.mds.run_stop.delete_many({"run_start": uid})
        self.mds.event_descriptor.delete_many({"run_start": uid})
        self.mds.event.delete_many({"descriptor": {"$in": descriptors}})
        self.assets.resource.delete_many({"run_start": uid})
        self.assets.datum.delete_many({"resource": {"$in": resources}})
        self.assets.stream_resource.delete_many({"run_start": uid})
        self.assets.stream_datum.delete_many({"descriptor": {"$in": descriptors}})


class EmbeddedWriter:
    """suitcase.mongo_embedded's layout, into one database.

    ``page_size`` rows per event/datum page (suitcase-mongo bounds pages by
    bytes; a small number here makes multi-page descriptors in tests).
    """

    def __init__(self, db, page_size=1000):
        self.db = db
        self.page_size = page_size

    def write(self, documents):
        documents = list(documents)
        self.delete(documents[0][1]["uid"])
        self._store(documents, [])

    def append(self, documents, new):
        """Add ``new`` documents to the stored run ``documents``, as a live
        serializer does: new pages first, then the header, updated in place
        (never deleted, so a reader following the run never misses it)."""
        self._store(list(documents) + list(new), list(documents))

    def _store(self, documents, stored):
        start = plain(copy.deepcopy(documents[0][1]))
        uid = start["uid"]
        descriptors = _of(documents, "descriptor")
        resources = _of(documents, "resource")
        stops = _of(documents, "stop")
        header = {"run_id": uid, "start": [start], "descriptors": descriptors}
        if resources:
            header["resources"] = resources
        stream_resources = _of(documents, "stream_resource")
        if stream_resources:
            header["stream_resources"] = stream_resources
        by_descriptor = defaultdict(list)
        for event in _events(documents):
            by_descriptor[event["descriptor"]].append(plain(event))
        by_resource = defaultdict(list)
        for datum in _datums(documents):
            by_resource[datum["resource"]].append(plain(datum))
        header["event_count"] = sum(len(v) for v in by_descriptor.values())
        header["datum_count"] = sum(len(v) for v in by_resource.values())
        for d in descriptors:
            header[f"count_{d['uid']}"] = len(by_descriptor[d["uid"]])
        if stops:
            header["stop"] = stops
        # Rows already stored (in pages of their own) are not written again.
        had_events = defaultdict(int)
        for event in _events(stored):
            had_events[event["descriptor"]] += 1
        had_datums = defaultdict(int)
        for datum in _datums(stored):
            had_datums[datum["resource"]] += 1
        for descriptor_uid, events in by_descriptor.items():
            for first in range(had_events[descriptor_uid], len(events), self.page_size):
                rows = events[first : first + self.page_size]
                self.db.event.insert_one(self._event_page(descriptor_uid, rows, first))
        for sd in _of(documents, "stream_datum")[len(_of(stored, "stream_datum")) :]:
            self.db.stream_datum.insert_one(sd)
        for resource_uid, datums in by_resource.items():
            for first in range(had_datums[resource_uid], len(datums), self.page_size):
                rows = datums[first : first + self.page_size]
                self.db.datum.insert_one(
                    {
                        "resource": resource_uid,
                        "datum_id": [d["datum_id"] for d in rows],
                        "datum_kwargs": {
                            k: [d["datum_kwargs"][k] for d in rows]
                            for k in rows[0]["datum_kwargs"]
                        },
                        "size": 0,
                        "first_index": first,
                        "last_index": first + len(rows) - 1,
                    }
                )
        self.db.header.replace_one({"run_id": uid}, header, upsert=True)

    @staticmethod
    def _event_page(descriptor_uid, rows, first):
        page = {
            "descriptor": descriptor_uid,
            "uid": [e["uid"] for e in rows],
            "time": [e["time"] for e in rows],
            "seq_num": [e["seq_num"] for e in rows],
            "data": {k: [e["data"][k] for e in rows] for k in rows[0]["data"]},
            "timestamps": {k: [e["timestamps"][k] for e in rows] for k in rows[0]["timestamps"]},
        }
        filled_keys = [k for k in rows[0].get("filled", {})]
        if filled_keys:
            # As in the sample dump: 'filled' is absent when events had none.
            page["filled"] = {k: [e["filled"][k] for e in rows] for k in filled_keys}
        page.update(size=0, first_index=first, last_index=first + len(rows) - 1)
        return page

    def delete(self, uid):
        header = self.db.header.find_one({"run_id": uid})
        if header is None:
            return
        descriptors = [d["uid"] for d in header.get("descriptors", [])]
        resources = [r["uid"] for r in header.get("resources", [])]
        self.db.header.delete_many({"run_id": uid})
        self.db.event.delete_many({"descriptor": {"$in": descriptors}})
        self.db.datum.delete_many({"resource": {"$in": resources}})
        self.db.stream_datum.delete_many({"descriptor": {"$in": descriptors}})


def load_dump(db, dump: dict) -> None:
    """Insert a sample dump (collection -> {"indexes", "docs"}) into ``db``."""
    for collection, content in dump.items():
        docs = [copy.deepcopy(d) for d in content["docs"]]
        if docs:
            db[collection].insert_many(docs)
