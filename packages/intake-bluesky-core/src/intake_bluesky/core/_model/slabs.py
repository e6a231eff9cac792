"""Memory of their own for the columns a run's parse builds.

A parse holds each number column of a stream as many page-sized arrays. Made
by ``malloc``, arrays of that size lie in the C heap among everything else:
when a read drops them (an eager read drops each column of the parse as soon
as its Dataset has its own) the allocator keeps the memory, so the process
holds the parse and the Dataset at once. Built in anonymous memory mappings
of their own, one series of mappings per column, they give their memory back
to the system as soon as the last array that views a mapping is gone.

Examples
--------
>>> slabs = ColumnSlabs()
>>> f8 = np.dtype("float64")
>>> slabs.empty("x", (_SMALL // 8,), f8) is None  # a column's first bytes: numpy's
True
>>> a = slabs.empty("x", (4,), f8)
>>> b = slabs.empty("x", (4,), f8)
>>> a[:] = 1.5
>>> b.ctypes.data - a.ctypes.data, a.tolist()  # one mapping, arrays side by side
(64, [1.5, 1.5, 1.5, 1.5])
>>> slabs.release()  # each mapping now lives as long as its arrays
"""

from __future__ import annotations

import mmap
from collections.abc import Hashable

import numpy as np

__all__ = ["ColumnSlabs"]

#: A column's first bytes are left to numpy (``empty`` gives None): holes
#: that small in the C heap cost little, while a mapping each would cost a
#: page fault per 4 KiB on every read and pin one of the 65,530 mappings
#: Linux allows a process for each small column a Dataset holds.
_SMALL = 1 << 18

#: Bytes of a column's first mapping; each next one is twice as big, up to
#: _LARGEST, so a column of N bytes takes O(log N) mappings and reserves at
#: most _LARGEST more than it uses.
_FIRST = 1 << 18
_LARGEST = 1 << 23

#: Offsets of arrays in a mapping are multiples of this (numpy's own
#: allocations are 16-byte aligned; SIMD loops prefer it).
_ALIGN = 64

#: Private: a forked process writing to its copy of an array must not change
#: ours (``mmap.mmap(-1, n)`` alone is shared on POSIX). Windows has no
#: flags; its anonymous mappings are private to the process.
_FLAGS = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}


class ColumnSlabs:
    """Arrays carved from anonymous memory mappings, one series per column.

    An array keeps its mapping alive (as its ``base``); a mapping is unmapped
    when no array views it any more and :meth:`release` has let go of it.
    Memory of a mapping not yet carved out is only reserved: the system
    gives it pages when they are first written (under strict overcommit,
    and on Windows, a whole mapping counts against the commit limit).
    """

    def __init__(self) -> None:
        # The mapping each column is filling, and how much of it is taken.
        self._open: dict[Hashable, tuple[mmap.mmap, int]] = {}
        self._next_size: dict[Hashable, int] = {}
        self._asked: dict[Hashable, int] = {}  # bytes asked for, by column

    def empty(
        self, column: Hashable, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray | None:
        """A new uninitialized C-contiguous array for ``column``, or None
        where numpy's own memory will do (the column's first ``_SMALL``
        bytes, empty arrays, Python objects).

        Parameters
        ----------
        column : hashable
            Which column the array is part of: arrays of one column share
            mappings, so dropping a column frees its mappings whole.
        shape : tuple of int
        dtype : numpy.dtype

        Returns
        -------
        numpy.ndarray or None
            Writable, viewing a mapping.
        """
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        asked = self._asked[column] = self._asked.get(column, 0) + nbytes
        if nbytes == 0 or dtype.hasobject or asked <= _SMALL:
            return None
        current = self._open.get(column)
        if current is None or current[1] + nbytes > len(current[0]):
            size = self._next_size.get(column, _FIRST)
            self._next_size[column] = min(size * 2, _LARGEST)
            size = max(size, -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE)
            current = (mmap.mmap(-1, size, **_FLAGS), 0)
        buffer, used = current
        out = np.frombuffer(buffer, dtype=dtype, count=count, offset=used).reshape(shape)
        self._open[column] = (buffer, -(-(used + nbytes) // _ALIGN) * _ALIGN)
        return out

    def release(self) -> None:
        """Let go of the mappings being filled: each is unmapped when its
        last array is gone."""
        self._open.clear()
