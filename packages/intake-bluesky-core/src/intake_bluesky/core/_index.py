"""An in-memory index of start documents: search, count, sort, skip, limit.

Shared by every backend that cannot push queries down (files, memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from ._query import compile_query
from .driver import DEFAULT_SORT, Sort

__all__ = ["search_starts"]

_MISSING = object()


def _get(doc: Mapping, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _sort_key(key: str):
    # Mongo orders missing < numbers < strings < others; mimic that coarsely so
    # mixed-type metadata never makes sorting raise.
    def keyfunc(doc):
        value = _get(doc, key)
        if value is _MISSING or value is None:
            return (0, 0)
        if isinstance(value, bool):
            return (3, int(value))
        if isinstance(value, int | float):
            return (1, value)
        if isinstance(value, str):
            return (2, value)
        return (4, repr(value))

    return keyfunc


def search_starts(
    starts: Iterable[dict],
    query: Mapping[str, Any],
    *,
    sort: Sort = DEFAULT_SORT,
    skip: int = 0,
    limit: int | None = None,
) -> Iterator[dict]:
    """Filter, sort and page start documents held in memory.

    Examples
    --------
    >>> docs = [{"uid": "a", "time": 2, "scan_id": 1}, {"uid": "b", "time": 1, "scan_id": 2}]
    >>> [d["uid"] for d in search_starts(docs, {"scan_id": {"$gt": 0}})]
    ['b', 'a']
    """
    predicate = compile_query(query)
    matched = [doc for doc in starts if predicate(doc)]
    # Stable multi-key sort, keys applied from least to most significant. A
    # descending key reverses ties too (reverse, then a stable reverse sort),
    # so that newest-first is exactly oldest-first backwards: cat[-1] is
    # always list(cat)[-1], even when start times tie.
    for key, direction in reversed(list(sort)):
        if direction < 0:
            matched.reverse()
        matched.sort(key=_sort_key(key), reverse=direction < 0)
    stop = None if limit is None else skip + limit
    return islice(iter(matched), skip, stop)
