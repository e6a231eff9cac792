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
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from ..driver import RunSource
from .assembly import data_kind
from .filling import Filler
from .pages import page_length, plain_page, slice_page, unpack_datum_page, unpack_event_page

__all__ = ["canonical"]


def _identity(doc):
    return doc


def canonical(
    source: RunSource,
    *,
    fill: bool,
    filler: Filler | None,
    transforms: Mapping[str, Callable[[dict], dict]] | None = None,
) -> Iterator[tuple[str, dict]]:
    """Yield ``(name, doc)`` of a run in canonical order, each document in
    its stored form (see the module docstring).

    ``fill=True`` replaces the datum ids of resource/datum external fields in
    events by the loaded data (``filled[key]`` true); stream data
    (stream_resource/stream_datum) is not filled into documents, its
    stream_datums come as stored.
    """
    transforms = transforms or {}
    tf = {
        name: transforms.get(name, _identity)
        for name in ("start", "stop", "descriptor", "resource", "stream_resource")
    }
    yield "start", tf["start"](source.start())

    # Transformed once: what is emitted is also what decides what to fill.
    descriptors = [tf["descriptor"](d) for d in source.descriptors()]
    external = {
        d["uid"]: [k for k, v in d.get("data_keys", {}).items() if data_kind(v) == "datum"]
        for d in descriptors
    }

    # Datum pages are emitted lazily, just before the first event that refers
    # to one of their datums; the resource just before its first datum page.
    resources = {r["uid"]: r for r in source.resources()}
    # Each stored datum or datum_page, in stored order.
    datum_docs = _datum_documents(source) if any(external.values()) or resources else []
    page_of: dict[str, int] = {}
    for i, (name, doc) in enumerate(datum_docs):
        if name == "datum":
            page_of[doc["datum_id"]] = i
        else:
            for datum_id in doc["datum_id"]:
                page_of[datum_id] = i
    emitted_pages: set[int] = set()
    emitted_resources: set[str] = set()

    def emit_datum_page(i):
        name, doc = datum_docs[i]
        emitted_pages.add(i)
        res_uid = doc["resource"]
        if res_uid not in emitted_resources and res_uid in resources:
            emitted_resources.add(res_uid)
            yield "resource", tf["resource"](resources[res_uid])
        yield name, doc

    def emit_datums(datum_id):
        """The stored datum (or datum_page) of ``datum_id``, unless emitted."""
        i = page_of.get(datum_id)
        if i is not None and i not in emitted_pages:
            yield from emit_datum_page(i)

    stream_resources = {
        sr["uid"]: sr for sr in (tf["stream_resource"](d) for d in source.stream_resources())
    }
    emitted_stream_resources: set[str] = set()

    def emit_descriptor(d):
        yield "descriptor", d
        for sd in source.stream_datums(d["uid"]):
            sr_uid = sd["stream_resource"]
            if sr_uid not in emitted_stream_resources and sr_uid in stream_resources:
                emitted_stream_resources.add(sr_uid)
                yield "stream_resource", stream_resources[sr_uid]
            yield "stream_datum", sd

    # k-way merge of the descriptors' stored event documents by time.
    stored = getattr(source, "stored_event_pages", None)
    if stored is None:  # a run source that does not say: pages as it yields them
        iters = {d["uid"]: _as_pages(source.event_pages(d["uid"])) for d in descriptors}
    else:
        iters = {d["uid"]: stored(d["uid"]) for d in descriptors}
    heads: list = []
    order = {d["uid"]: i for i, d in enumerate(descriptors)}

    def push(uid, form, page, times, offset, bounds):
        if offset < len(times):
            heapq.heappush(
                heads, (float(times[offset]), order[uid], uid, form, page, times, offset, bounds)
            )

    def advance(uid):
        for form, page in iters[uid]:
            if page_length(page):
                # Where the stored pages of a merged page end (rows of it).
                sizes = getattr(page, "stored_rows", None)
                bounds = None if sizes is None else np.cumsum(sizes)
                push(uid, form, page, np.asarray(page["time"], dtype=float), 0, bounds)
                return

    for d in descriptors:
        advance(d["uid"])

    pending = sorted(descriptors, key=lambda d: d.get("time", 0))
    emitted_descriptors: set[str] = set()
    while heads:
        t, _, uid, form, page, times, offset, bounds = heapq.heappop(heads)
        # Descriptors (of any stream) created before this event come first.
        while pending and (pending[0].get("time", 0) <= t or pending[0]["uid"] == uid):
            d = pending.pop(0)
            emitted_descriptors.add(d["uid"])
            yield from emit_descriptor(d)
        if uid not in emitted_descriptors:
            d = next(d for d in pending if d["uid"] == uid)
            pending.remove(d)
            emitted_descriptors.add(uid)
            yield from emit_descriptor(d)
        limit = heads[0][0] if heads else np.inf
        # Rows up to (and including) the next stream's head time stay together.
        end = max(offset + 1, int(np.searchsorted(times, limit, side="right")))
        n = len(times)
        piece = page if (offset, end) == (0, n) else slice_page(page, offset, end)
        # The datum ids of the piece's external fields, row by row.
        refs = [piece["data"][key] for key in external[uid] if key in piece["data"]]
        piece = plain_page(piece)
        if fill and filler is not None and external[uid]:
            piece = _fill_page(piece, external[uid], filler)
        if form == "event":
            # Each event after its own datums, as a run is written.
            for row, event in enumerate(unpack_event_page(piece)):
                for column in refs:
                    yield from emit_datums(column[row])
                yield "event", event
            edges = None
        elif bounds is None:
            edges = [0, end - offset]
        else:
            # Consecutive stored pages: each as it was stored.
            cuts = bounds[(bounds > offset) & (bounds < end)] - offset
            edges = [0, *cuts.tolist(), end - offset]
        if edges is not None:
            whole = len(edges) == 2
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                # Datums before the page that refers to them.
                for column in refs:
                    for datum_id in column[a:b]:
                        yield from emit_datums(datum_id)
                yield "event_page", piece if whole else slice_page(piece, a, b)
        if end < n:
            push(uid, form, page, times, end, bounds)
        else:
            advance(uid)
    for d in pending:
        yield from emit_descriptor(d)
    for i in range(len(datum_docs)):
        if i not in emitted_pages:
            yield from emit_datum_page(i)
    for res_uid, resource in resources.items():
        if res_uid not in emitted_resources:
            yield "resource", tf["resource"](resource)
    for sr_uid, sr in stream_resources.items():
        if sr_uid not in emitted_stream_resources:
            yield "stream_resource", sr
    stop = source.stop()
    if stop is not None:
        yield "stop", tf["stop"](stop)


def _as_pages(pages):
    for page in pages:
        yield "event_page", page


def _datum_documents(source: RunSource) -> list[tuple[str, dict]]:
    """Every stored ``datum`` and ``datum_page`` of the run, in stored order."""
    stored = getattr(source, "stored_datum_pages", None)
    if stored is None:
        units = (("datum_page", page) for page in source.datum_pages())
    else:
        units = stored()
    out: list[tuple[str, dict]] = []
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


def _datum_rows(page: dict, start: int, stop: int) -> dict:
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][start:stop],
        "datum_kwargs": {k: v[start:stop] for k, v in page["datum_kwargs"].items()},
    }


def _fill_page(page: dict, keys, filler: Filler) -> dict:
    data = dict(page["data"])
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
