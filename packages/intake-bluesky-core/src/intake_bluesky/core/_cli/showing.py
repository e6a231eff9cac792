"""``intake-bluesky show``: one run's essentials, or its documents."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

from .jsonsafe import to_json
from .listing import format_table

__all__ = ["summary", "print_summary", "print_documents"]

#: Start document keys shown first, when present; the rest are listed by name.
_START_KEYS = (
    "uid",
    "scan_id",
    "plan_name",
    "time",
    "detectors",
    "motors",
    "num_points",
    "sample",
    "operator",
    "proposal_id",
)
_STOP_KEYS = ("exit_status", "reason", "time")


def _when(t) -> str | None:
    if not isinstance(t, int | float):
        return None
    return (
        datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
        .astimezone()
        .isoformat(sep=" ", timespec="seconds")
    )


def summary(run) -> dict:
    """The run's essentials, without reading event data.

    Event counts come from the stop document's ``num_events`` when it has the
    stream, else from the storage's event count.
    """
    start = run.metadata["start"]
    stop = run.metadata["stop"]
    source = run._run.source
    descriptors = run._run.descriptors()
    declared = (stop or {}).get("num_events") or {}
    streams: dict[str, Any] = {}
    for d in descriptors:
        name = d.get("name", "primary")
        stream = streams.setdefault(name, {"descriptors": 0, "events": 0, "fields": {}})
        stream["descriptors"] += 1
        if name not in declared:
            stream["events"] += source.event_count(d["uid"])
        for key, info in d.get("data_keys", {}).items():
            stream["fields"].setdefault(
                key,
                {
                    "dtype": info.get("dtype"),
                    "shape": info.get("shape"),
                    "dtype_numpy": info.get("dtype_numpy"),
                    "external": info.get("external"),
                    "units": info.get("units"),
                    "source": info.get("source"),
                },
            )
    for name, stream in streams.items():
        if name in declared:
            stream["events"] = declared[name]
        elif stream["events"] == 0:
            # A live fly scan: no events, its rows declared by stream_datums.
            stream["stream_datum_rows"] = _stream_datum_rows(source, descriptors, name)
    return {
        "start": {k: start[k] for k in _START_KEYS if k in start},
        "other_start_keys": sorted(k for k in start if k not in _START_KEYS),
        "stop": None if stop is None else {k: stop[k] for k in _STOP_KEYS if k in stop},
        "duration": (
            stop["time"] - start["time"]
            if stop is not None
            and isinstance(stop.get("time"), int | float)
            and isinstance(start.get("time"), int | float)
            else None
        ),
        "streams": dict(sorted(streams.items())),
    }


def _stream_datum_rows(source, descriptors, name: str) -> int:
    rows = 0
    for d in descriptors:
        if d.get("name", "primary") != name:
            continue
        seq = [sd.get("seq_nums", {}) for sd in source.stream_datums(d["uid"])]
        stops = [s["stop"] for s in seq if isinstance(s.get("stop"), int)]
        starts = [s["start"] for s in seq if isinstance(s.get("start"), int)]
        if stops and starts:
            rows += max(stops) - min(starts)
    return rows


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(to_json(v), default=str)


def print_summary(info: dict, as_json: bool, out=None) -> None:
    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(to_json(info), default=str) + "\n")
        return
    start, stop = info["start"], info["stop"]
    width = max(len(k) for k in (*start, "exit_status", "duration"))
    lines = []
    for key, value in start.items():
        shown = _when(value) if key == "time" else _value(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    if info["other_start_keys"]:
        lines.append(f"{'more'.ljust(width)}  {', '.join(info['other_start_keys'])}")
    if stop is None:
        lines.append(f"{'exit_status'.ljust(width)}  running (no stop document yet)")
    else:
        lines.append(f"{'exit_status'.ljust(width)}  {stop.get('exit_status', '?')}")
        if stop.get("reason"):
            lines.append(f"{'reason'.ljust(width)}  {stop['reason']}")
        if info["duration"] is not None:
            lines.append(f"{'duration'.ljust(width)}  {info['duration']:.3f} s")
    for name, stream in info["streams"].items():
        lines.append("")
        plural = "s" if stream["events"] != 1 else ""
        descs = f", {stream['descriptors']} descriptors" if stream["descriptors"] > 1 else ""
        rows = stream.get("stream_datum_rows")
        more = f" ({rows} rows in stream_datums)" if rows else ""
        lines.append(f"stream {name}: {stream['events']} event{plural}{more}{descs}")
        rows = [
            {
                "field": key,
                "dtype": f["dtype"],
                "shape": f["shape"],
                "dtype_numpy": f["dtype_numpy"],
                "external": f["external"],
                "units": f["units"],
            }
            for key, f in stream["fields"].items()
        ]
        keys = ["field", "dtype", "shape", "dtype_numpy", "external", "units"]
        table = format_table(rows, keys)
        lines.extend("  " + line for line in table.splitlines())
    out.write("\n".join(lines) + "\n")


def print_documents(run, fill: str, out=None) -> None:
    """The canonical stream, one ``[name, doc]`` JSON array per line.

    Written as a suitcase-jsonl line (numpy as lists, non-finite floats as bare
    ``NaN``/``Infinity``): the output is itself a valid JSONL run file.
    """
    out = out or sys.stdout
    for name, doc in run.canonical(fill=fill):
        try:
            line = json.dumps([name, to_json(doc)])
        except (TypeError, ValueError) as err:
            what = doc.get("uid", doc.get("datum_id", "?"))
            raise ValueError(
                f"Run {run.uid!r}: the {name} document {what!r} holds a value JSON cannot "
                f"represent ({err})."
            ) from None
        out.write(line + "\n")
