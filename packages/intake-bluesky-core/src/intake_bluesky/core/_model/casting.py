"""Casts to a declared dtype that never change a value.

Descriptors declare dtypes before the values exist: ophyd declares a setpoint
``dtype: 'integer'`` because it read 0 at describe time, then records 2.5. A
plain ``astype`` would silently turn that 2.5 into 2. Every cast of stored
values to a declared dtype goes through :func:`lossless_cast`: the cast is
kept only when it round-trips exactly; otherwise the values keep their own
dtype and one warning names the run and field.

Examples
--------
>>> import numpy as np, warnings
>>> lossless_cast(np.array([1.0, 2.0]), np.dtype("int64"), run="r", field="x").dtype
dtype('int64')
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     out = lossless_cast(np.array([0.0, 2.5]), np.dtype("int64"), run="r", field="x")
>>> out.tolist(), len(caught)
([0.0, 2.5], 1)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import DtypeMismatchWarning

__all__ = ["DtypeMismatchWarning", "lossless_cast", "fits", "why_not"]


def fits(values: np.ndarray, dtype: np.dtype) -> bool:
    """Whether ``values`` cast to ``dtype`` and back unchanged (NaN included)."""
    values = np.asarray(values)
    if values.dtype == dtype:
        return True
    # numpy calls int64 -> float64 "safe", yet it rounds integers above 2**53.
    widening_int = values.dtype.kind in "iu" and dtype.kind in "fc"
    if np.can_cast(values.dtype, dtype, casting="safe") and not widening_int:
        return True
    if values.dtype.kind == "O" or dtype.kind == "O":
        return False
    if values.dtype.kind in "iu" and dtype.kind in "iu":
        # Integers to integers change no value within the target's range:
        # two reductions, not a cast there and back (a 100 MB detector frame
        # stack of JSON ints is int64 until cast to its declared uint16).
        info = np.iinfo(dtype)
        return not values.size or (int(values.min()) >= info.min and int(values.max()) <= info.max)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. NaN -> int RuntimeWarning
            cast = values.astype(dtype)
            back = cast.astype(values.dtype)
    except (TypeError, ValueError, OverflowError):
        return False
    if dtype.kind in "iu" and values.dtype.kind in "iuf" and values.size:
        # A wrap-around (-1 -> 2**64 - 1) would round-trip; the range would not.
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            low, high = np.nanmin(values), np.nanmax(values)
        if low < info.min or high > info.max:
            return False
    if values.dtype.kind in "fc":
        return bool(np.array_equal(back, values, equal_nan=True)) and not (
            dtype.kind in "iub" and np.isnan(values).any()
        )
    return bool(np.array_equal(back, values))


def lossless_cast(
    values: Any, dtype: np.dtype | None, *, run: str, field: str, what: str = ""
) -> Any:
    """``values`` as ``dtype`` when no value changes, else as they are.

    Parameters
    ----------
    values : array-like
    dtype : numpy.dtype or None
        The declared dtype (None: no cast).
    run, field : str
        Named in the warning when the values do not fit.
    what : str, optional
        Where the declaration comes from, for the warning (e.g.
        ``"dtype_numpy '<i8'"``).
    """
    values = np.asarray(values)
    if dtype is None or values.dtype == dtype:
        return values
    if fits(values, dtype):
        return values.astype(dtype)
    warn_mismatch(values, dtype, run=run, field=field, what=what)
    return values


def why_not(values: Any, declared: Any, first_row: int = 0) -> str:
    """What in ``values`` does not fit ``declared``, for messages: the first
    row that does not (numbered from ``first_row``), its value and why (and
    how many rows do not).

    Examples
    --------
    >>> why_not(np.array([0, 2**63 + 1], dtype="uint64"), np.dtype("int64"))
    "row 1 holds 9223372036854775809, outside int64's range"
    >>> why_not(np.array([0.0, 2.5, np.nan]), np.dtype("int64"))
    'row 1 holds 2.5, a fraction (2 rows do not fit)'
    """
    values = np.asarray(values)
    declared = np.dtype(declared)
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    bad = _misfits(rows, declared)
    if bad is not None:
        hit = np.flatnonzero(bad.any(axis=1))
        if not len(hit):
            return f"its {values.dtype.name} values are not {declared.name}"
        row = int(hit[0])
        value = rows[row][bad[row]][0]
        more = f" ({len(hit)} rows do not fit)" if len(hit) > 1 else ""
        where = f"row {first_row + row}"
        return f"{where} holds {_show(value)}, {_reason(value, declared)}{more}"
    for row, items in enumerate(rows):
        for value in items.tolist():
            if not fits(_one(value), declared):
                where = f"row {first_row + row}"
                return f"{where} holds {_show(value)}, {_reason(value, declared)}"
    return f"its {values.dtype.name} values are not {declared.name}"


def _misfits(rows: np.ndarray, declared: np.dtype) -> np.ndarray | None:
    """Elementwise "does not fit" for numbers cast to integers or floats
    (vectorized: a warning about 100,000 rows costs no Python loop), or
    None for the other cases."""
    kind = rows.dtype.kind
    if kind not in "iuf" or declared.kind not in "iuf":
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if declared.kind in "iu":
            info = np.iinfo(declared)
            bad: np.ndarray = (rows < info.min) | (rows > info.max)
            if kind == "f":
                bad |= ~np.isfinite(rows) | (rows != np.floor(rows))
            return bad
        back = rows.astype(declared).astype(rows.dtype)
        bad = back != rows
        if kind == "f":
            bad &= ~np.isnan(rows)
        return bad


def _one(value: Any) -> np.ndarray:
    from .pages import exact_array

    return exact_array([value])


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _reason(value: Any, declared: np.dtype) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and declared.kind in "iub":
        if value != value:
            return "NaN, which an integer dtype cannot hold"
        if value in (float("inf"), float("-inf")):
            return "an infinity, which an integer dtype cannot hold"
        if value != int(value):
            return "a fraction"
    if isinstance(value, int | float) and declared.kind in "iu":
        return f"outside {declared.name}'s range"
    if isinstance(value, int) and declared.kind in "fc":
        return f"an integer beyond {declared.name}'s precision"
    return f"a {type(value).__name__}, which {declared.name} cannot hold exactly"


def warn_mismatch(values: Any, declared: Any, *, run: str, field: str, what: str = "") -> None:
    """Warn that stored values keep their own dtype.

    Python's default warning filter shows one message once per place, and the
    message names run and field: each mismatch is reported once.
    """
    values = np.asarray(values)
    declared_as = what or f"dtype {np.dtype(declared).str!r}"
    warnings.warn(
        f"Run {run!r}: field {field!r} is declared with {declared_as}, but "
        f"{why_not(values, declared)}; the values keep their own dtype "
        f"({values.dtype.name}) so that none of them changes.",
        DtypeMismatchWarning,
        stacklevel=3,
    )
