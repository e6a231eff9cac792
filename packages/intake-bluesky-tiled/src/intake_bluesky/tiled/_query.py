"""Mongo queries on start documents -> tiled queries the server can answer.

TiledWriter keeps a run's start document in the run's metadata under
``start``: a Mongo key ``plan_name`` is tiled's ``Key("start.plan_name")``
(a raw dict search on such a catalog silently matches nothing).

The translation is a *pre-filter*: the tiled queries select a superset of
the runs the Mongo query matches, and the core's evaluator then decides on
each candidate's start document. What tiled cannot say (``$or``, ``$nor``,
``$elemMatch``, ``$size``, ``$exists``, ``$ne``/``$nin``, which Mongo also
matches on missing keys, regular expressions other than an anchored prefix,
which SQL catalogs refuse) is left to the evaluator alone.

Only keys whose value is never an array are translated: Mongo's
``{"detectors": "det"}`` matches a start whose ``detectors`` *holds* "det",
where tiled's ``Eq`` compares the whole value and would lose that run. By
default those are the keys event-model's schema types as scalars
(:data:`SCALAR_KEYS`); a facility whose start documents hold more (a
``proposal_id``, a ``sample`` name) names them with ``scalar_keys``. When every clause
translated means exactly what Mongo means (equality and ``$in`` on strings
and integers), the server's answer is the answer, and counting, skipping
and limiting run on the server too.

Examples
--------
>>> queries, exact = translate({"plan_name": "scan", "scan_id": {"$gte": 3}})
>>> [type(q).__name__ for q in queries], exact
(['Eq', 'Comparison'], False)
>>> translate({"detectors": "det"})  # may be an array: the evaluator decides
([], False)
>>> queries, _ = translate({"uid": {"$regex": "^a1b2\\-c3"}})  # a partial uid
>>> queries[0].pattern
'a1b2-c3%'
>>> translate({"$or": [{"a": 1}, {"b": 2}]})
([], False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SCALAR_KEYS", "translate"]

#: Start document keys event-model's schema types as a string or a number.
SCALAR_KEYS = frozenset(
    {"uid", "time", "scan_id", "plan_name", "plan_type", "group", "owner", "project"}
)

#: Metadata keys tiled's SQL catalog resolves safely as a JSON path.
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A regular expression that is a literal anchored prefix: ``^abc``, or
#: ``re.escape``'d (``^abc\-12``, as partial uid lookups write it).
_PREFIX = re.compile(r"^\^((?:[A-Za-z0-9_:, ]|\\[^A-Za-z0-9])+)$")
_COMPARISONS = {"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}


def translate(
    query: Mapping[str, Any], scalar_keys: frozenset[str] = SCALAR_KEYS
) -> tuple[list[Any], bool]:
    """Tiled queries selecting a superset of the runs ``query`` matches.

    Parameters
    ----------
    query : dict
        A validated Mongo query on start documents.
    scalar_keys : set of str
        Dotted keys whose values are never arrays: the only ones translated.

    Returns
    -------
    queries : list
        tiled query objects, all to be applied (AND).
    exact : bool
        True when the tiled queries match exactly the runs ``query`` matches,
        so the server may count, skip and limit.
    """
    queries: list[Any] = []
    exact = True
    for key, value in query.items():
        if key == "$and" and isinstance(value, list):
            for sub in value:
                sub_queries, sub_exact = translate(sub, scalar_keys)
                queries.extend(sub_queries)
                exact = exact and sub_exact
            continue
        if key.startswith("$"):
            exact = False  # $or, $nor, $text, $expr...: the evaluator decides
            continue
        field = _tiled_key(key) if key in scalar_keys else None
        if field is None:
            exact = False
            continue
        clause_queries, clause_exact = _field(field, value)
        queries.extend(clause_queries)
        exact = exact and clause_exact
    return queries, exact


def _tiled_key(key: str) -> str | None:
    parts = key.split(".")
    if not all(_PLAIN_KEY.match(part) for part in parts):
        return None  # array indexes, odd characters: leave it to the evaluator
    return "start." + key


def _exact_scalar(value: Any) -> bool:
    # bool is excluded: JSON true is 1 to SQLite, so Eq(True) also matches 1.
    return isinstance(value, str | int) and not isinstance(value, bool)


def _usable(value: Any) -> bool:
    return _exact_scalar(value) or (isinstance(value, float) and value == value)


def _field(key: str, value: Any) -> tuple[list[Any], bool]:
    from tiled.queries import Comparison, Eq, In, Like

    if not (isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)):
        if _usable(value):
            return [Eq(key, value)], _exact_scalar(value)
        return [], False  # None matches missing keys; documents and lists compare whole
    queries: list[Any] = []
    exact = True
    for op, arg in value.items():
        if op == "$eq" and _usable(arg):
            queries.append(Eq(key, arg))
            exact = exact and _exact_scalar(arg)
        elif op in _COMPARISONS and _usable(arg):
            # SQL orders values of different types where Mongo does not
            # compare them: a superset, decided by the evaluator.
            queries.append(Comparison(_COMPARISONS[op], key, arg))
            exact = False
        elif op == "$in" and isinstance(arg, list) and arg and all(_usable(v) for v in arg):
            queries.append(In(key, list(arg)))
            exact = exact and all(_exact_scalar(v) for v in arg)
        elif op == "$regex" and isinstance(arg, str) and "$options" not in value:
            match = _PREFIX.match(arg)
            if match:
                # SQLite's LIKE ignores ASCII case, and '_' in the prefix
                # matches any character: a superset, decided by the evaluator.
                literal = re.sub(r"\\(.)", r"\1", match.group(1))
                queries.append(Like(key, literal + "%"))
            exact = False
        else:
            exact = False
    return queries, exact
