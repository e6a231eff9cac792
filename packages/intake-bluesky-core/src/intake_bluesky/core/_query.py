"""The MongoDB query language on start documents: validation and evaluation.

Every backend receives only queries that passed :func:`validate_query`; file
and in-memory backends evaluate them with :func:`compile_query`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import mongoquery

__all__ = ["validate_query", "compile_query", "and_queries", "REFUSED_OPERATORS"]

#: Server-side JavaScript: never sent anywhere, never evaluated.
REFUSED_OPERATORS = frozenset({"$where", "$function", "$accumulator"})

_LOGICAL = {"$and", "$or", "$nor"}
_FIELD_OPERATORS = {
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$regex",
    "$options",
    "$mod",
    "$all",
    "$elemMatch",
    "$size",
    "$not",
}
_TOP_OPERATORS = _LOGICAL | {"$comment", "$text", "$expr"}
# Understood by a MongoDB server but not by the in-process evaluator.
_SERVER_ONLY = {"$text", "$expr"}


def validate_query(query: Any, *, server: bool = False) -> dict:
    """Check a query and return it as a plain dict.

    Parameters
    ----------
    query : mapping
        A MongoDB query on start documents.
    server : bool
        True when a MongoDB server will evaluate it (allows ``$text``/``$expr``).

    Raises
    ------
    ValueError
        Naming the offending part: not a mapping, an unknown or refused
        operator, a logical operator without a list, a bad ``$regex``.

    Examples
    --------
    >>> validate_query({"scan_id": {"$gt": 3}})
    {'scan_id': {'$gt': 3}}
    >>> validate_query({"$where": "1"})
    Traceback (most recent call last):
    ...
    ValueError: Query operator '$where' is refused: server-side JavaScript is never run...
    """
    if query is None:
        return {}
    if not isinstance(query, Mapping):
        raise ValueError(
            "A query must be a mapping such as {'plan_name': 'scan'}, "
            f"not {type(query).__name__} {query!r}."
        )
    _refuse_anywhere(query)
    _check_document(query, server=server, path="query")
    return dict(query)


def _refuse_anywhere(value) -> None:
    # Refused operators hide in places no other check descends into
    # (``$expr`` expressions, ``$elemMatch`` arrays): look everywhere.
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key in REFUSED_OPERATORS:
                _refuse(key)
            _refuse_anywhere(sub)
    elif isinstance(value, list | tuple):
        for sub in value:
            _refuse_anywhere(sub)


def _refuse(op: str) -> None:
    raise ValueError(
        f"Query operator {op!r} is refused: server-side JavaScript is never run (it could execute"
        " arbitrary code). Express the condition with MongoDB query operators instead."
    )


def _check_document(query: Mapping, *, server: bool, path: str) -> None:
    for key, value in query.items():
        if not isinstance(key, str):
            raise ValueError(f"Query key {key!r} at {path} must be a string.")
        if key in REFUSED_OPERATORS:
            _refuse(key)
        if key.startswith("$"):
            if key not in _TOP_OPERATORS:
                raise ValueError(
                    f"Unknown query operator {key!r} at {path}; top-level operators are "
                    f"{sorted(_TOP_OPERATORS)}, field operators go inside a field: "
                    "{'scan_id': {'$gt': 1}}."
                )
            if key in _SERVER_ONLY and not server:
                raise ValueError(
                    f"Query operator {key!r} at {path} needs a MongoDB server; this catalog "
                    "evaluates queries in Python."
                )
            if key in _LOGICAL:
                if not isinstance(value, list | tuple) or not value:
                    raise ValueError(f"{key} at {path} needs a non-empty list of queries.")
                for i, sub in enumerate(value):
                    if not isinstance(sub, Mapping):
                        raise ValueError(f"{key}[{i}] at {path} must be a mapping, not {sub!r}.")
                    _check_document(sub, server=server, path=f"{path}.{key}[{i}]")
            continue
        _check_condition(value, server=server, path=f"{path}.{key}")


def _check_condition(value: Any, *, server: bool, path: str) -> None:
    if not isinstance(value, Mapping) or not any(str(k).startswith("$") for k in value):
        return  # equality with a literal (possibly a sub-document)
    for op, arg in value.items():
        if op in REFUSED_OPERATORS:
            _refuse(op)
        if not str(op).startswith("$") or op not in _FIELD_OPERATORS:
            raise ValueError(
                f"Unknown query operator {op!r} at {path}; known field operators are "
                f"{sorted(_FIELD_OPERATORS)}."
            )
        if op in ("$in", "$nin", "$all") and not isinstance(arg, list | tuple):
            raise ValueError(f"{op} at {path} needs a list, not {arg!r}.")
        if op == "$regex":
            if not isinstance(arg, str | re.Pattern):
                raise ValueError(f"$regex at {path} needs a string, not {arg!r}.")
            try:
                re.compile(arg)
            except re.error as err:
                raise ValueError(
                    f"$regex {arg!r} at {path} is not a valid pattern: {err}"
                ) from None
        if op == "$not":
            _check_condition(arg, server=server, path=f"{path}.$not")
        if op == "$elemMatch":
            if not isinstance(arg, Mapping):
                raise ValueError(f"$elemMatch at {path} needs a mapping.")
            if any(str(k).startswith("$") for k in arg):
                _check_condition(arg, server=server, path=f"{path}.$elemMatch")
            else:
                _check_document(arg, server=server, path=f"{path}.$elemMatch")


def compile_query(query: Mapping[str, Any]) -> Callable[[dict], bool]:
    """A predicate ``start_doc -> bool`` for a validated query."""
    query = validate_query(query)
    if not query:
        return lambda doc: True
    matcher = mongoquery.Query(query)

    def predicate(doc: dict) -> bool:
        try:
            return matcher.match(doc)
        except mongoquery.QueryError as err:
            raise ValueError(f"Malformed query {query!r}: {err}") from None
        except TypeError:
            # Comparing incomparable types (e.g. $gt on a string field)
            # does not match, as on a MongoDB server.
            return False

    return predicate


def and_queries(*queries: Mapping[str, Any] | None) -> dict:
    """Combine queries with AND, dropping empty ones."""
    parts = [dict(q) for q in queries if q]
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    return {"$and": parts}
