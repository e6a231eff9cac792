"""Lazy assembly: dask arrays over a descriptor's rows.

Each dask chunk is one task that loads a window of rows for a group of
fields (and fills their external data) with :func:`.eager.load_columns`,
sized to about :data:`CHUNK_BYTES` and, for stream data, to whole multiples
of the storage's own chunks. A dask array's dtype is fixed before any data is
read, so a chunk whose values do not fit the declared dtype raises
:class:`DtypeMismatchError` at compute time instead of being truncated;
``read()`` (which keeps the stored dtype) or ``to_dask(dtypes=)`` then reads
it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from dask.utils import parse_bytes

from ..driver import RunSource
from ..errors import DtypeMismatchError
from .casting import fits, why_not
from .documents import BadDocumentError
from .eager import load_columns
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
