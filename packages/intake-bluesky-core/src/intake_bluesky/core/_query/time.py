"""Time queries: dates and datetimes -> epoch seconds, the way databroker did.

Start documents record ``time`` as epoch seconds (a float). People think in
dates: :class:`TimeRange` turns ``since``/``until`` into a query on ``time``,
and :func:`to_epoch` is the one conversion used by it and by query
normalization (a ``datetime`` or date string compared with ``time`` in any
query), so every backend, a MongoDB server included, compares numbers.

Examples
--------
>>> from intake_bluesky.core import TimeRange
>>> q = TimeRange(since="2026-03-01", until="2026-03-02", timezone="UTC")
>>> q
TimeRange(since='2026-03-01', until='2026-03-02', timezone='UTC')
>>> dict(q)
{'time': {'$gte': 1772323200.0, '$lt': 1772409600.0}}
"""

from __future__ import annotations

import datetime as _dt
import numbers
import zoneinfo
from typing import Any

__all__ = ["TimeRange", "epoch_span", "to_epoch"]

#: A timezone: an IANA name, a tzinfo, or None for local time.
Timezone = str | _dt.tzinfo | None


# The forms databroker's TimeRange accepted, most specific first.
_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H",
    "%Y-%m-%d",
    "%Y-%m",
    "%Y",
)


def _tzinfo(timezone: Timezone) -> _dt.tzinfo | None:
    if timezone is None or isinstance(timezone, _dt.tzinfo):
        return timezone
    if isinstance(timezone, str):
        try:
            return zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"Unknown timezone {timezone!r}: give an IANA name such as 'America/New_York' "
                "or 'UTC', or a datetime.tzinfo."
            ) from err
    raise TypeError(f"timezone must be an IANA name or a datetime.tzinfo, not {timezone!r}.")


def _parse(text: str) -> _dt.datetime:
    return _parse_with_format(text)[0]


def _parse_with_format(text: str) -> tuple[_dt.datetime, str | None]:
    text = text.strip()
    for fmt in _FORMATS:
        try:
            return _dt.datetime.strptime(text, fmt), fmt
        except ValueError:
            continue
    try:  # ISO 8601 with an offset, e.g. '2026-03-01T14:00:00+02:00'
        return _dt.datetime.fromisoformat(text), None
    except ValueError:
        pass
    raise ValueError(
        f"Cannot read {text!r} as a date or time: write it like '2026-03-01', "
        "'2026-03-01 14:00' or '2026-03-01T14:00:00+02:00', or pass a datetime or epoch seconds."
    )


def to_epoch(value: Any, timezone: Timezone = None) -> float:
    """Epoch seconds of a date, datetime, date string or number.

    Parameters
    ----------
    value : str, datetime.datetime, datetime.date, numpy.datetime64 or number
        Strings as databroker accepted them (``'2026'``, ``'2026-03'``,
        ``'2026-03-01'``, ``'2026-03-01 14:00'``, ``'2026-03-01 14:00:05'``,
        ISO 8601 with ``T`` and an optional offset). Numbers are already
        epoch seconds and are returned as floats.
    timezone : str or tzinfo, optional
        How to read values that carry no timezone (IANA name such as
        ``'Europe/Berlin'``). Default: this machine's local time.

    Returns
    -------
    float

    Examples
    --------
    >>> to_epoch("1970-01-02", timezone="UTC")
    86400.0
    """
    if isinstance(value, bool):
        raise TypeError(f"A time cannot be a boolean ({value!r}).")
    if isinstance(value, numbers.Real):
        return float(value)
    if type(value).__name__ == "datetime64":  # numpy, without importing it here
        value = value.astype("datetime64[us]").item()
        if isinstance(value, int):  # out of datetime's range
            raise ValueError(f"{value!r} is out of range for a date.")
        value = value.replace(tzinfo=_dt.UTC)  # numpy datetimes are UTC
    if isinstance(value, str):
        value = _parse(value)
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, _dt.datetime):
        raise TypeError(
            f"Cannot use {value!r} ({type(value).__name__}) as a time: give a date string, "
            "a datetime, a date or epoch seconds."
        )
    if value.tzinfo is None:
        tz = _tzinfo(timezone)
        # Naive datetimes are local time by Python's own rules (DST included).
        value = value if tz is None else value.replace(tzinfo=tz)
    return float(value.timestamp())


def _next(value: _dt.datetime, fmt: str | None) -> _dt.datetime | None:
    """The start of the period after the one a date string names."""
    if fmt is None or fmt.endswith("%f"):
        return None  # an instant
    if fmt == "%Y":
        return value.replace(year=value.year + 1)
    if fmt == "%Y-%m":
        year, month = divmod(value.month, 12)
        return value.replace(year=value.year + year, month=month + 1)
    step = {"%d": _dt.timedelta(days=1), "%H": _dt.timedelta(hours=1)}.get(fmt[-2:])
    if step is None:
        step = _dt.timedelta(minutes=1) if fmt.endswith("%M") else _dt.timedelta(seconds=1)
    return value + step


def epoch_span(text: str, timezone: Timezone = None) -> tuple[float, float] | None:
    """``[start, stop)`` epoch seconds of the period a date string names
    (``'2026-03-01'``: that day; ``'2026-03'``: that month; ...), or None
    when it names an instant (fractional seconds, an ISO offset).

    Examples
    --------
    >>> epoch_span("1970-01-02", timezone="UTC")
    (86400.0, 172800.0)
    """
    value, fmt = _parse_with_format(text)
    after = _next(value, fmt)
    if after is None:
        return None
    return to_epoch(value, timezone), to_epoch(after, timezone)


class TimeRange(dict[str, dict[str, float]]):
    """A query on start ``time``: runs started in ``[since, until)``.

    The name and arguments of databroker's helper. It *is* the query (a
    ``dict``), so ``cat.search(TimeRange(since="2026-03-01"))`` works and it
    combines with other queries like any dict.

    Parameters
    ----------
    since, until : str, datetime, date or number, optional
        Inclusive start and exclusive end; see :func:`to_epoch` for the
        accepted forms. At least one is needed.
    timezone : str or tzinfo, optional
        How to read values without a timezone; default local time.

    Raises
    ------
    ValueError
        For an unreadable value, an unknown timezone, neither bound, or
        ``since`` not before ``until``.

    Examples
    --------
    >>> TimeRange(until=86400, timezone="UTC")
    TimeRange(until=86400, timezone='UTC')
    >>> dict(TimeRange(since="1970-01-01 01:00", timezone="UTC"))
    {'time': {'$gte': 3600.0}}
    """

    def __init__(self, since: Any = None, until: Any = None, timezone: Timezone = None) -> None:
        if since is None and until is None:
            raise ValueError("TimeRange needs since=..., until=... or both.")
        bounds: dict[str, float] = {}
        if since is not None:
            bounds["$gte"] = to_epoch(since, timezone)
        if until is not None:
            bounds["$lt"] = to_epoch(until, timezone)
        if len(bounds) == 2 and bounds["$gte"] >= bounds["$lt"]:
            raise ValueError(
                f"TimeRange since={since!r} is not before until={until!r}: nothing could match."
            )
        super().__init__(time=bounds)
        self.since, self.until, self.timezone = since, until, timezone

    def __repr__(self) -> str:
        args = [
            f"{name}={value!r}"
            for name, value in (("since", self.since), ("until", self.until))
            if value is not None
        ]
        if self.timezone is not None:
            args.append(f"timezone={self.timezone!r}")
        return f"TimeRange({', '.join(args)})"

    def __reduce__(self) -> tuple[type[TimeRange], tuple[Any, Any, Timezone]]:
        return (type(self), (self.since, self.until, self.timezone))
