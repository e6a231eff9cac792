"""The rows of a stream: fields, seq_num alignment, windows of rows.

A stream's rows are its events *and* the rows its stream_datums declare,
aligned by ``seq_num`` (a fly scan has stream datums and no events at all;
``time`` is NaN where no event carries it). :class:`FieldSpec` says how one
data key becomes a variable, :class:`RowIndex` which rows a descriptor has,
:class:`Window` a slice of them (the unit of loading, eager or lazy).
Columns are built per page column (one ``np.asarray``/``np.concatenate`` per
field), never per event per field.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ..driver import RunSource
from .documents import BadDocumentError, event_columns
from .pages import exact_array

__all__ = [
    "seq_digest",
    "FieldSpec",
    "RowIndex",
    "Window",
    "data_kind",
    "missing_capable",
    "page_column",
    "row_event",
    "seconds_column",
    "seq_range",
    "seq_runs",
]

_JSON_DTYPES = {"integer": np.dtype("int64"), "boolean": np.dtype("bool")}
_ATTR_KEYS = (
    "source",
    "units",
    "precision",
    "object_name",
    "dtype",
    "dtype_numpy",
    "external",
    "shape",
    "limits",
)


def data_kind(data_key: Mapping[str, Any]) -> str:
    """Where a field's data is: ``"inline"`` in events, ``"datum"`` behind
    datum ids in events, ``"stream"`` in stream_datum documents."""
    external = data_key.get("external")
    if not external:
        return "inline"
    return "stream" if str(external).upper().startswith("STREAM") else "datum"


@dataclass
class FieldSpec:
    """How one data key of one descriptor becomes a variable."""

    key: str
    data_key: dict[str, Any]
    #: "inline" (values in events), "datum" (datum ids in events), "stream"
    #: (rows from stream_datum documents, absent from events).
    kind: str = "inline"
    dims: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: Where ``dtype`` comes from, for messages.
    declared: str = ""

    @classmethod
    def from_data_key(cls, key: str, data_key: dict[str, Any]) -> FieldSpec:
        kind = data_kind(data_key)
        shape = tuple(int(s) for s in (data_key.get("shape") or ()) if s is not None)
        dims = data_key.get("dims")
        if not dims or len(dims) != len(shape):
            # Prefixed with the key so that arrays of different fields never
            # claim one dimension with conflicting sizes.
            dims = [f"{key}_dim_{i}" for i in range(len(shape))]
        dtype, declared = None, ""
        dtype_numpy = data_key.get("dtype_numpy")
        if isinstance(dtype_numpy, str) and dtype_numpy:
            dtype, declared = np.dtype(dtype_numpy), f"dtype_numpy {dtype_numpy!r}"
        elif data_key.get("dtype") in _JSON_DTYPES and kind == "inline":
            dtype = _JSON_DTYPES[data_key["dtype"]]
            declared = f"dtype {data_key['dtype']!r}"
        attrs = {k: data_key[k] for k in _ATTR_KEYS if k in data_key}
        return cls(key, data_key, kind, tuple(dims), shape, dtype, attrs, declared)

    @property
    def row_bytes(self) -> int:
        itemsize = self.dtype.itemsize if self.dtype is not None else 8
        return max(1, itemsize * math.prod(self.shape))

    def empty(self) -> np.ndarray:
        """Zero rows of this field, correctly shaped and typed."""
        return np.empty((0, *self.shape), dtype=self.dtype or np.dtype("float64"))


def page_column(
    pieces: Sequence[Any], numeric: bool = False, float_hint: bool = False
) -> np.ndarray:
    """One column from page columns, in the values' own dtype (no value
    changed: see :func:`exact_array`)."""
    if pieces and all(isinstance(p, np.ndarray) for p in pieces):
        if len(pieces) == 1:
            only: np.ndarray = pieces[0]
            return only
        # Within one kind numpy only widens (exact); across kinds (int64 and
        # float64 pages of one field) it would round, so those go through
        # their Python values below.
        if len({p.dtype.kind for p in pieces}) == 1:
            return np.concatenate(pieces)
    flat = list(
        itertools.chain.from_iterable(
            p.tolist() if isinstance(p, np.ndarray) and p.ndim == 1 else p for p in pieces
        )
    )
    out = exact_array(flat) if flat else np.empty((0,))
    if out.dtype == object and (numeric or float_hint) and any(v is None for v in flat):
        # JSON null for a missing numeric reading becomes NaN.
        filled = [np.nan if v is None else v for v in flat]
        as_float = exact_array(filled)
        if as_float.dtype.kind == "f":
            out = as_float
    return out


def row_event(pages: Sequence[Mapping[str, Any]], row: int) -> str:
    """Which event row ``row`` of the pages' columns is, for messages."""
    for page in pages:
        n = len(page["seq_num"])
        if row < n:
            seq_num = list(page["seq_num"])[row]
            # A lean read's uids are looked up here (documents.LeanUids),
            # and may not be found.
            uid = page["uid"] if isinstance(page["uid"], str) else page["uid"][row]
            if uid is None:
                return f"the event with seq_num {seq_num}"
            return f"event {uid!r} (seq_num {seq_num})"
        row -= n
    return f"event row {row}"


def seconds_column(
    pages: Sequence[Mapping[str, Any]],
    pieces: Sequence[Any],
    run: str,
    descriptor_uid: str,
    what: str,
) -> np.ndarray:
    """A column of epoch seconds (event times or timestamps) as float64, or
    an error naming the event whose value is not a number."""
    column = page_column(pieces, numeric=True)
    if column.dtype.kind in "fiub":
        return column.astype("float64", copy=False)
    bad = [
        (row, value)
        for row, value in enumerate(column.tolist())
        if value is not None and not isinstance(value, int | float)
    ]
    if not bad:
        return column.astype("float64")
    row, value = bad[0]
    raise BadDocumentError(
        f"Run {run!r}: {row_event(pages, row)} of descriptor {descriptor_uid!r} has "
        f"{what} {value!r}, which is not a number (epoch seconds). The run's storage "
        "holds a damaged event; correct or remove it."
    )


def seq_range(sd: Mapping[str, Any], run: str) -> tuple[int, int]:
    """A stream_datum's ``seq_nums`` as ``(start, stop)``, or a clear error."""
    try:
        return int(sd["seq_nums"]["start"]), int(sd["seq_nums"]["stop"])
    except (KeyError, TypeError) as err:
        raise BadDocumentError(
            f"Run {run!r}: stream_datum {sd.get('uid')!r} has no seq_nums {{start, stop}} "
            f"({err!r}); it is of an event-model older than 1.20 (block_idx/event_count/"
            "event_offset), which cannot be aligned with events. Re-export the run with "
            "event-model >= 1.20, or read the other fields with exclude=[...]."
        ) from None


@dataclass
class Window:
    """A window of rows ``[r0, r1)`` of one descriptor's row index.

    ``e0:e1`` are the events in it (positions among the descriptor's events);
    ``seq_runs`` lists its seq_nums as ``(start, stop)`` ranges when its rows
    are not exactly its events (rows from stream datums only), else None.
    """

    r0: int
    r1: int
    e0: int
    e1: int
    seq_runs: tuple[tuple[int, int], ...] | None = None
    #: :func:`seq_digest` of the seq_nums of events ``e0:e1`` when the index
    #: was built: a read of those events checks it got the same ones.
    events: str | None = None

    @property
    def n(self) -> int:
        return self.r1 - self.r0

    def seq_nums(self) -> np.ndarray | None:
        if self.seq_runs is None:
            return None
        return np.concatenate(
            [np.arange(a, b, dtype="int64") for a, b in self.seq_runs]
            or [np.empty((0,), dtype="int64")]
        )


def seq_digest(seq: np.ndarray) -> str:
    """A short digest of seq_nums (the same in every process, on any machine)."""
    return hashlib.blake2b(
        np.ascontiguousarray(seq, dtype="<i8").tobytes(), digest_size=8
    ).hexdigest()


def seq_runs(seq: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Sorted unique ints as maximal ``(start, stop)`` ranges."""
    if len(seq) == 0:
        return ()
    breaks = np.flatnonzero(np.diff(seq) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(seq)]])
    return tuple((int(seq[a]), int(seq[b - 1]) + 1) for a, b in zip(starts, stops))


@dataclass
class RowIndex:
    """The rows of one descriptor: ``seq_num`` (sorted) and ``time``.

    Built from the events' seq_nums and times and the seq_num ranges of the
    descriptor's stream datums. ``aligned`` when the rows are exactly the
    events (no stream data, or stream datums that match the events): then
    row ``i`` is event ``i``.
    """

    seq_num: np.ndarray
    time: np.ndarray
    event_seq: np.ndarray
    aligned: bool

    @classmethod
    def build(cls, source: RunSource, descriptor: Mapping[str, Any], has_stream: bool) -> RowIndex:
        pages = event_columns(source, descriptor["uid"], [], None, None)
        times = seconds_column(
            pages, [p["time"] for p in pages], source.uid, descriptor["uid"], "time"
        )
        event_seq = page_column([p["seq_num"] for p in pages]).astype("int64", copy=False)
        if len(event_seq) > 1 and (np.diff(event_seq) <= 0).any():
            raise BadDocumentError(
                f"Run {source.uid!r}: the events of descriptor {descriptor['uid']!r} do not "
                "have increasing seq_nums; the run's storage is damaged."
            )
        if not has_stream:
            return cls(event_seq, times, event_seq, True)
        ranges = [seq_range(sd, source.uid) for sd in source.stream_datums(descriptor["uid"])]
        if not ranges:
            return cls(event_seq, times, event_seq, True)
        declared = np.concatenate([np.arange(a, b, dtype="int64") for a, b in ranges])
        seq = np.union1d(event_seq, declared)
        if len(seq) == len(event_seq):
            return cls(event_seq, times, event_seq, True)
        if len(event_seq) and seq[-1] > event_seq[-1] and source.stop() is None:
            # ophyd-async emits a stream_datum just before its event: in a run
            # being written, rows after the last event wait for their events
            # (shown once they arrive), so a step scan read live keeps the
            # dtypes of its inline fields.
            pending = seq > event_seq[-1]
            if len(seq) - pending.sum() == len(event_seq):
                return cls(event_seq, times, event_seq, True)
        time = np.full(len(seq), np.nan)
        time[np.searchsorted(seq, event_seq)] = times
        return cls(seq, time, event_seq, False)

    def __len__(self) -> int:
        return len(self.seq_num)

    def window(self, r0: int, r1: int) -> Window:
        if self.aligned:
            return Window(r0, r1, r0, r1, None, seq_digest(self.event_seq[r0:r1]))
        seq = self.seq_num[r0:r1]
        if len(seq) == 0:
            return Window(r0, r1, 0, 0, ())
        e0 = int(np.searchsorted(self.event_seq, seq[0], side="left"))
        e1 = int(np.searchsorted(self.event_seq, seq[-1], side="right"))
        return Window(r0, r1, e0, e1, seq_runs(seq), seq_digest(self.event_seq[e0:e1]))

    def everything(self) -> Window:
        return self.window(0, len(self))


@overload
def missing_capable(dtype: np.dtype) -> np.dtype: ...
@overload
def missing_capable(dtype: None) -> None: ...
def missing_capable(dtype: np.dtype | None) -> np.dtype | None:
    """The dtype a column takes when some rows have no event: NaN for
    numbers (floats stay, integers and booleans become float64, as in
    xarray's own alignment), None in objects for the rest."""
    if dtype is None or dtype.kind in "fc":
        return dtype
    return np.dtype("float64") if dtype.kind in "iub" else np.dtype(object)
