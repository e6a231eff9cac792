"""A run held as its list of documents: the run source of file backends and
of the in-memory driver."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator

from ._pages import (
    as_column,
    merge_datum_pages,
    merge_event_pages,
    pack_datums,
    pack_events,
    select_fields,
    slice_pages,
    unpack_datum_page,
)
from .driver import RunSourceBase

__all__ = ["DocumentRunSource", "BadDocumentError"]


class BadDocumentError(ValueError):
    """A document that cannot belong to its run (names run and document)."""


#: Rows gathered into one page when packing events or merging small pages:
#: bounds the transient per-event dicts, keeps every later step columnar.
_PAGE_ROWS = 4096


class _Organized:
    """The documents of a run sorted into what the protocol asks for.

    Single events and small pages of one descriptor are packed into pages of
    up to ``_PAGE_ROWS`` rows with numpy columns, so a run of 100,000 single
    events costs 25 column conversions per field, not 100,000 dicts.
    """

    def __init__(self, uid: str, documents: Iterable[tuple[str, dict]]):
        self.start: dict | None = None
        self.stop: dict | None = None
        self.descriptors: dict[str, dict] = {}
        self.pages: dict[str, list[dict]] = defaultdict(list)
        self.resources: dict[str, dict] = {}
        self.datum_pages: list[dict] = []
        self.stream_resources: list[dict] = []
        self.stream_datums: list[dict] = []
        self.datum_index: dict[str, dict] | None = None
        # Pending rows: ("event", [events]) or ("page", [pages]) of one descriptor.
        pending: list = [None, []]
        pending_rows = [0]
        pending_datums: list[dict] = []

        def flush_events():
            kind, items = pending
            if not items:
                return
            page = pack_events(items) if kind == "event" else merge_event_pages(items)
            self.pages[page["descriptor"]].append(_columnar(page))
            pending[0], pending[1] = None, []
            pending_rows[0] = 0

        def add_rows(kind, doc, rows):
            kind_now, items = pending
            if items and (kind_now != kind or items[0]["descriptor"] != doc["descriptor"]):
                flush_events()
            pending[0] = kind
            pending[1].append(doc)
            pending_rows[0] += rows
            if pending_rows[0] >= _PAGE_ROWS:
                flush_events()

        def flush_datums():
            if not pending_datums:
                return
            if all(isinstance(d["datum_id"], str) for d in pending_datums):
                page = pack_datums(pending_datums)
            else:
                page = merge_datum_pages(
                    [
                        pack_datums([d]) if isinstance(d["datum_id"], str) else d
                        for d in pending_datums
                    ]
                )
            self.datum_pages.append(page)
            pending_datums.clear()

        for name, doc in documents:
            if name == "event":
                self._check_descriptor(uid, doc, "event")
                add_rows("event", doc, 1)
                continue
            if name == "event_page":
                self._check_descriptor(uid, doc, "event_page")
                n = len(doc["seq_num"])
                if n >= _PAGE_ROWS:
                    flush_events()
                    self.pages[doc["descriptor"]].append(_columnar(doc))
                else:
                    add_rows("page", doc, n)
                continue
            if name in ("datum", "datum_page"):
                if pending_datums and pending_datums[0]["resource"] != doc["resource"]:
                    flush_datums()
                pending_datums.append(doc)
                continue
            flush_events()
            flush_datums()
            if name == "descriptor":
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


def _columnar(page: dict) -> dict:
    out = dict(page)
    out["time"] = as_column(page["time"])
    out["seq_num"] = as_column(page["seq_num"])
    for part in ("data", "timestamps"):
        out[part] = {k: as_column(v) for k, v in page.get(part, {}).items()}
    return out


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
    keep_documents : bool
        Keep the raw documents (for :meth:`documents` and :meth:`append`).
        File backends pass False: the file is the raw store, and only the
        columnar organized view stays in memory.

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

    def __init__(
        self,
        documents: Iterable[tuple[str, dict]] = (),
        uid: str | None = None,
        *,
        keep_documents: bool = True,
    ):
        self._lock = threading.Lock()
        self._org: _Organized | None = None
        self._docs: list[tuple[str, dict]] | None = None
        if keep_documents:
            self._docs = list(documents)
            first = self._docs[0] if self._docs else None
        else:
            self._org = _Organized(uid or "?", documents)
            first = ("start", self._org.start) if self._org.start is not None else None
        if uid is None:
            if first is None or first[0] != "start":
                raise BadDocumentError("A run's documents must begin with its start document.")
            uid = first[1]["uid"]
        self.uid = uid

    def __getstate__(self):
        if self._docs is None:
            raise TypeError(
                "This DocumentRunSource did not keep its documents; pickle the run source "
                "that made it (e.g. a FileRunSource) instead."
            )
        return {"_docs": self._docs, "uid": self.uid}

    def __setstate__(self, state):
        self.__init__(state["_docs"], state["uid"])

    def append(self, name: str, doc: dict) -> None:
        if self._docs is None:
            raise TypeError("This DocumentRunSource did not keep its documents; cannot append.")
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
        if self._docs is None:
            raise TypeError("This DocumentRunSource did not keep its documents.")
        yield from list(self._docs)


class DelegatingRunSource(RunSourceBase):
    """A run source that reads through a :class:`DocumentRunSource` it makes
    on demand (:attr:`_current`): from a file, a generator, ..."""

    @property
    def _current(self) -> DocumentRunSource:
        raise NotImplementedError

    def start(self):
        return self._current.start()

    def stop(self):
        return self._current.stop()

    def descriptors(self):
        return self._current.descriptors()

    def event_pages(self, descriptor_uid, fields=None, rows=None):
        return self._current.event_pages(descriptor_uid, fields, rows)

    def event_count(self, descriptor_uid):
        return self._current.event_count(descriptor_uid)

    def resources(self):
        return self._current.resources()

    def datum_pages(self, resource_uid=None):
        return self._current.datum_pages(resource_uid)

    def datums(self, datum_ids):
        return self._current.datums(datum_ids)

    def stream_resources(self):
        return self._current.stream_resources()

    def stream_datums(self, descriptor_uid=None):
        return self._current.stream_datums(descriptor_uid)

    def documents(self):
        return self._current.documents()
