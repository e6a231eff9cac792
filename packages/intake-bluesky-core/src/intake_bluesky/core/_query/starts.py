"""Searching start documents held in memory: filter by a query, sort, skip,
limit.

A filter, not an index: each search evaluates the query over the documents
given (plain string equalities on top-level keys take a fast path). Shared by
every backend that cannot push queries down (files, memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, TypeVar

from .._gc import gc_paused
from ..driver import DEFAULT_SORT, Sort
from .evaluate import compile_query

__all__ = ["matcher", "search_starts", "sort_key", "sorted_matches"]

_MISSING = object()

#: A start document, or any mapping searched like one.
_Doc = TypeVar("_Doc", bound=Mapping[str, Any])
_Predicate = Callable[[Mapping[str, Any]], bool]


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def sort_key(key: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    # Mongo orders missing < numbers < strings < others; mimic that coarsely so
    # mixed-type metadata never makes sorting raise.
    dotted = "." in key

    def keyfunc(doc: Mapping[str, Any]) -> tuple[int, Any]:
        value = _get(doc, key) if dotted else doc.get(key, _MISSING)
        kind = type(value)
        if kind is float or kind is int:  # the common case first: "time"
            return (1, value)
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


def _plain_equalities(query: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """``[(key, value)]`` if the query is only top-level ``{key: <str>}``
    conditions (the usual ``{'plan_name': 'scan'}``), else None."""
    out: list[tuple[str, str]] = []
    for key, value in query.items():
        if type(value) is not str or key.startswith("$") or "." in key:
            return None
        out.append((key, value))
    return out


def matcher(query: Mapping[str, Any]) -> _Predicate | None:
    """A predicate on start documents; None matches everything."""
    if not query:
        return None
    predicate = compile_query(query)
    plain = _plain_equalities(query)
    if plain is None:
        return predicate

    def match(doc: Mapping[str, Any]) -> bool:
        # A string stored under the key equals the query's string exactly as
        # MongoDB compares them; anything else (arrays, other types, a
        # missing key) is left to the full evaluator.
        for key, value in plain:
            got = doc.get(key)
            if type(got) is not str:
                return predicate(doc)
            if got != value:
                return False
        return True

    return match


def sorted_matches(
    starts: Iterable[_Doc], query: Mapping[str, Any], sort: Sort = DEFAULT_SORT
) -> list[_Doc]:
    """The start documents matching ``query``, sorted (see :func:`search_starts`).

    Examples
    --------
    >>> docs = [{"uid": "a", "time": 2}, {"uid": "b", "time": 1}]
    >>> [d["uid"] for d in sorted_matches(docs, {}, [("time", -1)])]
    ['a', 'b']
    """
    match = matcher(query)
    # Sorting makes a key tuple per document and frees them all at the end:
    # the cyclic collector would walk every start document held in memory
    # again and again meanwhile (no cycles are made here).
    with gc_paused():
        matched = list(starts) if match is None else [doc for doc in starts if match(doc)]
        # Stable multi-key sort, keys applied from least to most significant.
        # A descending key reverses ties too (reverse, then a stable reverse
        # sort), so that newest-first is exactly oldest-first backwards:
        # cat[-1] is always list(cat)[-1], even when start times tie.
        for key, direction in reversed(list(sort)):
            if direction < 0:
                matched.reverse()
            matched.sort(key=sort_key(key), reverse=direction < 0)
    return matched


def search_starts(
    starts: Iterable[_Doc],
    query: Mapping[str, Any],
    *,
    sort: Sort = DEFAULT_SORT,
    skip: int = 0,
    limit: int | None = None,
) -> Iterator[_Doc]:
    """Filter, sort and page start documents held in memory.

    Examples
    --------
    >>> docs = [{"uid": "a", "time": 2, "scan_id": 1}, {"uid": "b", "time": 1, "scan_id": 2}]
    >>> [d["uid"] for d in search_starts(docs, {"scan_id": {"$gt": 0}})]
    ['b', 'a']
    """
    matched = sorted_matches(starts, query, sort)
    stop = None if limit is None else skip + limit
    return islice(iter(matched), skip, stop)
