"""What stream readers share: rows from frames, chunking, dtype and parameter checks.

A stream reader turns the ``indices`` of ``stream_datum`` documents into
arrays. The core calls ``Reader(path, data_key=..., **parameters)`` once per
``stream_resource`` and ``reader(start, stop)`` per dask chunk (see the
backend guide). Detector files hold *frames* (the first axis of a dataset,
or one page of a file series); a *row* is what the data key's ``shape``
says, a whole number ``k`` of frames: with shape ``[3, 240, 320]`` and
frames of 240x320, rows ``[a, b)`` are frames ``[3a, 3b)``.

The helpers here are what every such reader needs, so that readers of
different formats agree on the rules and say the same thing when the
documents and the files disagree.

Examples
--------
>>> import numpy as np
>>> from intake_bluesky.core.readers import chunk_rows, expected_dtype, row_layout
>>> data_key = {"shape": [3, 240, 320], "dtype_numpy": "<u2"}
>>> row_layout(data_key, (240, 320))  # frames per row, and the row's shape
(3, (3, 240, 320))
>>> chunk_rows(data_key, [2, 240, 320])  # the fewest rows that hold whole chunks
2
>>> expected_dtype(data_key)
dtype('uint16')
>>> frames = np.zeros((6, 240, 320), "<u2")  # what a reader read for rows [0, 2)
>>> k, row = row_layout(data_key, frames.shape[1:])
>>> frames.reshape((2, *row)).shape
(2, 3, 240, 320)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from .errors import UnknownParameterWarning

__all__ = [
    "UnknownParameterWarning",
    "check_dtype",
    "check_rows",
    "chunk_rows",
    "entry_point_name",
    "expected_dtype",
    "positive_shape",
    "renamed_parameter",
    "row_layout",
    "squeezed",
    "warn_unknown",
]

_T = TypeVar("_T")


def entry_point_name(mimetype: str) -> str:
    """The entry point name a reader of ``mimetype`` registers under.

    Entry point names may not contain ``=`` (``importlib.metadata`` splits
    the line there), so ``=`` is written ``%3D`` (and ``%`` ``%25``), as in
    a URL. The core looks a mimetype up under both spellings.

    Parameters
    ----------
    mimetype : str
        The ``stream_resource`` mimetype, e.g.
        ``"multipart/related;type=image/tiff"``.

    Returns
    -------
    str
        The name for the ``intake_bluesky.stream_readers`` entry point group.

    Examples
    --------
    >>> entry_point_name("multipart/related;type=image/tiff")
    'multipart/related;type%3Dimage/tiff'
    >>> entry_point_name("application/x-hdf5")
    'application/x-hdf5'
    """
    return mimetype.replace("%", "%25").replace("=", "%3D")


def squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without its length-1 axes.

    Examples
    --------
    >>> squeezed([1, 240, 1, 320])
    (240, 320)
    """
    return tuple(int(n) for n in shape if n != 1)


def expected_dtype(data_key: Mapping | None) -> np.dtype | None:
    """The dtype a data key declares (``dtype_numpy``), or None if it declares none.

    A structured dtype is written in JSON as a list of ``[name, dtype]`` (or
    ``[name, dtype, shape]``) fields.

    Parameters
    ----------
    data_key : mapping or None
        The descriptor's data key.

    Returns
    -------
    numpy.dtype or None

    Examples
    --------
    >>> expected_dtype({"dtype_numpy": "<f4"})
    dtype('float32')
    >>> expected_dtype({"dtype_numpy": [["x", "<f8"], ["ok", "|b1"]]})
    dtype([('x', '<f8'), ('ok', '?')])
    >>> expected_dtype({"dtype": "number"}) is None
    True
    """
    declared = (data_key or {}).get("dtype_numpy")
    if not declared:
        return None
    if isinstance(declared, list):  # a structured dtype, JSON-encoded as lists
        return np.dtype([tuple(field) for field in declared])
    return np.dtype(declared)


def check_dtype(actual: np.dtype, data_key: Mapping | None, where: str) -> None:
    """Raise unless the stored dtype is the one the data key declares.

    Readers do not cast: a mismatch means the descriptor or the files are
    wrong, and saying so beats returning values in an unexpected dtype.

    Parameters
    ----------
    actual : numpy.dtype
        The dtype the file holds.
    data_key : mapping or None
        The descriptor's data key; no ``dtype_numpy`` means nothing to check.
    where : str
        The file (and dataset) read, for the message.

    Raises
    ------
    ValueError
        Naming ``where`` and both dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> check_dtype(np.dtype("<u2"), {"dtype_numpy": "<u2"}, "cam.h5")
    >>> check_dtype(np.dtype("<u2"), {"dtype_numpy": "<f8"}, "cam.h5")
    Traceback (most recent call last):
    ...
    ValueError: cam.h5 holds dtype <u2 (uint16), but the data key declares dtype_numpy <f8 ...
    """
    expected = expected_dtype(data_key)
    if expected is not None and actual != expected:
        raise ValueError(
            f"{where} holds dtype {actual.str} ({actual}), but the data key declares "
            f"dtype_numpy {expected.str} ({expected}). Values are not cast: fix the "
            "descriptor (e.g. with a transform) or the file."
        )


def row_layout(
    data_key: Mapping | None,
    frame: Sequence[int],
    *,
    multiplier: int | None = None,
    where: str = "The file",
) -> tuple[int, tuple[int, ...]]:
    """Frames per row and the shape of a row, for rows of ``data_key`` made of frames.

    A row is the data key's ``shape``; it must be a whole number ``k`` of
    frames: the frame itself (``k == 1``, length-1 axes aside) or ``k``
    frames stacked on a new first axis.

    Parameters
    ----------
    data_key : mapping or None
        The descriptor's data key. Without a ``shape``, a row is one frame
        (or ``multiplier`` frames).
    frame : sequence of int
        The shape of one frame as read (after any slicing or squeezing).
    multiplier : int, optional
        Frames per row as the ``stream_resource`` says (older ophyd-async);
        it must agree with the data key.
    where : str
        The file (and dataset) read, for the messages.

    Returns
    -------
    k : int
        Frames per row: rows ``[a, b)`` are frames ``[a*k, b*k)``.
    row : tuple of int
        The shape of one row.

    Raises
    ------
    ValueError
        The frames cannot make rows of the data key's shape (or ``multiplier``
        disagrees with it); the message names both shapes.

    Examples
    --------
    >>> row_layout({"shape": [1, 240, 320]}, (240, 320))
    (1, (1, 240, 320))
    >>> row_layout({"shape": [1]}, ())  # a 1-D dataset: one value a row
    (1, (1,))
    >>> row_layout(None, (4, 4), multiplier=2)
    (2, (2, 4, 4))
    >>> row_layout({"shape": [5, 5]}, (4, 4), where="cam.h5")
    Traceback (most recent call last):
    ...
    ValueError: cam.h5: frames of shape (4, 4) cannot make rows of the data key's shape [5, 5]...
    """
    frame = tuple(int(n) for n in frame)
    declared = (data_key or {}).get("shape")
    if declared is None:
        k = multiplier or 1
        return k, frame if k == 1 else (k, *frame)
    per_frame = math.prod(frame)
    if any(n is None for n in declared) or per_frame == 0:
        raise ValueError(
            f"{where}: data key shape {list(declared)} with frames of shape {frame} cannot be "
            "read as rows (variable-sized or empty frames)."
        )
    row = tuple(int(n) for n in declared)
    k, rest = divmod(math.prod(row), per_frame)
    if not (k >= 1 and rest == 0 and squeezed(row) in (squeezed(frame), (k, *squeezed(frame)))):
        raise ValueError(
            f"{where}: frames of shape {frame} cannot make rows of the data key's shape "
            f"{list(row)}: a row must be a whole number of frames. The descriptor and the "
            "file disagree."
        )
    if multiplier is not None and multiplier != k:
        raise ValueError(
            f"{where}: the data key's shape {list(row)} holds {k} frame(s) of shape {frame} "
            f"per row, but the stream_resource says multiplier={multiplier}. The documents "
            "disagree."
        )
    return k, row


def chunk_rows(
    data_key: Mapping | None, chunk_shape: Sequence[int] | None, *, multiplier: int | None = None
) -> int | None:
    """Rows per natural storage chunk, from the documents alone (no file is opened).

    Whole multiples of it make dask chunks that never split a storage chunk
    (an HDF5 chunk, a file of a series). A stream reader's ``chunk_rows``
    classmethod can return this.

    Parameters
    ----------
    data_key : mapping or None
        The descriptor's data key (its ``shape`` is the row shape).
    chunk_shape : sequence of int or None
        ``[frames per chunk, *chunk shape of a frame]`` as the writer
        declared it. The trailing sizes may tile a frame (HDF5 chunks) or be
        a whole frame (a file of a series).
    multiplier : int, optional
        Frames per row as the ``stream_resource`` says (older ophyd-async).

    Returns
    -------
    int or None
        The fewest whole rows that cover whole chunks; None when the
        documents do not tell (or disagree).

    Examples
    --------
    >>> chunk_rows({"shape": [1]}, [1024])
    1024
    >>> chunk_rows({"shape": [3, 240, 320]}, [2, 240, 320])  # 3 frames a row, 2 a chunk
    2
    >>> chunk_rows({"shape": [1, 1, 8, 8]}, [10, 8, 8])
    10
    >>> chunk_rows({"shape": [7]}, [1, 8, 8]) is None
    True
    """
    if not chunk_shape:
        return None
    per_chunk = int(chunk_shape[0])
    if per_chunk < 1:
        return None
    k = _frames_per_row(data_key, tuple(chunk_shape[1:]), multiplier)
    if k is None:
        # A chunk of one frame is never split by whole rows, whatever a row
        # holds; with a frame shape to check against, the documents disagree.
        return 1 if per_chunk == 1 and len(chunk_shape) == 1 else None
    return math.lcm(per_chunk, k) // k


def _frames_per_row(
    data_key: Mapping | None, chunk_frame: tuple, multiplier: int | None
) -> int | None:
    """k from the data key and the chunk's frame part, or None."""
    declared = None if data_key is None else data_key.get("shape")
    if declared is None:
        k = int(multiplier or 1)
    elif len(declared) == len(chunk_frame) + 1:
        # By rank, since an HDF5 chunk may hold part of a frame only.
        k = int(declared[0])
    elif len(declared) == len(chunk_frame):
        k = 1
    else:
        # Ranks differ by length-1 axes only: the chunk holds whole frames.
        try:
            k = row_layout(data_key, chunk_frame)[0]
        except ValueError:
            return None
    if k < 1 or (multiplier is not None and int(multiplier) != k):
        return None
    return k


def check_rows(start: int, stop: int) -> tuple[int, int]:
    """``(start, stop)`` as ints, once they make a valid range of rows.

    Examples
    --------
    >>> check_rows(2, 5)
    (2, 5)
    >>> check_rows(3, 1)
    Traceback (most recent call last):
    ...
    ValueError: rows [3, 1) are not a valid range.
    """
    start, stop = int(start), int(stop)
    if start < 0 or stop < start:
        raise ValueError(f"rows [{start}, {stop}) are not a valid range.")
    return start, stop


def positive_shape(
    shape: Sequence[int] | None, name: str = "chunk_shape"
) -> tuple[int, ...] | None:
    """A declared shape as a tuple of ints (None if not given), once all are positive.

    Examples
    --------
    >>> positive_shape([2, 240, 320])
    (2, 240, 320)
    >>> positive_shape([0, 4])
    Traceback (most recent call last):
    ...
    ValueError: chunk_shape must hold positive integers, not [0, 4].
    """
    if not shape:
        return None
    if any(int(n) < 1 for n in shape):
        raise ValueError(f"{name} must hold positive integers, not {shape!r}.")
    return tuple(int(n) for n in shape)


def renamed_parameter(
    value: _T | None, older: _T | None, names: tuple[str, str], where: str
) -> _T | None:
    """The value of a parameter given under its name or an older one.

    Parameters
    ----------
    value, older : object or None
        What the ``stream_resource`` gives under the current and older name.
    names : (str, str)
        The current and older name, for the message.
    where : str
        The stream resource, for the message.

    Raises
    ------
    ValueError
        Both are given and differ.

    Examples
    --------
    >>> renamed_parameter(None, "/entry/data", ("dataset", "path"), "det.h5")
    '/entry/data'
    >>> renamed_parameter("/a", "/b", ("dataset", "path"), "det.h5")
    Traceback (most recent call last):
    ...
    ValueError: Stream resource for det.h5 gives both dataset='/a' and path='/b', which ...
    """
    if value is not None and older is not None and value != older:
        raise ValueError(
            f"Stream resource for {where} gives both {names[0]}={value!r} and "
            f"{names[1]}={older!r}, which differ; give one."
        )
    return value if value is not None else older


def warn_unknown(unknown: Mapping[str, Any], where: str, reader: str) -> None:
    """Warn (:class:`UnknownParameterWarning`) about parameters a reader ignores.

    Call it from the reader's ``__init__``: the warning points at the code
    that constructed the reader.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_unknown({"join_method": "stack"}, "det.h5", "MyReader")
    >>> caught[0].category.__name__, "join_method" in str(caught[0].message)
    ('UnknownParameterWarning', True)
    """
    if unknown:
        warnings.warn(
            f"Stream resource for {where}: parameters {sorted(unknown)} are not known to "
            f"{reader} and are ignored; if they change how the data are laid out, the rows "
            "read may be wrong.",
            UnknownParameterWarning,
            stacklevel=3,
        )
