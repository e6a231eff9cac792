"""``intake-bluesky ls``: the table of runs."""

from __future__ import annotations

import datetime
import json
import sys

from .jsonsafe import to_json

__all__ = ["run_rows", "format_table", "print_rows"]

_NEWEST_FIRST = [("time", -1)]
_BASE = ("uid", "scan_id", "plan_name", "time", "duration", "exit_status", "num_events")


def _dotted(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def _num_events(source, stop) -> dict:
    if stop is not None and isinstance(stop.get("num_events"), dict):
        return dict(stop["num_events"])
    counts: dict[str, int] = {}
    for d in source.descriptors():
        name = d.get("name", "primary")
        counts[name] = counts.get(name, 0) + source.event_count(d["uid"])
    return counts


def run_rows(catalog, fields=None, limit=None) -> list[dict]:
    """The runs of ``catalog`` as flat dicts, newest last.

    Local stand-in, with the contract of ``intake_bluesky.core._table.run_rows``
    (issue 13), used until that is on main: keys uid, scan_id, plan_name, time
    (tz-aware datetime), duration (seconds or None), exit_status, num_events
    (stream -> count), then the requested dotted fields of the start document.
    ``limit`` keeps the ``limit`` most recent runs.
    """
    fields = list(fields or [])
    if limit is not None:
        starts = list(catalog._search(sort=_NEWEST_FIRST, limit=limit))[::-1]
    else:
        starts = list(catalog._search())
    rows = []
    for start in starts:
        source = catalog.driver.run(start["uid"])
        stop = source.stop()
        t0 = start.get("time")
        when = (
            datetime.datetime.fromtimestamp(t0, tz=datetime.UTC).astimezone()
            if isinstance(t0, int | float)
            else None
        )
        t1 = stop.get("time") if stop else None
        duration = t1 - t0 if isinstance(t0, int | float) and isinstance(t1, int | float) else None
        row = {
            "uid": start.get("uid"),
            "scan_id": start.get("scan_id"),
            "plan_name": start.get("plan_name"),
            "time": when,
            "duration": duration,
            "exit_status": stop.get("exit_status") if stop else None,
            "num_events": _num_events(source, stop),
        }
        for field in fields:
            row[field] = _dotted(start, field)
        rows.append(row)
    return rows


def _cell(key: str, value) -> str:
    if value is None:
        return "-" if key != "exit_status" else "running"
    if key == "uid":
        return str(value)[:8]
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if key == "duration":
        return f"{value:.2f}s"
    if key == "num_events" and isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in sorted(value.items())) or "0"
    if isinstance(value, str):
        return value
    return json.dumps(to_json(value), separators=(",", ":"), default=str)


def format_table(rows: list[dict], keys: list[str]) -> str:
    """A plain text table with a header line; columns as wide as needed."""
    cells = [[_cell(k, row.get(k)) for k in keys] for row in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)).rstrip()]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    return "\n".join(lines)


def print_rows(rows: list[dict], fields: list[str], as_json: bool, out=None) -> None:
    out = out or sys.stdout
    keys = [*_BASE, *[f for f in fields if f not in _BASE]]
    if as_json:
        for row in rows:
            record = {k: row.get(k) for k in keys}
            if isinstance(record["time"], datetime.datetime):
                record["time"] = record["time"].isoformat()
            out.write(json.dumps(to_json(record), default=str) + "\n")
        return
    out.write(format_table(rows, keys) + "\n")
