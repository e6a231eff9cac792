"""Event pages and stream datums -> numpy columns -> xarray Datasets, eagerly
or as dask graphs.

A stream's rows are its events *and* the rows its stream_datums declare,
aligned by ``seq_num`` (a fly scan has stream datums and no events at all;
``time`` is NaN where no event carries it). Columns are built per page column
(one ``np.asarray``/``np.concatenate`` per field), never per event per field.
Lazily, each dask chunk is one task that loads a window of rows for a group of
fields (and fills their external data), sized to about :data:`CHUNK_BYTES`
and, for stream data, to whole multiples of the storage's own chunks.

Every cast to a declared dtype is lossless (:mod:`._casting`): values that do
not fit keep their own dtype, with a warning. A dask array's dtype is fixed
before any data is read, so a chunk whose values do not fit the declared
dtype raises :class:`DtypeMismatchError` at compute time instead of being
truncated; ``read()`` (which keeps the stored dtype) or ``to_dask(dtypes=)``
then reads it.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph
from dask.utils import parse_bytes

from ..driver import RunSource
from ..errors import DtypeMismatchError
from .casting import fits, lossless_cast, why_not
from .documents import BadDocumentError
from .filling import Filler, FillError
from .pages import exact_array, first_of

__all__ = [
    "CHUNK_BYTES",
    "DtypeMismatchError",
    "FieldSpec",
    "RowIndex",
    "build_dataset",
    "data_kind",
]

#: Target size of one dask chunk.
CHUNK_BYTES = 100 * 2**20

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


def data_kind(data_key: dict) -> str:
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
    data_key: dict
    #: "inline" (values in events), "datum" (datum ids in events), "stream"
    #: (rows from stream_datum documents, absent from events).
    kind: str = "inline"
    dims: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    attrs: dict = field(default_factory=dict)
    #: Where ``dtype`` comes from, for messages.
    declared: str = ""

    @classmethod
    def from_data_key(cls, key: str, data_key: dict) -> FieldSpec:
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


def _column(pieces: Sequence, numeric: bool = False, float_hint: bool = False) -> np.ndarray:
    """One column from page columns, in the values' own dtype (no value
    changed: see :func:`exact_array`)."""
    if pieces and all(isinstance(p, np.ndarray) for p in pieces):
        if len(pieces) == 1:
            return pieces[0]
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


def _row_event(pages: Sequence[dict], row: int) -> str:
    """Which event row ``row`` of the pages' columns is, for messages."""
    for page in pages:
        n = len(page["seq_num"])
        if row < n:
            uid = page["uid"] if isinstance(page["uid"], str) else page["uid"][row]
            return f"event {uid!r} (seq_num {list(page['seq_num'])[row]})"
        row -= n
    return f"event row {row}"


def _seconds(pages, pieces, run: str, descriptor_uid: str, what: str) -> np.ndarray:
    """A column of epoch seconds (event times or timestamps) as float64, or
    an error naming the event whose value is not a number."""
    column = _column(pieces, numeric=True)
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
        f"Run {run!r}: {_row_event(pages, row)} of descriptor {descriptor_uid!r} has "
        f"{what} {value!r}, which is not a number (epoch seconds). The run's storage "
        "holds a damaged event; correct or remove it."
    )


def _check_scalars(column: np.ndarray, pages, run: str, descriptor_uid: str, key: str) -> None:
    """A field declared scalar (``shape: []``) whose events hold arrays in
    some rows: an error naming the first such event, not a ragged column."""
    for row, value in enumerate(column.tolist()):
        if isinstance(value, list | dict | np.ndarray):
            raise BadDocumentError(
                f"Run {run!r}: {_row_event(pages, row)} of descriptor {descriptor_uid!r} "
                f"holds {type(value).__name__} {_brief_value(value)} in field {key!r}, which "
                "the descriptor declares a scalar (shape []). Read the other fields with "
                f"exclude=[{key!r}]."
            )


def _brief_value(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- rows ---------------------------------------------------------------------


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


def _runs_of(seq: np.ndarray) -> tuple[tuple[int, int], ...]:
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
    def build(cls, source: RunSource, descriptor: dict, has_stream: bool) -> RowIndex:
        pages = list(source.event_pages(descriptor["uid"], [], None))
        times = _seconds(pages, [p["time"] for p in pages], source.uid, descriptor["uid"], "time")
        event_seq = _column([p["seq_num"] for p in pages]).astype("int64", copy=False)
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
            return Window(r0, r1, r0, r1)
        seq = self.seq_num[r0:r1]
        if len(seq) == 0:
            return Window(r0, r1, 0, 0, ())
        e0 = int(np.searchsorted(self.event_seq, seq[0], side="left"))
        e1 = int(np.searchsorted(self.event_seq, seq[-1], side="right"))
        return Window(r0, r1, e0, e1, _runs_of(seq))

    def everything(self) -> Window:
        return self.window(0, len(self))


# --- loading --------------------------------------------------------------------


def seq_range(sd: dict, run: str) -> tuple[int, int]:
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


def missing_capable(dtype: np.dtype | None) -> np.dtype | None:
    """The dtype a column takes when some rows have no event: NaN for
    numbers (floats stay, integers and booleans become float64, as in
    xarray's own alignment), None in objects for the rest."""
    if dtype is None or dtype.kind in "fc":
        return dtype
    return np.dtype("float64") if dtype.kind in "iub" else np.dtype(object)


def _spread(values: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Event values placed at their rows; rows without an event are missing
    (see :func:`missing_capable`). Integers too large for float64 keep their
    values in an object array: no value is changed."""
    dtype = missing_capable(values.dtype)
    if dtype.kind == "f" and not fits(values, dtype):
        dtype = np.dtype(object)
    fill = np.nan if dtype.kind in "fc" else None
    out = np.full((n, *values.shape[1:]), fill, dtype=dtype)
    out[positions] = values
    return out


def load_columns(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    specs: Sequence[FieldSpec],
    window: Window | tuple[int, int] | None,
    part: str = "data",
    cast: bool = True,
) -> dict[str, np.ndarray]:
    """Columns of a window of one descriptor's rows, with ``time``/``seq_num``.

    ``part`` is ``"data"`` or ``"timestamps"``. Datum ids are filled when a
    ``filler`` is given; ``stream`` fields are read from stream datums.
    ``window=None`` or ``(r0, r1)`` means rows that are exactly events.
    ``cast=False`` leaves inline values in their own dtype (dask tasks check
    them against the array's dtype themselves).
    """
    if window is None or isinstance(window, tuple):
        rows = window
        window = None
    else:
        rows = (window.e0, window.e1)
    event_specs = [s for s in specs if s.kind != "stream"]
    pages = list(source.event_pages(descriptor_uid, [s.key for s in event_specs], rows))
    event_seq = _column([p["seq_num"] for p in pages]).astype("int64", copy=False)
    event_time = _seconds(pages, [p["time"] for p in pages], source.uid, descriptor_uid, "time")
    seq = None if window is None else window.seq_nums()
    positions = None
    if seq is None or (len(seq) == len(event_seq) and np.array_equal(seq, event_seq)):
        out = {"time": event_time, "seq_num": event_seq}
    else:
        positions = np.searchsorted(seq, event_seq)
        time = np.full(len(seq), np.nan)
        time[positions] = event_time
        out = {"time": time, "seq_num": seq}
    n = len(out["seq_num"])
    for spec in event_specs:
        pieces = [p.get(part, {}).get(spec.key) for p in pages]
        if any(piece is None for piece in pieces):
            bad = next(p for p in pages if p.get(part, {}).get(spec.key) is None)
            raise BadDocumentError(
                f"Run {source.uid!r}: event {first_of(bad['uid'])!r} (seq_num "
                f"{first_of(list(bad['seq_num']))}) of descriptor {descriptor_uid!r} lacks "
                f"the {part} of {spec.key!r}, which the descriptor declares. Read the other "
                f"fields with exclude=[{spec.key!r}]."
            )
        if part == "timestamps":
            column = _seconds(
                pages, pieces, source.uid, descriptor_uid, f"timestamp of {spec.key!r}"
            )
        elif spec.kind == "datum" and filler is not None:
            ids = list(itertools.chain.from_iterable(pieces))
            # A whole descriptor read eagerly may be many frames: a progress
            # bar (dask chunk tasks, cast=False, stay silent).
            desc = f"Loading {spec.key}" if cast else None
            column = filler.fill_column(
                ids, spec.dtype, field=spec.key, declared=spec.declared, desc=desc
            )
        elif spec.kind == "datum":
            column = _column(pieces)
        else:
            numeric = spec.data_key.get("dtype") == "number"
            float_hint = spec.dtype is not None and spec.dtype.kind in "fc"
            column = _column(pieces, numeric, float_hint)
            if column.dtype.kind == "O" and not spec.shape and spec.data_key.get("shape") == []:
                _check_scalars(column, pages, source.uid, descriptor_uid, spec.key)
            if cast:
                column = lossless_cast(
                    column, spec.dtype, run=source.uid, field=spec.key, what=spec.declared
                )
        if len(column) == 0 and part == "data":
            column = spec.empty() if spec.kind != "datum" or filler is not None else column
        out[spec.key] = column if positions is None else _spread(column, positions, n)
    if part == "data":
        for spec in specs:
            if spec.kind == "stream":
                out[spec.key] = _stream_column(source, filler, descriptor_uid, spec, out)
    return out


def _stream_datums_for(source: RunSource, filler: Filler, descriptor_uid: str, key: str):
    sds = [
        sd
        for sd in source.stream_datums(descriptor_uid)
        if filler.stream_resource(sd["stream_resource"]).get("data_key") == key
    ]
    return sorted(sds, key=lambda sd: seq_range(sd, source.uid)[0])


def _stream_column(source, filler, descriptor_uid, spec, columns):
    if filler is None:
        raise ValueError(f"Field {spec.key!r} is stream data; it can only be read filled.")
    seq = columns["seq_num"]
    if len(seq) == 0:
        return spec.empty()
    sds = _stream_datums_for(source, filler, descriptor_uid, spec.key)
    if not sds:
        raise FillError(
            f"Run {source.uid!r}: field {spec.key!r} of descriptor {descriptor_uid!r} is stream "
            "data, but the run's storage holds no stream_datum documents for it (suitcase-"
            "msgpack 0.3 and other serializers older than stream data drop them). Read the "
            f"other fields with exclude=[{spec.key!r}], or re-export the run from a store that "
            "kept its stream_resource/stream_datum documents."
        )
    lo, hi = int(seq[0]), int(seq[-1]) + 1
    wanted, covered = [], []
    for sd in sds:
        s0, s1 = seq_range(sd, source.uid)
        a, b = max(s0, lo), min(s1, hi)
        if a < b:
            i0 = sd["indices"]["start"] + (a - s0)
            wanted.append({**sd, "indices": {"start": i0, "stop": i0 + (b - a)}})
            covered.append(np.arange(a, b, dtype="int64"))
    covered = np.concatenate(covered) if covered else np.empty((0,), dtype="int64")
    if not np.array_equal(covered, seq):
        missing = np.setdiff1d(seq, covered)
        extra = len(covered) - len(np.unique(covered))
        what = (
            f"no stream_datum covers seq_num(s) {_brief(missing)}"
            if len(missing)
            else f"stream_datums overlap ({extra} seq_num(s) covered twice)"
        )
        raise FillError(
            f"Run {source.uid!r}: field {spec.key!r} (descriptor {descriptor_uid!r}): {what}. "
            "If the run is still in progress, read again later; otherwise its storage lost "
            f"stream_datum documents. Read the other fields with exclude=[{spec.key!r}]."
        )
    return filler.fill_stream(wanted, spec.data_key, field=spec.key)


def _brief(values: np.ndarray) -> str:
    runs = _runs_of(np.unique(values))
    text = ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in runs[:5])
    return text + (", ..." if len(runs) > 5 else "")


def _variable(spec: FieldSpec, values, part: str) -> xr.Variable:
    if part == "timestamps":
        return xr.Variable(("time",), values, attrs={"source": spec.attrs.get("source")})
    dims = ("time", *spec.dims)
    if getattr(values, "ndim", 1) != len(dims):
        # Unfilled datum ids, or data whose shape the descriptor misstates.
        dims = ("time", *[f"{spec.key}_dim_{i}" for i in range(values.ndim - 1)])
    return xr.Variable(dims, values, attrs=dict(spec.attrs))


# --- lazy -----------------------------------------------------------------------


def _resolve_lazy_meta(source, filler, descriptor_uid, specs, part, index: RowIndex):
    """Complete dtype/shape of fields whose descriptor does not declare them.

    Inline fields (values in the events) are typed from all their rows, as
    ``read()`` types them: a first row of ints followed by floats, or by ints
    beyond int64, would otherwise fix a dtype that the later rows do not fit.
    External data is typed from its first row (loads one datum).
    """
    unknown = [s for s in specs if s.dtype is None and part == "data"]
    if not unknown:
        return
    inline = [s for s in unknown if s.kind == "inline"]
    external = [s for s in unknown if s.kind != "inline"]
    first: dict = {}
    for group, window in ((inline, index.everything()), (external, index.window(0, 1))):
        if not group:
            continue
        try:
            first.update(load_columns(source, filler, descriptor_uid, group, window, part))
        except BadDocumentError:
            raise  # the documents are damaged: say so now, not at compute
        except Exception:
            # E.g. no handler yet: declare float64 with the descriptor's
            # shape; the error, if any, comes at compute time, where data is
            # read.
            pass
    for spec in unknown:
        sample = first.get(spec.key)
        if sample is None or len(sample) == 0:
            spec.dtype = np.dtype("float64")
            continue
        spec.dtype = sample.dtype
        spec.shape = sample.shape[1:]
        if len(spec.dims) != len(spec.shape):
            spec.dims = tuple(f"{spec.key}_dim_{i}" for i in range(len(spec.shape)))


def _take(columns: dict, key: str, dtype: np.dtype, run: str, rows: tuple[int, int]):
    """One field of a loaded window, checked against the dask array's dtype."""
    values = columns[key]
    if values.dtype == dtype:
        return values
    if fits(values, dtype):
        return values.astype(dtype)
    raise DtypeMismatchError(
        f"Run {run!r}: field {key!r} is declared {dtype.name}, but "
        f"{why_not(values, dtype, first_row=rows[0])}. "
        "to_dask() fixes dtypes before reading, so it refuses to truncate them: use "
        f"read(), which keeps the stored dtype, or to_dask(dtypes={{{key!r}: "
        f"{values.dtype.name!r}}})."
    )


def _rows_per_chunk(spec: FieldSpec, part: str, filler, chunks, n: int) -> int:
    """Rows per dask chunk: asked for, or ~CHUNK_BYTES in whole storage chunks."""
    row_bytes = 8 if part == "timestamps" else spec.row_bytes
    asked = chunks.get(spec.key, chunks.get(None)) if isinstance(chunks, Mapping) else chunks
    if isinstance(asked, int) and not isinstance(asked, bool):
        if asked < 1:
            raise ValueError(f"to_dask(chunks=...) must be a positive row count, not {asked}.")
        return min(asked, max(n, 1))
    target = CHUNK_BYTES if asked in (None, "auto") else parse_bytes(asked)
    per_chunk = max(1, target // row_bytes)
    storage = None
    if part == "data" and spec.kind == "stream" and filler is not None:
        storage = filler.stream_chunk_rows(spec.key, spec.data_key)
    if storage:
        per_chunk = max(storage, per_chunk // storage * storage)
    return min(per_chunk, max(n, 1))


def _lazy_descriptor(source, filler, descriptor_uid, specs, part, index: RowIndex, chunks):
    """Dask arrays for fields of one descriptor: one load task per chunk of
    rows (shared by the fields of a group), one take task per field."""
    _resolve_lazy_meta(source, filler, descriptor_uid, specs, part, index)
    if not index.aligned and len(index) > len(index.event_seq):
        for spec in specs:
            if spec.kind != "stream" or part == "timestamps":
                spec.dtype = missing_capable(spec.dtype)
    n = len(index)
    arrays: dict[str, da.Array] = {}
    # Group fields by rows-per-chunk so small fields share a task.
    groups: dict[tuple, list[FieldSpec]] = {}
    for spec in specs:
        per_chunk = _rows_per_chunk(spec, part, filler, chunks, n)
        # External data gets tasks of its own: computing a scalar column
        # must not load images.
        own = spec.key if part == "data" and spec.kind != "inline" else None
        groups.setdefault((per_chunk, own), []).append(spec)
    for (per_chunk, _), group in groups.items():
        bounds = [(r0, min(n, r0 + per_chunk)) for r0 in range(0, n, per_chunk)]
        windows = [index.window(r0, r1) for r0, r1 in bounds]
        load_name = f"load-{part}-{uuid.uuid4().hex}"
        loads = {
            (load_name, i): (load_columns, source, filler, descriptor_uid, group, w, part, False)
            for i, w in enumerate(windows)
        }
        for spec in group:
            dtype = np.dtype("float64") if part == "timestamps" else spec.dtype
            shape = () if part == "timestamps" else spec.shape
            if not windows:
                # Explicit chunks: dask cannot pick "auto" chunks for zero rows.
                arrays[spec.key] = da.empty(
                    (0, *shape), dtype=dtype, chunks=((0,), *((s,) for s in shape))
                )
                continue
            name = f"{spec.key}-{part}-{uuid.uuid4().hex}"
            zeros = (0,) * len(shape)
            layer = {
                (name, i, *zeros): (_take, (load_name, i), spec.key, dtype, source.uid, bounds[i])
                for i in range(len(windows))
            }
            graph = HighLevelGraph(
                {name: layer, load_name: loads}, {name: {load_name}, load_name: set()}
            )
            chunk_sizes = (tuple(hi - lo for lo, hi in bounds), *((s,) for s in shape))
            arrays[spec.key] = da.Array(graph, name, chunk_sizes, dtype=dtype)
    return arrays


# --- datasets ---------------------------------------------------------------------


def build_dataset(
    source: RunSource,
    filler: Filler | None,
    descriptors: Sequence[dict],
    keys: Sequence[str] | None,
    *,
    lazy: bool = False,
    part: str = "data",
    chunks=None,
    dtypes: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """The Dataset of one stream: ``descriptors`` concatenated along ``time``.

    Parameters
    ----------
    keys : sequence of str, optional
        The data keys to include (all when None).
    lazy : bool
        Dask-backed variables, no data read until compute (``time`` and
        ``seq_num`` are read eagerly: they define the shape).
    part : {"data", "timestamps"}
    chunks : int, str or dict, optional
        Lazy only: rows per chunk (int), a target size per chunk (``"50MB"``),
        or a dict of those per field (key ``None``: the default). Default:
        about :data:`CHUNK_BYTES`, in whole multiples of stream data's own
        storage chunks.
    dtypes : dict, optional
        Field -> dtype to use instead of the declared one (still lossless).
    """
    dtypes = dict(dtypes or {})
    unknown = sorted(set(dtypes) - {k for d in descriptors for k in d.get("data_keys", {})})
    if unknown:
        raise KeyError(f"dtypes= names field(s) {unknown} that the stream does not have.")
    datasets = []
    for descriptor in descriptors:
        data_keys = descriptor.get("data_keys", {})
        wanted = [k for k in data_keys if keys is None or k in keys]
        specs = [_field_spec(source.uid, descriptor, k) for k in wanted]
        for spec in specs:
            if spec.key in dtypes:
                spec.dtype = np.dtype(dtypes[spec.key])
                spec.declared = f"dtypes={{{spec.key!r}: {spec.dtype.name!r}}}"
        has_stream = any(data_kind(v) == "stream" for v in data_keys.values())
        if part == "timestamps":
            specs = [s for s in specs if s.kind != "stream"]
        if not lazy and not has_stream:
            # Rows are the events: one pass over them gives index and data.
            columns = load_columns(source, filler, descriptor["uid"], specs, None, part)
            time, seq_num = columns["time"], columns["seq_num"]
        else:
            index = RowIndex.build(source, descriptor, has_stream)
            if has_stream and len(index) == 0 and part == "data":
                _check_lost_stream_documents(source, descriptor)
            if lazy:
                columns = _lazy_descriptor(
                    source, filler, descriptor["uid"], specs, part, index, chunks
                )
            else:
                columns = load_columns(
                    source, filler, descriptor["uid"], specs, index.everything(), part
                )
            time, seq_num = index.time, index.seq_num
        variables = {spec.key: _variable(spec, columns[spec.key], part) for spec in specs}
        coords = {"time": ("time", time), "seq_num": ("time", seq_num)}
        datasets.append(xr.Dataset(variables, coords=coords))
    if not datasets:
        return xr.Dataset(coords={"time": ("time", np.empty((0,), dtype="float64"))})
    if len(datasets) == 1:
        return datasets[0]
    datasets = _common_dtypes(datasets)
    try:
        return xr.concat(
            datasets,
            dim="time",
            data_vars="all",
            coords="different",
            join="outer",
            compat="equals",
        )
    except (ValueError, TypeError) as err:
        names = {d.get("name") for d in descriptors}
        raise ValueError(
            f"Run {source.uid!r}: the {len(descriptors)} descriptors of stream {names} do not "
            f"concatenate along time ({err}). A field changed shape between descriptors; read "
            "it separately with include=[...] or exclude=[...]."
        ) from err


def _common_dtypes(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """The descriptors' datasets with each field in one dtype that holds all
    its values, so that concatenating them changes none.

    ``xr.concat`` promotes by dtype alone: int64 rows beside float64 rows (or
    beside the float64 placeholder of a descriptor without events, or NaN
    for a descriptor that lacks the field) would round integers above 2**53.
    A descriptor without rows takes the others' dtype (it has no values to
    change); where promotion would change a value, the field becomes object.
    """
    rows = [ds.sizes.get("time", 0) for ds in datasets]
    found: dict[str, list] = {}
    for ds, n in zip(datasets, rows):
        for key, var in ds.data_vars.items():
            if n:
                found.setdefault(key, []).append(var)
    target: dict[str, np.dtype] = {}
    for key, variables in found.items():
        dtypes = [v.dtype for v in variables]
        try:
            dtype = np.result_type(*dtypes)
        except TypeError:  # e.g. strings beside numbers
            dtype = np.dtype(object)
        if sum(1 for ds, n in zip(datasets, rows) if n and key in ds.data_vars) < sum(
            1 for n in rows if n
        ):
            dtype = missing_capable(dtype)  # rows of descriptors without the field
        if dtype.kind != "O" and any(not _promotes_exactly(v, dtype) for v in variables):
            dtype = np.dtype(object)
        target[key] = dtype
    out = []
    for ds in datasets:
        changed = {
            key: var.astype(target[key])
            for key, var in ds.data_vars.items()
            if key in target and var.dtype != target[key]
        }
        out.append(ds.assign(changed) if changed else ds)
    return out


def _promotes_exactly(var: xr.Variable, dtype: np.dtype) -> bool:
    if var.dtype == dtype:
        return True
    if isinstance(var.data, np.ndarray):
        return fits(var.data, dtype)
    # Lazy: no values to look at; only casts that never change one.
    rounds = var.dtype.kind in "iu" and dtype.kind in "fc"
    return np.can_cast(var.dtype, dtype, casting="safe") and not rounds


def _field_spec(run: str, descriptor: dict, key: str) -> FieldSpec:
    """:meth:`FieldSpec.from_data_key`, or an error naming run, descriptor
    and field when the data key's shape or dtype_numpy is not one."""
    data_key = descriptor["data_keys"][key]
    try:
        return FieldSpec.from_data_key(key, data_key)
    except (TypeError, ValueError) as err:
        shape = data_key.get("shape")
        if not isinstance(shape, list | tuple) or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool)) for s in shape
        ):
            what = f"shape {shape!r}, which is not a list of dimension sizes"
        else:
            what = (
                f"dtype_numpy {data_key.get('dtype_numpy')!r}, which numpy does not know ({err})"
            )
        raise BadDocumentError(
            f"Run {run!r}: descriptor {descriptor.get('uid')!r} (stream "
            f"{descriptor.get('name')!r}) declares field {key!r} with {what}. Read the other "
            f"fields with exclude=[{key!r}], or correct the descriptor with transforms="
            "{'descriptor': ...}."
        ) from None


def _check_lost_stream_documents(source: RunSource, descriptor: dict) -> None:
    """A stream with stream data but no rows at all: fine while nothing was
    recorded, an error when the stop document counted rows that are gone."""
    stop = source.stop()
    name = descriptor.get("name", "primary")
    counted = (stop or {}).get("num_events", {}).get(name, 0)
    if counted:
        raise FillError(
            f"Run {source.uid!r}: stream {name!r} recorded {counted} row(s) (stop document), "
            "but the run's storage holds neither events nor stream_datum documents for "
            f"descriptor {descriptor['uid']!r}: its stream_resource/stream_datum documents were "
            "dropped (suitcase-msgpack 0.3 and other serializers older than stream data do "
            "this). Re-export the run from a store that kept them."
        )
