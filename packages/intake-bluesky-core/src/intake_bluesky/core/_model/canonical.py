"""The canonical document stream of a run.

Invariants: ``start`` first; each descriptor before its events; each
resource and datum before the events that reference it; each stream_resource
before its stream_datums, each stream_datum after its descriptor; events in
time order across streams; ``stop`` last when present.

Every document comes in the form it is stored in (when the run source says,
see :mod:`.driver`): a stored event is an ``event``, a stored event_page an
``event_page`` (of one row, too), a datum a ``datum``, a datum_page a
``datum_page``. A page is split only where another stream's events fall
inside its time span (its pieces stay ``event_page``s), so a run read back
from an export of it is the same, document for document.

Stream data (stream_resource / stream_datum) is never filled into documents:
``fill=True`` fills the resource/datum references in events; stream_datum
documents come as stored, and their rows are read with ``stream.read()``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..driver import RunSource
from .documents import packed_event_pages, packed_stored_event_pages
from .filling import Filler, Transform
from .pages import page_length, plain_page, slice_page, unpack_datum_page, unpack_event_page
from .rows import data_kind, seconds_column

if TYPE_CHECKING:
    import numpy.typing as npt
    from event_model.documents import EventPage

__all__ = ["canonical"]

# (time, order, uid, form, page, times, offset, bounds): a stream's next rows.
_Head = tuple[
    float, int, str, str, "EventPage", "npt.NDArray[np.float64]", int, "npt.NDArray[Any] | None"
]


def _identity(doc: Any) -> Any:
    return doc


def canonical(
    source: RunSource,
    *,
    fill: bool,
    filler: Filler | None,
    transforms: Mapping[str, Transform] | None = None,
) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, doc)`` of a run in canonical order, each document in
    its stored form (see the module docstring).

    ``fill=True`` replaces the datum ids of resource/datum external fields in
    events by the loaded data (``filled[key]`` true); stream data
    (stream_resource/stream_datum) is not filled into documents, its
    stream_datums come as stored.
    """
    # Nothing is read from the source before the first document is asked for.
    return iter(_CanonicalStream(source, fill=fill, filler=filler, transforms=transforms))


class _CanonicalStream:
    """One pass over a run's documents in canonical order.

    The state of the pass lives on the instance: which descriptors, datum
    documents, resources and stream resources have been emitted, and the heap
    of the streams' next event documents (a k-way merge by time).
    """

    def __init__(
        self,
        source: RunSource,
        *,
        fill: bool,
        filler: Filler | None,
        transforms: Mapping[str, Transform] | None,
    ) -> None:
        self.source = source
        self.filler = filler if fill else None
        transforms = transforms or {}
        self.tf: dict[str, Transform] = {
            name: transforms.get(name, _identity)
            for name in ("start", "stop", "descriptor", "resource", "stream_resource")
        }
        # Datum documents, with the index of the one holding each datum id.
        self.datum_docs: list[tuple[str, Any]] = []
        self.page_of: dict[str, int] = {}
        self.emitted_pages: set[int] = set()
        self.resources: dict[str, Any] = {}
        self.emitted_resources: set[str] = set()
        self.stream_resources: dict[str, Any] = {}
        self.emitted_stream_resources: set[str] = set()
        # Descriptors not emitted yet, oldest first.
        self.pending: list[Mapping[str, Any]] = []
        self.emitted_descriptors: set[str] = set()
        # Per descriptor uid: its external (datum) fields, its stored event
        # documents, its rank among descriptors (ties on the heap).
        self.external: dict[str, list[str]] = {}
        self.iters: dict[str, Iterator[tuple[str, EventPage]]] = {}
        self.order: dict[str, int] = {}
        self.uids: list[str] = []
        # The heap of each stream's next rows (see _Head).
        self.heads: list[_Head] = []

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        # chain (not nested yield from): each document passes one generator less.
        return itertools.chain(self._opening(), self._merged_events(), self._closing())

    def _opening(self) -> Iterator[tuple[str, Any]]:
        yield "start", self.tf["start"](self.source.start())
        self._read_headers()

    # --- set-up -------------------------------------------------------------
    def _read_headers(self) -> None:
        source, tf = self.source, self.tf
        # Transformed once: what is emitted is also what decides what to fill.
        descriptors = [tf["descriptor"](d) for d in source.descriptors()]
        self.external = {
            d["uid"]: [k for k, v in d.get("data_keys", {}).items() if data_kind(v) == "datum"]
            for d in descriptors
        }
        # Datum pages are emitted lazily, just before the first event that
        # refers to one of their datums; the resource just before its first
        # datum page.
        self.resources = {r["uid"]: r for r in source.resources()}
        if any(self.external.values()) or self.resources:
            # Each stored datum or datum_page, in stored order.
            self.datum_docs = _datum_documents(source)
        for i, (name, doc) in enumerate(self.datum_docs):
            if name == "datum":
                self.page_of[doc["datum_id"]] = i
            else:
                for datum_id in doc["datum_id"]:
                    self.page_of[datum_id] = i
        self.stream_resources = {
            sr["uid"]: sr for sr in (tf["stream_resource"](d) for d in source.stream_resources())
        }
        # Uids as the source keeps them: plain_page() gives them back as str.
        iters = {d["uid"]: packed_stored_event_pages(source, d["uid"]) for d in descriptors}
        self.iters = {
            # A run source that does not say: pages as it yields them.
            uid: units if units is not None else _as_pages(packed_event_pages(source, uid))
            for uid, units in iters.items()
        }
        self.order = {d["uid"]: i for i, d in enumerate(descriptors)}
        self.uids = [d["uid"] for d in descriptors]
        self.pending = sorted(descriptors, key=lambda d: d.get("time", 0))

    # --- the k-way merge of the streams' event documents by time -----------
    def _push(
        self,
        uid: str,
        form: str,
        page: EventPage,
        times: npt.NDArray[np.float64],
        offset: int,
        bounds: npt.NDArray[Any] | None,
    ) -> None:
        if offset < len(times):
            heapq.heappush(
                self.heads,
                (float(times[offset]), self.order[uid], uid, form, page, times, offset, bounds),
            )

    def _advance(self, uid: str) -> None:
        """Put the next non-empty stored event document of ``uid`` on the heap."""
        for form, page in self.iters[uid]:
            if page_length(page):
                # Where the stored pages of a merged page end (rows of it).
                sizes = getattr(page, "stored_rows", None)
                bounds = None if sizes is None else np.cumsum(sizes)
                self._push(uid, form, page, self._times(uid, page), 0, bounds)
                return

    def _times(self, uid: str, page: EventPage) -> npt.NDArray[np.float64]:
        """The page's event times as float64; a damaged time is an error that
        names the run, descriptor and event."""
        try:
            return np.asarray(page["time"], dtype=float)
        except (TypeError, ValueError):
            run = self.source.start()["uid"]
            return seconds_column([page], [page["time"]], run, uid, "time")

    def _merged_events(self) -> Iterator[tuple[str, Any]]:
        for uid in self.uids:
            self._advance(uid)
        heads = self.heads
        while heads:
            t, _, uid, form, page, times, offset, bounds = heapq.heappop(heads)
            yield from self._descriptors_up_to(t, uid)
            limit = heads[0][0] if heads else np.inf
            # Rows up to (and including) the next stream's head time stay together.
            end = max(offset + 1, int(np.searchsorted(times, limit, side="right")))
            n = len(times)
            piece = page if (offset, end) == (0, n) else slice_page(page, offset, end)
            yield from self._piece(uid, form, piece, offset, end, bounds)
            if end < n:
                self._push(uid, form, page, times, end, bounds)
            else:
                self._advance(uid)

    def _piece(
        self,
        uid: str,
        form: str,
        piece: EventPage,
        offset: int,
        end: int,
        bounds: npt.NDArray[Any] | None,
    ) -> Iterable[tuple[str, Any]]:
        """The rows ``offset:end`` of a stored event document, in its stored form."""
        external = self.external[uid]
        # The datum ids of the piece's external fields (lists or arrays), row by row.
        refs = [piece["data"][key] for key in external if key in piece["data"]]
        piece = plain_page(piece)
        if self.filler is not None and external:
            piece = _fill_page(piece, external, self.filler)
        if form == "event":
            if refs:
                return self._events_after_datums(piece, refs)
            return zip(itertools.repeat("event"), unpack_event_page(piece))
        if bounds is None:
            edges = [0, end - offset]
        else:
            # Consecutive stored pages: each as it was stored.
            cuts = bounds[(bounds > offset) & (bounds < end)] - offset
            edges = [0, *cuts.tolist(), end - offset]
        return self._pages_after_datums(piece, refs, edges)

    def _events_after_datums(
        self, piece: EventPage, refs: Sequence[Any]
    ) -> Iterator[tuple[str, Any]]:
        # Each event after its own datums, as a run is written.
        for row, event in enumerate(unpack_event_page(piece)):
            for column in refs:
                yield from self._datums(column[row])
            yield "event", event

    def _pages_after_datums(
        self, piece: EventPage, refs: Sequence[Any], edges: Sequence[int]
    ) -> Iterator[tuple[str, Any]]:
        whole = len(edges) == 2
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            # Datums before the page that refers to them.
            for column in refs:
                for datum_id in column[a:b]:
                    yield from self._datums(datum_id)
            yield "event_page", piece if whole else slice_page(piece, a, b)

    # --- documents emitted on first need -----------------------------------
    def _descriptors_up_to(self, t: float, uid: str) -> Iterator[tuple[str, Any]]:
        """Descriptors (of any stream) created before an event at ``t``, and its own."""
        pending = self.pending
        while pending and (pending[0].get("time", 0) <= t or pending[0]["uid"] == uid):
            yield from self._descriptor(pending.pop(0))
        if uid not in self.emitted_descriptors:
            d = next(d for d in pending if d["uid"] == uid)
            pending.remove(d)
            yield from self._descriptor(d)

    def _descriptor(self, d: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        """A descriptor, then its stream_datums, each after its stream_resource."""
        self.emitted_descriptors.add(d["uid"])
        yield "descriptor", d
        for sd in self.source.stream_datums(d["uid"]):
            sr_uid = sd["stream_resource"]
            if sr_uid not in self.emitted_stream_resources and sr_uid in self.stream_resources:
                self.emitted_stream_resources.add(sr_uid)
                yield "stream_resource", self.stream_resources[sr_uid]
            yield "stream_datum", sd

    def _datums(self, datum_id: str) -> Iterator[tuple[str, Any]]:
        """The stored datum (or datum_page) of ``datum_id``, unless emitted."""
        i = self.page_of.get(datum_id)
        if i is not None and i not in self.emitted_pages:
            yield from self._datum_document(i)

    def _datum_document(self, i: int) -> Iterator[tuple[str, Any]]:
        """The ``i``-th stored datum document, after its resource."""
        name, doc = self.datum_docs[i]
        self.emitted_pages.add(i)
        res_uid = doc["resource"]
        if res_uid not in self.emitted_resources and res_uid in self.resources:
            self.emitted_resources.add(res_uid)
            yield "resource", self.tf["resource"](self.resources[res_uid])
        yield name, doc

    def _closing(self) -> Iterator[tuple[str, Any]]:
        """What no event called for (descriptors, datums, resources), then stop."""
        for d in self.pending:
            yield from self._descriptor(d)
        for i in range(len(self.datum_docs)):
            if i not in self.emitted_pages:
                yield from self._datum_document(i)
        for res_uid, resource in self.resources.items():
            if res_uid not in self.emitted_resources:
                yield "resource", self.tf["resource"](resource)
        for sr_uid, sr in self.stream_resources.items():
            if sr_uid not in self.emitted_stream_resources:
                yield "stream_resource", sr
        stop = self.source.stop()
        if stop is not None:
            yield "stop", self.tf["stop"](stop)


def _as_pages(pages: Iterable[EventPage]) -> Iterator[tuple[str, EventPage]]:
    for page in pages:
        yield "event_page", page


def _datum_documents(source: RunSource) -> list[tuple[str, Any]]:
    """Every stored ``datum`` and ``datum_page`` of the run, in stored order."""
    stored = getattr(source, "stored_datum_pages", None)
    if stored is None:
        units = (("datum_page", page) for page in source.datum_pages())
    else:
        units = stored()
    out: list[tuple[str, Any]] = []
    for form, page in units:
        if form == "datum":
            out.extend(("datum", datum) for datum in unpack_datum_page(page))
            continue
        sizes = getattr(page, "stored_rows", None)
        if sizes is None:
            out.append(("datum_page", page))
            continue
        first = 0
        for size in sizes:  # consecutive stored pages: each as it was stored
            out.append(("datum_page", _datum_rows(page, first, first + size)))
            first += size
    return out


def _datum_rows(page: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][start:stop],
        "datum_kwargs": {k: v[start:stop] for k, v in page["datum_kwargs"].items()},
    }


def _fill_page(page: EventPage, keys: Sequence[str], filler: Filler) -> EventPage:
    # Columns may be arrays as well as lists (see the driver), filled ones are.
    data: dict[str, Any] = dict(page["data"])
    filled = dict(page.get("filled", {}))
    n = page_length(page)
    for key in keys:
        if key not in data:
            continue
        flags = filled.get(key)
        if flags is not None and all(bool(f) for f in flags):
            continue  # already filled in storage
        data[key] = filler.fill_column(list(data[key]))
        filled[key] = [True] * n
    return {**page, "data": data, "filled": filled}
