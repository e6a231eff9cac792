"""Lookup rules: which run a catalog key names, which runs a slice names.

``cat[key]`` takes a full uid, an anchored partial uid, ``-N`` (the N-th most
recent run), ``N >= 0`` (the most recent run with that ``scan_id``), a numeric
string for either int, or a slice of positions (oldest first). The rules are
evaluated over a catalog's search (start documents, oldest first), so every
backend resolves them the same way, pushed down to its database.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from event_model.documents import RunStart

__all__ = ["NEWEST_FIRST", "RunLookup", "run_key"]

#: The sort of a search from the most recent run.
NEWEST_FIRST = [("time", -1)]

#: ``search(query=None, *, sort=..., skip=..., limit=...)`` -> start documents.
Search = Callable[..., Iterable["RunStart"]]


def run_key(key: object) -> int | str:
    """A lookup key as an int (scan_id or ``-N``) or a str (uid or partial uid).

    Raises
    ------
    TypeError
        For a key of another type (a slice is resolved by :meth:`RunLookup.starts`).

    Examples
    --------
    >>> run_key("-1"), run_key(np.int64(42)), run_key("a1b2")
    (-1, 42, 'a1b2')
    """
    if isinstance(key, str) and re.fullmatch(r"-?\d+", key.strip()):
        key = int(key)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool | np.bool_):
        key = int(key)  # a scan_id taken from a Dataset is a numpy integer
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(
            f"Look runs up by uid (str), partial uid, scan_id (int >= 0), -N (N-th most "
            f"recent) or a slice (cat[-3:]), not {type(key).__name__}."
        )
    return key


class RunLookup:
    """The lookup rules over one catalog's runs.

    Parameters
    ----------
    search : callable
        ``search(query=None, *, sort=..., skip=..., limit=...)``: the
        catalog's start documents matching ``query``, oldest first unless
        sorted otherwise.
    count : callable
        The number of the catalog's runs (asked only for slices and messages).
    """

    def __init__(self, search: Search, count: Callable[[], int]) -> None:
        self._search = search
        self._count = count

    def start(self, key: object) -> RunStart:
        """The start document that ``key`` names (see :func:`run_key`)."""
        key = run_key(key)
        if isinstance(key, int):
            return self.start_for_int(key)
        return self.start_for_uid(key)

    def start_for_int(self, key: int) -> RunStart:
        """``-N``: the N-th most recent run; ``N >= 0``: the newest with scan_id N."""
        if key < 0:
            found = list(self._search(sort=NEWEST_FIRST, skip=-key - 1, limit=1))
            if not found:
                count = self._count()
                raise IndexError(
                    f"cat[{key}] is out of range: the catalog holds {count} "
                    f"run{'s' if count != 1 else ''} (cat[-1] is the most recent)."
                )
            return found[0]
        found = list(self._search({"scan_id": key}, sort=NEWEST_FIRST, limit=1))
        if not found:
            raise KeyError(f"No run with scan_id {key} in this catalog.")
        return found[0]

    def start_for_uid(self, key: str) -> RunStart:
        """A full uid, else the one uid beginning with ``key``."""
        found = list(self._search({"uid": key}, limit=1))
        if found:
            return found[0]
        pattern = "^" + re.escape(key)
        found = list(self._search({"uid": {"$regex": pattern}}, limit=11))
        if not found:
            raise KeyError(f"No run with uid (or uid beginning with) {key!r} in this catalog.")
        if len(found) > 1:
            matches = ", ".join(s["uid"] for s in found[:10])
            more = " and more" if len(found) > 10 else ""
            raise ValueError(
                f"Partial uid {key!r} is ambiguous: it matches {matches}{more}. "
                "Give more characters."
            )
        return found[0]

    def starts(self, key: slice) -> list[RunStart]:
        """Start documents at the positions of a slice (oldest first order)."""
        n = self._count()
        positions = range(*key.indices(n))
        if not positions:
            return []
        lo, hi = min(positions), max(positions) + 1
        if n - hi < lo:
            # Nearer the newest end (cat[-3:]): page from there, which a
            # database serves from its time index without skipping the rest.
            found = list(self._search(sort=NEWEST_FIRST, skip=n - hi, limit=hi - lo))[::-1]
            # Fewer runs than counted (deleted meanwhile): align on the newest.
            offset = lo + (hi - lo - len(found))
        else:
            found = list(self._search(skip=lo, limit=hi - lo))
            offset = lo
        return [found[p - offset] for p in positions if 0 <= p - offset < len(found)]

    def start_at(self, position: int) -> RunStart:
        """The start document at one position (negative counts from the newest)."""
        if position < 0:
            return self.start_for_int(position)
        found = list(self._search(skip=position, limit=1))
        if not found:
            count = self._count()
            raise IndexError(
                f"Position {position} is out of range: the catalog holds {count} "
                f"run{'s' if count != 1 else ''}."
            )
        return found[0]
