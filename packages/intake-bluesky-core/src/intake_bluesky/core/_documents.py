"""A run held as its list of documents: the run source of file backends and
of the in-memory driver."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from ._pages import pack_datums, pack_events, select_fields, slice_pages, unpack_datum_page
from .driver import RunSourceBase

__all__ = ["DocumentRunSource", "BadDocumentError"]


class BadDocumentError(ValueError):
    """A document that cannot belong to its run (names run and document)."""


class _Organized:
    """The documents of a run sorted into what the protocol asks for."""

    def __init__(self, uid: str, documents: Sequence[tuple[str, dict]]):
        self.start: dict | None = None
        self.stop: dict | None = None
        self.descriptors: dict[str, dict] = {}
        self.pages: dict[str, list[dict]] = defaultdict(list)
        self.resources: dict[str, dict] = {}
        self.datum_pages: list[dict] = []
        self.stream_resources: list[dict] = []
        self.stream_datums: list[dict] = []
        self.datum_index: dict[str, dict] | None = None
        pending_events: list[dict] = []
        pending_datums: list[dict] = []

        def flush_events():
            if pending_events:
                self.pages[pending_events[0]["descriptor"]].append(pack_events(pending_events))
                pending_events.clear()

        def flush_datums():
            if pending_datums:
                self.datum_pages.append(pack_datums(pending_datums))
                pending_datums.clear()

        for name, doc in documents:
            if name == "event":
                # Consecutive single events of one descriptor become one page;
                # packing them here keeps every later step columnar.
                if pending_events and pending_events[0]["descriptor"] != doc["descriptor"]:
                    flush_events()
                self._check_descriptor(uid, doc, "event")
                pending_events.append(doc)
                continue
            if name == "datum":
                if pending_datums and pending_datums[0]["resource"] != doc["resource"]:
                    flush_datums()
                pending_datums.append(doc)
                continue
            flush_events()
            flush_datums()
            if name == "event_page":
                self._check_descriptor(uid, doc, "event_page")
                self.pages[doc["descriptor"]].append(doc)
            elif name == "datum_page":
                self.datum_pages.append(doc)
            elif name == "descriptor":
                self.descriptors[doc["uid"]] = doc
            elif name == "resource":
                self.resources[doc["uid"]] = doc
            elif name == "start":
                self.start = doc
            elif name == "stop":
                self.stop = doc
            elif name == "stream_resource":
                self.stream_resources.append(doc)
            elif name == "stream_datum":
                self.stream_datums.append(doc)
            # Unknown names are kept in the raw list (documents()) only.
        flush_events()
        flush_datums()

    def _check_descriptor(self, uid: str, doc: dict, name: str) -> None:
        if doc["descriptor"] not in self.descriptors:
            raise BadDocumentError(
                f"Run {uid!r}: {name} {_first(doc.get('uid'))!r} refers to descriptor "
                f"{doc['descriptor']!r}, which is not in the run (it must come before "
                "its events). The run's storage is incomplete or corrupt."
            )


def _first(value):
    return value[0] if isinstance(value, list) and value else value


class DocumentRunSource(RunSourceBase):
    """A :class:`~intake_bluesky.core.driver.RunSource` over ``(name, doc)`` pairs.

    Parameters
    ----------
    documents : iterable of (name, doc)
        The run's documents in stored order, starting with ``start``.
    uid : str, optional
        The run's uid, if known before the documents are read.

    Notes
    -----
    Documents can be appended (a live run); the organized view is rebuilt
    lazily on the next read after a change.

    Examples
    --------
    >>> src = DocumentRunSource([("start", {"uid": "abc", "time": 0.0})])
    >>> src.start()["uid"], src.stop()
    ('abc', None)
    """

    def __init__(self, documents: Iterable[tuple[str, dict]] = (), uid: str | None = None):
        self._docs: list[tuple[str, dict]] = list(documents)
        self._org: _Organized | None = None
        self._lock = threading.Lock()
        if uid is None:
            if not self._docs or self._docs[0][0] != "start":
                raise BadDocumentError("A run's documents must begin with its start document.")
            uid = self._docs[0][1]["uid"]
        self.uid = uid

    def __getstate__(self):
        return {"_docs": self._docs, "uid": self.uid}

    def __setstate__(self, state):
        self.__init__(state["_docs"], state["uid"])

    def append(self, name: str, doc: dict) -> None:
        with self._lock:
            self._docs.append((name, doc))
            self._org = None

    @property
    def _organized(self) -> _Organized:
        org = self._org
        if org is None:
            with self._lock:
                org = self._org = _Organized(self.uid, self._docs)
        return org

    # --- the protocol -------------------------------------------------------
    def start(self) -> dict:
        start = self._organized.start
        if start is None:
            raise BadDocumentError(f"Run {self.uid!r} has no start document.")
        return start

    def stop(self) -> dict | None:
        return self._organized.stop

    def descriptors(self) -> list[dict]:
        return sorted(self._organized.descriptors.values(), key=lambda d: d.get("time", 0))

    def event_pages(self, descriptor_uid, fields=None, rows=None) -> Iterator[dict]:
        pages = self._organized.pages.get(descriptor_uid, [])
        for page in slice_pages(pages, rows):
            yield select_fields(page, fields)

    def event_count(self, descriptor_uid: str) -> int:
        return sum(len(p["seq_num"]) for p in self._organized.pages.get(descriptor_uid, []))

    def resources(self) -> list[dict]:
        return list(self._organized.resources.values())

    def datum_pages(self, resource_uid=None) -> Iterator[dict]:
        for page in self._organized.datum_pages:
            if resource_uid is None or page["resource"] == resource_uid:
                yield page

    def datums(self, datum_ids) -> dict[str, dict]:
        org = self._organized
        index = getattr(org, "datum_index", None)
        if index is None:
            # Built once per organized view: filling looks datums up per chunk.
            index = org.datum_index = {
                d["datum_id"]: d for page in org.datum_pages for d in unpack_datum_page(page)
            }
        return {i: index[i] for i in datum_ids if i in index}

    def stream_resources(self) -> list[dict]:
        return list(self._organized.stream_resources)

    def stream_datums(self, descriptor_uid=None) -> list[dict]:
        return [
            d
            for d in self._organized.stream_datums
            if descriptor_uid is None or d["descriptor"] == descriptor_uid
        ]

    def documents(self) -> Iterator[tuple[str, dict]]:
        yield from list(self._docs)
