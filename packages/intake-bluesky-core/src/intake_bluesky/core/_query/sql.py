"""MongoDB queries on start documents as SQL over the on-disk index.

The index (:mod:`.._files.diskindex`) keeps each start document as JSON text
(column ``start``, read with SQLite's ``json_extract``) and the most asked keys
in side columns (:data:`SIDE_KEYS`). A query is compiled to two SQL conditions
on an index row:

* ``sup``, true for *every* document the query matches (a superset), and
* ``sub``, true *only* for documents the query matches (a subset).

Rows where ``sup`` is false are left out unread; rows where ``sub`` is true
match without decoding; the rest are decoded and evaluated by the core's
evaluator (:func:`.evaluate.compile_query`). So the answer is always the
evaluator's; SQL only decides how much of it needs Python. A part of a query
that is not compiled is ``sup = 1, sub = 0`` ("maybe"), which keeps both
promises; negation (``$ne``, ``$nin``, ``$not``, ``$nor``) swaps the two.

What SQL cannot see exactly is routed to "maybe" rather than approximated:

* a side column holds a value only when it is a plain scalar (a string
  without NUL, an integer within 64 bits, a finite float; not a bool); any
  other value sets the key's bit in ``odd`` and the row is "maybe" for it;
* a dotted path through an array (MongoDB matches elementwise), a document
  stored in tagged form or holding a NUL character (``form`` != 0): "maybe";
* numbers read out of JSON by SQLite are compared within a relative band of
  2**-30 for ``sup`` (a parse that rounds differently cannot lose a match),
  and exactly for ``sub`` only between integers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .evaluate import normalize_query

__all__ = ["SIDE_KEYS", "side_values", "compile_sql"]

#: Top-level keys of start documents kept in their own columns (the keys
#: lookups and most searches name). Column name = key; bit in ``odd`` = 1 << i.
SIDE_KEYS = ("uid", "time", "scan_id", "plan_name")
_BIT = {key: 1 << i for i, key in enumerate(SIDE_KEYS)}
_INT64 = (-(2**63), 2**63 - 1)
_TRUE, _FALSE = "1", "0"


def _plain_scalar(value: Any) -> bool:
    """Whether SQLite holds and compares ``value`` exactly as MongoDB would."""
    kind = type(value)
    if kind is str:
        return "\x00" not in value and (value.isascii() or _encodable(value))
    if kind is int:
        return bool(_INT64[0] <= value <= _INT64[1])
    if kind is float:
        return math.isfinite(value)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def side_values(start: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The side columns of a start document: one value per key of
    :data:`SIDE_KEYS` (None when missing or not a plain scalar), then
    ``odd``, the bits of keys present with another value.

    ``uid`` keeps any string (it also names the run in the index), with its
    bit set when SQL cannot compare it exactly.
    """
    if start is None:
        return (None,) * len(SIDE_KEYS) + (0,)
    values: list[Any] = []
    odd = 0
    bit = 1
    # Once per run file of a catalog being indexed: the usual values (an
    # ASCII string, a float, an int) are recognised without a call.
    for key in SIDE_KEYS:
        value = start.get(key)
        kind = type(value)
        if value is None:
            if key in start:
                odd |= bit  # null: matched by {key: None}, which SQL leaves to Python
        elif (kind is str and value.isascii() and "\x00" not in value) or (
            kind is float and value - value == 0.0
        ):
            pass
        elif not _plain_scalar(value):
            if not (key == "uid" and kind is str):
                value = None
            odd |= bit
        values.append(value)
        bit <<= 1
    values.append(odd)
    return tuple(values)


_ABSENT = object()


class _Unsupported(Exception):
    """A part of a query SQL does not express: evaluated in Python."""


class _Compiler:
    def __init__(self) -> None:
        # Named, so that parts dropped while simplifying leave no gap.
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    # --- documents and logic -------------------------------------------------
    def document(self, query: Mapping[str, Any]) -> tuple[str, str]:
        parts = []
        for key, value in query.items():
            if key == "$comment":
                continue
            if key in ("$and", "$or", "$nor"):
                subs = [self.document(sub) for sub in value]
                sup = [s for s, _ in subs]
                sub = [s for _, s in subs]
                if key == "$and":
                    parts.append((_all(sup), _all(sub)))
                elif key == "$or":
                    parts.append((_any(sup), _any(sub)))
                else:
                    parts.append((_not(_any(sub)), _not(_any(sup))))
            elif key.startswith("$"):
                raise _Unsupported(key)  # $text, $expr: not for files anyway
            else:
                parts.append(self.field(key, value))
        return _all([s for s, _ in parts]), _all([s for _, s in parts])

    def field(self, key: str, condition: Any) -> tuple[str, str]:
        """(sup, sub) of one field's condition, over every row."""
        if key in _BIT:
            value, kind = key, None
            unknown = f"((odd & {_BIT[key]}) != 0)"
        else:
            path = _json_path(key.split("."))
            if path is None:
                return _TRUE, _FALSE
            value = f"json_extract(start, {self.param(path[-1])})"
            kind = f"json_type(start, {self.param(path[-1])})"
            # A path through an array (elementwise matching), or a document
            # SQLite cannot read exactly: unknown here.
            arrays = [f"json_type(start, {self.param(p)}) = 'array'" for p in path]
            unknown = _any(["(form != 0)", *[f"coalesce({a}, 0)" for a in arrays]])
        try:
            sup, sub = self.condition(value, kind, condition)
        except _Unsupported:
            sup, sub = _TRUE, _FALSE
        needles = _needles(condition) if kind is not None else None
        if needles:
            # Every match holds one of these strings, and a plain document is
            # orjson's text, where a string is always spelled the same way:
            # rows without it are left out by a text search, before SQLite
            # parses their JSON (once per json_extract/json_type: the cost
            # of a search over JSON).
            found = _any([f"(instr(start, {self.param(n)}) > 0)" for n in needles])
            return _any(["(form != 0)", _all([found, _any([unknown, sup])])]), _all(
                [_not(unknown), sub]
            )
        return _any([unknown, sup]), _all([_not(unknown), sub])

    # --- conditions on one plain value (or its absence) --------------------------
    def condition(self, value: str, kind: str | None, condition: Any) -> tuple[str, str]:
        """(sup, sub) over rows whose value at the path is plain (a scalar,
        or for JSON paths any non-array value) or missing. Each is 0 or 1,
        never NULL, so that NOT of it means what it says."""
        if _is_operators(condition):
            parts = [
                self.operator(value, kind, op, arg, condition)
                for op, arg in condition.items()
                if op != "$options"
            ]
            return _all([s for s, _ in parts]), _all([s for _, s in parts])
        return self.equal(value, kind, condition)

    def operator(
        self, value: str, kind: str | None, op: str, arg: Any, ops: Mapping[str, Any]
    ) -> tuple[str, str]:
        if op == "$eq":
            return self.equal(value, kind, arg)
        if op == "$ne":
            sup, sub = self.equal(value, kind, arg)
            return _not(sub), _not(sup)
        if op in _COMPARE:
            return self.compare(value, kind, op, arg)
        if op in ("$in", "$nin"):
            pairs = [self.equal(value, kind, a) for a in arg]
            sup, sub = _any([s for s, _ in pairs]), _any([s for _, s in pairs])
            return (sup, sub) if op == "$in" else (_not(sub), _not(sup))
        if op == "$exists":
            there = f"({value} IS NOT NULL)" if kind is None else f"({kind} IS NOT NULL)"
            return (there, there) if arg else (_not(there), _not(there))
        if op == "$regex":
            return self.regex(value, kind, arg, ops.get("$options", ""))
        if op == "$not":
            if isinstance(arg, re.Pattern):
                sup, sub = self.regex(value, kind, arg, "")
            else:
                sup, sub = self.condition(value, kind, arg)
            return _not(sub), _not(sup)
        if op == "$all":
            if not arg:
                return _FALSE, _FALSE
            pairs = [self.equal(value, kind, a) for a in arg]
            return _all([s for s, _ in pairs]), _all([s for _, s in pairs])
        if op in ("$size", "$elemMatch"):
            return _FALSE, _FALSE  # a plain value is never an array
        raise _Unsupported(op)  # $type, $mod: evaluated in Python

    def equal(self, value: str, kind: str | None, target: Any) -> tuple[str, str]:
        if isinstance(target, re.Pattern):
            return self.regex(value, kind, target, "")
        if target is None:
            # Missing or null (JSON null reads as SQL NULL too).
            return (f"({value} IS NULL)",) * 2
        if type(target) is bool:
            if kind is None:
                return _FALSE, _FALSE  # side columns hold no bools
            test = f"coalesce({kind} = '{'true' if target else 'false'}', 0)"
            return test, test
        if type(target) is str:
            if not _plain_scalar(target):
                raise _Unsupported("string")
            test = f"coalesce({_text(value, kind)} AND {value} = {self.param(target)}, 0)"
            return test, test
        if type(target) in (int, float):
            return self.compare(value, kind, "$eq", target)
        if isinstance(target, Mapping):
            # Equal to a sub-document: only an object can be (key order
            # matters, left to Python).
            if kind is None:
                return _FALSE, _FALSE
            return f"coalesce({kind} = 'object', 0)", _FALSE
        if isinstance(target, list):
            return _FALSE, _FALSE  # a plain value is never an array
        raise _Unsupported(type(target).__name__)

    def compare(self, value: str, kind: str | None, op: str, arg: Any) -> tuple[str, str]:
        kind_of_arg = type(arg)
        if kind_of_arg is str:
            if not _plain_scalar(arg):
                raise _Unsupported("string")
            test = (
                f"coalesce({_text(value, kind)} AND {value} {_COMPARE[op]} {self.param(arg)}, 0)"
            )
            return test, test
        if kind_of_arg in (int, float):
            if not _plain_scalar(arg):
                if kind_of_arg is float and math.isnan(arg):
                    return _FALSE, _FALSE  # NaN compares equal to nothing
                raise _Unsupported("number")
            if kind is None:
                # A side column: exact numbers, exactly compared.
                test = (
                    f"coalesce(typeof({value}) IN ('integer', 'real') AND "
                    f"{value} {_COMPARE[op]} {self.param(arg)}, 0)"
                )
                return test, test
            # JSON text: widened for the superset, integers only for the subset.
            number = f"{kind} IN ('integer', 'real')"
            band = abs(float(arg)) * 2.0**-30 + 1e-300
            lo, hi = float(arg) - band, float(arg) + band
            if op == "$eq":
                wide = f"{value} BETWEEN {self.param(lo)} AND {self.param(hi)}"
            elif op in ("$gt", "$gte"):
                wide = f"{value} >= {self.param(lo)}"
            else:
                wide = f"{value} <= {self.param(hi)}"
            sup = f"coalesce({number} AND {wide}, 0)"
            if kind_of_arg is int:
                sub = (
                    f"coalesce({kind} = 'integer' AND typeof({value}) = 'integer' AND "
                    f"{value} {_COMPARE[op]} {self.param(arg)}, 0)"
                )
            else:
                sub = _FALSE
            return sup, sub
        if arg is None or kind_of_arg is bool:
            # A plain value is never null; missing does not compare; bools
            # compare with bools only, and side columns hold none.
            if kind is None or arg is None:
                return _FALSE, _FALSE
        raise _Unsupported(kind_of_arg.__name__)

    def regex(self, value: str, kind: str | None, pattern: Any, options: Any) -> tuple[str, str]:
        text = _text(value, kind)
        prefix = _literal_prefix(pattern, options)
        if prefix is None:
            return f"coalesce({text}, 0)", _FALSE  # only strings match a regex
        if prefix == "":
            return f"coalesce({text}, 0)", f"coalesce({text}, 0)"
        upper = _successor(prefix)
        if upper is None:
            return f"coalesce({text}, 0)", _FALSE
        test = (
            f"coalesce({text} AND {value} >= {self.param(prefix)} AND "
            f"{value} < {self.param(upper)}, 0)"
        )
        return test, test


def _needles(condition: Any) -> list[str] | None:
    """The JSON spellings of the strings one of which every document matching
    ``condition`` holds somewhere (equality to strings: ``"x"``, ``$eq``,
    ``$in``); None when there are none to look for."""
    if _is_operators(condition):
        if len(condition) != 1:
            return None
        ((op, arg),) = condition.items()
        if op == "$eq":
            targets = [arg]
        elif op == "$in" and isinstance(arg, list) and arg:
            targets = arg
        else:
            return None
    else:
        targets = [condition]
    if not all(type(t) is str and _plain_scalar(t) for t in targets):
        return None
    import orjson  # what the index writes plain documents with

    return [orjson.dumps(t).decode() for t in targets]


_COMPARE = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _text(value: str, kind: str | None) -> str:
    return f"typeof({value}) = 'text'" if kind is None else f"{kind} = 'text'"


def _is_operators(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and k.startswith("$") for k in value)
    )


def _all(parts: list[str]) -> str:
    parts = [p for p in parts if p != _TRUE]
    if _FALSE in parts:
        return _FALSE
    if not parts:
        return _TRUE
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _any(parts: list[str]) -> str:
    parts = [p for p in parts if p != _FALSE]
    if _TRUE in parts:
        return _TRUE
    if not parts:
        return _FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _not(part: str) -> str:
    if part == _TRUE:
        return _FALSE
    if part == _FALSE:
        return _TRUE
    return f"(NOT ({part}))"


def _json_path(parts: list[str]) -> list[str] | None:
    """SQLite JSON paths of each prefix of a dotted key; None when a part
    cannot be quoted in one (SQLite's paths have no escapes)."""
    out = []
    path = "$"
    for part in parts:
        if not part or '"' in part or "\\" in part or not _plain_scalar(part):
            return None
        path += f'."{part}"'
        out.append(path)
    return out


# A pattern anchored at the start and otherwise literal: ``^abc``, ``^a\.b``
# (what a partial uid lookup asks).
_LITERAL = re.compile(r"\^((?:[^\\.^$*+?{}\[\]|()]|\\[^A-Za-z0-9])*)")


def _literal_prefix(pattern: Any, options: Any) -> str | None:
    """The literal a pattern requires a string to begin with, if that is
    all it requires; else None."""
    if options:
        return None
    if isinstance(pattern, re.Pattern):
        if pattern.flags & ~re.UNICODE or not isinstance(pattern.pattern, str):
            return None
        pattern = pattern.pattern
    if not isinstance(pattern, str):
        return None
    found = _LITERAL.fullmatch(pattern)
    if found is None:
        return None
    prefix = re.sub(r"\\(.)", r"\1", found.group(1), flags=re.DOTALL)
    return prefix if _plain_scalar(prefix) else None


def _successor(prefix: str) -> str | None:
    """The least string greater than every string beginning with ``prefix``
    (in code point order, which is SQLite's order of UTF-8 text)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000  # surrogates are not characters
    return prefix[:-1] + chr(nxt)


def compile_sql(query: Mapping[str, Any] | None) -> tuple[str, str, dict[str, Any]] | None:
    """``(sup, sub, params)``: SQL conditions on an index row (see the module
    notes) and their named parameters; None if nothing of the query narrows
    the rows (``sup`` would be true for every row).

    Examples
    --------
    >>> sup, sub, params = compile_sql({"plan_name": "scan"})
    >>> params
    {'p0': 'scan'}
    >>> compile_sql({"$comment": "everything"}) is None
    True
    """
    if not query:
        return None
    compiler = _Compiler()
    try:
        sup, sub = compiler.document(normalize_query(query))
    except (ValueError, TypeError, _Unsupported):
        return None  # malformed: the evaluator says why
    if sup == _TRUE:
        return None
    return sup, sub, compiler.params
