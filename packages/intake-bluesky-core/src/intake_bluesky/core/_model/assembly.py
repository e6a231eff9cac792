"""A stream's Dataset: its descriptors' rows as xarray, eagerly or lazily.

:func:`build_dataset` is the one entry point. Per descriptor it makes the
field specs and the row index (:mod:`.rows`), loads the columns
(:mod:`.eager`) or builds dask graphs over them (:mod:`.lazy`), and
concatenates the descriptors' datasets along ``time`` without changing a
value.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..driver import RunSource
from .casting import fits
from .documents import BadDocumentError
from .eager import load_columns
from .filling import Filler, FillError
from .lazy import lazy_columns
from .rows import FieldSpec, RowIndex, data_kind, missing_capable

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["build_dataset"]


def build_dataset(
    source: RunSource,
    filler: Filler | None,
    descriptors: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None,
    *,
    lazy: bool = False,
    part: str = "data",
    chunks: Any = None,
    dtypes: Mapping[str, DTypeLike] | None = None,
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
        columns: Mapping[str, Any]  # numpy arrays, or dask arrays when lazy
        if not lazy and not has_stream:
            # Rows are the events: one pass over them gives index and data.
            columns = load_columns(source, filler, descriptor["uid"], specs, None, part)
            time, seq_num = columns["time"], columns["seq_num"]
        else:
            index = RowIndex.build(source, descriptor, has_stream)
            if has_stream and len(index) == 0 and part == "data":
                _check_lost_stream_documents(source, descriptor)
            if lazy:
                columns = lazy_columns(
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
    found: dict[Hashable, list[xr.DataArray]] = {}
    for ds, n in zip(datasets, rows):
        for key, var in ds.data_vars.items():
            if n:
                found.setdefault(key, []).append(var)
    target: dict[Hashable, np.dtype] = {}
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


def _promotes_exactly(var: xr.DataArray, dtype: np.dtype) -> bool:
    if var.dtype == dtype:
        return True
    if isinstance(var.data, np.ndarray):
        return fits(var.data, dtype)
    # Lazy: no values to look at; only casts that never change one.
    rounds = var.dtype.kind in "iu" and dtype.kind in "fc"
    return np.can_cast(var.dtype, dtype, casting="safe") and not rounds


def _field_spec(run: str, descriptor: Mapping[str, Any], key: str) -> FieldSpec:
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


def _check_lost_stream_documents(source: RunSource, descriptor: Mapping[str, Any]) -> None:
    """A stream with stream data but no rows at all: fine while nothing was
    recorded, an error when the stop document counted rows that are gone."""
    stop = source.stop()
    name = descriptor.get("name", "primary")
    stop_doc: Mapping[str, Any] = stop or {}
    counted = stop_doc.get("num_events", {}).get(name, 0)
    if counted:
        raise FillError(
            f"Run {source.uid!r}: stream {name!r} recorded {counted} row(s) (stop document), "
            "but the run's storage holds neither events nor stream_datum documents for "
            f"descriptor {descriptor['uid']!r}: its stream_resource/stream_datum documents were "
            "dropped (suitcase-msgpack 0.3 and other serializers older than stream data do "
            "this). Re-export the run from a store that kept them."
        )


def _variable(spec: FieldSpec, values: Any, part: str) -> xr.Variable:
    if part == "timestamps":
        return xr.Variable(("time",), values, attrs={"source": spec.attrs.get("source")})
    dims = ("time", *spec.dims)
    if getattr(values, "ndim", 1) != len(dims):
        # Unfilled datum ids, or data whose shape the descriptor misstates.
        dims = ("time", *[f"{spec.key}_dim_{i}" for i in range(values.ndim - 1)])
    return xr.Variable(dims, values, attrs=dict(spec.attrs))
