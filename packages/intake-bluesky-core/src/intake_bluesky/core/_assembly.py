"""Event pages -> numpy columns -> xarray Datasets, eagerly or as dask graphs.

Columns are built per page column (one ``np.asarray``/``np.concatenate`` per
field), never per event per field. Lazily, each dask chunk is one task that
loads a window of rows for a group of fields (and fills their external data),
sized to about :data:`CHUNK_BYTES`.
"""

from __future__ import annotations

import itertools
import math
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from ._documents import BadDocumentError
from ._filling import Filler
from ._pages import first_of
from .driver import RunSource

__all__ = ["CHUNK_BYTES", "FieldSpec", "build_dataset", "data_kind"]

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

    @classmethod
    def from_data_key(cls, key: str, data_key: dict) -> FieldSpec:
        kind = data_kind(data_key)
        shape = tuple(int(s) for s in (data_key.get("shape") or ()) if s is not None)
        dims = data_key.get("dims")
        if not dims or len(dims) != len(shape):
            # Prefixed with the key so that arrays of different fields never
            # claim one dimension with conflicting sizes.
            dims = [f"{key}_dim_{i}" for i in range(len(shape))]
        dtype = None
        dtype_numpy = data_key.get("dtype_numpy")
        if isinstance(dtype_numpy, str) and dtype_numpy:
            dtype = np.dtype(dtype_numpy)
        elif data_key.get("dtype") in _JSON_DTYPES and kind == "inline":
            dtype = _JSON_DTYPES[data_key["dtype"]]
        attrs = {k: data_key[k] for k in _ATTR_KEYS if k in data_key}
        return cls(key, data_key, kind, tuple(dims), shape, dtype, attrs)

    @property
    def row_bytes(self) -> int:
        itemsize = self.dtype.itemsize if self.dtype is not None else 8
        return max(1, itemsize * math.prod(self.shape))


def _column(pieces: Sequence, dtype=None, numeric: bool = False) -> np.ndarray:
    if pieces and all(isinstance(p, np.ndarray) for p in pieces):
        out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    else:
        flat = list(itertools.chain.from_iterable(pieces))
        out = np.asarray(flat) if flat else np.empty((0,))
        if out.dtype == object and (numeric or (dtype is not None and dtype.kind in "fc")):
            # JSON null for a missing numeric reading becomes NaN.
            try:
                out = np.asarray([np.nan if v is None else v for v in flat], dtype=float)
            except (TypeError, ValueError):
                pass
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    return out


def load_columns(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    specs: Sequence[FieldSpec],
    rows: tuple[int, int] | None,
    part: str = "data",
) -> dict[str, np.ndarray]:
    """Columns of a window of one descriptor's events, with ``time``/``seq_num``.

    ``part`` is ``"data"`` or ``"timestamps"``. Datum ids are filled when a
    ``filler`` is given; ``stream`` fields are read from stream datums.
    """
    event_specs = [s for s in specs if s.kind != "stream" or part == "timestamps"]
    pages = list(source.event_pages(descriptor_uid, [s.key for s in event_specs], rows))
    out = {
        "time": _column([p["time"] for p in pages], np.dtype("float64")),
        "seq_num": _column([p["seq_num"] for p in pages], np.dtype("int64")),
    }
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
            out[spec.key] = _column(pieces, np.dtype("float64"))
        elif spec.kind == "datum" and filler is not None:
            ids = list(itertools.chain.from_iterable(pieces))
            # A whole descriptor read eagerly may be many frames: a progress
            # bar (dask chunks, rows given, stay silent).
            desc = f"Loading {spec.key}" if rows is None else None
            out[spec.key] = filler.fill_column(ids, spec.dtype, desc)
        elif spec.kind == "datum":
            out[spec.key] = _column(pieces)
        else:
            out[spec.key] = _column(pieces, spec.dtype, spec.data_key.get("dtype") == "number")
    if part == "data":
        for spec in specs:
            if spec.kind == "stream":
                out[spec.key] = _stream_column(source, filler, descriptor_uid, spec, out, rows)
    return out


def _stream_datums_for(source: RunSource, filler: Filler, descriptor_uid: str, key: str):
    sds = []
    for sd in source.stream_datums(descriptor_uid):
        if filler._stream_resource(sd["stream_resource"]).get("data_key") == key:
            sds.append(sd)
    return sorted(sds, key=lambda sd: sd["seq_nums"]["start"])


def _stream_column(source, filler, descriptor_uid, spec, columns, rows):
    if filler is None:
        raise ValueError(f"Field {spec.key!r} is stream data; it can only be read filled.")
    sds = _stream_datums_for(source, filler, descriptor_uid, spec.key)
    seq = columns["seq_num"]
    if len(seq) and not sds:
        raise ValueError(
            f"Run {source.uid!r}: field {spec.key!r} of descriptor {descriptor_uid!r} is stream "
            "data, but the run's storage holds no stream_datum documents for it (some "
            "serializers drop them). Read the other fields with exclude=[...]."
        )
    if len(seq) == 0:
        return np.empty((0, *spec.shape), dtype=spec.dtype or float)
    lo, hi = int(seq.min()), int(seq.max()) + 1
    wanted = []
    for sd in sds:
        s0, s1 = sd["seq_nums"]["start"], sd["seq_nums"]["stop"]
        a, b = max(s0, lo), min(s1, hi)
        if a < b:
            i0 = sd["indices"]["start"] + (a - s0)
            wanted.append({**sd, "indices": {"start": i0, "stop": i0 + (b - a)}})
    data = filler.fill_stream(wanted)
    if len(data) != len(seq):
        raise ValueError(
            f"Run {source.uid!r}: stream_datums of {spec.key!r} (descriptor {descriptor_uid!r})"
            f" cover {len(data)} rows for {len(seq)} events."
        )
    return data.astype(spec.dtype) if spec.dtype is not None else data


def _variable(spec: FieldSpec, values, part: str) -> xr.Variable:
    if part == "timestamps":
        return xr.Variable(("time",), values, attrs={"source": spec.attrs.get("source")})
    dims = ("time", *spec.dims)
    if getattr(values, "ndim", 1) != len(dims):
        # Unfilled datum ids, or data whose shape the descriptor misstates.
        dims = ("time", *[f"{spec.key}_dim_{i}" for i in range(values.ndim - 1)])
    return xr.Variable(dims, values, attrs=dict(spec.attrs))


def _resolve_lazy_meta(source, filler, descriptor_uid, specs, part):
    """Complete dtype/shape of fields whose descriptor does not declare them.

    Reads the first row only (for external data: loads one datum).
    """
    unknown = [s for s in specs if s.dtype is None and part == "data"]
    if not unknown:
        return
    try:
        first = load_columns(source, filler, descriptor_uid, unknown, (0, 1), part)
    except Exception:
        # E.g. no handler yet: declare float64 with the descriptor's shape;
        # the error, if any, comes at compute time, where data is read.
        first = {}
    for spec in unknown:
        sample = first.get(spec.key)
        if sample is None or len(sample) == 0:
            spec.dtype = np.dtype("float64")
            continue
        spec.dtype = sample.dtype
        spec.shape = sample.shape[1:]
        if len(spec.dims) != len(spec.shape):
            spec.dims = tuple(f"{spec.key}_dim_{i}" for i in range(len(spec.shape)))


def _lazy_descriptor(source, filler, descriptor_uid, specs, part, n):
    """Dask arrays for fields of one descriptor: one load task per chunk of
    rows (shared by the fields of a group), one getitem task per field."""
    _resolve_lazy_meta(source, filler, descriptor_uid, specs, part)
    arrays: dict[str, da.Array] = {}
    # Group fields by rows-per-chunk so small fields share a task.
    groups: dict[tuple, list[FieldSpec]] = {}
    for spec in specs:
        row_bytes = 8 if part == "timestamps" else spec.row_bytes
        per_chunk = min(max(1, CHUNK_BYTES // row_bytes), max(n, 1))
        # External data gets tasks of its own: computing a scalar column
        # must not load images.
        own = spec.key if part == "data" and spec.kind != "inline" else None
        groups.setdefault((per_chunk, own), []).append(spec)
    for (per_chunk, _), group in groups.items():
        windows = [(r0, min(n, r0 + per_chunk)) for r0 in range(0, n, per_chunk)]
        load_name = f"load-{part}-{uuid.uuid4().hex}"
        loads = {
            (load_name, i): (load_columns, source, filler, descriptor_uid, group, rows, part)
            for i, rows in enumerate(windows)
        }
        for spec in group:
            dtype = np.dtype("float64") if part == "timestamps" else spec.dtype
            shape = () if part == "timestamps" else spec.shape
            if not windows:
                arrays[spec.key] = da.empty((0, *shape), dtype=dtype)
                continue
            name = f"{spec.key}-{part}-{uuid.uuid4().hex}"
            zeros = (0,) * len(shape)
            layer = {
                (name, i, *zeros): (operator.getitem, (load_name, i), spec.key)
                for i in range(len(windows))
            }
            graph = HighLevelGraph(
                {name: layer, load_name: loads}, {name: {load_name}, load_name: set()}
            )
            chunks = (tuple(hi - lo for lo, hi in windows), *((s,) for s in shape))
            arrays[spec.key] = da.Array(graph, name, chunks, dtype=dtype)
    return arrays


def build_dataset(
    source: RunSource,
    filler: Filler | None,
    descriptors: Sequence[dict],
    keys: Sequence[str] | None,
    *,
    lazy: bool = False,
    part: str = "data",
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
    """
    datasets = []
    for descriptor in descriptors:
        data_keys = descriptor.get("data_keys", {})
        wanted = [k for k in data_keys if keys is None or k in keys]
        specs = [FieldSpec.from_data_key(k, data_keys[k]) for k in wanted]
        if part == "timestamps":
            specs = [s for s in specs if s.kind != "stream"]
        if lazy:
            index = load_columns(source, None, descriptor["uid"], [], None, part)
            n = len(index["time"])
            columns = _lazy_descriptor(source, filler, descriptor["uid"], specs, part, n)
        else:
            columns = load_columns(source, filler, descriptor["uid"], specs, None, part)
            index = columns
        variables = {spec.key: _variable(spec, columns[spec.key], part) for spec in specs}
        coords = {"time": ("time", index["time"]), "seq_num": ("time", index["seq_num"])}
        datasets.append(xr.Dataset(variables, coords=coords))
    if not datasets:
        return xr.Dataset(coords={"time": ("time", np.empty((0,), dtype="float64"))})
    if len(datasets) == 1:
        return datasets[0]
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
