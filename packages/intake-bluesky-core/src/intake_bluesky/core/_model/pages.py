"""Packing, unpacking and slicing event and datum pages.

Columnar pages are the unit every layer exchanges; these helpers are the only
place that walks documents row by row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .uids import UidColumn

if TYPE_CHECKING:
    from event_model.documents import Datum, DatumPage, Event, EventPage

__all__ = [
    "COLUMNAR_ROWS",
    "as_column",
    "columnar_page",
    "exact_array",
    "first_of",
    "merge_event_pages",
    "merge_datum_pages",
    "number_array",
    "pack_events",
    "plain_page",
    "pack_datums",
    "unpack_event_page",
    "unpack_datum_page",
    "page_length",
    "select_fields",
    "slice_page",
    "slice_pages",
]

_EVENT_COLUMNS = ("time", "uid", "seq_num")

#: Makes the array a join of numpy columns is written into, or None for
#: numpy's own: (column, shape, dtype) -> array (see merge_event_pages).
_Empty = Callable[[Any, tuple[int, ...], np.dtype], np.ndarray | None]

#: The largest single column merge_event_pages moves into ``empty``'s arrays.
_MOVED_BYTES = 1 << 20


def first_of(value: Any) -> Any:
    """The first item of a page column, or the value of a single document."""
    return value[0] if isinstance(value, list | UidColumn) and value else value


def page_length(page: Mapping[str, Any]) -> int:
    return len(page["seq_num"])


def pack_events(events: Sequence[Event]) -> EventPage:
    """One event_page from events of one descriptor with the same data keys.

    Raises
    ------
    KeyError
        If the events do not all have the first one's data and timestamps
        keys (pages stay rectangular: split such events into several pages).
    """
    first = events[0]
    keys = list(first["data"])
    ts_keys = list(first["timestamps"])
    # One pass to reach each event's inner dicts, then one per key: for runs
    # stored as single events this is most of the cost beyond decoding.
    datas = [e["data"] for e in events]
    stamps = [e["timestamps"] for e in events]
    # A key missing from an event raises KeyError below; one too many would
    # be dropped, so the sizes are compared here (in C, not per event).
    if set(map(len, datas)) != {len(keys)} or set(map(len, stamps)) != {len(ts_keys)}:
        raise KeyError(f"events of descriptor {first['descriptor']!r} differ in their keys")
    # 'filled' may be given for some events only; absent means not filled.
    # Mostly it is {} everywhere: any() tells that without a Python loop.
    filleds: list[Any] = [e.get("filled") for e in events]
    if any(filleds):
        filleds = [f or _EMPTY for f in filleds]
        filled_keys = list(dict.fromkeys(k for f in filleds if f for k in f))
    else:
        filled_keys = []
    return {
        "descriptor": first["descriptor"],
        "time": [e["time"] for e in events],
        "uid": [e["uid"] for e in events],
        "seq_num": [e["seq_num"] for e in events],
        "data": {k: [d[k] for d in datas] for k in keys},
        "timestamps": {k: [t[k] for t in stamps] for k in ts_keys},
        "filled": {k: [f.get(k, False) for f in filleds] for k in filled_keys},
    }


_EMPTY: dict[str, Any] = {}


def unpack_event_page(page: EventPage) -> Iterator[Event]:
    """The events of one event_page, as ``event`` documents."""
    data, timestamps = page["data"], page.get("timestamps", {})
    filled = page.get("filled", {})
    for i in range(page_length(page)):
        yield {
            "descriptor": page["descriptor"],
            "time": page["time"][i],
            "uid": page["uid"][i],
            "seq_num": page["seq_num"][i],
            "data": {k: v[i] for k, v in data.items()},
            "timestamps": {k: v[i] for k, v in timestamps.items()},
            "filled": {k: v[i] for k, v in filled.items()},
        }


def pack_datums(datums: Sequence[Datum]) -> DatumPage:
    """One datum_page from datums of one resource."""
    keys = list(datums[0]["datum_kwargs"])
    return {
        "resource": datums[0]["resource"],
        "datum_id": [d["datum_id"] for d in datums],
        "datum_kwargs": {k: [d["datum_kwargs"][k] for d in datums] for k in keys},
    }


def unpack_datum_page(page: DatumPage) -> Iterator[Datum]:
    kwargs = page["datum_kwargs"]
    for i, datum_id in enumerate(page["datum_id"]):
        yield {
            "resource": page["resource"],
            "datum_id": datum_id,
            "datum_kwargs": {k: v[i] for k, v in kwargs.items()},
        }


def select_fields(page: EventPage, fields: Iterable[str] | None) -> EventPage:
    """The page with only ``fields`` in data/timestamps/filled."""
    if fields is None:
        return page
    wanted = set(fields)
    source: Mapping[str, Any] = page
    out = dict(source)
    for part in ("data", "timestamps", "filled"):
        if part in source:  # a page stored without 'filled' stays so
            out[part] = {k: v for k, v in source[part].items() if k in wanted}
    return cast("EventPage", out)


def slice_page(page: EventPage, start: int, stop: int) -> EventPage:
    """Rows ``start:stop`` of one page (lists and numpy arrays alike)."""
    source: Mapping[str, Any] = page
    out = dict(source)
    for key in _EVENT_COLUMNS:
        if key in source:
            out[key] = source[key][start:stop]
    for part in ("data", "timestamps", "filled"):
        if part in source:  # a page stored without 'filled' stays so
            out[part] = {k: v[start:stop] for k, v in source[part].items()}
    return cast("EventPage", out)


def slice_pages(pages: Iterable[EventPage], rows: tuple[int, int] | None) -> Iterator[EventPage]:
    """Apply a ``(start, stop)`` row window over consecutive pages."""
    if rows is None:
        yield from pages
        return
    start, stop = rows
    offset = 0
    for page in pages:
        n = page_length(page)
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            yield page if (lo, hi) == (0, n) else slice_page(page, lo, hi)
        offset += n
        if offset >= stop:
            return


def as_column(values: Any) -> Any:
    """A 1-D numpy array for a column of scalars; anything else unchanged.

    Array-valued columns stay as they came (nested lists, or numpy from a
    binary format) so that :func:`plain_page` can give them back unmodified,
    and so do columns that no numpy dtype other than object holds exactly.
    """
    if isinstance(values, np.ndarray) or not values:
        return values
    if type(values) is list:
        # Only floats or only ints (the common cases): no dtype to infer.
        numbers = number_array(values, len(values))
        if numbers is not None:
            return numbers
    first = values[0]
    if isinstance(first, list | dict):
        return values
    arr = exact_array(values)
    # Only a float column can hold ints beside floats: numpy makes any list
    # with a float float64, and exact_array makes ints too big for float64
    # beside a float an object column.
    if arr.dtype.kind == "f" and mixed_numbers(values):
        # ints (or bools) among floats: kept as stored (canonical() gives
        # back 0, not 0.0, and 1.0, not 1, beside an int that makes the
        # column uint64); the column is built when reading.
        return values
    if arr.dtype.kind in "US" and len(set(map(type, values))) > 1:
        # numbers among strings: numpy would make them strings.
        return values
    return arr if arr.ndim == 1 and arr.dtype != object else values


#: Event pages of at least this many rows are worth making columnar on their
#: own as a file format decodes them (see :func:`columnar_page`), instead of
#: being merged with their neighbours into longer lists first.
COLUMNAR_ROWS = 256
#: The keys of an event page, and those it must have, for columnar_page().
_PAGE_KEYS = frozenset({"descriptor", "uid", "time", "seq_num", "data", "timestamps", "filled"})
_REQUIRED_PAGE_KEYS = _PAGE_KEYS - {"filled"}
#: The types a ``filled`` column may hold in a page columnar_page() takes.
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def columnar_page(doc: Mapping[str, Any], n: int) -> dict[str, Any] | None:
    """A big event page with its number columns made numpy arrays, or None.

    A page of hundreds of rows gains nothing from being merged with the
    next ones (merging copies every value into longer lists); the core joins
    such pages, their arrays concatenated, as it joins any others. File
    formats call this on each big page they decode (see
    :data:`COLUMNAR_ROWS`).

    The columns the core makes arrays of (``time``, ``seq_num``, ``data``,
    ``timestamps``) must each hold only floats, which become float64, or
    only ints, which become what :func:`as_column` would make of them
    (int64, or uint64 beyond its range); ``uid`` only strings (or be a
    :class:`~.uids.UidColumn`); ``filled`` only plain values. Any other
    page (other keys, other values, arrays of another length, columns of
    unequal length) is None: the caller keeps it as decoded, and the core
    reads it exactly as before.

    Parameters
    ----------
    doc : mapping
        An event page as decoded (columns as lists; a 1-D numpy array of
        ``n`` values is taken as it is).
    n : int
        Its number of rows, ``len(doc["seq_num"])``.

    Returns
    -------
    dict or None
        A new page; ``doc`` is left unchanged.

    Examples
    --------
    >>> page = columnar_page(
    ...     {"descriptor": "d", "uid": ["a", "b"], "time": [1.0, 2.0], "seq_num": [1, 2],
    ...      "data": {"x": [0.5, 1.5]}, "timestamps": {"x": [1.0, 2.0]}, "filled": {}}, 2)
    >>> page["data"]["x"].dtype, page["seq_num"].dtype, page["uid"]
    (dtype('float64'), dtype('int64'), ['a', 'b'])
    >>> columnar_page({**page, "data": {"x": [1, 0.5]}}, 2) is None
    True
    """
    keys = doc.keys()
    if not (_REQUIRED_PAGE_KEYS <= keys <= _PAGE_KEYS):
        return None
    uid, data, timestamps = doc["uid"], doc["data"], doc["timestamps"]
    filled = doc.get("filled", {})
    if (
        type(doc["descriptor"]) is not str
        or type(data) is not dict
        or type(timestamps) is not dict
        or type(filled) is not dict
        or len(uid) != n
        or (type(uid) is not UidColumn and type(uid) is not list)
        or (type(uid) is list and list(map(type, uid)).count(str) != n)
    ):
        return None
    for column in filled.values():
        if type(column) is not list or len(column) != n or not set(map(type, column)) <= _PLAIN:
            return None
    page = dict(doc)
    for key in ("time", "seq_num"):
        array = number_array(doc[key], n)
        if array is None:
            return None
        page[key] = array
    for part, columns in (("data", data), ("timestamps", timestamps)):
        arrays = {}
        for key, column in columns.items():
            array = number_array(column, n)
            if array is None:
                return None
            arrays[key] = array
        page[part] = arrays
    return page


def number_array(column: Any, n: int) -> np.ndarray | None:
    """A list of ``n`` floats as float64, of ``n`` ints as :func:`as_column`
    makes them (int64, or uint64 beyond its range); None for anything else.

    A 1-D numpy array of ``n`` values (a format that read the numbers
    straight from its bytes) is returned as it is.

    Examples
    --------
    >>> number_array([1.5, 2.0], 2).dtype, number_array([2**63, 2**64 - 1], 2).dtype
    (dtype('float64'), dtype('uint64'))
    >>> number_array([1, 2.0], 2) is None, number_array([True, False], 2) is None
    (True, True)
    """
    if type(column) is np.ndarray:
        return column if column.ndim == 1 and len(column) == n else None
    if type(column) is not list or len(column) != n:
        return None
    types = list(map(type, column))
    if types.count(float) == n:
        # No dtype to infer: fromiter, not asarray.
        return np.fromiter(column, np.float64, n)
    if types.count(int) != n:
        return None  # bools, strings, maps, or numbers of two kinds
    try:
        # What as_column makes of ints that int64 holds (numpy's own
        # inference, which asarray would run, costs twice as much).
        return np.fromiter(column, np.int64, n)
    except OverflowError:
        pass
    # Beyond int64: uint64 if that holds them all; objects or float64
    # (rounded, beside negative ones) are left to the core, as stored.
    array = np.asarray(column)
    return array if array.dtype.kind == "u" else None


def exact_array(values: Sequence[Any]) -> np.ndarray:
    """``values`` (Python scalars, or nested lists of them) as an array that
    holds every one of them unchanged: numpy's own dtype where it does,
    uint64 for integers above int64's range, else object.

    ``np.asarray`` alone rounds integers above 2**53 whenever it picks
    float64 (ints among floats, or ints beyond int64) and drops trailing NUL
    characters from strings (``<U``/``S``); these are the cases checked.

    Examples
    --------
    >>> exact_array([0, 2**63 + 1]).dtype
    dtype('uint64')
    >>> exact_array([2**53 + 1, 0.5]).tolist()
    [9007199254740993, 0.5]
    >>> exact_array(["a\\x00", "b"]).tolist()
    ['a\\x00', 'b']
    """
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        arr = _objects(values)
    kind = arr.dtype.kind
    if kind == "f" and not _survived(values, arr):
        objects = _objects(values)
        if any(isinstance(v, float | np.floating) for v in objects.ravel().tolist()):
            # Floats beside integers float64 cannot hold: uint64 would make
            # 1.0 an int and -0.0 a 0; only objects keep both exactly.
            return objects
        try:
            # Integers beyond int64 (up to 2**64 - 1) fit uint64; anything
            # else this truncates or wraps is caught by the check below.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.asarray(values, dtype=np.uint64)
        except (ValueError, TypeError, OverflowError):
            return _objects(values)
        return arr if _survived(values, arr) else _objects(values)
    if kind in "US" and arr.size:
        # numpy strips trailing NULs; any NUL at all is rare, and one C-speed
        # search over the joined text tells whether to look closer.
        # (Rows of nested lists are joined from the stored strings: arr's
        # own have lost their NULs already.)
        flat: Any = _objects(values).ravel().tolist() if arr.ndim > 1 else values
        nul: Any = "\0" if kind == "U" else b"\0"
        try:
            joined = nul[:0].join(flat)
        except TypeError:  # str and bytes together: numpy made them one kind
            return _objects(values)
        if nul in joined:
            return _objects(values)
    return arr


def _objects(values: Sequence[Any]) -> np.ndarray:
    """An object array of the values (rows of nested lists as lists when
    they are not rectangular)."""
    arr: np.ndarray | None
    try:
        arr = np.array(values, dtype=object)
    except ValueError:
        arr = None
    if arr is None or arr.ndim == 0:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    return arr


def _survived(values: Sequence[Any], arr: np.ndarray) -> bool:
    """Whether every value is equal to its element of numeric ``arr``.

    All floats (what JSON numbers with a point are) survive: only ints, the
    cheap signal, need the elementwise comparison, done in C on objects
    (Python compares ints with floats exactly).
    """
    if arr.ndim == 1 and list(map(type, values)).count(float) == len(values):
        return True
    try:
        obj = np.array(values, dtype=object)
    except ValueError:
        return False
    if obj.shape != arr.shape:
        return False
    differ = obj != arr.astype(object)
    if arr.dtype.kind == "f":
        differ &= ~np.isnan(arr)
    return not bool(differ.any())


def mixed_numbers(values: Iterable[Any]) -> bool:
    """Whether a list of scalars holds floats and other numbers (int, bool)."""
    types = set(map(type, values))
    return float in types and len(types) > 1


def _plain(column: Any) -> Any:
    if isinstance(column, np.ndarray) and column.ndim == 1 or isinstance(column, UidColumn):
        return column.tolist()
    return column


def plain_page(page: EventPage) -> EventPage:
    """An event page whose scalar columns are lists again (JSON-schema valid)."""
    source: Mapping[str, Any] = page
    out = dict(source)
    for key in _EVENT_COLUMNS:
        out[key] = _plain(source[key])
    for part in ("data", "timestamps", "filled"):
        if part in source:
            out[part] = {k: _plain(v) for k, v in source[part].items()}
    return cast("EventPage", out)


def _concat(columns: list[Any], empty: _Empty | None = None, column: Any = None) -> Any:
    if len(columns) == 1 and (
        empty is None
        or not isinstance(columns[0], np.ndarray)
        # Arrays this big are given memory of their own by malloc, or leave
        # holes the next such array fills: a copy would only cost time.
        or columns[0].nbytes > _MOVED_BYTES
    ):
        return columns[0]
    if all(isinstance(c, UidColumn) for c in columns):
        return UidColumn.concat(columns)
    if all(isinstance(c, np.ndarray) for c in columns):
        # Within one kind, numpy only widens (int32 with int64, float32 with
        # float64): exact. Across kinds it would change values (ints above
        # 2**53 among floats, bools among ints), so those become lists.
        if len({c.dtype.kind for c in columns}) == 1:
            if empty is not None and len({c.shape[1:] for c in columns}) == 1:
                shape = (sum(len(c) for c in columns), *columns[0].shape[1:])
                out = empty(column, shape, np.result_type(*columns))
                if out is not None:
                    return np.concatenate(columns, out=out)
                if len(columns) == 1:
                    return columns[0]  # left where it is: no copy
            try:
                return np.concatenate(columns)
            except ValueError:  # differing shapes
                pass
    out_list: list[Any] = []
    for c in columns:
        # 1-D arrays as Python values, so as_column() sees what was stored.
        out_list.extend(_plain(c))
    return out_list


def merge_event_pages(pages: Sequence[EventPage], empty: _Empty | None = None) -> EventPage:
    """One event_page from consecutive pages of one descriptor.

    ``empty(column, shape, dtype)``, if given, makes the arrays that numpy
    columns are joined into, or gives None to leave that to numpy (see
    :class:`~.slabs.ColumnSlabs`); ``column`` is ``(descriptor, part,
    key)``, part ``None`` for ``time``/``seq_num``. A single page's columns
    of up to ``_MOVED_BYTES`` are then copied into such arrays too, the
    page's other keys kept as they are.

    A ``filled`` map is in the result only if the first page has one: a
    page stored without it is given back without it.
    """
    if len(pages) == 1 and empty is None:
        return pages[0]
    sources: Sequence[Mapping[str, Any]] = pages
    first = sources[0]
    d = first["descriptor"]
    merged: dict[str, Any] = dict(first) if len(pages) == 1 else {"descriptor": d}
    for key in _EVENT_COLUMNS:
        merged[key] = _concat([p[key] for p in sources], empty, (d, None, key))
    for part in ("data", "timestamps", "filled"):
        if part == "filled" and part not in first:
            continue
        keys = first.get(part, {})
        merged[part] = {
            k: _concat([p[part][k] for p in sources], empty, (d, part, k)) for k in keys
        }
    return cast("EventPage", merged)


def merge_datum_pages(pages: Sequence[DatumPage]) -> DatumPage:
    """One datum_page from consecutive pages of one resource."""
    if len(pages) == 1:
        return pages[0]
    return {
        "resource": pages[0]["resource"],
        "datum_id": _concat([list(p["datum_id"]) for p in pages]),
        "datum_kwargs": {
            k: _concat([p["datum_kwargs"][k] for p in pages]) for k in pages[0]["datum_kwargs"]
        },
    }
