"""NeXus files from bluesky runs: ``intake-bluesky export STORE DEST --format nexus``.

:class:`NexusWriter` is the run writer ``nexus`` (entry point group
``intake_bluesky.writers``): one HDF5/NeXus file ``<uid>.nxs`` per run, that
NeXpy, silx, Mantid, DAWN or ``nexusformat`` open without bluesky::

    /                        NXroot   default, file_name, file_time, creator
      scan_<scan_id>/        NXentry  default = the run's main stream
        title, start_time, end_time (ISO 8601), entry_identifier (uid),
        experiment_identifier, program_name
        documents/           NXcollection  start, stop, descriptors (JSON text)
        metadata/            NXcollection  the start document's flat metadata
        <stream>/            NXdata   one per event stream (primary, baseline, ...)
          <field>            one dataset per field, values and dtype of
                             run.<stream>.read(), attribute units from data_keys
          time, seq_num      per row
          timestamps/        NXcollection, each field's reading timestamps
          <device>_configuration/  NXcollection, one row per descriptor

``signal`` and ``axes`` of each NXdata come from the run's hints: the scanned
motors of ``start['hints']['dimensions']`` are the axes, the detectors'
hinted fields the signal (and ``auxiliary_signals``). Detector frames are
written chunked and compressed: with the source file's chunking and filters
when they come from an HDF5 file (hdf5plugin's filters included), else with
the writer's ``compression`` (gzip by default, which every HDF5 reader
decodes). With ``link_external`` (``--link-external``) frames read from
detector HDF5 files are not copied: they become HDF5 virtual datasets over
the original files (after ``root_map``), read through transparently. With
``copy_external`` (``--copy-external``) the detector files are copied into
the export (``external/``) and the frames linked to the copies by relative
paths: a small file that moves with its folder.

Examples
--------
>>> import tempfile, h5py
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.export import export_runs
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> cat.ingest(example_runs()[1])
>>> (path,) = export_runs(cat, tempfile.mkdtemp(), format="nexus")
>>> with h5py.File(path, "r") as f:
...     entry = f[f.attrs["default"]]
...     data = entry[entry.attrs["default"]]
...     print(entry.attrs["NX_class"], data.attrs["NX_class"], data["seq_num"][:].tolist())
NXentry NXdata [1, 2, 3, 4, 5]
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters of compressed detector files)
import numpy as np

from intake_bluesky.core.export import WriteOptions

from . import _files
from ._reader import MIMETYPE, HDF5StreamReader

__all__ = ["NexusWriter"]

#: Names an NXentry holds besides its streams' NXdata groups.
_ENTRY_NAMES = frozenset(
    {
        "title",
        "start_time",
        "end_time",
        "entry_identifier",
        "experiment_identifier",
        "program_name",
        "documents",
        "metadata",
    }
)
#: Start document keys that name the experiment, most specific first.
_EXPERIMENT_KEYS = ("experiment_identifier", "proposal_id", "proposal", "experiment")
#: The HDF5 filter id of bitshuffle (hdf5plugin.BSHUF_ID).
_BITSHUFFLE = 32008
#: A row at least this big is a frame: chunked and compressed.
_FRAME_BYTES = 4096
#: Rows written per block when the data do not say (dask chunks do).
_BLOCK_BYTES = 64 * 2**20


def _version() -> str:
    from . import __version__

    return __version__


class NexusWriter:
    """The run writer ``nexus``: one NeXus (HDF5) file per run.

    Registered in the ``intake_bluesky.writers`` entry point group, so
    ``intake-bluesky export STORE DEST --format nexus`` and
    ``export_runs(catalog, dest, format="nexus")`` use it; it is a run file
    writer (:class:`intake_bluesky.core.export.RunFileWriter`): the export
    gives it the run and a path, writes under a temporary name and renames
    the file into place when complete.

    Parameters
    ----------
    compression : str, int or mapping, default ``"gzip"``
        The filter for frames that do not come from an HDF5 file (inline
        arrays, TIFF series, handler-filled data): an h5py compression name
        or filter id, or an hdf5plugin filter object
        (``hdf5plugin.Bitshuffle()``). Frames read from an HDF5 file keep
        that file's filters and chunking. ``None`` writes them uncompressed.
    compression_opts : optional
        h5py's ``compression_opts`` for ``compression`` (gzip: level 1-9).
    shuffle : bool, default True
        The byte shuffle filter before ``compression`` (with ``compression``).

    Examples
    --------
    >>> writer = NexusWriter()
    >>> writer.suffix, sorted(writer.options)
    ('.nxs', ['copy_external', 'link_external'])
    """

    suffix = ".nxs"
    options = frozenset({"link_external", "copy_external"})

    def __init__(
        self,
        *,
        compression: str | int | Mapping[str, Any] | None = "gzip",
        compression_opts: Any = 1,
        shuffle: bool = True,
    ):
        if isinstance(compression, Mapping):  # an hdf5plugin filter object
            self._filters: dict[str, Any] = dict(compression)
        elif compression is None:
            self._filters = {}
        else:
            self._filters = {"compression": compression, "shuffle": bool(shuffle)}
            if compression_opts is not None:
                self._filters["compression_opts"] = compression_opts

    def write_run(self, run, path: str, options: WriteOptions | None = None) -> None:
        """Write ``run`` into the new NeXus file ``path``.

        Parameters
        ----------
        run : BlueskyRun
            The run to write.
        path : str
            Where to create the file; it must not exist.
        options : WriteOptions, optional
            ``link_external``, ``root_map``, progress and the run's stream
            documents, as :func:`~intake_bluesky.core.export.export_runs`
            passes them. Without it, ``WriteOptions.for_run(run)``: nothing
            is linked, the catalog's ``root_map`` applies.

        Raises
        ------
        FileExistsError
            ``path`` exists.
        FileNotFoundError
            With ``link_external``, a detector file is not found (the path
            tried after ``root_map`` is named).
        ValueError
            With ``link_external``, a detector file holds fewer frames than
            the run's documents say, or another dtype.
        intake_bluesky.core.errors.ExportError
            With ``copy_external``, a detector file cannot be copied (not
            found, outside its root, or a different copy already there).
        """
        if options is None:
            options = WriteOptions.for_run(run)
        start = run.metadata["start"]
        stop = run.metadata["stop"]
        descriptors = list(run.descriptors)
        streams = list(run)
        entry_name = _entry_name(start)
        with h5py.File(path, "x", track_order=True) as f:
            now = datetime.datetime.now().astimezone()
            f.attrs["NX_class"] = "NXroot"
            f.attrs["default"] = entry_name
            f.attrs["file_name"] = options.file_name or os.path.basename(path)
            f.attrs["file_time"] = now.isoformat()
            f.attrs["creator"] = f"intake-bluesky-hdf5 {_version()}"
            f.attrs["HDF5_Version"] = h5py.version.hdf5_version
            f.attrs["h5py_version"] = h5py.version.version
            entry = f.create_group(entry_name, track_order=True)
            entry.attrs["NX_class"] = "NXentry"
            _write_entry_fields(entry, start, stop)
            _write_documents(entry, start, stop, descriptors)
            _write_metadata(entry, start)
            names = _stream_group_names(streams)
            for stream in streams:
                self._write_stream(entry, names[stream], run, stream, start, options)
            main = "primary" if "primary" in streams else (streams[0] if streams else None)
            if main is not None:
                entry.attrs["default"] = names[main]

    # --- one stream ------------------------------------------------------------
    def _write_stream(self, entry, name, run, stream_name, start, options: WriteOptions):
        stream = run[stream_name]
        descriptors = list(stream.descriptors)
        ds = stream.to_dask()
        group = entry.create_group(name, track_order=True)
        group.attrs["NX_class"] = "NXdata"
        n = ds.sizes.get("time", 0)
        seq_num = np.asarray(ds["seq_num"].values) if "seq_num" in ds.coords else np.arange(n) + 1
        sources = _hdf5_sources(stream_name, descriptors, options)
        taken = {"time", "seq_num"}
        names = {str(f): _nx_name(str(f), taken) for f in ds.data_vars}
        targets: list[_Target] = []
        for field in ds.data_vars:
            var = ds[field]
            data_key = _data_key(descriptors, str(field))
            source = sources.get(str(field))
            dset_name = names[str(field)]
            linking = options.link_external or options.copy_file is not None
            if linking and source is not None:
                if _link(group, dset_name, var, source, seq_num):
                    _field_attrs(group[dset_name], str(field), var, data_key)
                    continue
            targets.append(self._create(group, dset_name, var, data_key, source))
        _blocks_written(ds, targets, n, options, seq_num, sources)
        time = group.create_dataset("time", data=np.asarray(ds["time"].values, dtype="f8"))
        time.attrs["units"] = "s"
        time.attrs["long_name"] = "time"
        time.attrs["description"] = "seconds since 1970-01-01 00:00 UTC (NaN: no event time)"
        group.create_dataset("seq_num", data=seq_num).attrs["long_name"] = "seq_num"
        _plot_attrs(group, start, stream_name, descriptors, ds, names)
        _write_timestamps(group, _nx_name("timestamps", taken), stream.timestamps.read())
        for device in stream.config:
            name = _nx_name(f"{device}_configuration", taken)
            _write_configuration(group, name, device, stream.config[device].read())

    def _create(self, group, name: str, var, data_key, source) -> _Target:
        """The dataset of one field (empty), and how to fill it."""
        shape = tuple(var.shape)
        row = shape[1:]
        if var.dtype.kind in "UO":
            # Text (or mixed objects) is decided from the values; columns of
            # it are small, so they are read whole first.
            values, dtype, encoding = _text_column(var.values)
            dset = group.create_dataset(name, data=values, dtype=dtype)
            if encoding:
                dset.attrs["encoding"] = encoding
            _field_attrs(dset, str(var.name), var, data_key)
            return _Target(None, dset, str(var.name))
        dtype = var.dtype
        row_bytes = int(np.prod(row, dtype=np.int64)) * dtype.itemsize
        kwargs: dict[str, Any] = {}
        chunk_rows = source.chunk_rows if source is not None else None
        if chunk_rows:
            chunk_rows = min(chunk_rows, shape[0])  # HDF5: no chunk beyond the data
        if row and shape[0]:
            if source is not None and source.filters:
                # As the detector wrote it: its filters (hdf5plugin's too).
                kwargs.update(chunks=(chunk_rows or 1, *row), dcpl=source.dcpl())
            elif row_bytes >= _FRAME_BYTES:  # frames: the writer's compression
                kwargs.update(chunks=(chunk_rows or 1, *row), **self._filters)
            elif chunk_rows:
                kwargs.update(chunks=(chunk_rows, *row))
        dset = group.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
        _field_attrs(dset, str(var.name), var, data_key)
        return _Target(var, dset, str(var.name))


@dataclass
class _Target:
    """A dataset being written, from a (lazy) variable; ``var`` None = done."""

    var: Any
    dset: h5py.Dataset
    field: str = ""
    #: Stored chunks of the source turned out not to be copyable as they are.
    decode_all: bool = False
    #: A chunk copied as stored was read back equal to what the readers read.
    verified: bool = False


@dataclass
class _Source:
    """Where one field's rows are in detector HDF5 files (after root_map)."""

    field: str
    data_key: Mapping[str, Any]
    #: (path, dataset, parameters, stream_datum) per stream_datum, in order.
    parts: list[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]
    chunk_rows: int | None = None
    filters: tuple = ()
    #: Frames per file chunk and per row, when chunks hold whole frames.
    chunk_frames: int | None = None
    frames_per_row: int = 1

    def dcpl(self):
        """A dataset creation property list with the source's filters."""
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        for code, flags, values, _name in self.filters:
            if code == _BITSHUFFLE and len(values) >= 5:
                # Stored as (version, version, item size, *what was asked):
                # bitshuffle prepends the first three again when a dataset is
                # made, so only what was asked is passed on.
                values = values[3:]
            plist.set_filter(code, flags, tuple(values))
        return plist


def _hdf5_sources(stream: str, descriptors, options: WriteOptions) -> dict[str, _Source]:
    """The fields of a stream that a detector HDF5 file holds, by field."""
    uids = {d.get("uid") for d in descriptors}
    resources = {
        r.get("uid"): r
        for r in options.stream_resources
        if r.get("mimetype") == MIMETYPE and r.get("data_key")
    }
    out: dict[str, _Source] = {}
    copied: dict[Any, str] = {}
    for datum in options.stream_datums:
        if datum.get("descriptor") not in uids:
            continue
        resource = resources.get(datum.get("stream_resource"))
        if resource is None:
            continue
        field = resource["data_key"]
        params = dict(resource.get("parameters") or {})
        dataset = params.get("dataset") or params.get("path")
        if not dataset:
            continue
        source = out.get(field)
        if source is None:
            source = out[field] = _Source(field, _data_key(descriptors, field), [])
        if options.copy_file is not None:
            # The export copies the detector files: the copy is what is used.
            uid = resource.get("uid")
            if uid not in copied:
                copied[uid] = options.copy_file(resource)
            path = copied[uid]
        else:
            path = options.locate(resource)
        source.parts.append((path, dataset, params, datum))
    for source in out.values():
        _learn_layout(source)
    return out


def _learn_layout(source: _Source) -> None:
    """The chunking (in rows) and filters of a field's first detector file,
    to write its copy the same way; a file that cannot be opened leaves the
    defaults (reading it is what reports the error, with the run's hints)."""
    path, dataset, params, _ = source.parts[0]
    if params.get("slice") or params.get("squeeze"):
        return  # frames as read are not the file's frames
    try:
        with _shared_dataset(path, dataset, params) as dset:
            if not isinstance(dset, h5py.Dataset) or dset.chunks is None or dset.ndim == 0:
                return
            plist = dset.id.get_create_plist()
            source.filters = tuple(plist.get_filter(i) for i in range(plist.get_nfilters()))
            frame = int(np.prod(dset.shape[1:], dtype=np.int64))
            row = int(np.prod(source.data_key.get("shape") or [1], dtype=np.int64))
            per_row = max(1, row // frame) if frame else 1
            chunk_frames = dset.chunks[0]
            # Whole frames per chunk only: a chunk split within a frame has no
            # row equivalent.
            if tuple(dset.chunks[1:]) == tuple(dset.shape[1:]):
                source.chunk_rows = max(1, chunk_frames // per_row)
                source.chunk_frames = chunk_frames
                source.frames_per_row = per_row
    except (OSError, KeyError):
        return


@contextlib.contextmanager
def _shared_dataset(path: str, dataset: str, params: Mapping[str, Any]):
    """A detector file's dataset through the handle its stream readers share:
    HDF5 breaks ("can't insert duplicate key") when one dataset of a SWMR file
    is opened twice in a process."""
    key = _files.file_key(path, swmr=bool(params.get("swmr", True)), locking=params.get("locking"))
    _files.acquire(key)
    try:
        dset = _files.dataset(key, "/" + dataset.lstrip("/"))
        if isinstance(dset, h5py.Dataset) and key[1]:
            dset.refresh()  # frames a SWMR writer appended since it was opened
        yield dset
    finally:
        _files.release(key)


def _row_map(source: _Source, seq_num) -> _RowMap | None:
    """Which detector file and index hold each row (by the stream_datums'
    seq_nums); None when a seq_num names several rows or a row is in no file."""
    seq_num = np.asarray(seq_num, dtype=np.int64)
    order = np.argsort(seq_num, kind="stable")
    ordered = seq_num[order]
    if ordered.size and (np.diff(ordered) == 0).any():
        return None  # a seq_num that names several rows
    files: list[tuple[str, str, Mapping[str, Any]]] = []
    which: dict[tuple[str, str], int] = {}
    file_of = np.full(seq_num.size, -1, dtype=np.int64)
    index_of = np.full(seq_num.size, -1, dtype=np.int64)
    for path, dataset, params, datum in source.parts:
        f = which.setdefault((path, dataset), len(files))
        if f == len(files):
            files.append((path, dataset, params))
        seqs = np.arange(datum["seq_nums"]["start"], datum["seq_nums"]["stop"], dtype=np.int64)
        at = np.searchsorted(ordered, seqs)
        if (at >= ordered.size).any() or (ordered[np.minimum(at, ordered.size - 1)] != seqs).any():
            return None  # a datum's row that the stream does not have
        rows = order[at]
        file_of[rows] = f
        index_of[rows] = datum["indices"]["start"] + np.arange(seqs.size)
    if (file_of < 0).any():
        return None  # rows that no file holds: only the readers know their values
    return _RowMap(files, file_of, index_of)


@dataclass
class _RowMap:
    files: list[tuple[str, str, Mapping[str, Any]]]
    #: Per row: index into ``files``, and the row's index in that file
    #: (frames ``index * k .. (index + 1) * k`` for k frames per row).
    file_of: np.ndarray
    index_of: np.ndarray


def _link(group, name: str, var, source: _Source, seq_num) -> bool:
    """Make ``name`` a virtual dataset over the detector files; False when
    the rows cannot be mapped (then the field is copied)."""
    if any(p.get("slice") or p.get("squeeze") for _, _, p, _ in source.parts):
        return False
    if var.dtype.itemsize * math.prod(var.shape[1:]) < _FRAME_BYTES:
        return False  # not frames (a detector's sums): small, so copied
    rows = _row_map(source, seq_num)
    if rows is None:
        return False
    shape = tuple(var.shape)
    layout = h5py.VirtualLayout(shape=shape, dtype=var.dtype)
    # Files inside the export (copied there) are named relative to this file,
    # which HDF5 resolves from the file's own folder: the export can move.
    here = os.path.dirname(os.path.abspath(group.file.filename))
    sources = []
    for f, (path, dataset, params) in enumerate(rows.files):
        file_shape, per_row = _checked_source(path, dataset, params, source)
        if math.prod(shape[1:]) != per_row * math.prod(file_shape[1:]):
            return False
        mine = rows.index_of[rows.file_of == f]
        last = (int(mine.max()) + 1) * per_row if mine.size else 0
        if last > file_shape[0]:
            raise ValueError(
                f"Field {source.field!r}: HDF5 file {path!r}, dataset {dataset!r} holds "
                f"{file_shape[0]} frames, but the run's stream_datums need frames up to "
                f"{last}: the file is still being written or was cut short. Export without "
                "--link-external once it is complete."
            )
        inside = os.path.abspath(path).startswith(here + os.sep)
        named = os.path.relpath(path, here) if inside else os.path.abspath(path)
        sources.append((h5py.VirtualSource(named, dataset, shape=file_shape), per_row))
    # One mapping per row, not per block of rows: nexusformat (NeXpy) takes a
    # virtual field's length from its number of mappings.
    for r in range(shape[0]):
        vsource, per_row = sources[rows.file_of[r]]
        f0 = int(rows.index_of[r]) * per_row
        layout[r] = vsource[f0 : f0 + per_row]
    fill = np.nan if var.dtype.kind == "f" else 0
    group.create_virtual_dataset(name, layout, fillvalue=fill)
    return True


def _checked_source(path, dataset, params, source: _Source) -> tuple[tuple[int, ...], int]:
    """(file dataset shape, frames per row) of a detector file to link to;
    refuses a file that is missing or holds another dtype (a link would read
    other values than the run's readers)."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Field {source.field!r}: the HDF5 file {path!r} (after root_map) is not found; "
            "a link to it would read nothing. Map the old root to where the files are "
            "(--root-map OLD=NEW), or export without --link-external."
        )
    reader = HDF5StreamReader(path, data_key=source.data_key, **params)
    try:
        per_row = reader.frames_per_row()  # checks dtype and row shape
    finally:
        reader.close()
    with _shared_dataset(path, dataset, params) as dset:
        return tuple(dset.shape), per_row


def _direct_plan(target: _Target, source: _Source | None, seq_num) -> list | None:
    """How to copy a field's stored chunks as they are (no decompression and
    recompression): ``[(row0, row1, file, chunk offset or None), ...]`` per
    chunk of the copy, or None when its chunks are not the detector file's.

    Only when the copy has the file's filters and its chunks hold exactly a
    file chunk's frames; a chunk whose rows are not one file chunk's frames,
    in order, is decoded and encoded again (offset None).
    """
    if source is None or not source.filters or not source.chunk_frames:
        return None
    if any(p.get("slice") or p.get("squeeze") for _, _, p, _ in source.parts):
        return None
    k, c = source.frames_per_row, source.chunk_frames
    dset = target.dset
    if c % k or dset.chunks is None or dset.chunks[0] != c // k:
        return None
    rows = _row_map(source, seq_num)
    if rows is None:
        return None
    shapes = []
    for path, dataset, params in rows.files:
        try:
            with _shared_dataset(path, dataset, params) as src:
                if (
                    not isinstance(src, h5py.Dataset)
                    or src.dtype != dset.dtype
                    or src.chunks != (c, *src.shape[1:])
                    or math.prod(src.shape[1:]) * k != math.prod(dset.shape[1:])
                    or _filters_of(src) != _filters_of(dset)
                ):
                    return None
                shapes.append(src.shape)
        except (OSError, KeyError):
            return None  # the readers say what is wrong with the file
    plan = []
    per_chunk = c // k
    n = dset.shape[0]
    for r0 in range(0, n, per_chunk):
        r1 = min(n, r0 + per_chunk)
        f = int(rows.file_of[r0])
        first = int(rows.index_of[r0])
        frames = first * k
        whole = (
            (rows.file_of[r0:r1] == f).all()
            and (rows.index_of[r0:r1] == first + np.arange(r1 - r0)).all()
            and frames % c == 0
            and (first + (r1 - r0)) * k <= shapes[f][0]  # frames on disk, else the reader says
        )
        offset = (frames,) + (0,) * (len(shapes[f]) - 1) if whole else None
        plan.append((r0, r1, f, offset))
    return plan


def _filters_of(dset) -> tuple:
    """(id, flags, parameters) of each filter, as the dataset stores them:
    equal ones decode the same chunk bytes the same way."""
    plist = dset.id.get_create_plist()
    return tuple(plist.get_filter(i)[:3] for i in range(plist.get_nfilters()))


def _blocks_written(
    ds, targets: list[_Target], n: int, options: WriteOptions, seq_num, sources
) -> None:
    """Fill the datasets block of rows by block, each block computed once
    (blocks follow the dask chunks of the biggest field, so each file chunk
    is read once); chunks stored as the copy stores them are copied as they
    are."""
    lazy = [t for t in targets if t.var is not None]
    if not lazy or n == 0:
        options.rows_written(n)
        return
    import dask

    plans = {id(t): _direct_plan(t, sources.get(t.field), seq_num) for t in lazy}
    direct = [t for t in lazy if plans[id(t)] is not None]
    files = {
        id(t): _file_rows(t, sources.get(t.field), seq_num) for t in lazy if plans[id(t)] is None
    }
    bounds = _block_bounds(lazy, n)
    with contextlib.ExitStack() as stack:
        opened: dict[tuple, Any] = {}
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            computed = []
            for t, rows in ((t, files[id(t)]) for t in lazy if id(t) in files):
                values = None if rows is None else rows.read(t, a, b, opened, stack)
                if values is None:
                    computed.append(t)
                else:
                    t.dset[a:b] = values
            # One compute for every other field of the block (per variable,
            # not through the Dataset: the fields may be arrays of different
            # chunked types).
            block = dask.compute(*[t.var.data[a:b] for t in computed])
            for t, values in zip(computed, block, strict=True):
                t.dset[a:b] = np.asarray(values)
            for t in direct:
                _copy_chunks(t, plans[id(t)], a, b, sources[t.field], opened, stack)
            options.rows_written(b - a)


@dataclass
class _FileRows:
    """A field's rows read from its detector files as its stream reader reads
    them (the frames of consecutive indices, reshaped to rows), into one
    buffer reused block after block: no dask graph, no new 100 MB array per
    block."""

    rows: _RowMap
    per_row: int
    shapes: list[tuple[int, ...]]
    buffer: np.ndarray | None = None

    def read(self, target: _Target, a: int, b: int, opened, stack) -> np.ndarray | None:
        """Rows ``[a, b)``, or None when they are not consecutive frames of
        one file on disk (then the stream reader reads them, and says why)."""
        f = int(self.rows.file_of[a])
        first = int(self.rows.index_of[a])
        if not (
            (self.rows.file_of[a:b] == f).all()
            and (self.rows.index_of[a:b] == first + np.arange(b - a)).all()
            and (first + b - a) * self.per_row <= self.shapes[f][0]
        ):
            return None
        key = self.rows.files[f][:2]  # (path, dataset): shared by every field
        if key not in opened:
            opened[key] = stack.enter_context(_shared_dataset(*self.rows.files[f]))
        frames = ((b - a) * self.per_row, *self.shapes[f][1:])
        buffer = self.buffer
        if buffer is None or buffer.shape[1:] != frames[1:] or len(buffer) < frames[0]:
            self.buffer = buffer = np.empty(frames, dtype=target.dset.dtype)
        out = buffer[: frames[0]]
        start = first * self.per_row
        opened[key].read_direct(out, source_sel=np.s_[start : start + frames[0]])
        return out.reshape(b - a, *target.dset.shape[1:])


def _file_rows(target: _Target, source: _Source | None, seq_num) -> _FileRows | None:
    """How to read a field straight from its detector files, or None."""
    if source is None:
        return None
    if any(p.get("slice") or p.get("squeeze") for _, _, p, _ in source.parts):
        return None  # frames as read are not the file's frames
    rows = _row_map(source, seq_num)
    if rows is None:
        return None
    row = math.prod(target.dset.shape[1:])
    shapes, per_row = [], set()
    for path, dataset, params in rows.files:
        try:
            with _shared_dataset(path, dataset, params) as src:
                if not isinstance(src, h5py.Dataset) or src.dtype != target.dset.dtype:
                    return None  # the reader refuses another dtype; it says so
                frame = math.prod(src.shape[1:])
                if src.ndim == 0 or not frame or row % frame:
                    return None
                per_row.add(row // frame)
                shapes.append(tuple(src.shape))
        except (OSError, KeyError):
            return None
    if len(per_row) != 1:
        return None
    return _FileRows(rows, per_row.pop(), shapes)


def _copy_chunks(target: _Target, plan, a: int, b: int, source: _Source, opened, stack) -> None:
    """The chunks of the copy that begin in rows ``[a, b)``."""
    for r0, r1, f, offset in plan:
        if not a <= r0 < b:
            continue
        if offset is not None and not target.decode_all:
            path, dataset, params = _row_map_files(source)[f]
            if (path, dataset) not in opened:
                opened[path, dataset] = stack.enter_context(_shared_dataset(path, dataset, params))
            try:
                mask, raw = opened[path, dataset].id.read_direct_chunk(offset)
            except (OSError, ValueError, KeyError):
                pass  # a chunk never written (fill values): decoded below
            else:
                where = (r0,) + (0,) * (target.dset.ndim - 1)
                target.dset.id.write_direct_chunk(where, raw, mask)
                if target.verified:
                    continue
                if _same_as_read(target, r0, r1):
                    target.verified = True
                    continue
                # The first chunk copied does not decode to what the readers
                # read (a filter whose parameters depend on the chunk's
                # shape): this field is decoded and encoded again.
                target.decode_all = True
        target.dset[r0:r1] = np.asarray(target.var.data[r0:r1].compute())


def _same_as_read(target: _Target, r0: int, r1: int) -> bool:
    try:
        copied = target.dset[r0:r1]
    except OSError:  # the filter refuses the bytes
        return False
    return bool(np.array_equal(copied, np.asarray(target.var.data[r0:r1].compute())))


def _row_map_files(source: _Source) -> list[tuple[str, str, Mapping[str, Any]]]:
    files: list[tuple[str, str, Mapping[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for path, dataset, params, _ in source.parts:
        if (path, dataset) not in seen:
            seen.add((path, dataset))
            files.append((path, dataset, params))
    return files


def _block_bounds(targets: list[_Target], n: int) -> list[int]:
    biggest = max(targets, key=lambda t: t.var.dtype.itemsize * math.prod(t.var.shape[1:]))
    chunks = getattr(biggest.var, "chunks", None)
    if chunks:
        edges = np.cumsum((0, *chunks[0])).tolist()
        return [int(e) for e in edges]
    row_bytes = sum(t.var.dtype.itemsize * math.prod(t.var.shape[1:]) for t in targets)
    step = max(1, _BLOCK_BYTES // max(1, row_bytes))
    return [*range(0, n, step), n]


# --- entry-level fields ----------------------------------------------------------
def _entry_name(start: Mapping[str, Any]) -> str:
    """``scan_<scan_id>``, else ``run_<uid prefix>`` (a valid NeXus name)."""
    scan_id = start.get("scan_id")
    if isinstance(scan_id, int | np.integer) and not isinstance(scan_id, bool):
        return f"scan_{int(scan_id)}"
    uid = re.sub(r"[^A-Za-z0-9_]", "_", str(start.get("uid", "")))[:8]
    return f"run_{uid}" if uid else "entry"


def _iso(t) -> str | None:
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        return None
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat()


def _write_entry_fields(entry, start, stop) -> None:
    uid = str(start.get("uid", ""))
    title = start.get("title")
    if not isinstance(title, str) or not title:
        # "scan (scan_id 12)": what the run did, and which one it was.
        plan, scan = start.get("plan_name"), start.get("scan_id")
        title = str(plan) if plan else uid
        if scan is not None:
            title += f" (scan_id {scan})"
    entry.create_dataset("title", data=title)
    begin = _iso(start.get("time"))
    if begin:
        entry.create_dataset("start_time", data=begin)
    end = _iso((stop or {}).get("time"))
    if end:
        entry.create_dataset("end_time", data=end)
    entry.create_dataset("entry_identifier", data=uid)
    experiment = next(
        (str(start[k]) for k in _EXPERIMENT_KEYS if start.get(k) not in (None, "")), uid
    )
    entry.create_dataset("experiment_identifier", data=experiment)
    program = entry.create_dataset("program_name", data="intake-bluesky")
    program.attrs["version"] = _version()


def _json(value) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    return repr(obj)


def _write_documents(entry, start, stop, descriptors) -> None:
    docs = entry.create_group("documents", track_order=True)
    docs.attrs["NX_class"] = "NXcollection"
    docs.attrs["description"] = "the run's bluesky documents (event-model), as JSON text"
    docs.create_dataset("start", data=_json(start))
    if stop is not None:
        docs.create_dataset("stop", data=_json(stop))
    docs.create_dataset("descriptors", data=_json(descriptors))


def _write_metadata(entry, start) -> None:
    """The start document's top-level scalars and lists of scalars, one
    dataset each (nested values are in ``documents/start``)."""
    meta = entry.create_group("metadata", track_order=True)
    meta.attrs["NX_class"] = "NXcollection"
    taken: set[str] = set()
    for key, value in start.items():
        data = _plain(value) if isinstance(key, str) else None
        if data is not None:
            dset = meta.create_dataset(_nx_name(key, taken), data=data)
            dset.attrs["long_name"] = key


def _plain(value):
    """``value`` as data HDF5 stores as it is, or None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return np.bool_(value)
    if isinstance(value, int | np.integer):
        if -(2**63) <= int(value) < 2**64:
            return np.asarray(value) if isinstance(value, np.integer) else np.asarray(int(value))
        return None
    if isinstance(value, float | np.floating):
        return np.asarray(value)
    if isinstance(value, list | tuple) and value:
        if all(isinstance(v, str) for v in value):
            return np.array(value, dtype=h5py.string_dtype())
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            try:
                return np.asarray(value)
            except OverflowError:
                return None
    return None


# --- streams ------------------------------------------------------------------
def _stream_group_names(streams: Sequence[str]) -> dict[str, str]:
    """A group name per stream: the stream's name unless the entry uses it
    (or it is no valid HDF5 name)."""
    out: dict[str, str] = {}
    taken = set(_ENTRY_NAMES)
    for stream in streams:
        out[stream] = _nx_name(stream, taken)
    return out


def _nx_name(name: str, taken: set[str]) -> str:
    """``name`` as a valid NeXus name (letters, digits, ``_``, inner ``.``:
    ophyd's ``stage-x`` becomes ``stage_x``), not one of ``taken`` (then
    ``_2``, ``_3``... is appended); added to ``taken``. The original name is
    kept in the item's ``long_name`` attribute."""
    base = re.sub(r"[^A-Za-z0-9_.]", "_", name).strip(".") or "field"
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out


def _data_key(descriptors, field: str) -> Mapping[str, Any]:
    for d in descriptors:
        key = (d.get("data_keys") or {}).get(field)
        if key is not None:
            return key
    return {}


def _field_attrs(dset, field: str, var, data_key) -> None:
    dset.attrs["long_name"] = field
    units = data_key.get("units") or var.attrs.get("units")
    if isinstance(units, str) and units:
        dset.attrs["units"] = units
    source = data_key.get("source")
    if isinstance(source, str) and source:
        dset.attrs["source"] = source
    dset.attrs["data_key"] = _json(data_key)


def _text_column(values: np.ndarray) -> tuple[np.ndarray, Any, str | None]:
    """Text of a column: strings as UTF-8 strings; anything else, and strings
    holding NUL characters (which HDF5 strings end at), as JSON text."""
    flat = values.ravel()
    if values.dtype.kind == "U" or all(isinstance(v, str) for v in flat):
        if not any("\x00" in v for v in flat):
            return values.astype(object), h5py.string_dtype(), None
    elif all(isinstance(v, bytes) for v in flat) and not any(b"\x00" in v for v in flat):
        return values.astype(object), h5py.string_dtype("ascii"), None
    encoded = np.array(
        [_json(v.decode("latin-1") if isinstance(v, bytes) else v) for v in flat], dtype=object
    ).reshape(values.shape)
    return encoded, h5py.string_dtype(), "json"


def _plot_hints(start, stream: str, descriptors, fields: Sequence[str]):
    """(axes fields, signal fields) of a stream from the run's hints."""
    present = set(fields) | {"time"}
    axes: list[str] = []
    dimensions = (start.get("hints") or {}).get("dimensions")
    if isinstance(dimensions, list | tuple):  # a live start document holds tuples
        for dim in dimensions:
            if isinstance(dim, list | tuple) and len(dim) == 2 and dim[1] == stream:
                axes.extend(f for f in dim[0] if f in present and f not in axes)
    elif stream == "primary":
        for motor in start.get("motors") or ():
            if motor in present and motor not in axes:
                axes.append(motor)
    hinted: dict[str, list[str]] = {}
    for d in descriptors:
        for obj, hint in (d.get("hints") or {}).items():
            for f in (hint or {}).get("fields") or ():
                if f in fields and f not in axes:
                    hinted.setdefault(obj, [])
                    if f not in hinted[obj]:
                        hinted[obj].append(f)
    detectors = [d for d in start.get("detectors") or () if d in hinted]
    ordered = detectors + [obj for obj in hinted if obj not in detectors]
    signals = [f for obj in ordered for f in hinted[obj]]
    return axes, signals


def _plot_attrs(group, start, stream: str, descriptors, ds, names: Mapping[str, str]) -> None:
    fields = [str(f) for f in ds.data_vars]
    axes, signals = _plot_hints(start, stream, descriptors, fields)
    if not signals:
        # No detector hinted (a baseline): the first numeric field, so that a
        # reader still has something to plot.
        signals = [
            f for f in fields if f not in axes and ds[f].dtype.kind in "biuf" and ds[f].ndim == 1
        ][:1] or [f for f in fields if f not in axes][:1]
    if not signals:
        return
    signal = signals[0]
    named = {**names, "time": "time"}
    group.attrs["signal"] = named[signal]
    same = [s for s in signals[1:] if ds[s].shape == ds[signal].shape]
    if same:
        group.attrs["auxiliary_signals"] = [named[s] for s in same]
    axis = named[axes[0]] if axes else "time"
    group.attrs["axes"] = [axis] + ["."] * (ds[signal].ndim - 1)
    for name in [named[a] for a in axes] + ["time", "seq_num"]:
        group.attrs[f"{name}_indices"] = 0


def _write_timestamps(group, name: str, stamps) -> None:
    """Each field's own timestamps (epoch seconds, per row), as the devices
    reported them; stream data have none."""
    if not stamps.data_vars:
        return
    coll = group.create_group(name, track_order=True)
    coll.attrs["NX_class"] = "NXcollection"
    coll.attrs["description"] = "per-field reading timestamps, seconds since 1970-01-01 UTC"
    taken: set[str] = set()
    for field in stamps.data_vars:
        dset = coll.create_dataset(_nx_name(str(field), taken), data=stamps[field].values)
        dset.attrs["long_name"] = str(field)
        dset.attrs["units"] = "s"


def _write_configuration(group, name: str, device: str, config) -> None:
    """A device's configuration readings, one row per descriptor."""
    coll = group.create_group(name, track_order=True)
    coll.attrs["NX_class"] = "NXcollection"
    coll.attrs["device"] = device
    taken = {"time"}
    for field in config.data_vars:
        values = np.asarray(config[field].values)
        name = _nx_name(str(field), taken)
        if values.dtype.kind in "UO":
            data, dtype, encoding = _text_column(values)
            dset = coll.create_dataset(name, data=data, dtype=dtype)
            if encoding:
                dset.attrs["encoding"] = encoding
        else:
            dset = coll.create_dataset(name, data=values)
        dset.attrs["long_name"] = str(field)
        units = config[field].attrs.get("units")
        if isinstance(units, str) and units:
            dset.attrs["units"] = units
    coll.create_dataset("time", data=np.asarray(config["time"].values, dtype="f8"))
