"""What both layouts share: query checks, sort/paging arguments, lazy cursors,
and building columnar pages from single documents."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from intake_bluesky.core import BadDocumentError, validate_query

from ._connect import DatabaseRef, translate_errors

if TYPE_CHECKING:
    from event_model.documents import DatumPage, EventPage

__all__ = [
    "EVENT_PAGE_SIZE",
    "check_encodable",
    "IN_BATCH",
    "check_paging",
    "check_query",
    "chunks",
    "event_projection",
    "iterate",
    "pack_datum_docs",
    "pack_event_docs",
    "pack_lean_events",
    "lean_projection",
]

#: Events per event page built from single event documents (normalized
#: layout). Large enough that per-page overhead vanishes for scalar streams,
#: small enough that a page of detector frames stays a manageable size.
EVENT_PAGE_SIZE = 1000

#: Ids per ``$in`` query: keeps each query far below MongoDB's 16 MB limit
#: (uuids are ~40 bytes) while fetching in few round trips.
IN_BATCH = 10_000

# Every document this package reads is projected without _id: the protocol
# returns documents as bluesky emitted them.
NO_ID = {"_id": False}


def check_query(query: Mapping[str, Any] | None) -> dict:
    """Validate a query for a MongoDB server; refused operators raise here.

    The catalog validates too, but a driver can be called directly, so the
    query is validated again before anything is sent. The core's
    :func:`~intake_bluesky.core.validate_query` refuses server-side
    JavaScript (``$where``, ``$function``, ``$accumulator``) at any depth,
    inside ``$expr`` expressions (where ``$function`` is valid MongoDB) and
    ``$elemMatch`` too.

    Examples
    --------
    >>> check_query({"$expr": {"$function": {"body": "return true", "args": []}}})
    Traceback (most recent call last):
    ...
    ValueError: Query operator '$function' is refused: server-side JavaScript is never run...
    """
    return check_encodable(validate_query(query, server=True))


def check_encodable(query: dict) -> dict:
    """``query`` itself, once BSON can encode it; else a ``ValueError``.

    The core's :func:`~intake_bluesky.core.validate_query` already turns
    tuples and numpy scalars/arrays (values taken from a Dataset) into plain
    lists and numbers, which pymongo's encoder needs (mongomock takes numpy
    values; a real server never receives them). Anything still unencodable
    (a complex number, an integer over 64 bits, an arbitrary object) would
    fail inside pymongo with a message naming neither the query nor what to
    do: it fails here, before anything is sent.

    Examples
    --------
    >>> check_encodable({"scan_id": 3})
    {'scan_id': 3}
    >>> check_encodable({"scan_id": 1j})
    Traceback (most recent call last):
    ...
    ValueError: The query {'scan_id': 1j} cannot be sent to MongoDB: ...
    """
    from bson import encode

    try:
        size = len(encode(query))
    except Exception as err:  # InvalidDocument, OverflowError (ints over 64 bits)
        raise ValueError(
            f"The query {query!r} cannot be sent to MongoDB: {err}. Use str, int, float, "
            "bool, None, lists and dicts."
        ) from None
    if size > MAX_QUERY_BYTES:
        # pymongo would raise DocumentTooLarge from deep inside a cursor.
        key, count = _longest_list(query)
        biggest = f" ({key!r} lists {count:,} values)" if key else ""
        raise ValueError(
            f"The query is {size / 2**20:.1f} MiB as BSON{biggest}; MongoDB accepts "
            f"at most {MAX_QUERY_BYTES / 2**20:.0f} MiB per query. Narrow it: search in "
            "batches of fewer values (e.g. 100,000 uids per $in), or by a range such as "
            "{'time': {'$gte': ..., '$lt': ...}} or {'scan_id': {'$gte': ..., '$lte': ...}}."
        )
    return query


#: The largest query sent: MongoDB's 16 MiB document limit, less room for
#: the command that carries the query (sort, projection, options).
MAX_QUERY_BYTES = 16 * 2**20 - 64 * 2**10


def _longest_list(value: Any, where: str = "") -> tuple[str, int]:
    """The dotted path of the longest list in a query, and its length."""
    best = ("", 0)
    if isinstance(value, Mapping):
        for key, sub in value.items():
            found = _longest_list(sub, f"{where}.{key}" if where else str(key))
            best = max(best, found, key=lambda pair: pair[1])
    elif isinstance(value, list):
        best = (where, len(value))
        for sub in value:
            if isinstance(sub, Mapping | list):
                best = max(best, _longest_list(sub, where), key=lambda pair: pair[1])
    return best


def check_paging(sort, skip, limit) -> tuple[list[tuple[str, int]], int, int | None]:
    """Validate ``sort``/``skip``/``limit`` and add a deterministic tiebreaker.

    Runs with equal sort keys (same start time) would come back in an
    unspecified, possibly different order on every query, so paging with
    skip/limit could repeat or miss runs; ``_id`` (insertion order) breaks
    ties, in the direction of the last key so that an index on
    ``(time, _id)`` (suitcase-mongo creates ``time_-1__id_-1``) serves both
    directions.
    """
    pairs: list[tuple[str, int]] = []
    for item in sort or ():
        try:
            key, direction = item
        except (TypeError, ValueError):
            raise ValueError(
                f"sort must be a list of (key, direction) pairs, not {sort!r}."
            ) from None
        if not isinstance(key, str) or direction not in (1, -1):
            raise ValueError(f"sort entry {item!r} must be (key: str, direction: 1 or -1).")
        pairs.append((key, int(direction)))
    if not any(key == "_id" for key, _ in pairs):
        pairs.append(("_id", pairs[-1][1] if pairs else 1))
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an integer >= 0, not {skip!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, not {limit!r}.")
    return pairs, skip, limit


def iterate(refs: Sequence[DatabaseRef], open_cursor: Callable[[], Any], convert=None):
    """Yield documents from a cursor opened lazily, with errors translated.

    The cursor is opened on first ``next()``, so building a generator costs
    nothing, and it is closed when the generator is closed or collected.
    """
    with translate_errors(*refs):
        cursor = open_cursor()
        try:
            if convert is None:
                yield from cursor
            else:
                for doc in cursor:
                    yield convert(doc)
        finally:
            close = getattr(cursor, "close", None)
            if close is not None:
                close()


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def event_projection(fields: Iterable[str] | None, extra: Iterable[str] = ()) -> dict:
    """A projection keeping the event columns and only ``fields`` of the data.

    ``None`` keeps everything (but ``_id``); ``[]`` keeps only
    ``descriptor``/``uid``/``time``/``seq_num`` (and ``extra``).
    """
    if fields is None:
        return dict(NO_ID)
    projection: dict[str, Any] = {
        "_id": False,
        "descriptor": True,
        "uid": True,
        "time": True,
        "seq_num": True,
    }
    for key in extra:
        projection[key] = True
    for name in fields:
        for part in ("data", "timestamps", "filled"):
            projection[f"{part}.{name}"] = True
    return projection


def pack_event_docs(
    events: Sequence[dict],
    fields: Iterable[str] | None = None,
    descriptor: str | None = None,
    run: str | None = None,
) -> EventPage:
    """One ``event_page`` from single event documents of one descriptor.

    Tolerant of what a projection leaves out: keys absent from an event (e.g.
    no ``filled`` entry) are taken from the union over the batch, with
    ``None`` for data/timestamps and ``False`` for ``filled`` where missing;
    ``descriptor`` is the events' descriptor uid when the projection left it
    out of them. An event without ``time``, ``seq_num`` or ``uid`` is a
    :class:`BadDocumentError` naming it (and ``run``).
    """
    first = events[0]
    descriptor = first.get("descriptor") if descriptor is None else descriptor
    page = {
        "descriptor": descriptor,
        "time": _required(events, "time", descriptor, run),
        "uid": _required(events, "uid", descriptor, run),
        "seq_num": _required(events, "seq_num", descriptor, run),
        **{part: _part_columns(events, part, fields) for part in ("data", "timestamps", "filled")},
    }
    return cast("EventPage", page)


def pack_lean_events(
    events: Sequence[dict], fields: Iterable[str], part: str | None, descriptor: str, run: str
) -> dict[str, Any]:
    """A lean page (see ``lean_event_pages`` in the driver protocol) from
    single event documents: ``time``, ``seq_num`` and ``part`` of ``fields``,
    as :func:`pack_event_docs` builds them."""
    page: dict[str, Any] = {
        "time": _required(events, "time", descriptor, run),
        "seq_num": _required(events, "seq_num", descriptor, run),
    }
    if part is not None:
        page[part] = _part_columns(events, part, fields)
    return page


def _required(events: Sequence[dict], key: str, descriptor: str | None, run: str | None) -> list:
    # A null time is an unknown time (NaN), as in every store; a null
    # seq_num or uid is as damaged as a missing one.
    values = [event.get(key) for event in events]
    if None not in values:
        return values
    bad = next(
        (e for e, v in zip(events, values) if v is None and (key != "time" or key not in e)),
        None,
    )
    if bad is not None:
        where = f"Run {run!r}: " if run is not None else ""
        # A lean projection leaves the uid out: the seq_num (or time) then
        # says which event it is.
        named = (
            f"event {bad['uid']!r}"
            if "uid" in bad
            else f"the event with seq_num {bad.get('seq_num')!r} (time {bad.get('time')!r})"
        )
        raise BadDocumentError(
            f"{where}{named} of descriptor {descriptor!r} has no {key!r}. The store holds a "
            "damaged event; correct or remove it."
        )
    return values


def lean_projection(fields: Iterable[str], part: str | None) -> dict:
    """The projection of a lean read: ``time``, ``seq_num``, ``part.<field>``."""
    projection: dict[str, Any] = {"_id": False, "time": True, "seq_num": True}
    if part is not None:
        for name in fields:
            projection[f"{part}.{name}"] = True
    return projection


def _part_columns(
    events: Sequence[dict], part: str, fields: Iterable[str] | None
) -> dict[str, list]:
    # Keys are the union over the batch, so an event missing one is a gap
    # (None, or False in ``filled``), not a column dropped.
    missing = False if part == "filled" else None
    keys: dict[str, None] = {}
    for event in events:
        keys.update(dict.fromkeys(event.get(part) or ()))
    if fields is not None:
        wanted = set(fields)
        keys = {k: None for k in keys if k in wanted}
    return {key: [(event.get(part) or {}).get(key, missing) for event in events] for key in keys}


def pack_datum_docs(datums: Sequence[dict]) -> DatumPage:
    """One ``datum_page`` from single datum documents of one resource."""
    keys: dict[str, None] = {}
    for datum in datums:
        keys.update(dict.fromkeys(datum.get("datum_kwargs") or ()))
    return {
        "resource": datums[0]["resource"],
        "datum_id": [d["datum_id"] for d in datums],
        "datum_kwargs": {k: [(d.get("datum_kwargs") or {}).get(k) for d in datums] for k in keys},
    }
