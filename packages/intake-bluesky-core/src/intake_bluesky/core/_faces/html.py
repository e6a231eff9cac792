"""Rich HTML for notebooks: a catalog as a table of its newest runs, a run as
its metadata essentials and streams, a stream as an xarray-like summary.

Built from start/stop documents and descriptors only: displaying never reads
event data or external files. Every string that comes from documents is
escaped. A display never raises: on error it shows the text repr and why.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> for docs in example_runs():
...     cat.ingest(docs)
>>> "<table" in cat._repr_html_() and "primary" in cat[-1]._repr_html_()
True
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from html import escape
from typing import Any

from .table import make_row, run_rows

__all__ = ["CATALOG_ROWS", "catalog_html", "run_html", "stream_html"]

#: How many of the newest runs a catalog shows.
CATALOG_ROWS = 10

#: Start keys shown up front on a run (when present), after uid/scan/plan/time.
ESSENTIAL_START_KEYS = (
    "sample",
    "operator",
    "user",
    "proposal_id",
    "purpose",
    "detectors",
    "motors",
    "num_points",
)

_STYLE = """<style>
.ib-repr {font-family: var(--jp-content-font-family, sans-serif); font-size: 13px;}
.ib-repr .ib-head {font-weight: bold; margin: 2px 0 4px 0;}
.ib-repr .ib-note {opacity: 0.7; font-weight: normal;}
.ib-repr table {border-collapse: collapse; margin: 2px 0 6px 0;}
.ib-repr th, .ib-repr td {padding: 2px 8px !important; text-align: left !important;
  vertical-align: top !important; border-bottom: 1px solid rgba(128, 128, 128, 0.25);}
.ib-repr th {font-weight: 600;}
.ib-repr td.ib-num {text-align: right !important; font-variant-numeric: tabular-nums;}
.ib-repr table.ib-runs td {white-space: nowrap !important;}
.ib-repr code, .ib-repr .ib-mono {font-family: var(--jp-code-font-family, monospace);}
.ib-repr .ib-fail {color: #c0392b; font-weight: 600;}
.ib-repr .ib-running {color: #b9770e; font-weight: 600;}
.ib-repr details > summary {cursor: pointer; margin: 2px 0;}
</style>"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _short(value: Any, limit: int = 120) -> str:
    """A compact one-line rendering of a document value, escaped."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if isinstance(value, str):
        text = value
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _e(text)


def _when(value: datetime.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "?"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _status(row: dict) -> str:
    status = row["exit_status"]
    if status is None:
        return '<span class="ib-running">running</span>'
    if status != "success":
        return f'<span class="ib-fail">{_e(status)}</span>'
    return _e(status)


def _events(num_events: Mapping) -> str:
    return ", ".join(f"{_e(k)}&nbsp;{_e(v)}" for k, v in num_events.items())


def _table(header: list[str] | None, rows: list[list[str]], numeric=(), css: str = "") -> str:
    if header is None:  # a key/value table
        head = ""
    else:
        head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>"
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="ib-num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}>{head}<tbody>{body}</tbody></table>"


def _wrap(inner: str) -> str:
    return f'{_STYLE}<div class="ib-repr">{inner}</div>'


def _fallback(obj, err: Exception) -> str:
    try:
        text = repr(obj)
    except Exception:  # repr is guarded, but be sure
        text = f"<{type(obj).__name__}>"
    return _wrap(
        f"<pre>{_e(text)}</pre>"
        f'<div class="ib-note">(details unavailable: {_e(type(err).__name__)}: {_e(err)})</div>'
    )


# --- catalog ----------------------------------------------------------------


def catalog_html(cat, rows: int = CATALOG_ROWS) -> str:
    """The catalog's newest ``rows`` runs as a table, with the total count."""
    try:
        total = len(cat)
        table = run_rows(cat, limit=rows)
    except Exception as err:
        return _fallback(cat, err)
    query = cat.query
    head = f"{_e(type(cat).__name__)} <span class='ib-note'>{total} run{'s' if total != 1 else ''}"
    if query:
        head += f", query {_short(query, 200)}"
    if total > len(table):
        head += f"; the newest {len(table)} shown, newest last"
    head += "</span>"
    body = [
        [
            _e(row["scan_id"]) if row["scan_id"] is not None else "",
            _e(row["plan_name"] or ""),
            _when(row["time"]),
            _duration(row["duration"]),
            _status(row),
            _events(row["num_events"]),
            f'<span class="ib-mono" title="{_e(row["uid"])}">{_e(str(row["uid"])[:8])}</span>',
        ]
        for row in table
    ]
    header = ["scan_id", "plan_name", "time", "duration", "exit_status", "events", "uid"]
    more = ""
    if total > len(table):
        more = (
            '<div class="ib-note">All of them as a table: <code>cat.to_dataframe()</code>; '
            "a run: <code>cat[-1]</code>, <code>cat[uid]</code>, <code>cat[scan_id]</code>."
            "</div>"
        )
    return _wrap(
        f'<div class="ib-head">{head}</div>' + _table(header, body, (0,), css="ib-runs") + more
    )


# --- run --------------------------------------------------------------------


def _field_summary(data_key: Mapping) -> tuple[str, str]:
    """(shape, dtype) of a field as declared by its descriptor."""
    shape = data_key.get("shape") or []
    dims = data_key.get("dims")
    if dims and len(dims) == len(shape):
        shape_text = ", ".join(f"{_e(d)}: {_e(s)}" for d, s in zip(dims, shape, strict=True))
    else:
        shape_text = " × ".join(_e(s) for s in shape)
    dtype = data_key.get("dtype_numpy") or data_key.get("dtype") or "?"
    return shape_text or "scalar", _e(_numpy_name(dtype))


def _numpy_name(dtype: str) -> str:
    try:
        import numpy as np

        return str(np.dtype(dtype))
    except (TypeError, ValueError):
        return str(dtype)


def _stream_fields(descriptors: list[dict]) -> dict[str, dict]:
    fields: dict[str, dict] = {}
    for d in descriptors:
        for key, data_key in (d.get("data_keys") or {}).items():
            fields.setdefault(key, data_key)
    return fields


def _stream_table(descriptors: list[dict]) -> str:
    rows = []
    for key, data_key in _stream_fields(descriptors).items():
        shape, dtype = _field_summary(data_key)
        external = data_key.get("external")
        rows.append(
            [
                f"<b>{_e(key)}</b>",
                shape,
                f'<span class="ib-mono">{dtype}</span>',
                _e(data_key.get("units") or ""),
                _e(data_key.get("source") or ""),
                _e("stream" if str(external).upper().startswith("STREAM") else "file")
                if external
                else "",
            ]
        )
    return _table(["field", "shape per event", "dtype", "units", "source", "external"], rows)


def _access(stream_name: str) -> str:
    """How to reach a stream from a run, escaped: ``run.primary`` or ``run['a b']``."""
    if stream_name.isidentifier():
        return f"run.{_e(stream_name)}"
    return f"run[{_e(repr(stream_name))}]"


def run_html(run) -> str:
    """Start essentials, status, and each stream's fields (no event data read)."""
    try:
        model = run._run
        start = model.start()
        stop = model.stop()
        descriptors = model.descriptors()
    except Exception as err:
        return _fallback(run, err)
    row = make_row(start, stop)
    essentials = [
        ["uid", f'<span class="ib-mono">{_e(row["uid"])}</span>'],
        ["scan_id", _e(row["scan_id"])],
        ["plan_name", _e(row["plan_name"])],
        ["time", _when(row["time"])],
        ["duration", _duration(row["duration"]) or "(in progress)"],
        ["exit_status", _status(row)],
    ]
    if stop is not None and stop.get("reason"):
        essentials.append(["reason", _short(stop["reason"], 300)])
    for key in ESSENTIAL_START_KEYS:
        if key in start:
            essentials.append([_e(key), _short(start[key])])
    parts = [
        f'<div class="ib-head">BlueskyRun <span class="ib-note">{_e(str(row["uid"])[:8])}'
        "</span></div>",
        _table(None, essentials),
    ]
    by_stream: dict[str, list[dict]] = {}
    for d in descriptors:
        by_stream.setdefault(d.get("name", "primary"), []).append(d)
    for name in sorted(by_stream):
        count = row["num_events"].get(name)
        note = f"{count} event{'s' if count != 1 else ''}" if count is not None else ""
        parts.append(
            f"<details open><summary><b>{_e(name)}</b> <span class='ib-note'>{_e(note)} "
            f"&mdash; <code>{_access(name)}.read()</code></span></summary>"
            + _stream_table(by_stream[name])
            + "</details>"
        )
    if not by_stream:
        parts.append('<div class="ib-note">No streams (yet).</div>')
    for title, doc in (("start", start), ("stop", stop)):
        if doc is None:
            continue
        rows = [[_e(k), _short(v, 300)] for k, v in doc.items()]
        parts.append(
            f"<details><summary>{title} document <span class='ib-note'>({len(doc)} keys)"
            f"</span></summary>{_table(['key', 'value'], rows)}</details>"
        )
    return _wrap("".join(parts))


# --- stream -----------------------------------------------------------------


def _declared_rows(stream) -> int | None:
    model = stream._model
    if stream._part == "config":
        return len(model.descriptors())
    stop = model.run.stop()
    counts = (stop or {}).get("num_events") or {}
    count = counts.get(model.name)
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def stream_html(stream) -> str:
    """Dimensions, coordinates, data variables and attributes, as xarray shows
    them, from the descriptors (no data read)."""
    try:
        model = stream._model
        descriptors = model.descriptors()
        rows = _declared_rows(stream)
        if stream._part == "config":
            fields: dict[str, Any] = {}
            for d in descriptors:
                conf = (d.get("configuration") or {}).get(stream._object_name) or {}
                for key, data_key in (conf.get("data_keys") or {}).items():
                    fields.setdefault(key, data_key)
        else:
            wanted = set(model.fields())
            fields = {k: v for k, v in _stream_fields(descriptors).items() if k in wanted}
    except Exception as err:
        return _fallback(stream, err)
    n = "?" if rows is None else str(rows)
    dims: dict[str, str] = {"time": n}
    variables = []
    for key, data_key in fields.items():
        if stream._part == "timestamps":
            var_dims, shape_dtype = ["time"], "float64"
        else:
            shape = [s for s in (data_key.get("shape") or []) if s is not None]
            names = data_key.get("dims")
            if not names or len(names) != len(shape):
                names = [f"{key}_dim_{i}" for i in range(len(shape))]
            for dim, size in zip(names, shape, strict=True):
                dims.setdefault(dim, str(size))
            var_dims = ["time", *names]
            shape_dtype = _field_summary(data_key)[1]
        variables.append(
            [
                f"<b>{_e(key)}</b>",
                f"({', '.join(_e(d) for d in var_dims)})",
                f'<span class="ib-mono">{shape_dtype}</span>',
                _e(data_key.get("units") or "") if stream._part != "timestamps" else "",
                _e(data_key.get("source") or ""),
            ]
        )
    what = {"data": "", "timestamps": " timestamps"}.get(
        stream._part, f" configuration of {_e(stream._object_name)}"
    )
    head = (
        f"BlueskyEventStream <span class='ib-note'>{_e(model.name)}{what} of run "
        f"{_e(model.run.uid[:8])}{'' if rows is not None else ' (in progress: rows unknown)'}"
        "</span>"
    )
    dim_text = ", ".join(f"<b>{_e(d)}</b>: {_e(s)}" for d, s in dims.items())
    coords = [
        ["<b>time</b>", "(time)", '<span class="ib-mono">float64</span>', "s", "epoch seconds"],
    ]
    if stream._part != "config":
        coords.append(["<b>seq_num</b>", "(time)", '<span class="ib-mono">int64</span>', "", ""])
    header = ["name", "dims", "dtype", "units", "source"]
    attrs = {"stream_name": model.name, "run_uid": model.run.uid}
    if stream._part == "config":
        attrs["object_name"] = stream._object_name
    attr_rows = [[_e(k), f'<span class="ib-mono">{_e(v)}</span>'] for k, v in attrs.items()]
    return _wrap(
        f'<div class="ib-head">{head}</div>'
        f"<div>Dimensions: ({dim_text})</div>"
        "<details open><summary>Coordinates</summary>" + _table(header, coords) + "</details>"
        f"<details open><summary>Data variables <span class='ib-note'>({len(variables)})"
        "</span></summary>" + _table(header, variables) + "</details>"
        "<details><summary>Attributes</summary>" + _table(None, attr_rows) + "</details>"
        "<div class='ib-note'>Not read yet: <code>.read()</code> loads it, "
        "<code>.to_dask()</code> loads it lazily.</div>"
    )
