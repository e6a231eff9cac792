"""``--since``/``--until`` as a query on start documents' ``time``, through
the core's :class:`~intake_bluesky.core.TimeRange` (databroker's helper)."""

from __future__ import annotations

from .._query.time import TimeRange, to_epoch
from .errors import CLIError

__all__ = ["time_query"]


def time_query(since: str | None, until: str | None, timezone: str | None = None) -> dict:
    """``{'time': {'$gte': ..., '$lt': ...}}`` for the given bounds ({} if none)."""
    if since is None and until is None:
        return {}
    # Each bound alone first, so that the message names the option at fault.
    for option, value in (("--since", since), ("--until", until)):
        if value is not None:
            try:
                to_epoch(value, timezone)
            except (TypeError, ValueError) as err:
                raise CLIError(f"{option} {value!r}: {err}") from None
    try:
        return dict(TimeRange(since=since, until=until, timezone=timezone))
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from None
