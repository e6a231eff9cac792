"""``--since``/``--until`` as a query on start documents' ``time``.

Uses :class:`intake_bluesky.core.TimeRange` when the core has it; until then a
local equivalent (ISO dates and times; naive ones in the local time zone, or
in ``--timezone``).
"""

from __future__ import annotations

import datetime

from .errors import CLIError

__all__ = ["time_query"]


def time_query(since: str | None, until: str | None, timezone: str | None = None) -> dict:
    """``{'time': {'$gte': ..., '$lt': ...}}`` for the given bounds ({} if none)."""
    if since is None and until is None:
        return {}
    try:
        from .. import TimeRange  # the core's helper (issue 10), when present
    except ImportError:
        TimeRange = None
    if TimeRange is not None:
        try:
            return dict(TimeRange(since=since, until=until, timezone=timezone))
        except (TypeError, ValueError) as err:
            raise CLIError(str(err)) from None
    bounds = {}
    if since is not None:
        bounds["$gte"] = _epoch(since, "--since", timezone)
    if until is not None:
        bounds["$lt"] = _epoch(until, "--until", timezone)
    return {"time": bounds}


def _zone(timezone: str | None):
    if timezone is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CLIError(
            f"Unknown time zone {timezone!r} (use names like 'Europe/Berlin')."
        ) from None


def _epoch(text: str, option: str, timezone: str | None) -> float:
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CLIError(
            f"{option} {text!r} is not a date or time; use ISO format, e.g. 2026-01-31 or "
            "'2026-01-31 14:00' or 2026-01-31T14:00+01:00."
        ) from None
    if when.tzinfo is None:
        zone = _zone(timezone)
        when = when.replace(tzinfo=zone) if zone else when.astimezone()
    return when.timestamp()
