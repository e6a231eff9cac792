"""A table of runs: one flat row per run, from start and stop documents only.

:func:`run_rows` is what ``BlueskyCatalog.to_dataframe()``, the catalog's
notebook display and the command line's ``ls`` are built on. It reads no
event data: a database driver pushes projection, sort and limit to the
server (:class:`~intake_bluesky.core.driver.SummaryDriver`); file catalogs
answer from their index of start/stop documents.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> for docs in example_runs():
...     cat.ingest(docs)
>>> rows = run_rows(cat, fields=["sample.name", "stop.reason"], limit=2)
>>> [(r["scan_id"], r["plan_name"], r["exit_status"], r["sample.name"]) for r in rows]
[(3, 'scan', None, 'Ni'), (4, 'fly', 'success', 'Au')]
>>> list(rows[-1])[:8]
['uid', 'scan_id', 'plan_name', 'time', 'duration', 'exit_status', 'num_events', 'sample.name']
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from ..driver import summaries

__all__ = ["BASE_COLUMNS", "run_rows", "rows_to_dataframe"]

#: The keys every row has, in this order; requested fields follow.
BASE_COLUMNS = (
    "uid",
    "scan_id",
    "plan_name",
    "time",
    "duration",
    "exit_status",
    "num_events",
)

_START_KEYS = ("uid", "scan_id", "plan_name", "time")
_STOP_KEYS = ("time", "exit_status", "num_events")
_MISSING = object()


def _field_path(field: str) -> tuple[str, str]:
    """``'stop.reason'`` -> ``('stop', 'reason')``; ``'sample.name'`` and
    ``'start.sample.name'`` -> ``('start', 'sample.name')``."""
    for doc in ("start", "stop"):
        if field.startswith(doc + ".") and len(field) > len(doc) + 1:
            return doc, field[len(doc) + 1 :]
    return "start", field


def _check_fields(fields) -> list[str]:
    if fields is None:
        return []
    if isinstance(fields, str):
        fields = [fields]
    try:
        fields = list(fields)
    except TypeError:
        raise TypeError(
            f"fields must be a list of dotted key names like ['sample.name', 'stop.reason'], "
            f"not {fields!r}."
        ) from None
    for field in fields:
        if not isinstance(field, str) or not field or field.startswith(".") or ".." in field:
            raise ValueError(
                f"fields holds {field!r}; each must be a dotted key name of the start "
                "document ('sample.name') or, prefixed with 'stop.', of the stop document "
                "('stop.reason')."
            )
        if field in BASE_COLUMNS:
            raise ValueError(
                f"{field!r} is a column of every row already; to get the stop document's "
                f"{field}, ask for 'stop.{field}'."
            )
    if len(set(fields)) != len(fields):
        raise ValueError(f"fields names a key twice: {fields!r}.")
    return fields


def _check_limit(limit) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be None (every run) or an integer >= 0, not {limit!r}.")
    return limit


def _get(doc: Mapping | None, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _local_time(epoch) -> datetime.datetime | None:
    epoch = _number(epoch)
    if epoch is None or epoch != epoch:
        return None
    try:
        return datetime.datetime.fromtimestamp(epoch).astimezone()
    except (OverflowError, OSError, ValueError):
        return None


def make_row(start: Mapping, stop: Mapping | None, fields: Sequence[str] = ()) -> dict:
    """One row from a start and a stop document (``None`` in progress)."""
    t0 = _number(start.get("time"))
    t1 = _number(stop.get("time")) if stop is not None else None
    num_events = stop.get("num_events") if stop is not None else None
    row = {
        "uid": start.get("uid"),
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "time": _local_time(t0),
        "duration": t1 - t0 if t0 is not None and t1 is not None else None,
        "exit_status": stop.get("exit_status") if stop is not None else None,
        "num_events": dict(num_events) if isinstance(num_events, Mapping) else {},
    }
    for field in fields:
        doc, path = _field_path(field)
        value = _get(start if doc == "start" else stop, path)
        row[field] = None if value is _MISSING else value
    return row


def run_rows(catalog, fields=None, limit: int | None = None) -> list[dict]:
    """One flat dict per run of a catalog (or search result), newest last.

    Reads start and stop documents only, never event data.

    Parameters
    ----------
    catalog : BlueskyCatalog
        A catalog of runs, or the result of ``search()``.
    fields : list of str, optional
        More keys, each a dotted path: ``'sample.name'`` (or
        ``'start.sample.name'``) reads the start document, ``'stop.reason'``
        the stop document. A key a run lacks gives ``None``.
    limit : int, optional
        Only the newest ``limit`` runs (still newest last).

    Returns
    -------
    list of dict
        Keys in this order: ``uid``, ``scan_id``, ``plan_name``, ``time``
        (timezone-aware ``datetime.datetime`` in the local timezone),
        ``duration`` (stop time - start time, seconds; ``None`` in progress),
        ``exit_status`` (``None`` in progress), ``num_events`` (stream name ->
        count, from the stop document; ``{}`` when unknown), then each of
        ``fields`` under its name as given.

    Raises
    ------
    ValueError, TypeError
        For a malformed ``fields`` or ``limit``.
    """
    fields = _check_fields(fields)
    limit = _check_limit(limit)
    transforms = catalog._settings.transforms
    if "start" in transforms or "stop" in transforms:
        # A transform may need the whole document; rows then show what
        # run.metadata shows.
        start_fields = stop_fields = None
    else:
        start_fields = list(_START_KEYS)
        stop_fields = list(_STOP_KEYS)
        for field in fields:
            doc, path = _field_path(field)
            (start_fields if doc == "start" else stop_fields).append(path)
    if limit == 0:
        return []
    newest_first = limit is not None
    pairs = summaries(
        catalog.driver,
        catalog.query,
        start_fields=start_fields,
        stop_fields=stop_fields,
        sort=[("time", -1)] if newest_first else [("time", 1)],
        limit=limit,
    )
    rows = []
    for start, stop in pairs:
        start = catalog._settings.transform("start", start)
        stop = catalog._settings.transform("stop", stop)
        rows.append(make_row(start, stop, fields))
    if newest_first:
        rows.reverse()
    return rows


def _local_zone():
    try:
        from dateutil.tz import tzlocal  # a pandas dependency

        return tzlocal()
    except ImportError:  # pragma: no cover - pandas always brings dateutil
        return datetime.datetime.now().astimezone().tzinfo


def _series(values: list, pd):
    # Integers with gaps stay integers (pandas' nullable Int64), not floats.
    present = [v for v in values if v is not None]
    if (
        present
        and len(present) < len(values)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in present)
    ):
        return pd.array(values, dtype="Int64")
    return pd.Series(values, dtype=object if not present else None).array


def rows_to_dataframe(rows: list[dict], fields: Sequence[str] = ()):
    """A pandas DataFrame of :func:`run_rows`' rows (see ``to_dataframe``)."""
    import pandas as pd

    streams: dict[str, None] = {}
    for row in rows:
        streams.update(dict.fromkeys(row["num_events"]))
    ordered = sorted(streams, key=lambda s: (s != "primary", s))
    epochs = [row["time"].timestamp() if row["time"] is not None else None for row in rows]
    times = pd.to_datetime(pd.Series(epochs, dtype="float64"), unit="s", utc=True)
    columns: dict[str, Any] = {
        "uid": pd.Series([row["uid"] for row in rows], dtype=object).array,
        "scan_id": _series([row["scan_id"] for row in rows], pd),
        "plan_name": pd.Series([row["plan_name"] for row in rows], dtype=object).array,
        "time": times.dt.tz_convert(_local_zone()).array,
        "duration": pd.Series([row["duration"] for row in rows], dtype="float64").array,
        "exit_status": pd.Series([row["exit_status"] for row in rows], dtype=object).array,
    }
    for stream in ordered:
        counts = [row["num_events"].get(stream) for row in rows]
        if all(c is None or (isinstance(c, int) and not isinstance(c, bool)) for c in counts):
            columns[f"events.{stream}"] = pd.array(counts, dtype="Int64")
        else:  # a damaged stop document: show what it holds, unconverted
            columns[f"events.{stream}"] = pd.Series(counts, dtype=object).array
    for field in fields:
        columns[field] = _series([row[field] for row in rows], pd)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
