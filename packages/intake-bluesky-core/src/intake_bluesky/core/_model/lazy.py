"""Lazy assembly: dask arrays over a descriptor's rows.

Each dask chunk is one task that loads a window of rows for a group of
fields (and fills their external data) with :func:`.eager.load_columns`,
sized to about :data:`CHUNK_BYTES` and, for stream data, to whole multiples
of the storage's own chunks. A dask array's dtype is fixed before any data is
read, so a chunk whose values do not fit the declared dtype raises
:class:`DtypeMismatchError` at compute time instead of being truncated;
``read()`` (which keeps the stored dtype) or ``to_dask(dtypes=)`` then reads
it.

Stream data (detector frames) is a dask array over a lazily sliceable
object (:class:`_StreamRows`, through ``da.from_array``): dask fuses a
slice of the array into the chunk's read, so ``x[500:501]`` reads that row
from the detector file, not its ~100 MB chunk. Whole chunks are read into
one buffer when the whole array is computed, and that buffer is the result:
no copy to join the chunks (:func:`_whole_compute_optimize`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.array.core import finalize, getter
from dask.array.optimization import optimize
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.utils import parse_bytes

from ..driver import RunSource
from ..errors import DtypeMismatchError
from .casting import fits, why_not
from .documents import BadDocumentError
from .eager import load_columns, stream_datums_for, stream_rows
from .filling import Filler
from .rows import FieldSpec, RowIndex, missing_capable

__all__ = ["CHUNK_BYTES", "lazy_columns"]

#: Target size of one dask chunk.
CHUNK_BYTES = 100 * 2**20


def lazy_columns(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    specs: Sequence[FieldSpec],
    part: str,
    index: RowIndex,
    chunks: Any,
) -> dict[str, da.Array]:
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
    groups: dict[tuple[int, str | None], list[FieldSpec]] = {}
    for spec in specs:
        per_chunk = _rows_per_chunk(spec, part, filler, chunks, n)
        # External data gets tasks of its own: computing a scalar column
        # must not load images.
        own = spec.key if part == "data" and spec.kind != "inline" else None
        groups.setdefault((per_chunk, own), []).append(spec)
    for (per_chunk, _), group in groups.items():
        bounds = [(r0, min(n, r0 + per_chunk)) for r0 in range(0, n, per_chunk)]
        if part == "data" and filler is not None and group[0].kind == "stream" and bounds:
            # A group of its own (one field): see _StreamRows.
            spec = group[0]
            rows = _StreamRows(source, filler, descriptor_uid, spec, index.seq_num, bounds)
            arrays[spec.key] = rows.dask_array()
            continue
        windows = [index.window(r0, r1) for r0, r1 in bounds]
        load_name = f"load-{part}-{uuid.uuid4().hex}"
        loads: dict[Any, Any] = {
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
            layer: dict[Any, Any] = {
                (name, i, *zeros): (_take, (load_name, i), spec.key, dtype, source.uid, bounds[i])
                for i in range(len(windows))
            }
            graph = HighLevelGraph(
                {name: layer, load_name: loads}, {name: {load_name}, load_name: set()}
            )
            chunk_sizes = (tuple(hi - lo for lo, hi in bounds), *((s,) for s in shape))
            # dask ships no annotations for its Array constructor.
            arrays[spec.key] = da.Array(graph, name, chunk_sizes, dtype=dtype)  # type: ignore[no-untyped-call]
    return arrays


def _resolve_lazy_meta(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    specs: Sequence[FieldSpec],
    part: str,
    index: RowIndex,
) -> None:
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
    first: dict[str, np.ndarray] = {}
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


def _take(
    columns: Mapping[str, np.ndarray], key: str, dtype: np.dtype, run: str, rows: tuple[int, int]
) -> np.ndarray:
    """One field of a loaded window, checked against the dask array's dtype."""
    return _checked(columns[key], key, dtype, run, rows[0])


def _checked(
    values: np.ndarray, key: str, dtype: np.dtype, run: str, first_row: int
) -> np.ndarray:
    """Values in the dask array's dtype, or DtypeMismatchError if that would
    change one."""
    if values.dtype == dtype:
        return values
    if fits(values, dtype):
        return values.astype(dtype)
    raise DtypeMismatchError(
        f"Run {run!r}: field {key!r} is declared {dtype.name}, but "
        f"{why_not(values, dtype, first_row=first_row)}. "
        "to_dask() fixes dtypes before reading, so it refuses to truncate them: use "
        f"read(), which keeps the stored dtype, or to_dask(dtypes={{{key!r}: "
        f"{values.dtype.name!r}}})."
    )


def _rows_per_chunk(spec: FieldSpec, part: str, filler: Filler | None, chunks: Any, n: int) -> int:
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


class _StreamRows:
    """The rows of one stream field as a lazily sliceable array (what
    ``da.from_array`` wants: ``shape``, ``dtype``, ``ndim``, ``__getitem__``).

    Indexing reads only the rows it selects, from the stream_datums that
    cover them, through the field's stream reader. A compute of the whole
    array reads its chunks into one buffer instead (see
    :func:`_whole_compute_optimize`).
    """

    def __init__(
        self,
        source: RunSource,
        filler: Filler,
        descriptor_uid: str,
        spec: FieldSpec,
        seq_num: np.ndarray,
        bounds: Sequence[tuple[int, int]],
    ):
        assert spec.dtype is not None  # resolved before the graph is built
        self.source = source
        self.filler = filler
        self.descriptor_uid = descriptor_uid
        self.spec = spec
        self.seq_num = seq_num
        self.bounds = tuple(bounds)
        self.dtype: np.dtype = spec.dtype
        self.shape: tuple[int, ...] = (len(seq_num), *spec.shape)
        self.ndim = len(self.shape)
        self._init_state()

    def _init_state(self) -> None:
        self._sds: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_sds")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def dask_array(self) -> da.Array:
        """The dask array: one ``getter`` task per chunk, as ``da.from_array``
        makes them (so dask fuses slices into them), without its blockwise
        layer and tokenizing, which cost more than the graph itself."""
        name = f"{self.spec.key}-stream-{uuid.uuid4().hex}"
        source = f"rows-{name}"
        whole = tuple(slice(0, s) for s in self.spec.shape)
        zeros = (0,) * len(self.spec.shape)
        layer: dict[Any, Any] = {source: self}
        for i, (lo, hi) in enumerate(self.bounds):
            # getter(a, index, asarray=False, lock=None): __getitem__ gives
            # ndarrays already; the readers serialize what needs it.
            layer[(name, i, *zeros)] = (getter, source, (slice(lo, hi), *whole), False, None)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=())
        chunks = (tuple(hi - lo for lo, hi in self.bounds), *((s,) for s in self.spec.shape))
        meta = np.empty((0,) * self.ndim, dtype=self.dtype)
        array = da.Array(graph, name, chunks, meta=meta)  # type: ignore[no-untyped-call]
        # On the instance, not by a subclass: xarray refuses to mix dask
        # array types in one Dataset. dask asks these of the collection it
        # computes, so they apply when this very array is computed (alone or
        # in a Dataset), whole; anything derived from it (a slice, a sum), a
        # copy or an unpickled one is a plain dask array with plain chunks.
        array.__dask_optimize__ = functools.partial(
            _whole_compute_optimize, name, source, self.bounds, zeros
        )
        array.__dask_postcompute__ = _joined_postcompute  # type: ignore[method-assign]
        result: da.Array = array
        return result

    def __getitem__(self, index: Any) -> np.ndarray:
        key = index if isinstance(index, tuple) else (index,)
        n = self.shape[0]
        if len(key) > self.ndim or any(k is None or k is Ellipsis for k in key):
            # Forms dask does not pass to a getter: read all rows, let numpy index.
            everything: np.ndarray = self._read(0, n, None)[index]
            return everything
        first = key[0] if key else slice(None)
        rest = key[1:]
        local: Any
        if isinstance(first, slice):
            start, stop, step = first.indices(n)
            if step == 1:
                lo, hi, local = start, max(start, stop), slice(None)
            else:
                lo, hi, local = _span(np.arange(start, stop, step), n)
        elif isinstance(first, int | np.integer):
            i = int(first) + (n if int(first) < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {int(first)} is out of range for {n} rows.")
            lo, hi, local = i, i + 1, 0
        else:
            picked = np.asarray(first)
            if picked.dtype == bool:
                picked = np.flatnonzero(picked)
            lo, hi, local = _span(picked.astype(np.intp, copy=False), n)
        whole = (
            isinstance(local, slice)
            and local == slice(None)
            and all(_whole(k, size) for k, size in zip(rest, self.shape[1:]))
        )
        rows = self._read(lo, hi, None)
        return rows if whole else rows[(local, *rest)]

    def _read(self, lo: int, hi: int, out: np.ndarray | None) -> np.ndarray:
        if self._sds is None:
            self._sds = stream_datums_for(
                self.source, self.filler, self.descriptor_uid, self.spec.key
            )
        key, run = self.spec.key, self.source.uid

        def check(values: np.ndarray, at: int) -> np.ndarray:
            return _checked(values, key, self.dtype, run, lo + at)

        rows = stream_rows(
            self.source,
            self.filler,
            self.descriptor_uid,
            self.spec,
            self.seq_num[lo:hi],
            out=out,
            check=check,
            sds=self._sds,
        )
        return rows if out is not None else check(rows, 0)


def _span(picked: np.ndarray, n: int) -> tuple[int, int, np.ndarray]:
    """The rows ``[lo, hi)`` that hold the picked rows, and where they are in it."""
    if len(picked) == 0:
        return 0, 0, picked
    picked = np.where(picked < 0, picked + n, picked)
    lo, hi = int(picked.min()), int(picked.max()) + 1
    if lo < 0 or hi > n:
        raise IndexError(f"rows {picked.tolist()} are out of range for {n} rows.")
    return lo, hi, picked - lo


def _whole(index: Any, size: int) -> bool:
    return isinstance(index, slice) and index.indices(size) == (0, size, 1)


def _whole_compute_optimize(
    name: str,
    source: str,
    bounds: Sequence[tuple[int, int]],
    zeros: tuple[int, ...],
    dsk: Any,
    keys: Any,
    **kwargs: Any,
) -> Any:
    """A stream field's dask array's ``__dask_optimize__``: dask asks it only
    when this array itself is computed or persisted (all of it; a derived
    array is another collection, optimized by dask alone). Each chunk then
    reads into its region of one buffer the compute allocates, which
    :func:`_joined` returns as the result: no copy joins the chunks. Then
    dask's own optimization. A buffer belongs to one compute; graphs that
    use some chunks only (a slice, a sum) read plain chunks, whose memory is
    freed as they are consumed."""
    if isinstance(dsk, HighLevelGraph) and name in dsk.layers:
        rows = dsk.layers[name][source]
        buffer = f"buffer-{name}"
        layer: dict[Any, Any] = {source: rows, buffer: (_new_buffer, source)}
        for i, (lo, hi) in enumerate(bounds):
            layer[(name, i, *zeros)] = (_read_region, source, buffer, lo, hi)
        layers = {**dsk.layers, name: MaterializedLayer(layer)}
        dsk = HighLevelGraph(layers, dict(dsk.dependencies))
    return optimize(dsk, keys, **kwargs)  # type: ignore[no-untyped-call]


def _new_buffer(rows: _StreamRows) -> np.ndarray:
    return np.empty(rows.shape, dtype=rows.dtype)


def _read_region(rows: _StreamRows, buffer: np.ndarray, lo: int, hi: int) -> np.ndarray:
    region: np.ndarray = buffer[lo:hi]
    return rows._read(lo, hi, region)


def _joined_postcompute() -> tuple[Any, tuple[()]]:
    """A stream field's dask array's ``__dask_postcompute__``: computing all
    of it returns the buffer its chunks were read into (see
    :func:`_whole_compute_optimize`) instead of a copy joining them."""
    return _joined, ()


def _joined(results: Any) -> Any:
    """The chunks of a compute as one array: their buffer when they are, in
    order, exactly all of it; else dask's own join (a copy)."""
    # dask ships no annotations for these two.
    parts = list(flatten(results, container=list))  # type: ignore[no-untyped-call]
    buffer = _whole_buffer(parts)
    return buffer if buffer is not None else finalize(results)  # type: ignore[no-untyped-call]


def _whole_buffer(parts: list[Any]) -> np.ndarray | None:
    if not parts or not all(isinstance(p, np.ndarray) for p in parts):
        return None
    buffer: Any = parts[0].base
    if not isinstance(buffer, np.ndarray) or buffer.base is not None or buffer.ndim == 0:
        return None
    if not buffer.flags.c_contiguous or sum(len(p) for p in parts) != len(buffer):
        return None
    at = buffer.ctypes.data
    for part in parts:
        if part.base is not buffer or part.shape[1:] != buffer.shape[1:]:
            return None
        if part.ctypes.data != at:
            return None
        at += len(part) * buffer.strides[0]
    whole: np.ndarray = buffer
    return whole
