"""The handler of ``TIFF_PAGES`` resources: one page of a TIFF file per datum.

It follows the handler protocol of databroker and area-detector-handlers::

    handler = TiffPagesHandler("/data/run/img_0001.tif")
    frame = handler(page=0)

and is registered in the ``databroker.handlers`` entry point group, so other
bluesky tools read these resources too.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
import tifffile

__all__ = ["SPEC", "TiffPagesHandler", "TiffReadError"]

#: The resource spec of the documents this package synthesizes.
SPEC = "TIFF_PAGES"

#: Files kept open at once across every handler of the process. The core
#: keeps one handler per resource, i.e. per file; holding a descriptor per
#: handler would exhaust the process's file limit on a bucket of 10,000 files,
#: while reopening per page would re-walk a stack's IFD chain for every page.
MAX_OPEN_FILES = 16


class TiffReadError(OSError):
    """Pixel data of a TIFF file could not be read; the message names the file."""


class _OpenFile:
    def __init__(self, path: str, version: tuple[int, int]):
        self.version = version
        self.lock = threading.Lock()
        self.closed = False
        self.tif = tifffile.TiffFile(path)

    def close(self):
        with self.lock:
            self.closed = True
            self.tif.close()


_OPEN: OrderedDict[str, _OpenFile] = OrderedDict()
_OPEN_LOCK = threading.Lock()


def _open(path: str) -> _OpenFile:
    st = os.stat(path)
    version = (st.st_size, st.st_mtime_ns)
    stale = []
    try:
        with _OPEN_LOCK:
            entry = _OPEN.get(path)
            if entry is not None and entry.version == version:
                _OPEN.move_to_end(path)
                return entry
            if entry is not None:
                # The file changed since it was opened: read the new version.
                stale.append(_OPEN.pop(path))
            entry = _OPEN[path] = _OpenFile(path, version)
            while len(_OPEN) > MAX_OPEN_FILES:
                stale.append(_OPEN.popitem(last=False)[1])
        return entry
    finally:
        for old in stale:
            old.close()  # outside the registry lock: waits for a reader of that file


def close_all() -> None:
    """Close every file the handlers hold open (they reopen on demand)."""
    with _OPEN_LOCK:
        entries = list(_OPEN.values())
        _OPEN.clear()
    for entry in entries:
        entry.close()


class TiffPagesHandler:
    """Read pages of one TIFF file, lazily.

    Parameters
    ----------
    resource_path : str
        The file (the resource's ``root`` joined with its ``resource_path``).
    **resource_kwargs
        Accepted and ignored (the resources this package writes have none).

    Notes
    -----
    Construction does not touch the file; pixels are read on call. Open files
    are shared across handlers (at most :data:`MAX_OPEN_FILES` at once) and
    reopened when the file's size or mtime changes. Instances are picklable.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "f.tif")
    >>> tifffile.imwrite(path, np.arange(6, dtype="uint8").reshape(2, 3))
    >>> TiffPagesHandler(path)(page=0)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """

    specs = frozenset({SPEC})

    def __init__(self, resource_path: str, **resource_kwargs):
        self.path = os.fspath(resource_path)
        self.resource_kwargs = resource_kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r})"

    def __call__(self, page: int = 0) -> np.ndarray:
        """The pixels of one page (0-based index in the file) as a numpy array."""
        page = int(page)
        while True:
            entry = self._entry()
            with entry.lock:
                # Another thread may have evicted (closed) it since _open.
                if not entry.closed:
                    return self._read(entry, page)

    def _entry(self) -> _OpenFile:
        try:
            return _open(self.path)
        except FileNotFoundError:
            raise TiffReadError(
                f"TIFF file {self.path} does not exist (any more). If the data moved, open the "
                "catalog with root_map={old_directory: new_directory}."
            ) from None
        except (tifffile.TiffFileError, ValueError, OSError) as err:
            raise TiffReadError(f"Cannot open TIFF file {self.path}: {err}") from err

    def _read(self, entry: _OpenFile, page: int) -> np.ndarray:
        try:
            return entry.tif.pages[page].asarray()
        except IndexError:
            raise TiffReadError(
                f"TIFF file {self.path} has no page {page} (it has {len(entry.tif.pages)}); "
                "it changed since the run was indexed."
            ) from None
        except Exception as err:
            # tifffile raises ValueError, struct.error, codec errors...: any of
            # them means this file's pixel data is unreadable.
            raise TiffReadError(
                f"Cannot read page {page} of TIFF file {self.path}: {type(err).__name__}: {err}"
            ) from err

    def get_file_list(self, datum_kwargs_gen) -> list[str]:
        """Files this resource uses (databroker's handler API)."""
        return [self.path]

    def close(self) -> None:
        """Nothing to release per handler (files are shared); kept for the API."""
