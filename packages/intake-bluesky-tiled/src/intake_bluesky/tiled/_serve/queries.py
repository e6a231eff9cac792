"""tiled's queries and bluesky-tiled-plugins' as Mongo queries on start documents.

A catalog served through tiled answers tiled's query objects by turning each
one into the Mongo query language every intake-bluesky catalog speaks, and
searching with it: a Mongo store filters on its server, a file store in its
index. Keys name metadata of a run node, whose ``start`` is the start
document: ``start.plan_name`` is ``plan_name`` (bluesky-tiled-plugins' client
adds the ``start.`` prefix itself); a key without a prefix is read as a start
key too, so tiled's plain client can say ``Key("plan_name") == "scan"``.
Keys of the stop document cannot be searched (our search is over start
documents): such a query is refused with a clear message.

Examples
--------
>>> from tiled.queries import Comparison, Eq, Regex
>>> to_mongo(Eq("start.plan_name", "scan"))
{'plan_name': 'scan'}
>>> to_mongo(Comparison("ge", "scan_id", 3))
{'scan_id': {'$gte': 3}}
>>> to_mongo(Regex("start.sample", "^Ni", case_sensitive=False))
{'sample': {'$regex': '^Ni', '$options': 'i'}}
>>> like_to_regex("Ni_%")
'^Ni..*$'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tiled.queries import (
    Comparison,
    Contains,
    Eq,
    In,
    KeyPresent,
    Like,
    NotEq,
    NotIn,
    QueryValueError,
    Regex,
)

__all__ = ["like_to_regex", "start_key", "to_mongo"]

#: tiled's comparison operators, as Mongo's.
_COMPARISONS = {"lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}


def start_key(key: str) -> str:
    """The start document key a tiled metadata key names.

    Raises
    ------
    QueryValueError
        For keys of the stop document or of the run summary (a 400 answer
        naming what can be searched).
    """
    if key.startswith("start."):
        return key[len("start.") :]
    if key in ("start", "stop", "summary") or key.startswith(("stop.", "summary.")):
        raise QueryValueError(
            f"Cannot search on {key!r}: runs served by intake-bluesky are searched on "
            "their start documents only (keys 'start.<key>', or '<key>')."
        )
    return key


def like_to_regex(pattern: str) -> str:
    """SQL ``LIKE`` (``%`` any run of characters, ``_`` one) as an anchored regex."""
    out = []
    for char in pattern:
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "^" + "".join(out) + "$"


def _eq(query: Eq) -> dict:
    return {start_key(query.key): query.value}


def _noteq(query: NotEq) -> dict:
    return {start_key(query.key): {"$ne": query.value}}


def _comparison(query: Comparison) -> dict:
    operator = _COMPARISONS.get(str(getattr(query.operator, "value", query.operator)))
    if operator is None:
        raise QueryValueError(f"Unknown comparison operator {query.operator!r}.")
    return {start_key(query.key): {operator: query.value}}


def _contains(query: Contains) -> dict:
    # tiled's Contains: the value is a list holding this item. A Mongo
    # equality would also match a plain value equal to it; $elemMatch only
    # matches lists.
    return {start_key(query.key): {"$elemMatch": {"$eq": query.value}}}


def _in(query: In) -> dict:
    return {start_key(query.key): {"$in": list(query.value)}}


def _notin(query: NotIn) -> dict:
    return {start_key(query.key): {"$nin": list(query.value)}}


def _regex(query: Regex) -> dict:
    condition: dict[str, Any] = {"$regex": query.pattern}
    if not query.case_sensitive:
        condition["$options"] = "i"
    return {start_key(query.key): condition}


def _key_present(query: KeyPresent) -> dict:
    return {start_key(query.key): {"$exists": bool(query.exists)}}


def _like(query: Like) -> dict:
    return {start_key(query.key): {"$regex": like_to_regex(query.pattern)}}


#: Query types answered by one Mongo query on start documents.
TRANSLATIONS: Mapping[type, Callable[[Any], dict]] = {
    Eq: _eq,
    NotEq: _noteq,
    Comparison: _comparison,
    Contains: _contains,
    In: _in,
    NotIn: _notin,
    Regex: _regex,
    KeyPresent: _key_present,
    Like: _like,
}


def to_mongo(query: Any) -> dict:
    """The Mongo query on start documents equal to one tiled query.

    Raises
    ------
    QueryValueError
        For a query type that has no such translation, or a key that
        cannot be searched.
    """
    translate = TRANSLATIONS.get(type(query))
    if translate is None:
        raise QueryValueError(f"{type(query).__name__} queries are not supported here.")
    return translate(query)
