"""What one TIFF file is, read from its header and IFDs only (never its pixels).

:func:`scan_file` opens a file with tifffile, walks its image file directories
and returns a :class:`FileInfo`: size, mtime, the pages that are images, their
shape/dtype/axes and selected tags converted to plain JSON types. A file that
is not a TIFF, or is truncated (an IFD chain or pixel data that points past
the end of the file), gives a :class:`BadFile` with the reason instead. Results
are cached per file version (path, size, mtime) so that a directory that grows
by one file re-reads one file.
"""

from __future__ import annotations

import enum
import math
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import tifffile

__all__ = ["BadFile", "FileInfo", "scan_file", "plain", "TAGS"]

#: Tags of the first file copied into the start document (when present).
TAGS = (
    "ImageDescription",
    "Software",
    "DateTime",
    "Artist",
    "HostComputer",
    "Make",
    "Model",
    "DocumentName",
    "PageName",
    "Copyright",
    "XResolution",
    "YResolution",
    "ResolutionUnit",
    "XPosition",
    "YPosition",
    "ImageWidth",
    "ImageLength",
    "BitsPerSample",
    "SamplesPerPixel",
    "SampleFormat",
    "Compression",
    "PhotometricInterpretation",
)

_RATIONAL_TYPES = {5, 10}  # TIFF RATIONAL, SRATIONAL: stored as (numerator, denominator) pairs


@dataclass(frozen=True)
class FileInfo:
    """A readable TIFF file: what the documents of its run need."""

    path: str
    size: int
    mtime_ns: int
    #: Indices (in ``TiffFile.pages``) of the pages that are frames.
    pages: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    axes: str
    tags: dict = field(compare=False)
    #: Set when the file's own frames differ in shape/dtype (a reason, else "").
    inconsistent: str = ""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class BadFile:
    """A file that cannot be a run's frames, and why."""

    path: str
    size: int
    mtime_ns: int
    reason: str


def plain(value):
    """``value`` as plain JSON types: no numpy scalars, bytes, enums or fractions.

    Examples
    --------
    >>> import numpy as np
    >>> plain({"a": np.uint16(3), "b": b"x\\x00", "c": (np.float32(0.5),)})
    {'a': 3, 'b': 'x', 'c': [0.5]}
    """
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bool | int | str) or value is None:
        return value.rstrip("\x00") if isinstance(value, str) else value
    if isinstance(value, float):
        # NaN/inf are not JSON; a tag holding one carries no information.
        return value if math.isfinite(value) else None
    if isinstance(value, Fraction):
        return plain(float(value))
    if isinstance(value, bytes | bytearray):
        return bytes(value).rstrip(b"\x00").decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, dict):
        # Keys with '.' or '/' are not allowed in start documents.
        return {str(k).replace(".", "_").replace("/", "_"): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _tag_value(tag) -> object:
    value = tag.value
    if int(tag.dtype) in _RATIONAL_TYPES and isinstance(value, tuple):
        # tifffile gives (num, den) pairs, flattened for counts > 1.
        ratios = [(num / den if den else None) for num, den in zip(value[0::2], value[1::2])]
        return ratios[0] if len(ratios) == 1 else ratios
    return plain(value)


_TAG_SET = frozenset(TAGS)


def _tags(page) -> dict:
    # One pass over the page's tags: tifffile's tags.get(name) scans them all
    # per call, which made tag extraction cost as much as opening the file.
    found = {}
    for tag in page.tags.values():
        name = tag.name
        if name in _TAG_SET and name not in found:
            found[name] = _tag_value(tag)
    return {name: found[name] for name in TAGS if name in found}


def _next_ifd_offset(tif: tifffile.TiffFile, ifd_offset: int) -> int | None:
    """The 'next IFD' pointer of the IFD at ``ifd_offset``; None if unreadable."""
    fmt = tif.tiff
    fh = tif.filehandle
    try:
        fh.seek(ifd_offset)
        (count,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
        fh.seek(ifd_offset + fmt.tagnosize + count * fmt.tagsize)
        raw = fh.read(fmt.offsetsize)
        if len(raw) < fmt.offsetsize:
            return None
        return struct.unpack(fmt.offsetformat, raw)[0]
    except (struct.error, OSError, ValueError):
        return None


def _is_reduced(page) -> bool:
    # NewSubfileType bit 0: a thumbnail/reduced-resolution copy of another
    # page, not a frame of its own.
    return bool(getattr(page, "subfiletype", 0) & 1)


def _scan(path: str, size: int, mtime_ns: int) -> FileInfo | BadFile:
    def bad(reason: str) -> BadFile:
        return BadFile(path, size, mtime_ns, reason)

    try:
        # Unbuffered: tifffile's reads are small and scattered (IFDs between
        # frames of a stack); an 8 KiB buffer would pull pixels in around each.
        with open(path, "rb", buffering=0) as fh, tifffile.TiffFile(fh) as tif:
            pages = tif.pages
            count = len(pages)
            if count == 0:
                return bad("it holds no image")
            frames = []
            last = None
            for i in range(count):
                page = pages[i]
                last = page
                if i == 0 or not _is_reduced(page):
                    frames.append((i, page))
                for offset, nbytes in zip(page.dataoffsets, page.databytecounts):
                    if offset and offset + nbytes > size:
                        return bad(
                            f"truncated: page {i} has pixel data up to byte {offset + nbytes} "
                            f"but the file has {size} bytes"
                        )
            # tifffile stops (and only logs) at an IFD pointer past the end of
            # the file; a non-zero pointer after the last page it read means
            # the IFD chain is cut off.
            if not getattr(tif.tiff, "is_ndpi", False) and last is not None:
                nxt = _next_ifd_offset(tif, last.offset)
                if nxt is None or nxt != 0:
                    return bad(
                        f"truncated: the IFD chain continues past page {count - 1} to byte "
                        f"{nxt} but the file has {size} bytes"
                    )
            first = frames[0][1]
            if first.dtype is None:
                return bad(f"its pixel type is not supported by tifffile ({first!r})")
            shape = tuple(int(n) for n in first.shape)
            dtype = np.dtype(first.dtype).str
            inconsistent = ""
            for i, page in frames[1:]:
                other = (tuple(int(n) for n in page.shape), np.dtype(page.dtype).str)
                if other != (shape, dtype):
                    inconsistent = (
                        f"page {i} has shape {list(other[0])} {other[1]} but page 0 has "
                        f"{list(shape)} {dtype}"
                    )
                    break
            return FileInfo(
                path=path,
                size=size,
                mtime_ns=mtime_ns,
                pages=tuple(i for i, _ in frames),
                shape=shape,
                dtype=dtype,
                axes=str(getattr(first, "axes", "")),
                tags=_tags(first),
                inconsistent=inconsistent,
            )
    except (tifffile.TiffFileError, ValueError, struct.error, EOFError, IndexError) as err:
        return bad(f"not a readable TIFF file ({type(err).__name__}: {err})")


# File versions already scanned in this process, most recent last; bounded so
# that a long session over a changing bucket does not grow without limit.
_CACHE: OrderedDict[tuple[str, int, int], FileInfo | BadFile] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 200_000


def scan_file(path: str) -> FileInfo | BadFile:
    """What ``path`` is, from its current version (cached per size and mtime).

    Raises ``FileNotFoundError`` if the file is gone.
    """
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    try:
        info = _scan(path, st.st_size, st.st_mtime_ns)
    except OSError as err:
        info = BadFile(path, st.st_size, st.st_mtime_ns, f"it cannot be read ({err})")
    with _CACHE_LOCK:
        _CACHE[key] = info
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return info
