"""One open HDF5 handle per file per process, shared by every reader of it.

A detector file usually holds several data keys (the frames and their sums,
NDAttributes): each has its own stream_resource and so its own reader, and
opening the file once per key would multiply HDF5's metadata cache and, on a
file being written in SWMR mode, the refresh work. Readers ``acquire`` the
handle and ``release`` it; the last release closes the file.

After a fork (multiprocessing, dask's process pool) inherited HDF5 handles
must not be used: the pool belongs to the process that made it, and a child
starts with an empty one.

Examples
--------
>>> import os, tempfile, h5py
>>> path = os.path.join(tempfile.mkdtemp(), "det.h5")
>>> with h5py.File(path, "w", libver="latest") as f:
...     _ = f.create_dataset("/entry/sum", data=[1, 2, 3])
>>> key = file_key(path, swmr=True, locking=None)
>>> a = acquire(key)
>>> b = acquire(key)
>>> a is b, open_count()
(True, 1)
>>> release(key); release(key); open_count()
0
"""

from __future__ import annotations

import os
import threading

import h5py

__all__ = ["acquire", "release", "file_key", "open_count", "dataset", "opened"]

FileKey = tuple[str, bool, object]


class _Entry:
    __slots__ = ("file", "refs", "datasets")

    def __init__(self, file: h5py.File):
        self.file = file
        self.refs = 0
        # One Dataset object per dataset too: HDF5's metadata cache breaks
        # ("can't insert duplicate key") when one dataset of a SWMR file is
        # opened twice and each copy is refreshed.
        self.datasets: dict[str, object] = {}


_POOL: dict[FileKey, _Entry] = {}
_LOCK = threading.Lock()
_PID = os.getpid()


def file_key(path: str, *, swmr: bool, locking) -> FileKey:
    """The pool key of a file opened with these flags."""
    return (os.path.realpath(path), bool(swmr), locking)


def _check_fork() -> None:
    global _PID
    if os.getpid() != _PID:
        # Handles inherited from the parent are not ours to use or close.
        _POOL.clear()
        _PID = os.getpid()


def _open(path: str, swmr: bool, locking) -> h5py.File:
    kwargs = {} if locking is None else {"locking": locking}
    if swmr:
        # libver='latest' is what SWMR writers use; a reader opening with
        # swmr=True sees frames appended after it opened (after refresh()).
        return h5py.File(path, "r", swmr=True, libver="latest", **kwargs)
    return h5py.File(path, "r", **kwargs)


def acquire(key: FileKey) -> h5py.File:
    """The shared read-only handle of a file, opened on first use.

    Raises
    ------
    FileNotFoundError
        The file does not exist; the message names the path.
    OSError
        HDF5 could not open it (not an HDF5 file, locked by a writer, ...);
        the message names the path and what to try.
    """
    path, swmr, locking = key
    with _LOCK:
        _check_fork()
        entry = _POOL.get(key)
        if entry is None:
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"HDF5 file {path!r} does not exist. If the data moved since the run was "
                    "written, pass root_map={old_root: new_root} to the catalog."
                )
            try:
                entry = _Entry(_open(path, swmr, locking))
            except OSError as err:
                raise OSError(
                    f"HDF5 file {path!r} could not be opened read-only (swmr={swmr}, "
                    f"locking={locking!r}): {err}. If a writer still holds it without SWMR, "
                    "wait until it closes the file; if file locking is the problem (e.g. on a "
                    "network file system), set HDF5_USE_FILE_LOCKING=FALSE."
                ) from err
            _POOL[key] = entry
        entry.refs += 1
        return entry.file


def dataset(key: FileKey, name: str):
    """The shared object at ``name`` in an acquired file (a Dataset, a Group or None)."""
    return opened(key, name)[0]


def opened(key: FileKey, name: str) -> tuple[object, bool]:
    """:func:`dataset`, and whether this call opened it: a dataset opened
    just now has its extent as on disk now, so a SWMR reader's first read
    needs no ``refresh()``."""
    with _LOCK:
        entry = _POOL[key]
        if name in entry.datasets:
            return entry.datasets[name], False
        obj = entry.datasets[name] = entry.file.get(name)
        return obj, True


def release(key: FileKey) -> None:
    """Give a handle back; the last reader's release closes the file."""
    with _LOCK:
        _check_fork()
        entry = _POOL.get(key)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0:
            del _POOL[key]
            entry.datasets.clear()
            entry.file.close()


def open_count() -> int:
    """How many HDF5 files the pool holds open in this process."""
    with _LOCK:
        _check_fork()
        return len(_POOL)
