"""What changed between two runs, section by section, intake-free.

:func:`diff_runs` compares what the run model exposes of two runs (which
may come from different backends): start and stop metadata, device
configuration, baseline readings, the streams' shapes, external files and
software versions. It gives a :class:`RunDiff`, which prints as an aligned
report, shows as a table in a notebook and converts to plain JSON.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> for docs in example_runs()[1:3]:
...     cat.ingest(docs)
>>> diff = cat[-2].diff(cat[-1])
>>> for change in diff.section("stop"):
...     print(change.key, repr(change.a), repr(change.b))
exit_status 'success' 'fail'
reason '' 'detector timeout'
num_events.primary 5 2
>>> bool(cat[-1].diff(cat[-1]))
False
"""

from __future__ import annotations

import datetime
import glob
import html
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .filling import resource_path, stream_resource_path
from .rows import data_kind
from .run import RunModel, StreamModel

__all__ = ["MISSING", "SECTIONS", "Change", "RunDiff", "diff_runs"]


class _Missing:
    """The side of a change where the key does not exist."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        # One instance, so that ``is MISSING`` holds after copy and pickle.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


#: The value of a change's side where the key is absent.
MISSING: Final = _Missing()

#: Section name -> its title, in report order.
SECTIONS: Final[dict[str, str]] = {
    "start": "start metadata",
    "stop": "stop metadata",
    "configuration": "configuration",
    "baseline": "baseline readings",
    "streams": "streams",
    "external": "external files",
    "versions": "software versions",
}

# Start keys that differ between any two runs: shown in the report's header,
# not listed as changes. ``versions`` has its own section.
_START_IDENTITY = ("uid", "time", "scan_id")
_START_SKIPPED = (*_START_IDENTITY, "versions")
_STOP_SKIPPED = ("uid", "time", "run_start")

#: Widest value shown in a text report cell (to_dict() has the full value).
_CELL = 60


@dataclass(frozen=True)
class Change:
    """One difference between run A and run B.

    Attributes
    ----------
    section : str
        One of :data:`SECTIONS` (``'start'``, ``'configuration'``, ...).
    key : str
        What differs, dotted: ``'sample.name'``, ``'primary.det.det_exposure'``
        (stream, device, field), ``'motor.first'``, ``'primary.img.shape'``.
    a, b : object
        The value in run A and in run B; :data:`MISSING` on the side that
        does not have the key.
    """

    section: str
    key: str
    a: Any = MISSING
    b: Any = MISSING

    @property
    def only_in(self) -> str | None:
        """``'a'`` or ``'b'`` when only that run has the key, else None."""
        if self.b is MISSING:
            return "a"
        if self.a is MISSING:
            return "b"
        return None


class RunDiff:
    """The differences between two runs, by section; falsy when there are none.

    Made by ``run_a.diff(run_b)``. Sections, in order: start metadata (keys
    only in one run, values that differ; uid, time and scan_id are in the
    header, not changes), stop metadata, configuration per stream, device and
    field (as the stream's first descriptor recorded it), baseline readings
    (first and last value of each field), streams (names, fields, shapes,
    dtypes, units, row counts), external files per field (files found,
    locations missing, bytes) and software versions (``versions`` in the
    start document). Floats (also inside arrays) are equal within ``rtol`` and
    ``atol``: ``|a - b| <= atol + rtol * max(|a|, |b|)``; NaN equals NaN.

    ``str(diff)`` is an aligned text report, ``diff._repr_html_()`` a table
    for notebooks, :meth:`to_dict` plain JSON values.

    Attributes
    ----------
    a, b : dict
        Each run's uid, scan_id, plan_name, time and its missing external
        files (paths after ``root_map``).
    changes : tuple of Change
        Every difference, in section order.
    rtol, atol : float
        The float tolerance used.
    MISSING
        The value of a change's side where the key is absent
        (``change.a is RunDiff.MISSING``: only run B has it).

    Examples
    --------
    >>> from intake_bluesky.core import BlueskyInMemoryCatalog
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> for docs in example_runs()[1:3]:
    ...     cat.ingest(docs)
    >>> diff = cat[-2].diff(cat[-1])
    >>> [c.key for c in diff.section("streams")]
    ['primary.rows']
    >>> diff.to_dict()["sections"]["streams"]
    [{'key': 'primary.rows', 'a': 5, 'b': 2}]
    """

    MISSING: Final = MISSING

    def __init__(
        self,
        a: Mapping[str, Any],
        b: Mapping[str, Any],
        changes: Sequence[Change],
        *,
        rtol: float = 0.0,
        atol: float = 0.0,
    ) -> None:
        unknown = {c.section for c in changes} - set(SECTIONS)
        if unknown:
            raise ValueError(f"Unknown sections {sorted(unknown)}; sections are {list(SECTIONS)}.")
        order = list(SECTIONS)
        self.a = dict(a)
        self.b = dict(b)
        # Stable sort: within a section, the order the comparison found them.
        self.changes = tuple(sorted(changes, key=lambda c: order.index(c.section)))
        self.rtol = rtol
        self.atol = atol

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def section(self, name: str) -> list[Change]:
        """The changes of one section (see :data:`SECTIONS`), in found order."""
        if name not in SECTIONS:
            raise KeyError(f"No section {name!r}; sections are {list(SECTIONS)}.")
        return [c for c in self.changes if c.section == name]

    def __repr__(self) -> str:
        counts = ", ".join(f"{name} {len(self.section(name))}" for name in SECTIONS)
        return (
            f"<RunDiff A={str(self.a.get('uid'))[:8]!r} B={str(self.b.get('uid'))[:8]!r}: "
            f"{len(self)} changes ({counts})>"
        )

    # --- plain values ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON values only (``json.dumps`` takes it as is).

        ``{'a': {...}, 'b': {...}, 'rtol', 'atol', 'equal', 'sections':
        {section: [{'key', 'a', 'b'}, ...]}}``; every section is present. A
        key only one run has gives that side's value and ``'only_in': 'a'``
        (or ``'b'``). numpy values become lists and numbers, non-finite floats
        the strings ``'NaN'``, ``'Infinity'``, ``'-Infinity'``.
        """
        sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
        for change in self.changes:
            row: dict[str, Any] = {"key": change.key}
            if change.a is not MISSING:
                row["a"] = json_safe(change.a)
            if change.b is not MISSING:
                row["b"] = json_safe(change.b)
            if change.only_in is not None:
                row["only_in"] = change.only_in
            sections[change.section].append(row)
        return {
            "a": json_safe(self.a),
            "b": json_safe(self.b),
            "rtol": self.rtol,
            "atol": self.atol,
            "equal": not self.changes,
            "sections": sections,
        }

    # --- text -------------------------------------------------------------
    def _header(self) -> list[tuple[str, str]]:
        rows = []
        for side, run in (("A", self.a), ("B", self.b)):
            missing = run.get("missing_files") or []
            note = f"  {len(missing)} external file(s) missing" if missing else ""
            rows.append(
                (
                    side,
                    f"{run.get('uid')}  scan_id {run.get('scan_id')}  "
                    f"{run.get('plan_name')}  {_when(run.get('time'))}{note}",
                )
            )
        return rows

    def __str__(self) -> str:
        lines = [f"run {side}  {text}" for side, text in self._header()]
        tolerance = f"rtol={self.rtol:g}, atol={self.atol:g}"
        if not self.changes:
            lines.append(f"no differences ({tolerance})")
            return "\n".join(lines)
        lines.append(f"{len(self.changes)} difference(s) ({tolerance})")
        for name, title in SECTIONS.items():
            changes = self.section(name)
            if not changes:
                continue
            cells = [(c.key, _cell(c.a), _cell(c.b)) for c in changes]
            widths = [max(len(row[i]) for row in [("", "A", "B"), *cells]) for i in range(3)]
            lines.append("")
            lines.append(title)
            for key, a, b in [("", "A", "B"), *cells]:
                line = f"  {key.ljust(widths[0])}  {a.ljust(widths[1])}  {b}"
                lines.append(line.rstrip())
        return "\n".join(lines)

    # --- notebook ---------------------------------------------------------
    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(
            f"<tr><th style='text-align:left'>{side}</th>"
            f"<td style='text-align:left' colspan='2'>{esc(text)}</td></tr>"
            for side, text in self._header()
        )
        body = []
        if not self.changes:
            body.append("<tr><td colspan='3'>no differences</td></tr>")
        for name, title in SECTIONS.items():
            changes = self.section(name)
            if not changes:
                continue
            body.append(
                f"<tr><th colspan='3' style='text-align:left'>{esc(title)}</th></tr>"
                "<tr><th style='text-align:left'>key</th><th style='text-align:left'>A</th>"
                "<th style='text-align:left'>B</th></tr>"
            )
            for c in changes:
                body.append(
                    f"<tr><td style='text-align:left'>{esc(c.key)}</td>"
                    f"<td style='text-align:left'>{esc(_cell(c.a, None))}</td>"
                    f"<td style='text-align:left'>{esc(_cell(c.b, None))}</td></tr>"
                )
        tolerance = esc(f"rtol={self.rtol:g}, atol={self.atol:g}")
        return (
            "<div class='intake-bluesky-rundiff'><table>"
            f"<caption style='text-align:left'>{len(self.changes)} difference(s) "
            f"({tolerance})</caption>"
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>"
        )


# --- comparing values ---------------------------------------------------------
def _plain(value: Any) -> Any:
    """Tuples as lists, numpy scalars as Python ones (a live start document
    holds tuples where a stored one holds lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Tolerance:
    def __init__(self, rtol: float, atol: float) -> None:
        for name, tol in (("rtol", rtol), ("atol", atol)):
            if not _is_number(tol) or not math.isfinite(tol) or tol < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {tol!r}.")
        self.rtol = float(rtol)
        self.atol = float(atol)

    def same(self, a: Any, b: Any) -> bool:
        a, b = _plain(a), _plain(b)
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return self._same_arrays(np.asarray(a), np.asarray(b))
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if _is_number(a) and _is_number(b):
            if a == b:  # exact, also beyond 2**53 and between an int and a float
                return True
            if isinstance(a, int) and isinstance(b, int):
                return False  # the tolerance is for floats
            return self._close(a, b)
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(self.same(a[k], b[k]) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(self.same(x, y) for x, y in zip(a, b))
        if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
            return False
        try:
            return bool(a == b)
        except Exception:  # an object whose == raises or is ambiguous
            return False

    def _close(self, a: float, b: float) -> bool:
        """Two numbers, not exactly equal, within the tolerance (NaN equals NaN)."""
        x, y = float(a), float(b)
        if math.isnan(x) and math.isnan(y):
            return True
        if not (math.isfinite(x) and math.isfinite(y)) or not (self.atol or self.rtol):
            return False
        return abs(x - y) <= self.atol + self.rtol * max(abs(x), abs(y))

    def _same_arrays(self, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "biu" and b.dtype.kind in "biu":
            return bool(np.array_equal(a, b))
        if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
            x, y = a.astype(float), b.astype(float)
            with np.errstate(invalid="ignore"):
                close = np.abs(x - y) <= self.atol + self.rtol * np.maximum(np.abs(x), np.abs(y))
            return bool(np.all(close | (x == y) | (np.isnan(x) & np.isnan(y))))
        if a.dtype.kind == "O" or b.dtype.kind == "O":
            return self.same(a.tolist(), b.tolist())
        return bool(np.array_equal(a, b))


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``sample.name``), so that only the leaves
    that differ are reported. An empty dict is a leaf."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _compare(
    section: str, a: Mapping[str, Any], b: Mapping[str, Any], tol: _Tolerance
) -> list[Change]:
    """Changes between two flat mappings: A's keys in A's order, then B's own."""
    changes = []
    for key, value in a.items():
        if key not in b:
            changes.append(Change(section, key, value, MISSING))
        elif not tol.same(value, b[key]):
            changes.append(Change(section, key, value, b[key]))
    changes.extend(
        Change(section, key, MISSING, value) for key, value in b.items() if key not in a
    )
    return changes


# --- what each section compares -------------------------------------------------
def _start(run: RunModel) -> dict[str, Any]:
    start = run.start()
    return _flatten({k: v for k, v in start.items() if k not in _START_SKIPPED})


def _stop_changes(a: RunModel, b: RunModel, tol: _Tolerance) -> list[Change]:
    stop_a, stop_b = a.stop(), b.stop()
    if stop_a is None or stop_b is None:
        if stop_a is None and stop_b is None:
            return []
        # One run is still in progress: its stop document as a whole is absent.
        shown = ["in progress" if s is None else s.get("exit_status") for s in (stop_a, stop_b)]
        return [Change("stop", "exit_status", shown[0], shown[1])]
    flat = [
        _flatten({k: v for k, v in s.items() if k not in _STOP_SKIPPED}) for s in (stop_a, stop_b)
    ]
    return _compare("stop", flat[0], flat[1], tol)


def _configuration(run: RunModel) -> dict[str, Any]:
    """``stream.device.field -> value`` from each stream's first descriptor."""
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for desc in run.descriptors():
        stream = desc.get("name", "primary")
        if stream in seen:
            continue
        seen.add(stream)
        for device, conf in sorted((desc.get("configuration") or {}).items()):
            for field, value in sorted(((conf or {}).get("data") or {}).items()):
                out[f"{stream}.{device}.{field}"] = value
    return out


def _baseline(run: RunModel) -> dict[str, Any]:
    """``field.first`` and ``field.last`` of the baseline stream's readings."""
    if "baseline" not in run.stream_names():
        return {}
    ds = StreamModel(run, "baseline").dataset()
    out: dict[str, Any] = {}
    for field in ds.data_vars:
        values = ds[field].values
        if len(values) == 0:
            continue
        # Scalars as Python values: reports and reprs show 290, not np.int64(290).
        out[f"{field}.first"] = _plain(values[0])
        out[f"{field}.last"] = _plain(values[-1])
    return out


_FIELD_ATTRS = ("shape", "dtype", "dtype_numpy", "units")


def _streams(run: RunModel) -> dict[str, dict[str, Any]]:
    """Per stream: its row count and each field's shape, dtype, dtype_numpy, units."""
    source = run.source
    out: dict[str, dict[str, Any]] = {}
    for desc in run.descriptors():
        name = desc.get("name", "primary")
        stream = out.setdefault(name, {"rows": 0, "fields": {}, "descriptors": []})
        stream["descriptors"].append(desc["uid"])
        stream["rows"] += source.event_count(desc["uid"])
        for field, info in (desc.get("data_keys") or {}).items():
            # Attributes a descriptor leaves out are not shown as null.
            described = {k: info[k] for k in _FIELD_ATTRS if info.get(k) is not None}
            stream["fields"].setdefault(field, described)
    for stream in out.values():
        if stream["rows"] == 0:
            # A fly scan's rows are in its stream_datums, not in events.
            stream["rows"] = _stream_datum_rows(run, stream.pop("descriptors"))
        else:
            del stream["descriptors"]
    return out


def _stream_datum_rows(run: RunModel, descriptor_uids: Sequence[str]) -> int:
    rows = 0
    for uid in descriptor_uids:
        spans = [sd.get("seq_nums") or {} for sd in run.source.stream_datums(uid)]
        starts = [s["start"] for s in spans if isinstance(s.get("start"), int)]
        stops = [s["stop"] for s in spans if isinstance(s.get("stop"), int)]
        if starts and stops:
            rows += max(stops) - min(starts)
    return rows


def _stream_changes(
    a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], tol: _Tolerance
) -> list[Change]:
    changes = []

    def summary(stream: dict[str, Any]) -> dict[str, Any]:
        return {"rows": stream["rows"], "fields": list(stream["fields"])}

    for name in [*a, *(n for n in b if n not in a)]:
        if name not in b:
            changes.append(Change("streams", name, summary(a[name]), MISSING))
            continue
        if name not in a:
            changes.append(Change("streams", name, MISSING, summary(b[name])))
            continue
        if a[name]["rows"] != b[name]["rows"]:
            changes.append(Change("streams", f"{name}.rows", a[name]["rows"], b[name]["rows"]))
        fields_a, fields_b = a[name]["fields"], b[name]["fields"]
        for field in [*fields_a, *(f for f in fields_b if f not in fields_a)]:
            key = f"{name}.{field}"
            if field not in fields_b:
                changes.append(Change("streams", key, fields_a[field], MISSING))
            elif field not in fields_a:
                changes.append(Change("streams", key, MISSING, fields_b[field]))
            else:
                for attr in _FIELD_ATTRS:
                    va, vb = fields_a[field].get(attr), fields_b[field].get(attr)
                    if not tol.same(va, vb):
                        changes.append(Change("streams", f"{key}.{attr}", va, vb))
    return changes


def _files_at(path: str, prefix_name: Any = None) -> list[str]:
    """The files an external location means: a file, the files under a
    directory (or, when the resource names a file name inside that
    directory, those beginning with it), or the files whose name begins with
    the location (a handler's ``<path>_<index>.npy``)."""
    path = path.rstrip("/") or "/"
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        if isinstance(prefix_name, str) and prefix_name:
            pattern = os.path.join(glob.escape(path), glob.escape(prefix_name) + "*")
            return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        found: list[str] = []
        for dirpath, _, names in os.walk(path):
            found.extend(os.path.join(dirpath, n) for n in names)
        return sorted(found)
    return sorted(p for p in glob.glob(glob.escape(path) + "*") if os.path.isfile(p))


def _external(run: RunModel) -> dict[str, dict[str, Any]]:
    """Per field with external data: files found, locations missing, bytes.

    A resource's field is the field whose events hold its datum ids; a
    stream_resource names its own. A resource no event refers to is listed
    under ``(spec)``.
    """
    source, settings = run.source, run.settings
    locations: list[tuple[str, str, Any]] = []  # (field, path, file name prefix)
    resources = [settings.transform("resource", r) for r in source.resources()]
    if resources:
        resource_of: dict[str, str] = {}
        for page in source.datum_pages():
            for datum_id in page["datum_id"]:
                resource_of[datum_id] = page["resource"]
        field_of: dict[str, str] = {}
        for desc in run.descriptors():
            for field, info in (desc.get("data_keys") or {}).items():
                if data_kind(info) != "datum":
                    continue
                for events in source.event_pages(desc["uid"], fields=[field]):
                    for value in events["data"].get(field, ()):
                        uid = resource_of.get(value) if isinstance(value, str) else None
                        if uid is not None:
                            field_of.setdefault(uid, field)
        for res in resources:
            field = field_of.get(res["uid"], f"({res.get('spec')})")
            kwargs = res.get("resource_kwargs") or {}
            try:
                path = resource_path(res, settings.root_map)
            except (KeyError, TypeError) as err:
                path = f"<resource {res.get('uid')!r} names no location: {err!r}>"
            locations.append((field, path, kwargs.get("filename")))
    transform = settings.transforms.get("stream_resource")
    for sres in source.stream_resources():
        doc = transform(sres) if transform is not None else sres
        try:
            path = stream_resource_path(doc, settings.root_map)
        except (KeyError, TypeError) as err:
            path = f"<stream_resource {doc.get('uid')!r} names no location: {err!r}>"
        locations.append((str(doc.get("data_key")), path, None))
    out: dict[str, dict[str, Any]] = {}
    for field, path, prefix in locations:
        entry = out.setdefault(field, {"files": 0, "missing": 0, "bytes": 0, "missing_paths": []})
        files = _files_at(path, prefix)
        if not files:
            entry["missing"] += 1
            entry["missing_paths"].append(path)
        for name in files:
            entry["files"] += 1
            entry["bytes"] += os.path.getsize(name)
    return out


def _external_changes(
    a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], tol: _Tolerance
) -> list[Change]:
    def counts(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: entry[k] for k in ("files", "missing", "bytes")}

    return _compare(
        "external",
        {f"{field}.{k}": v for field, entry in a.items() for k, v in counts(entry).items()},
        {f"{field}.{k}": v for field, entry in b.items() for k, v in counts(entry).items()},
        tol,
    )


def _identity(run: RunModel, external: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    start = run.start()
    return {
        "uid": start.get("uid", run.uid),
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "time": start.get("time"),
        "missing_files": [p for entry in external.values() for p in entry["missing_paths"]],
    }


def diff_runs(a: RunModel, b: RunModel, *, rtol: float = 0.0, atol: float = 0.0) -> RunDiff:
    """The differences between run ``a`` and run ``b``.

    Parameters
    ----------
    a, b : RunModel
        The runs (of any backends).
    rtol, atol : float
        Float values (also inside arrays) are equal when
        ``|a - b| <= atol + rtol * max(|a|, |b|)``; exact by default.

    Returns
    -------
    RunDiff
    """
    tol = _Tolerance(rtol, atol)
    changes = _compare("start", _start(a), _start(b), tol)
    changes += _stop_changes(a, b, tol)
    changes += _compare("configuration", _configuration(a), _configuration(b), tol)
    changes += _compare("baseline", _baseline(a), _baseline(b), tol)
    changes += _stream_changes(_streams(a), _streams(b), tol)
    external = _external(a), _external(b)
    changes += _external_changes(*external, tol)
    versions = [_flatten(run.start().get("versions") or {}) for run in (a, b)]
    changes += _compare("versions", versions[0], versions[1], tol)
    return RunDiff(
        _identity(a, external[0]), _identity(b, external[1]), changes, rtol=rtol, atol=atol
    )


# --- showing values ---------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` as JSON values: numpy as lists and numbers, tuples as lists,
    non-finite floats as ``'NaN'``/``'Infinity'``/``'-Infinity'``, bytes
    decoded, anything else by its ``str``."""
    if isinstance(value, _Missing):
        return None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _cell(value: Any, width: int | None = _CELL) -> str:
    """A value as a report shows it: strings quoted (``'1'`` is not ``1``),
    the rest compact JSON-like, cut at ``width`` characters."""
    if value is MISSING:
        return "(absent)"
    value = _plain(value)
    if isinstance(value, np.ndarray) and value.size > 20:
        text = f"array(shape={list(value.shape)}, dtype={value.dtype})"
    elif isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(json_safe(value), ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _when(t: Any) -> str:
    if not _is_number(t) or not math.isfinite(t):
        return "time ?"
    return (
        datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
        .astimezone()
        .isoformat(sep=" ", timespec="seconds")
    )
