"""Stream readers of file series: ``multipart/related;type=image/tiff`` (and JPEG).

areaDetector's TIFF and JPEG file plugins, driven by ophyd-async, write one
file per frame (or per ``chunk_shape[0]`` frames) into a directory and
describe them with a ``stream_resource`` whose ``uri`` is the directory and
whose ``parameters`` are ``template`` (``'name_{:06d}.tiff'``, or the
plugin's own ``'%s%s_%6.6d.tiff'``; newer ophyd-async calls it
``file_template``) and ``chunk_shape`` (``[frames per file, y, x]``). File
numbers start at 0 for every stream_resource. The core calls::

    reader = MultipartTiffReader(directory, data_key=data_key, **parameters)
    rows = reader(start, stop)   # shape (stop - start, *data_key["shape"])

Datum indices ``[a, b)`` are rows; a row is ``k`` frames where the data key's
shape says so (``[3, y, x]``: 3 frames), so rows ``[a, b)`` are frames
``[a*k, b*k)``, i.e. files ``[a*k/f, b*k/f)`` with ``f`` frames per file.

Examples
--------
>>> import os, tempfile, numpy as np, tifffile
>>> d = tempfile.mkdtemp()
>>> for i in range(4):
...     tifffile.imwrite(os.path.join(d, f"cam_{i:06d}.tiff"), np.full((2, 3), i, "<u2"))
>>> reader = MultipartTiffReader(d, data_key={"shape": [2, 2, 3], "dtype_numpy": "<u2"},
...                              template="cam_{:06d}.tiff", chunk_shape=[1, 2, 3])
>>> rows = reader(1, 2)
>>> rows.shape, rows[0, :, 0, 0].tolist()
((1, 2, 2, 3), [2, 3])
>>> MultipartTiffReader.chunk_rows({"shape": [1, 2, 3]}, {"chunk_shape": [1, 2, 3]})
1
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tifffile

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.core.readers import (
    UnknownParameterWarning,
    check_dtype,
    check_rows,
    entry_point_name,
    expected_dtype,
    positive_shape,
    renamed_parameter,
    row_layout,
    warn_unknown,
)
from intake_bluesky.core.readers import chunk_rows as rows_per_chunk

from ._handler import TiffReadError

__all__ = [
    "JPEG_MIMETYPE",
    "TIFF_MIMETYPE",
    "MultipartJpegReader",
    "MultipartTiffReader",
    "UnknownParameterWarning",
    "entry_point_name",
    "file_name",
]

TIFF_MIMETYPE = "multipart/related;type=image/tiff"
JPEG_MIMETYPE = "multipart/related;type=image/jpeg"

_NEW_STYLE = re.compile(r"\{[^{}]*\}")
_OLD_STYLE_INT = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?d")


def file_name(template: str, number: int, filename: str = "") -> str:
    """The name of file ``number`` of a series.

    ``template`` is a Python format (``'cam_{:06d}.tiff'``, ``'{}.tif'``) or an
    areaDetector ``FileTemplate`` (``'%s%s_%6.6d.tiff'``: the first ``%s`` is
    the ``filename`` parameter, any other ``%s`` -- the plugin's file path --
    is the directory, already given by the ``uri``).

    Examples
    --------
    >>> file_name("cam_{:06d}.tiff", 7)
    'cam_000007.tiff'
    >>> file_name("%s%s_%6.6d.tiff", 7, filename="cam")
    'cam_000007.tiff'
    >>> file_name("img_%d.tif", 12)
    'img_12.tif'
    """
    if _NEW_STYLE.search(template):
        return template.format(number)
    if _OLD_STYLE_INT.search(template):
        escaped = filename.replace("%", "%%")
        return template.replace("%s", escaped, 1).replace("%s", "") % number
    raise ValueError(
        f"File template {template!r} has no place for the file number: expected a format "
        "like 'name_{:06d}.tiff' or 'name_%6.6d.tiff'."
    )


class MultipartTiffReader:
    """Rows of one data key from a directory of TIFF files, one file per frame(s).

    Parameters
    ----------
    directory : str
        The stream_resource ``uri`` as a local directory (after ``root_map``).
        Positional only.
    data_key : dict, optional
        The descriptor's data key: ``shape`` is the row shape (``k`` frames
        per row where it says so), ``dtype_numpy`` the dtype the files must
        hold. Without it a row is one frame in the files' own dtype.
    template : str
        File name of file number ``n`` (see :func:`file_name`).
    file_template : str, optional
        Newer ophyd-async's name of ``template``.
    filename : str, optional
        Fills the first ``%s`` of an areaDetector-style template.
    chunk_shape : sequence of int, optional
        ``[frames per file, *frame shape]``; one frame per file when absent.
    **unknown
        Any other parameter is ignored with an
        :class:`~intake_bluesky.core.errors.UnknownParameterWarning`.

    Raises
    ------
    intake_bluesky.core.DataNotWrittenError
        From a call, for rows whose file is not in the directory (yet).
    ValueError
        A file's dtype differs from ``dtype_numpy``, or its frames cannot make
        rows of the data key's shape.
    TiffReadError
        A file cannot be decoded; the message names it.
    """

    mimetype = TIFF_MIMETYPE
    #: File name extensions the series may use.
    extensions = (".tif", ".tiff")

    def __init__(
        self,
        directory: str,
        /,
        *,
        data_key: Mapping | None = None,
        template: str | None = None,
        file_template: str | None = None,
        filename: str = "",
        chunk_shape: Sequence[int] | None = None,
        **unknown: Any,
    ):
        self.directory = os.fspath(directory)
        where = repr(self.directory)
        template = renamed_parameter(template, file_template, ("template", "file_template"), where)
        if not template:
            raise ValueError(
                f"Stream resource for {self.directory!r} has no 'template' parameter: the "
                "file names of the series are unknown."
            )
        file_name(template, 0, filename)  # a bad template fails here, not at read
        self.chunk_shape = positive_shape(chunk_shape)
        warn_unknown(unknown, where, type(self).__name__)
        self.template = template
        self.filename = filename
        self.data_key = dict(data_key) if data_key is not None else None
        self.frames_per_file = self.chunk_shape[0] if self.chunk_shape else 1
        self.unknown = dict(unknown)
        self._layout: tuple | None = None

    def __repr__(self):
        return f"{type(self).__name__}({self.directory!r}, template={self.template!r})"

    def close(self) -> None:
        """Nothing stays open between calls; kept for the reader protocol."""

    def path(self, number: int) -> str:
        """The path of file ``number`` of the series."""
        return os.path.join(self.directory, file_name(self.template, number, self.filename))

    # --- decoding: one file -> (frames, *frame shape) -----------------------
    def _decode(self, path: str, first: int, stop: int) -> np.ndarray:
        """Frames ``[first, stop)`` of one file, stacked."""
        try:
            with tifffile.TiffFile(path) as tif:
                pages = [tif.pages[i].asarray() for i in range(first, stop)]
        except IndexError:
            raise TiffReadError(
                f"TIFF file {path} holds fewer than {stop} frames, but chunk_shape "
                f"{list(self.chunk_shape or [1])} says {self.frames_per_file} per file."
            ) from None
        except FileNotFoundError:
            raise
        except Exception as err:
            raise TiffReadError(
                f"Cannot read TIFF file {path}: {type(err).__name__}: {err}. If it is still "
                "being written, retry once the detector has closed it."
            ) from err
        return np.stack(pages)

    def _read_frames(self, first: int, stop: int, rows: tuple[int, int]) -> np.ndarray:
        parts = []
        frame = first
        while frame < stop:
            number, page = divmod(frame, self.frames_per_file)
            take = min(stop - frame, self.frames_per_file - page)
            path = self.path(number)
            if not os.path.exists(path):
                if not os.path.isdir(self.directory):
                    raise FileNotFoundError(
                        f"Directory {self.directory!r} of the file series does not exist. If "
                        "the data moved since the run was written, pass "
                        "root_map={old_root: new_root} to the catalog."
                    )
                raise DataNotWrittenError(
                    f"{path!r} (file {number} of the series {self.template!r} in "
                    f"{self.directory!r}) is not on disk, so rows [{rows[0]}, {rows[1]}) cannot "
                    "be read: the detector has not written it yet (or it was removed)."
                )
            parts.append(self._decode(path, page, page + take))
            frame += take
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    # --- rows ----------------------------------------------------------------
    def _row_layout(self, frames: np.ndarray) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        frame = tuple(frames.shape[1:])
        where = f"File series {self.template!r} in {self.directory!r}"
        check_dtype(frames.dtype, self.data_key, where)
        k, row = row_layout(self.data_key, frame, where=where)
        return k, frame, row

    def _frames_per_row(self) -> int | None:
        """k from the data key and chunk_shape, without reading a file when possible."""
        if self._layout is not None:
            return self._layout[0]
        if (self.data_key or {}).get("shape") is None:
            return 1
        if self.chunk_shape and len(self.chunk_shape) > 1:
            try:
                return row_layout(self.data_key, self.chunk_shape[1:])[0]
            except ValueError:
                pass
        return None  # learn it from the first file

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as an array of shape ``(stop - start, *row shape)``."""
        start, stop = check_rows(start, stop)
        k = self._frames_per_row()
        if k is None:
            # Frame shape unknown: read one frame of the first row to learn it.
            self._layout = self._row_layout(self._read_frames(0, 1, (start, stop)))
            k = self._layout[0]
        if stop == start:
            row = (
                self._layout[2] if self._layout else tuple((self.data_key or {}).get("shape", ()))
            )
            expected = expected_dtype(self.data_key)
            return np.empty((0, *row), dtype=float if expected is None else expected)
        frames = self._read_frames(start * k, stop * k, (start, stop))
        self._layout = layout = self._row_layout(frames)
        if layout[0] != k:
            raise ValueError(
                f"Files of the series {self.template!r} in {self.directory!r} hold frames of "
                f"shape {layout[1]}, not {tuple((self.chunk_shape or ())[1:])} as chunk_shape "
                "says."
            )
        return frames.reshape((stop - start, *layout[2]))

    @classmethod
    def chunk_rows(cls, data_key: Mapping | None, parameters: Mapping) -> int | None:
        """Rows per file (the natural chunk of a series), from the parameters alone.

        Examples
        --------
        >>> MultipartTiffReader.chunk_rows({"shape": [1, 8, 8]}, {"chunk_shape": [10, 8, 8]})
        10
        >>> MultipartTiffReader.chunk_rows({"shape": [4, 8, 8]}, {"chunk_shape": [1, 8, 8]})
        1
        """
        # No chunk_shape: one frame per file.
        return rows_per_chunk(data_key, parameters.get("chunk_shape") or [1])


def _missing_pillow() -> ImportError | None:
    try:
        import PIL.Image  # noqa: F401
    except ImportError as err:
        return err
    return None


class MultipartJpegReader(MultipartTiffReader):
    """Rows of one data key from a directory of JPEG files (areaDetector's JPEG plugin).

    As :class:`MultipartTiffReader`, one frame per file, decoded by Pillow,
    which the ``jpeg`` extra installs: ``pip install 'intake-bluesky-tiff[jpeg]'``.
    Without it, constructing the reader raises an ``ImportError`` that says so.
    """

    mimetype = JPEG_MIMETYPE
    extensions = (".jpg", ".jpeg")

    def __init__(self, directory: str, /, *, data_key: Mapping | None = None, **parameters: Any):
        missing = _missing_pillow()
        if missing is not None:
            raise ImportError(
                "Reading JPEG stream data (multipart/related;type=image/jpeg) needs Pillow, "
                "which is not installed: pip install 'intake-bluesky-tiff[jpeg]'."
            ) from missing
        super().__init__(directory, data_key=data_key, **parameters)
        if self.frames_per_file != 1:
            raise ValueError(
                f"Stream resource for {self.directory!r}: a JPEG file holds one frame, but "
                f"chunk_shape {list(self.chunk_shape or [1])} says {self.frames_per_file}."
            )

    def _decode(self, path: str, first: int, stop: int) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as image:
                return np.asarray(image)[None]
        except FileNotFoundError:
            raise
        except Exception as err:
            raise TiffReadError(
                f"Cannot read JPEG file {path}: {type(err).__name__}: {err}. If it is still "
                "being written, retry once the detector has closed it."
            ) from err
