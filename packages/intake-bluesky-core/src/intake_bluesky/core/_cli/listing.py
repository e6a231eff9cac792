"""``intake-bluesky ls``: the table of runs."""

from __future__ import annotations

import datetime
import json
import sys

from .._faces.table import BASE_COLUMNS, run_rows
from .jsonsafe import to_json

__all__ = ["run_rows", "format_table", "print_rows"]


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
        return " ".join(f"{k}:{v}" for k, v in sorted(value.items())) or "-"
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
    keys = [*BASE_COLUMNS, *fields]
    if as_json:
        for row in rows:
            record = {k: row.get(k) for k in keys}
            if isinstance(record["time"], datetime.datetime):
                record["time"] = record["time"].isoformat()
            out.write(json.dumps(to_json(record), default=str) + "\n")
        return
    out.write(format_table(rows, keys) + "\n")
