"""The stream reader of ``application/x-hdf5`` stream resources.

ophyd-async detectors (areaDetector, PandA, Odin, the simulated ones) write
their frames to HDF5 files in SWMR mode and describe them with a
``stream_resource`` per data key (``uri`` = the file, ``parameters.dataset`` =
the dataset in it) and ``stream_datum`` documents whose ``indices`` count rows
of the data key. The core calls::

    reader = HDF5StreamReader(path, data_key=descriptor["data_keys"][key],
                              **stream_resource["parameters"])
    rows = reader(start, stop)   # shape (stop - start, *data_key["shape"])

A row is what the data key's ``shape`` says: with shape ``[3, 240, 320]`` and a
dataset of 240x320 frames, each row is 3 consecutive frames; with shape
``[1]`` and a 1-D dataset, each row is one value. The dataset's first axis is
frames; frames per row ``k = prod(shape) / prod(frame shape)``.

Examples
--------
>>> import os, tempfile, h5py, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "det.h5")
>>> with h5py.File(path, "w", libver="latest") as f:
...     _ = f.create_dataset("/entry/data/data", data=np.arange(24, dtype="u1").reshape(6, 2, 2),
...                          maxshape=(None, 2, 2), chunks=(1, 2, 2))
>>> key = {"shape": [3, 2, 2], "dtype_numpy": "|u1"}
>>> reader = HDF5StreamReader(path, data_key=key, dataset="/entry/data/data")
>>> rows = reader(0, 2)
>>> rows.shape, rows.dtype, int(rows[1, 0, 0, 0])
((2, 3, 2, 2), dtype('uint8'), 12)
>>> HDF5StreamReader.chunk_rows(key, {"chunk_shape": [1, 2, 2]})
1
>>> reader.close()
"""

from __future__ import annotations

import builtins
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4/blosc/... filters with HDF5)
import numpy as np

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.core.readers import (
    UnknownParameterWarning,
    check_dtype,
    check_rows,
    positive_shape,
    renamed_parameter,
    row_layout,
    squeezed,
    warn_unknown,
)
from intake_bluesky.core.readers import chunk_rows as rows_per_chunk

from . import _files

__all__ = ["HDF5StreamReader", "MIMETYPE", "UnknownParameterWarning", "parse_slice"]

#: The stream_resource mimetype this package reads.
MIMETYPE = "application/x-hdf5"


def parse_slice(text: str) -> tuple:
    """A numpy-style index string (``":, 0"``, ``"[..., 1:3]"``) as an index tuple.

    Parsed, never evaluated.

    Examples
    --------
    >>> parse_slice("[:, 1:3, 0]")
    (slice(None, None, None), slice(1, 3, None), 0)
    >>> parse_slice("..., ::2")
    (Ellipsis, slice(None, None, 2))
    """
    if not isinstance(text, str):
        raise ValueError(f"slice must be a string like ':, 0' or '[..., 1:3]', not {text!r}.")
    body = text.strip()
    if body[:1] in "[(" and body[-1:] in "])":
        body = body[1:-1]
    out: list[Any] = []
    for part in body.split(","):
        part = part.strip()
        try:
            if part == "...":
                out.append(Ellipsis)
            elif ":" in part:
                bits = [b.strip() for b in part.split(":")]
                if len(bits) > 3:
                    raise ValueError
                out.append(builtins.slice(*[int(b) if b else None for b in bits]))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(
                f"slice {text!r}: cannot parse {part!r}; write numpy indices like ':, 0' or "
                "'[..., 1:3]'."
            ) from None
    if sum(p is Ellipsis for p in out) > 1:
        raise ValueError(f"slice {text!r}: at most one '...'.")
    return tuple(out)


class HDF5StreamReader:
    """Rows of one data key from a detector HDF5 file.

    Parameters
    ----------
    filename : str
        The HDF5 file (the stream_resource ``uri`` as a local path, after
        ``root_map``). Positional only.
    data_key : dict, optional
        The descriptor's data key (``shape``, ``dtype_numpy``): gives the row
        shape and the dtype the file must hold. Without it a row is one frame
        (or ``multiplier`` frames) and the file's dtype is taken as is.
    dataset : str
        The dataset in the file, e.g. ``/entry/data/data``.
    path : str, optional
        Older name of ``dataset``.
    chunk_shape : sequence of int, optional
        The file's chunking (frames first), as the writer declared it; used by
        :meth:`chunk_rows`.
    swmr : bool, default True
        Open with ``swmr=True, libver='latest'`` and refresh the dataset before
        each read (but the first after opening it), so a file still being
        written is read up to what is on disk.
    locking : bool or str, optional
        h5py's ``locking`` argument (``True``, ``False``, ``'best-effort'``).
    multiplier : int, optional
        Frames per index, written by older ophyd-async; it must agree with the
        data key's shape (it is the row's leading dimension there).
    slice : str, optional
        numpy indices applied to the dataset (``":, 0"``), as in
        bluesky-tiled-plugins; the first axis (frames) must be kept whole.
    squeeze : bool, default False
        Drop length-1 axes of each (sliced) frame.
    libver : str, optional
        Accepted for compatibility with tiled's adapter; reading does not
        depend on it.
    **unknown
        Any other parameter is ignored with an
        :class:`~intake_bluesky.core.errors.UnknownParameterWarning` naming it.

    Raises
    ------
    intake_bluesky.core.DataNotWrittenError
        From a call, for rows not on disk yet (the file is still being
        written): names file, dataset, rows asked and rows there.
    ValueError
        The file's dtype differs from ``dtype_numpy``, or its frames cannot
        make rows of the data key's shape; the message names both.
    """

    mimetype = MIMETYPE

    def __init__(
        self,
        filename: str,
        /,
        *,
        data_key: Mapping | None = None,
        dataset: str | None = None,
        path: str | None = None,
        chunk_shape: Sequence[int] | None = None,
        swmr: bool = True,
        locking: bool | str | None = None,
        multiplier: int | None = None,
        slice: str | None = None,
        squeeze: bool = False,
        libver: str | None = None,
        **unknown: Any,
    ):
        self.filename = str(filename)
        where = f"HDF5 file {self.filename!r}"
        dataset = renamed_parameter(dataset, path, ("dataset", "path"), where)
        if not dataset:
            raise ValueError(
                f"HDF5 stream resource for {self.filename!r} has no 'dataset' parameter: "
                "which dataset of the file holds the data is unknown."
            )
        if multiplier is not None and (int(multiplier) != multiplier or multiplier < 1):
            raise ValueError(f"multiplier must be a positive integer, not {multiplier!r}.")
        self.chunk_shape = positive_shape(chunk_shape)
        warn_unknown(unknown, f"{where} (dataset {dataset!r})", "intake-bluesky-hdf5")
        self.dataset = "/" + dataset.lstrip("/")
        self.data_key = dict(data_key) if data_key is not None else None
        self.swmr = bool(swmr)
        self.locking = locking
        self.multiplier = int(multiplier) if multiplier is not None else None
        self.slice = slice
        self.index = parse_slice(slice) if slice else None
        self.squeeze = bool(squeeze)
        self.libver = libver
        self.unknown = dict(unknown)
        self._init_state()

    def _init_state(self):
        self._key = _files.file_key(self.filename, swmr=self.swmr, locking=self.locking)
        self._dset: h5py.Dataset | None = None
        # The dataset was opened by this reader's acquire and not read since:
        # its extent is as on disk at open, a refresh would re-read the same.
        self._fresh = False
        self._finalizer: weakref.finalize | None = None
        self._layout: tuple | None = None
        self._file_index: tuple = ()
        self._lock = threading.Lock()

    # --- pickling: dask workers reopen the file in their own process -------
    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_key", "_dset", "_fresh", "_finalizer", "_layout", "_file_index", "_lock"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_state()

    def __repr__(self):
        return f"{type(self).__name__}({self.filename!r}, dataset={self.dataset!r})"

    # --- the file ----------------------------------------------------------
    def _open(self) -> h5py.Dataset:
        if self._dset is not None:
            return self._dset
        with self._lock:  # one acquire per reader, even under threaded dask
            if self._dset is None:
                self._dset = self._acquire()
            return self._dset

    def _acquire(self) -> h5py.Dataset:
        file = _files.acquire(self._key)
        # Released when close() is called or the reader is garbage collected.
        self._finalizer = weakref.finalize(self, _files.release, self._key)
        try:
            obj, self._fresh = _files.opened(self._key, self.dataset)
            if not isinstance(obj, h5py.Dataset):
                found = []

                def visit(name, o):
                    if isinstance(o, h5py.Dataset):
                        found.append("/" + name)

                file.visititems(visit)
                what = "is a group, not a dataset" if obj is not None else "does not exist"
                raise KeyError(
                    f"HDF5 file {self.filename!r}: dataset {self.dataset!r} {what}. Datasets in "
                    f"the file: {found[:20]}."
                )
        except BaseException:
            self._finalizer()
            self._finalizer = None
            raise
        return obj

    def close(self) -> None:
        """Give the shared file handle back (the last reader of a file closes it)."""
        self._dset = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- rows ----------------------------------------------------------------
    def _row_layout(self, dset: h5py.Dataset) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """(frames per row, shape of one frame as read, shape of one row)."""
        if self._layout is not None:
            return self._layout
        file_frame = tuple(dset.shape[1:])
        if dset.ndim == 0:
            raise ValueError(
                f"HDF5 file {self.filename!r}: dataset {self.dataset!r} is a scalar; stream "
                "data need a dataset whose first axis counts frames."
            )
        frame = file_frame
        if self.index is not None:
            index = self.index
            if Ellipsis in index:
                at = index.index(Ellipsis)
                fill = dset.ndim - (len(index) - 1)
                index = index[:at] + (builtins.slice(None),) * fill + index[at + 1 :]
            if not index or index[0] != builtins.slice(None):
                raise ValueError(
                    f"HDF5 file {self.filename!r}, dataset {self.dataset!r}: slice "
                    f"{self.slice!r} does not keep the first axis (frames) whole; rows are "
                    "counted along it, so such a slice is not supported."
                )
            # A zero-stride view: the sliced shape without allocating a frame.
            probe = np.lib.stride_tricks.as_strided(
                np.zeros(1, dtype=bool), shape=file_frame, strides=(0,) * len(file_frame)
            )
            try:
                frame = probe[index[1:]].shape
            except IndexError as err:
                raise ValueError(
                    f"HDF5 file {self.filename!r}, dataset {self.dataset!r} of shape "
                    f"{dset.shape}: slice {self.slice!r} does not apply: {err}."
                ) from None
            self._file_index = index[1:]
        if self.squeeze:
            frame = squeezed(frame)
        where = f"HDF5 file {self.filename!r}, dataset {self.dataset!r} of shape {dset.shape}"
        k, row = row_layout(self.data_key, frame, multiplier=self.multiplier, where=where)
        check_dtype(dset.dtype, self.data_key, where)
        self._layout = (k, tuple(frame), row)
        return self._layout

    def frames_per_row(self) -> int:
        """How many frames of the dataset make one row (opens the file)."""
        dset = self._open()
        self._fresh = False  # rows may be read much later: refresh then
        return self._row_layout(dset)[0]

    def _frames(self, start: int, stop: int) -> tuple[h5py.Dataset, int, int, tuple[int, ...]]:
        """(dataset, first frame, last frame, row shape) of rows ``[start, stop)``,
        once they are on disk."""
        dset = self._open()
        if self.swmr and not self._fresh:
            # See frames the writer appended since the dataset was opened or
            # last refreshed (not needed on a dataset opened just now).
            dset.refresh()
        self._fresh = False
        k, frame, row = self._row_layout(dset)
        first, last = start * k, stop * k
        on_disk = dset.shape[0]
        if last > on_disk:
            raise DataNotWrittenError(
                f"HDF5 file {self.filename!r}, dataset {self.dataset!r}: rows [{start}, {stop}) "
                f"asked ({k} frame(s) per row, frames [{first}, {last})), but only "
                f"{on_disk // k} row(s) ({on_disk} frames) are on disk. The file is still being "
                "written (or was cut short); retry once the detector has flushed."
            )
        return dset, first, last, row

    def read_into(self, start: int, stop: int, out: np.ndarray) -> bool:
        """Rows ``[start, stop)`` written into ``out``, straight from the file.

        ``out`` must have shape ``(stop - start, *row shape)``, be C-contiguous
        and have the file's dtype; otherwise nothing is read and the answer
        is False (call the reader instead). No value is converted.
        """
        start, stop = check_rows(start, stop)
        dset, first, last, row = self._frames(start, stop)
        if (
            self.index is not None
            or out.dtype != dset.dtype
            or out.shape != (stop - start, *row)
            or not out.flags.c_contiguous
        ):
            return False
        if last > first:
            # The row shape and the file's frames hold the same values in
            # the same order (rows are whole frames; squeezing drops only
            # length-1 axes), so the buffer is the frames, reshaped.
            dset.read_direct(
                out.reshape((last - first, *dset.shape[1:])),
                source_sel=np.s_[first:last],
            )
        return True

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as an array of shape ``(stop - start, *row shape)``."""
        start, stop = check_rows(start, stop)
        dset, first, last, row = self._frames(start, stop)
        if self.index is None:
            data = dset[first:last]
        else:
            data = dset[(builtins.slice(first, last), *self._file_index)]
        return data.reshape((stop - start, *row))

    @classmethod
    def chunk_rows(cls, data_key: Mapping | None, parameters: Mapping) -> int | None:
        """Rows per natural storage chunk of the file, from the parameters alone.

        Whole multiples of it make dask chunks that never split a file chunk.
        Opens no file; ``None`` when the parameters do not tell.

        Examples
        --------
        >>> HDF5StreamReader.chunk_rows({"shape": [1]}, {"chunk_shape": [1024]})
        1024
        >>> HDF5StreamReader.chunk_rows({"shape": [3, 240, 320]}, {"chunk_shape": [2, 240, 320]})
        2
        """
        if parameters.get("slice") or parameters.get("squeeze"):
            return None  # frames as read are no longer the file's chunks
        return rows_per_chunk(
            data_key, parameters.get("chunk_shape"), multiplier=parameters.get("multiplier")
        )
