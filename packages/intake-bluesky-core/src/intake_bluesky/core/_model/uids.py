"""Event uids held compactly: 16 bytes per uid instead of a Python string.

A run read from a file keeps its events' uids so that ``canonical()`` gives
every event back without decoding the file again. As Python strings a
canonical UUID (``str(uuid.uuid4())``, what bluesky writes) costs about 90
bytes, more than the event's numbers; packed it costs 16, and it is turned
back into exactly the stored text when a page leaves the core
(:func:`~.pages.plain_page`). uids of any other form (upper case, other
lengths, not hex) stay a list of strings: nothing is packed that would not
come back unchanged.

Examples
--------
>>> uids = ["a7b3c5d2-0000-4000-8000-0123456789ab", "a7b3c5d2-0000-4000-8000-0123456789ac"]
>>> packed = UidColumn.pack(uids)
>>> len(packed), packed[1], packed.tolist() == uids, packed.nbytes
(2, 'a7b3c5d2-0000-4000-8000-0123456789ac', True, 32)
>>> UidColumn.pack(["A7B3C5D2-0000-4000-8000-0123456789AB"]) is None
True
"""

from __future__ import annotations

import binascii
import operator
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

__all__ = ["UidColumn"]

_UID_CHARS = 36
_UID_BYTES = 16
_DASHES = [8, 13, 18, 23]
#: The hex digits a uid may hold (upper case would come back lower case).
_HEX_DIGITS = b"0123456789abcdef"
#: A bytes.translate table keeping those digits and making every other byte
#: one that binascii.a2b_hex refuses.
_SPOIL_NON_HEX = bytes(b if b in _HEX_DIGITS else ord("!") for b in range(256))
_DASH = ord("-")
_NEWLINE = ord("\n")
#: (characters a:b of a uid, its hex digits c:d) for the five groups of digits.
_GROUPS = [
    ((a, b), (a - i, b - i))
    for i, (a, b) in enumerate(zip([0, *(d + 1 for d in _DASHES)], [*_DASHES, _UID_CHARS]))
]


class UidColumn(Sequence[str]):
    """A page's ``uid`` column of canonical UUID strings, 16 bytes each.

    A read-only sequence of ``str``: indexing gives a uid, slicing another
    :class:`UidColumn`, :meth:`tolist` the stored strings; equal to a list
    of the same strings. Made by :meth:`pack`, which declines (returns None)
    any column it could not give back unchanged.

    It stays inside the core: pages given out by run sources, by
    ``canonical()`` and by file formats' ``read_documents`` hold lists.
    """

    __slots__ = ("_packed",)

    def __init__(self, packed: np.ndarray) -> None:
        # (n, 16) uint8: each uid's 32 hex digits as 16 bytes.
        self._packed = packed

    @classmethod
    def pack(cls, uids: Sequence[Any]) -> UidColumn | None:
        """``uids`` packed, or None unless every one is a lowercase canonical
        UUID string (``8-4-4-4-12`` hex digits)."""
        if isinstance(uids, UidColumn):
            return uids
        n = len(uids)
        if not n:
            return None
        try:
            # A newline after each uid: where every 37th character is one
            # and no other is (the checks below), every uid has 36 (a short
            # uid beside a long one would otherwise be cut at the wrong
            # place); one C-level join instead of a len() per uid.
            raw = "\n".join(uids).encode("ascii") + b"\n"
        except (TypeError, UnicodeEncodeError):  # not strings, or not ASCII
            return None
        if len(raw) != (_UID_CHARS + 1) * n:
            return None
        rows = np.frombuffer(raw, np.uint8).reshape(n, _UID_CHARS + 1)
        if not (rows[:, _UID_CHARS] == _NEWLINE).all():
            return None
        return cls._from_rows(raw, rows[:, :_UID_CHARS], b"-\n")

    @classmethod
    def _from_rows(cls, raw: bytes, chars: np.ndarray, drop: bytes) -> UidColumn | None:
        """Pack ``chars`` (n rows of 36 bytes), whose bytes are those of
        ``raw`` but ``drop``: dashes and any separators between rows."""
        n = len(chars)
        if not (chars[:, _DASHES] == _DASH).all():
            return None
        # One pass drops the dashes and spoils anything but a lowercase hex
        # digit (upper case would come back lower case), which a2b_hex then
        # refuses; a dash anywhere else leaves too few digits.
        digits = raw.translate(_SPOIL_NON_HEX, drop)
        if len(digits) != 2 * _UID_BYTES * n:
            return None
        try:
            packed = binascii.a2b_hex(digits)
        except binascii.Error:
            return None
        return cls(np.frombuffer(packed, np.uint8).reshape(n, _UID_BYTES))

    @classmethod
    def from_text(cls, chars: np.ndarray) -> UidColumn | None:
        """Uids given as their ASCII bytes, one row of 36 per uid (a file
        format that reads them straight from its bytes), packed; or None
        unless every row is a lowercase canonical UUID.

        Examples
        --------
        >>> rows = np.frombuffer(b"a7b3c5d2-0000-4000-8000-0123456789ab", np.uint8)
        >>> UidColumn.from_text(rows.reshape(1, 36)).tolist()
        ['a7b3c5d2-0000-4000-8000-0123456789ab']
        """
        if not len(chars) or chars.ndim != 2 or chars.shape[1] != _UID_CHARS:
            return None
        if chars.dtype != np.uint8:
            return None
        return cls._from_rows(chars.tobytes(), chars, b"-")

    @classmethod
    def concat(cls, columns: Sequence[UidColumn]) -> UidColumn:
        """The columns one after another."""
        return cls(np.concatenate([c._packed for c in columns]))

    @property
    def nbytes(self) -> int:
        """Bytes held (16 per uid)."""
        return int(self._packed.nbytes)

    def __len__(self) -> int:
        return len(self._packed)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> UidColumn: ...

    def __getitem__(self, index: int | slice) -> str | UidColumn:
        if isinstance(index, slice):
            return UidColumn(self._packed[index])
        # An integer, as a list takes (not a mask or a list of positions).
        return _text(self._packed[operator.index(index)][None])

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """The uids as the strings they were stored as."""
        text = _text(self._packed)
        return [text[i : i + _UID_CHARS] for i in range(0, len(text), _UID_CHARS)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UidColumn):
            return bool(np.array_equal(self._packed, other._packed))
        if isinstance(other, list):  # as a list compares: lists only
            return len(other) == len(self) and self.tolist() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-like, as a list

    def __repr__(self) -> str:
        head = self[:3].tolist()
        more = f", ... ({len(self)} uids)" if len(self) > 3 else ""
        return f"UidColumn({head!r}{more})"


def _text(packed: np.ndarray) -> str:
    """The uids of ``packed`` rows, joined (36 characters each)."""
    digits = np.frombuffer(packed.tobytes().hex().encode("ascii"), np.uint8)
    digits = digits.reshape(len(packed), 2 * _UID_BYTES)
    chars = np.full((len(packed), _UID_CHARS), _DASH, np.uint8)
    for (a, b), (c, d) in _GROUPS:
        chars[:, a:b] = digits[:, c:d]
    return chars.tobytes().decode("ascii")
