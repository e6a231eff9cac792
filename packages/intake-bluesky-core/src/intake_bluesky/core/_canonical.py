"""The canonical document stream of a run.

Invariants: ``start`` first; each descriptor before its events; each
resource and datum before the events that reference it; each stream_resource
before its stream_datums, each stream_datum after its descriptor; events in
time order across streams; ``stop`` last when present. Pages are split only
where streams interleave in time, so a stream recorded in pages streams as
pages.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from ._assembly import data_kind
from ._filling import Filler
from ._pages import page_length, plain_page, slice_page, unpack_event_page
from .driver import RunSource

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
    """Yield ``(name, doc)`` of a run in canonical order (see module docstring)."""
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
    datum_pages = list(source.datum_pages()) if any(external.values()) or resources else []
    page_of: dict[str, int] = {}
    for i, page in enumerate(datum_pages):
        for datum_id in page["datum_id"]:
            page_of[datum_id] = i
    emitted_pages: set[int] = set()
    emitted_resources: set[str] = set()

    def emit_datum_page(i):
        page = datum_pages[i]
        emitted_pages.add(i)
        res_uid = page["resource"]
        if res_uid not in emitted_resources and res_uid in resources:
            emitted_resources.add(res_uid)
            yield "resource", tf["resource"](resources[res_uid])
        yield (
            ("datum_page" if len(page["datum_id"]) > 1 else "datum"),
            (page if len(page["datum_id"]) > 1 else _single_datum(page)),
        )

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

    # k-way merge of the descriptors' event pages by time.
    iters = {d["uid"]: source.event_pages(d["uid"]) for d in descriptors}
    heads: list = []
    order = {d["uid"]: i for i, d in enumerate(descriptors)}

    def push(uid, page, offset=0):
        times = np.asarray(page["time"], dtype=float)
        if offset < len(times):
            heapq.heappush(heads, (float(times[offset]), order[uid], uid, page, times, offset))

    def advance(uid):
        for page in iters[uid]:
            if page_length(page):
                push(uid, page)
                return

    for d in descriptors:
        advance(d["uid"])

    pending = sorted(descriptors, key=lambda d: d.get("time", 0))
    emitted_descriptors: set[str] = set()
    while heads:
        t, _, uid, page, times, offset = heapq.heappop(heads)
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
        for key in external[uid]:
            for datum_id in piece["data"].get(key, ()):
                i = page_of.get(datum_id)
                if i is not None and i not in emitted_pages:
                    yield from emit_datum_page(i)
        piece = plain_page(piece)
        if fill and filler is not None and external[uid]:
            piece = _fill_page(piece, external[uid], filler)
        if end - offset == 1:
            yield "event", next(unpack_event_page(piece))
        else:
            yield "event_page", piece
        if end < n:
            push(uid, page, end)
        else:
            advance(uid)
    for d in pending:
        yield from emit_descriptor(d)
    for i in range(len(datum_pages)):
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


def _single_datum(page: dict) -> dict:
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][0],
        "datum_kwargs": {k: v[0] for k, v in page["datum_kwargs"].items()},
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
