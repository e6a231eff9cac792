"""The MongoDB query language on start documents: validation and evaluation.

:func:`validate_query` checks a query completely (operators, argument
types, regexes) so that ``search()`` fails at once on a malformed query, and
refuses server-side JavaScript anywhere in it. :func:`compile_query` turns a
query into a predicate with MongoDB's semantics, so that file and in-memory
backends answer exactly what a MongoDB server would:

* a dotted path descends into sub-documents and across arrays;
* a condition on an array field matches if the array or any element does;
* ``{"f": None}`` matches documents where ``f`` is null *or missing*, and
  ``$ne: None`` only those where it exists and is not null;
* comparisons only compare within a type class (numbers, strings, ...):
  ``{"scan_id": {"$gt": 1}}`` never matches a string scan_id; booleans are
  not numbers;
* ``$regex`` honours ``$options`` (``i``, ``m``, ``s``, ``x``) and compiled
  patterns are accepted wherever MongoDB accepts them. The in-process
  evaluator matches with RE2 (google-re2), whose time is linear in the text:
  no pattern can run away (``^(a+)+$`` on a long string answers at once, where
  a backtracking engine would take hours). RE2 lacks lookarounds,
  backreferences, possessive quantifiers and atomic groups; such a pattern is
  a ``ValueError`` saying so (a MongoDB server, which evaluates its own
  queries, accepts them);
* values are compared as they are once serialized: a tuple (bluesky emits
  ``motors`` as one) is an array, numpy scalars and arrays are numbers and
  arrays, in documents and in queries alike;
* a ``datetime``, ``date`` or date string compared with ``time`` is epoch
  seconds (see :func:`~intake_bluesky.core.TimeRange`); elsewhere it is refused,
  since no serialized start document holds one.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import re2

from .time import epoch_span, to_epoch

__all__ = [
    "validate_query",
    "compile_query",
    "and_queries",
    "normalize_query",
    "REFUSED_OPERATORS",
]

#: Server-side JavaScript: never sent anywhere, never evaluated.
REFUSED_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
# Understood by a MongoDB server but not by the in-process evaluator.
_SERVER_ONLY = frozenset({"$text", "$expr"})

Predicate = Callable[[Any], bool]
_MISSING: list[Any] = []  # no values at a path


def validate_query(query: Any, *, server: bool = False) -> dict[str, Any]:
    """Check a query and return it as a plain dict.

    Parameters
    ----------
    query : mapping
        A MongoDB query on start documents.
    server : bool
        True when a MongoDB server will evaluate it (allows ``$text`` and
        ``$expr``, whose contents are only checked for refused operators).

    Returns
    -------
    dict
        The query as every backend receives it (see :func:`normalize_query`):
        tuples and numpy values as plain lists and numbers, times compared
        with ``time`` as epoch seconds.

    Raises
    ------
    ValueError
        Naming the offending part: not a mapping, an unknown or refused
        operator, an argument of the wrong type, a bad ``$regex``, an
        unreadable date.

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
    plain = normalize_query(query)
    _compile_document(plain, "query", server)
    return plain


def compile_query(query: Mapping[str, Any] | None) -> Predicate:
    """A predicate ``start_doc -> bool`` with MongoDB semantics.

    Examples
    --------
    >>> match = compile_query({"sample.name": {"$regex": "^cu", "$options": "i"}})
    >>> match({"sample": {"name": "Cu-foil"}}), match({"sample": "Cu"})
    (True, False)
    """
    if not query:
        return lambda doc: True
    if not isinstance(query, Mapping):
        validate_query(query)  # raises the explanatory error
    _refuse_anywhere(query)
    return _compile_document(normalize_query(query), "query", server=False)


def and_queries(*queries: Mapping[str, Any] | None) -> dict[str, Any]:
    """Combine queries with AND, dropping empty ones."""
    parts = [dict(q) for q in queries if q]
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    return {"$and": parts}


# --- normalization ------------------------------------------------------------

_TIME_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


def normalize_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """The query with values as a serialized start document holds them.

    Tuples become lists, numpy scalars and arrays become Python numbers and
    lists (a BSON encoder refuses them; file backends would compare them by
    another type), and a ``datetime``/``date``/date string compared with
    ``time`` becomes epoch seconds, read in local time unless it carries a
    timezone (use :class:`~intake_bluesky.core.TimeRange` to name one).

    Raises
    ------
    ValueError
        For an unreadable date compared with ``time``, or a ``datetime``
        compared with any other key (no stored start document holds one).

    Examples
    --------
    >>> normalize_query({"motors": ("x", "y"), "time": {"$gte": "1970-01-02 00:00+00:00"}})
    {'motors': ['x', 'y'], 'time': {'$gte': 86400.0}}
    """
    return _normalize_document(query, "query")


def _normalize_document(query: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list | tuple):
            out[key] = [
                _normalize_document(sub, f"{path}.{key}[{i}]") if isinstance(sub, Mapping) else sub
                for i, sub in enumerate(value)
            ]
        elif key == "time":
            out[key] = _normalize_time(value, f"{path}.time")
        else:
            out[key] = _plain(value, f"{path}.{key}")
    return out


def _normalize_time(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return _time_equal(value, path)
    if _is_operator_document(value):
        out: dict[str, Any] = {}
        for op, arg in value.items():
            if op == "$eq" and isinstance(arg, str):
                out.update(_time_equal(arg, f"{path}.$eq"))
            elif op in ("$ne", "$in", "$nin") and (
                isinstance(arg, str)
                or isinstance(arg, list | tuple)
                and any(isinstance(a, str) for a in arg)
            ):
                raise ValueError(
                    f"{path}.{op}: a date string names a period (a day, an hour, ...), not "
                    "one instant; compare 'time' with ranges instead: TimeRange(since=..., "
                    "until=...) or {'$gte': ..., '$lt': ...}."
                )
            elif op in _TIME_OPERATORS:
                out[op] = _epoch_or_plain(arg, f"{path}.{op}")
            elif op in ("$in", "$nin") and isinstance(arg, list | tuple):
                out[op] = [_epoch_or_plain(a, f"{path}.{op}") for a in arg]
            elif op == "$not" and _is_operator_document(arg):
                out[op] = _normalize_time(arg, f"{path}.$not")
            else:
                out[op] = _plain(arg, f"{path}.{op}")
        return out
    return _epoch_or_plain(value, path)


def _time_equal(text: str, path: str) -> Any:
    """``time`` equal to a date string: within the period it names (a day
    for ``'2026-03-01'``), since no run starts at exactly midnight."""
    try:
        span = epoch_span(text)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: 'time' is epoch seconds; {err}") from None
    if span is None:  # an instant (fractional seconds or an offset)
        instant = _epoch_or_plain(text, path)
        return {"$eq": instant} if path.endswith(".$eq") else instant
    return {"$gte": span[0], "$lt": span[1]}


def _epoch_or_plain(value: Any, path: str) -> Any:
    if isinstance(value, str | datetime.date | np.datetime64):
        try:
            return to_epoch(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: 'time' is epoch seconds; {err}") from None
    return _plain(value, path)


def _plain(value: Any, path: str) -> Any:
    if isinstance(value, np.generic) and not isinstance(value, np.datetime64):
        return value.item()  # before str/float: np.str_ and np.float64 subclass them
    if isinstance(value, re.Pattern | str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, path) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), path)
    if isinstance(value, np.datetime64 | datetime.date):
        raise ValueError(
            f"{path}: a date ({value!r}) can only be compared with 'time' (epoch seconds); "
            "stored start documents hold no dates elsewhere. Compare with a string or number."
        )
    return value


def _as_stored(value: Any) -> Any:
    """A document value as it is once serialized (tuples are arrays, numpy is
    plain); shallow, since the path walk converts each level it visits."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_stored_deep(value: Any) -> Any:
    value = _as_stored(value)
    if isinstance(value, list):
        return [_as_stored_deep(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _as_stored_deep(v) for k, v in value.items()}
    return value


# --- refusal ----------------------------------------------------------------


def _refuse(op: str) -> None:
    raise ValueError(
        f"Query operator {op!r} is refused: server-side JavaScript is never run (it could execute"
        " arbitrary code). Express the condition with MongoDB query operators instead."
    )


def _refuse_anywhere(value: Any) -> None:
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


# --- values: paths, types, equality -----------------------------------------


def _resolve(doc: Any, parts: list[str]) -> list[Any]:
    """Every value at a dotted path (arrays traversed), [] if missing."""
    if not parts:
        return [_as_stored_deep(doc)]
    doc = _as_stored(doc)
    head, rest = parts[0], parts[1:]
    if isinstance(doc, Mapping):
        return _resolve(doc[head], rest) if head in doc else _MISSING
    if isinstance(doc, list):
        out: list[Any] = []
        if head.isdigit() and int(head) < len(doc):
            out.extend(_resolve(doc[int(head)], rest))
        for item in doc:
            if isinstance(item, Mapping | list | tuple | np.ndarray):
                out.extend(_resolve(item, parts))
        return out
    return _MISSING


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_class(v: Any) -> int:
    # MongoDB's comparison order of BSON types, coarsely.
    if v is None:
        return 1
    if _is_number(v):
        return 2
    if isinstance(v, str):
        return 3
    if isinstance(v, Mapping):
        return 4
    if isinstance(v, list | tuple):
        return 5
    if isinstance(v, bool):
        return 8
    return 9


def _equal(a: Any, b: Any) -> bool:
    if _type_class(a) != _type_class(b):
        return False
    if isinstance(a, Mapping):
        return list(a.keys()) == list(b.keys()) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _candidates(values: list[Any]) -> list[Any]:
    """Values a condition is tried on: each value, and each element of arrays."""
    out: list[Any] = []
    for v in values:
        out.append(v)
        if isinstance(v, list):
            out.extend(v)
    return out


def _eq_predicate(target: Any, path: str = "query", server: bool = False) -> Predicate:
    if isinstance(target, re.Pattern):
        return _regex_predicate(target, path, server)
    if target is None:
        return lambda values: not values or any(v is None for v in _candidates(values))
    return lambda values: any(_equal(v, target) for v in _candidates(values))


def _regex_predicate(pattern: re.Pattern[str], path: str, server: bool) -> Predicate:
    # A query for a server is only validated here (Python's re checked its
    # syntax); the server's engine evaluates it. Evaluated here: RE2.
    engine: Any = pattern if server else _linear_pattern(pattern, path)
    return lambda values: any(
        isinstance(v, str) and engine.search(v) is not None for v in _candidates(values)
    )


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are raised, not also printed by the C++ library
    return options


_RE2_OPTIONS = _re2_options()
_RE2_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))


def _linear_pattern(pattern: re.Pattern[str], path: str) -> Any:
    """``pattern`` compiled by RE2: matching takes time linear in the text.

    Python's flags become RE2's inline flags; ``re.VERBOSE`` (``$options``
    ``x``), which RE2 lacks, is applied by removing the pattern's whitespace
    and comments first.
    """
    text = pattern.pattern
    if isinstance(text, bytes):
        raise ValueError(f"$regex at {path} must be a str pattern, not bytes {text!r}.")
    if pattern.flags & re.VERBOSE:
        text = _strip_verbose(text)
    inline = "".join(letter for flag, letter in _RE2_FLAGS if pattern.flags & flag)
    try:
        return re2.compile(f"(?{inline}){text}" if inline else text, _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else err
        raise ValueError(
            f"$regex {pattern.pattern!r} at {path} uses a construct the in-process regular "
            f"expression engine (RE2, which never runs away on any input) does not have: "
            f"{reason}. Lookarounds ((?=...), (?!...), (?<=...)), backreferences (\\1), "
            "possessive quantifiers, atomic groups and \\Z are not available; rewrite the "
            "pattern without them (\\z for the end of the text), or search a MongoDB "
            "catalog, whose server evaluates regexes itself."
        ) from None


def _strip_verbose(text: str) -> str:
    """A verbose pattern (``re.VERBOSE``) as the plain pattern it means:
    unescaped whitespace and ``#`` comments outside character classes removed."""
    out: list[str] = []
    i, n, in_class = 0, len(text), False
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            escaped = text[i + 1]
            # An escaped space means the space itself.
            out.append(escaped if escaped.isspace() else text[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            # ']' first in a class (after an optional '^') is a literal.
            j = i + 1
            if j < n and text[j] == "^":
                out.append("^")
                j += 1
            if j < n and text[j] == "]":
                out.append("]")
                j += 1
            i = j
            continue
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif not c.isspace():
            out.append(c)
        i += 1
    return "".join(out)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}

_TYPES: dict[str | int, Callable[[Any], bool]] = {
    "double": lambda v: isinstance(v, float),
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
}
for _alias, _name in {1: "double", 2: "string", 3: "object", 4: "array", 8: "bool", 10: "null",
                      16: "int", 18: "long"}.items():  # fmt: skip
    _TYPES[_alias] = _TYPES[_name]

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


# --- compiling ----------------------------------------------------------------


def _compile_document(query: Mapping[str, Any], path: str, server: bool) -> Predicate:
    parts: list[Predicate] = []
    for key, value in query.items():
        if not isinstance(key, str):
            raise ValueError(f"Query key {key!r} at {path} must be a string.")
        where = f"{path}.{key}"
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{key} at {path} needs a non-empty list of queries.")
            subs = []
            for i, sub in enumerate(value):
                if not isinstance(sub, Mapping):
                    raise ValueError(f"{key}[{i}] at {path} must be a mapping, not {sub!r}.")
                subs.append(_compile_document(sub, f"{path}.{key}[{i}]", server))
            parts.append(_logical(key, subs))
        elif key == "$comment":
            continue
        elif key in _SERVER_ONLY:
            if not server:
                raise ValueError(
                    f"Query operator {key!r} at {path} needs a MongoDB server; this catalog "
                    "evaluates queries in Python."
                )
            parts.append(_server_only(key))
        elif key.startswith("$"):
            raise ValueError(
                f"Unknown query operator {key!r} at {path}; top-level operators are $and, $or, "
                "$nor, $comment; field operators go inside a field: {'scan_id': {'$gt': 1}}."
            )
        else:
            test = _compile_condition(value, where, server)
            steps = key.split(".")
            parts.append(_field_predicate(steps, test))
    if len(parts) == 1:
        return parts[0]
    return lambda doc: all(p(doc) for p in parts)


def _field_predicate(steps: list[str], test: Predicate) -> Predicate:
    return lambda doc: test(_resolve(doc, steps))


def _logical(op: str, subs: list[Predicate]) -> Predicate:
    if op == "$and":
        return lambda doc: all(s(doc) for s in subs)
    if op == "$or":
        return lambda doc: any(s(doc) for s in subs)
    return lambda doc: not any(s(doc) for s in subs)


def _server_only(op: str) -> Predicate:
    def predicate(doc: Any) -> bool:
        raise ValueError(f"Query operator {op!r} can only be evaluated by a MongoDB server.")

    return predicate


def _is_operator_document(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and k.startswith("$") for k in value)
    )


def _compile_condition(value: Any, path: str, server: bool) -> Predicate:
    """A predicate over the list of values found at a path."""
    if isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value):
        if not _is_operator_document(value):
            raise ValueError(
                f"Condition at {path} mixes operators and field names: {dict(value)!r}."
            )
        return _compile_operators(value, path, server)
    return _eq_predicate(value, path, server)


def _compile_operators(ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    tests: list[Predicate] = []
    if "$options" in ops and "$regex" not in ops:
        raise ValueError(f"$options at {path} needs a $regex beside it.")
    for op, arg in ops.items():
        compile_op = _FIELD_OPERATORS.get(op)
        if compile_op is None:
            if op in REFUSED_OPERATORS:
                _refuse(op)
            raise ValueError(
                f"Unknown query operator {op!r} at {path}; field operators are $eq, $ne, $gt, "
                "$gte, $lt, $lte, $in, $nin, $exists, $type, $regex, $options, $not, $all, "
                "$elemMatch, $size, $mod."
            )
        test = compile_op(op, arg, ops, path, server)
        if test is not None:
            tests.append(test)
    return lambda values: all(t(values) for t in tests)


# Each field operator's compiler: ``(op, arg, ops, path, server)`` -> a predicate
# over the values at the path, or None when the operator only modifies another
# (``$options`` of ``$regex``). ``ops`` is the whole operator document.
_OperatorCompiler = Callable[[str, Any, Mapping[str, Any], str, bool], Predicate | None]


def _op_equal(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    if isinstance(arg, re.Pattern):
        raise ValueError(f"{op} at {path} takes a value, not a regular expression.")
    eq = _eq_predicate(arg, f"{path}.{op}", server)
    return eq if op == "$eq" else (lambda values: not eq(values))


def _op_compare(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    return _comparison(_COMPARE[op], arg)


def _op_in(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    if not isinstance(arg, list | tuple):
        raise ValueError(f"{op} at {path} needs a list, not {arg!r}.")
    eqs = [_eq_predicate(a, f"{path}.{op}", server) for a in arg]

    def any_eq(values: Any) -> bool:
        return any(e(values) for e in eqs)

    return any_eq if op == "$in" else (lambda values: not any_eq(values))


def _op_exists(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    wanted = bool(arg)
    return lambda values: bool(values) == wanted


def _op_type(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    return _type_test(arg, path)


def _op_regex(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    pattern = _pattern(arg, ops.get("$options", ""), path)
    return _regex_predicate(pattern, path, server)


def _op_options(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> None:
    return None  # read by $regex


def _op_not(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    where = f"{path}.{op}"
    inner: Predicate
    if isinstance(arg, re.Pattern):
        inner = _regex_predicate(arg, where, server)
    elif _is_operator_document(arg):
        inner = _compile_operators(arg, where, server)
    else:
        raise ValueError(
            f"$not at {path} needs an operator expression or a regular expression, not {arg!r}."
        )
    return lambda values: not inner(values)


def _op_all(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    if not isinstance(arg, list | tuple):
        raise ValueError(f"$all at {path} needs a list, not {arg!r}.")
    eqs = [_eq_predicate(a, f"{path}.{op}", server) for a in arg]
    return lambda values: bool(eqs) and all(e(values) for e in eqs)


def _op_elem_match(
    op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool
) -> Predicate:
    return _elem_match(arg, path, server)


def _op_size(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    if not isinstance(arg, int) or isinstance(arg, bool) or arg < 0:
        raise ValueError(f"$size at {path} needs a non-negative integer, not {arg!r}.")
    return lambda values: any(isinstance(v, list) and len(v) == arg for v in values)


def _op_mod(op: str, arg: Any, ops: Mapping[str, Any], path: str, server: bool) -> Predicate:
    if (
        not isinstance(arg, list | tuple)
        or len(arg) != 2
        or not all(_is_number(a) for a in arg)
        or arg[0] == 0
    ):
        raise ValueError(
            f"$mod at {path} needs [divisor, remainder], two numbers with a non-zero "
            f"divisor, not {arg!r}."
        )
    d, r = int(arg[0]), int(arg[1])
    # NaN and infinities have no remainder: they match no $mod (as on a server).
    return lambda values: any(
        _is_number(v) and (isinstance(v, int) or math.isfinite(v)) and int(v) % d == r
        for v in _candidates(values)
    )


_FIELD_OPERATORS: dict[str, _OperatorCompiler] = {
    "$eq": _op_equal,
    "$ne": _op_equal,
    **dict.fromkeys(_COMPARE, _op_compare),
    "$in": _op_in,
    "$nin": _op_in,
    "$exists": _op_exists,
    "$type": _op_type,
    "$regex": _op_regex,
    "$options": _op_options,
    "$not": _op_not,
    "$all": _op_all,
    "$elemMatch": _op_elem_match,
    "$size": _op_size,
    "$mod": _op_mod,
}


def _comparison(compare: Callable[[Any, Any], bool], arg: Any) -> Predicate:
    cls = _type_class(arg)

    def test(values: Any) -> bool:
        for v in _candidates(values):
            if _type_class(v) == cls and cls in (2, 3):
                if compare(v, arg):
                    return True
            elif _type_class(v) == cls and cls == 1:
                # null compares equal to null: $gte/$lte match, $gt/$lt do not.
                if compare(0, 0):
                    return True
        return False

    return test


def _type_test(arg: Any, path: str) -> Predicate:
    names = arg if isinstance(arg, list) else [arg]
    checks: list[Callable[[Any], bool]] = []
    for name in names:
        if name not in _TYPES:
            raise ValueError(
                f"$type at {path}: unknown type {name!r}; known are "
                f"{sorted(k for k in _TYPES if isinstance(k, str))} or their numbers."
            )
        checks.append(_TYPES[name])
    return lambda values: any(c(v) for v in _candidates(values) for c in checks)


def _pattern(arg: Any, options: Any, path: str) -> re.Pattern[str]:
    if not isinstance(options, str) or any(o not in _REGEX_FLAGS for o in options):
        raise ValueError(f"$options at {path} must be letters among 'imsx', not {options!r}.")
    flags = 0
    for o in options:
        flags |= _REGEX_FLAGS[o]
    if isinstance(arg, re.Pattern):
        return re.compile(arg.pattern, arg.flags | flags) if flags else arg
    if not isinstance(arg, str):
        raise ValueError(f"$regex at {path} needs a string, not {arg!r}.")
    try:
        return re.compile(arg, flags)
    except re.error as err:
        raise ValueError(f"$regex {arg!r} at {path} is not a valid pattern: {err}") from None


def _elem_match(arg: Any, path: str, server: bool) -> Predicate:
    if not isinstance(arg, Mapping) or not arg:
        raise ValueError(f"$elemMatch at {path} needs a non-empty mapping, not {arg!r}.")
    element: Predicate
    if _is_operator_document(arg):
        cond = _compile_operators(arg, f"{path}.$elemMatch", server)
        element = lambda item: cond([item])  # noqa: E731

    else:
        element = _compile_document(arg, f"{path}.$elemMatch", server)
    return lambda values: any(
        isinstance(v, list) and any(element(item) for item in v) for v in values
    )
