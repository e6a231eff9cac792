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

import numpy as np

__all__ = ["DtypeMismatchWarning", "lossless_cast", "fits"]


class DtypeMismatchWarning(UserWarning):
    """Stored values do not fit the dtype their descriptor declares; they keep
    their own dtype (nothing is truncated)."""


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


def lossless_cast(values, dtype: np.dtype | None, *, run: str, field: str, what: str = ""):
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
    warn_mismatch(values.dtype, dtype, run=run, field=field, what=what)
    return values


def warn_mismatch(found, declared, *, run: str, field: str, what: str = "") -> None:
    """Warn that stored values keep their own dtype.

    Python's default warning filter shows one message once per place, and the
    message names run and field: each mismatch is reported once.
    """
    declared_as = what or f"dtype {np.dtype(declared).str!r}"
    warnings.warn(
        f"Run {run!r}: field {field!r} is declared with {declared_as}, but its stored values "
        f"do not fit it (e.g. a fraction in an integer field); they are kept as "
        f"{np.dtype(found).name} so that no value changes.",
        DtypeMismatchWarning,
        stacklevel=3,
    )
