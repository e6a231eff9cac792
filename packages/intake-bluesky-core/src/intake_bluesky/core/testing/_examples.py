"""Example runs composed with event-model, and the handlers they need."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from typing import Any, Literal

import event_model
import numpy as np

__all__ = [
    "EXTERNAL_ROOT",
    "NPY_STACK_MIMETYPE",
    "NumpySeqHandler",
    "NpyStackReader",
    "example_runs",
    "mixed_forms_run",
    "example_registry",
]

#: The root written into the examples' resources: it does not exist, so
#: reading them needs ``root_map={EXTERNAL_ROOT: <the directory>}``.
EXTERNAL_ROOT = "/intake-bluesky-examples/external"
NPY_STACK_MIMETYPE = "application/x-npy"
T0 = 1_700_000_000.0

#: Uids fixed so that tests can rely on them; two share the prefix ``a1b2``.
UIDS = {
    "scan": "a1b2c3d4-0000-4000-8000-000000000001",
    "count": "a1b2ffee-0000-4000-8000-000000000002",
    "failed": "c0ffee00-0000-4000-8000-000000000003",
    "live": "d00d0000-0000-4000-8000-000000000004",
    "stream": "e1e10000-0000-4000-8000-000000000005",
}


class NumpySeqHandler:
    """Handler for spec ``NPY_SEQ``: frame ``index`` is ``{path}_{index}.npy``.

    Counts instances and calls (class attributes) so tests can check that
    nothing is read before a dask compute.
    """

    specs = {"NPY_SEQ"}
    instances = 0
    calls = 0
    _lock = threading.Lock()

    def __init__(self, filename, root=""):
        self._base = os.path.join(root, filename)
        with NumpySeqHandler._lock:
            NumpySeqHandler.instances += 1

    def __call__(self, index):
        with NumpySeqHandler._lock:
            NumpySeqHandler.calls += 1
        return np.load(f"{self._base}_{index}.npy")


class NpyStackReader:
    """Stream reader for ``application/x-npy``: rows of one ``.npy`` stack."""

    def __init__(self, path, **parameters):
        self._array = np.load(path, mmap_mode="r")

    def __call__(self, start, stop):
        return np.array(self._array[start:stop])


def example_registry(directory) -> dict:
    """The catalog keyword arguments that make the examples' external data readable."""
    return {
        "handler_registry": {"NPY_SEQ": NumpySeqHandler, NPY_STACK_MIMETYPE: NpyStackReader},
        "root_map": {EXTERNAL_ROOT: os.fspath(directory)},
    }


def _uid_factory(seed: str):
    counter = iter(range(10**9))
    return lambda: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{next(counter)}"))


def _stop(run, uid: str, time: float, num_events: dict) -> dict:
    # As the RunEngine counts them: rows collected from stream_datums too,
    # which event-model's composer (counting composed events) does not see.
    return {**run.compose_stop(uid=uid, time=time), "num_events": num_events}


def _scan(directory: str) -> list:
    """Two streams, single events and pages, datums and datum pages, inline
    arrays with dims, external arrays, configuration."""
    uid = _uid_factory("scan")
    docs: list[tuple[str, Any]] = []
    run = event_model.compose_run(
        uid=UIDS["scan"],
        time=T0,
        metadata={
            "scan_id": 1,
            "plan_name": "scan",
            "sample": {"name": "Cu", "mass": 2.5},
            "operator": "alice",
            "motors": ["motor"],
            "num_points": 6,
        },
    )
    docs.append(("start", run.start_doc))
    base = run.compose_descriptor(
        name="baseline",
        uid=uid(),
        time=T0 + 0.1,
        data_keys={
            "motor_x": {
                "source": "SIM:x",
                "dtype": "number",
                "shape": [],
                "dtype_numpy": "<f8",
                "units": "mm",
                "object_name": "motor_x",
            },
            "temp": {"source": "SIM:t", "dtype": "integer", "shape": [], "object_name": "temp"},
        },
        configuration={
            "motor_x": {
                "data": {"motor_x_velocity": 2.0, "motor_x_mode": "fast"},
                "timestamps": {"motor_x_velocity": T0, "motor_x_mode": T0},
                "data_keys": {
                    "motor_x_velocity": {
                        "source": "SIM:v",
                        "dtype": "number",
                        "shape": [],
                        "units": "mm/s",
                    },
                    "motor_x_mode": {"source": "SIM:m", "dtype": "string", "shape": []},
                },
            }
        },
        object_keys={"motor_x": ["motor_x"], "temp": ["temp"]},
    )
    docs.append(("descriptor", base.descriptor_doc))
    docs.append(
        (
            "event",
            base.compose_event(
                data={"motor_x": 0.5, "temp": 290},
                timestamps={"motor_x": T0 + 0.15, "temp": T0 + 0.15},
                seq_num=1,
                uid=uid(),
                time=T0 + 0.2,
            ),
        )
    )
    primary = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=T0 + 0.3,
        data_keys={
            "det": {
                "source": "SIM:det",
                "dtype": "number",
                "shape": [],
                "dtype_numpy": "<f8",
                "units": "counts",
                "object_name": "det",
            },
            "motor": {
                "source": "SIM:motor",
                "dtype": "number",
                "shape": [],
                "dtype_numpy": "<f8",
                "object_name": "motor",
            },
            "img": {
                "source": "SIM:img",
                "dtype": "array",
                "shape": [4, 5],
                "dims": ["y", "x"],
                "dtype_numpy": "<u2",
                "object_name": "cam",
            },
            "ext": {
                "source": "SIM:ext",
                "dtype": "array",
                "shape": [3, 2],
                "dtype_numpy": "<f8",
                "external": "FILESTORE:",
                "object_name": "ext",
            },
        },
        configuration={
            "det": {
                "data": {"det_exposure": 0.1},
                "timestamps": {"det_exposure": T0},
                "data_keys": {
                    "det_exposure": {
                        "source": "SIM:e",
                        "dtype": "number",
                        "shape": [],
                        "units": "s",
                    }
                },
            }
        },
        object_keys={"det": ["det"], "motor": ["motor"], "cam": ["img"], "ext": ["ext"]},
    )
    docs.append(("descriptor", primary.descriptor_doc))
    resource = run.compose_resource(
        spec="NPY_SEQ",
        root=EXTERNAL_ROOT,
        resource_path="scan_ext",
        resource_kwargs={},
        path_semantics="posix",
        uid=uid(),
    )
    docs.append(("resource", resource.resource_doc))

    def values(seq):
        img = (np.arange(20, dtype="<u2").reshape(4, 5) + seq).astype("<u2")
        ext = np.full((3, 2), seq * 10.0) + np.arange(6).reshape(3, 2)
        np.save(os.path.join(directory, f"scan_ext_{seq - 1}.npy"), ext)
        return {"det": seq * 1.5, "motor": seq - 3.5, "img": img.tolist()}

    # Events 1-2: single events with single datums.
    for seq in (1, 2):
        datum = resource.compose_datum(datum_kwargs={"index": seq - 1})
        docs.append(("datum", datum))
        data = {**values(seq), "ext": datum["datum_id"]}
        docs.append(
            (
                "event",
                primary.compose_event(
                    data=data,
                    timestamps={k: T0 + seq - 0.01 for k in data},
                    seq_num=seq,
                    filled={"ext": False},
                    uid=uid(),
                    time=T0 + seq,
                ),
            )
        )
    # Events 3-6: one page, with one datum page.
    seqs = [3, 4, 5, 6]
    dpage = resource.compose_datum_page(datum_kwargs={"index": [s - 1 for s in seqs]})
    docs.append(("datum_page", dpage))
    rows = [values(s) for s in seqs]
    data = {k: [r[k] for r in rows] for k in rows[0]}
    data["ext"] = list(dpage["datum_id"])
    docs.append(
        (
            "event_page",
            primary.compose_event_page(
                data=data,
                timestamps={k: [T0 + s - 0.01 for s in seqs] for k in data},
                seq_num=seqs,
                filled={"ext": [False] * 4},
                uid=[uid() for _ in seqs],
                time=[T0 + s for s in seqs],
            ),
        )
    )
    docs.append(
        (
            "event",
            base.compose_event(
                data={"motor_x": 0.75, "temp": 291},
                timestamps={"motor_x": T0 + 7, "temp": T0 + 7},
                seq_num=2,
                uid=uid(),
                time=T0 + 7.0,
            ),
        )
    )
    docs.append(("stop", run.compose_stop(uid=uid(), time=T0 + 8.0)))
    return docs


def _simple(
    key: str,
    scan_id: int,
    t: float,
    n: int,
    exit_status: Literal["success", "abort", "fail"] | None,
    sample: str,
) -> list[tuple[str, Any]]:
    """A count of one scalar (no dtype_numpy) and one string field, as one page."""
    uid = _uid_factory(key)
    run = event_model.compose_run(
        uid=UIDS[key],
        time=t,
        metadata={
            "scan_id": scan_id,
            "plan_name": "count",
            "sample": {"name": sample},
            "operator": "bob" if key != "live" else "carol",
        },
    )
    if key == "live":
        # Metadata beyond the schema's keys, as every plan adds.
        run.start_doc["plan_name"] = "scan"  # type: ignore[typeddict-unknown-key]
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "det": {"source": "SIM:det", "dtype": "number", "shape": [], "object_name": "det"},
            "label": {"source": "SIM:label", "dtype": "string", "shape": [], "object_name": "det"},
        },
        object_keys={"det": ["det", "label"]},
    )
    docs.append(("descriptor", desc.descriptor_doc))
    seqs = list(range(1, n + 1))
    docs.append(
        (
            "event_page",
            desc.compose_event_page(
                data={
                    "det": [float(scan_id * 100 + s) for s in seqs],
                    "label": [f"p{s}" for s in seqs],
                },
                timestamps={"det": [t + s for s in seqs], "label": [t + s for s in seqs]},
                seq_num=seqs,
                uid=[uid() for _ in seqs],
                time=[t + s for s in seqs],
            ),
        )
    )
    if exit_status is not None:
        reason = "detector timeout" if exit_status == "fail" else ""
        docs.append(
            (
                "stop",
                run.compose_stop(
                    exit_status=exit_status, reason=reason, uid=uid(), time=t + n + 1
                ),
            )
        )
    return docs


def _stream(directory: str) -> list:
    """Data through stream_resource / stream_datum, read by a mimetype reader."""
    uid = _uid_factory("stream")
    t = T0 + 400
    run = event_model.compose_run(
        uid=UIDS["stream"],
        time=t,
        metadata={"scan_id": 4, "plan_name": "fly", "sample": {"name": "Au"}, "operator": "alice"},
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "x": {"source": "SIM:x", "dtype": "number", "shape": [], "dtype_numpy": "<f8"},
            "frames": {
                "source": "SIM:frames",
                "dtype": "array",
                "shape": [2, 3],
                "dtype_numpy": "<i4",
                "external": "STREAM:",
            },
        },
        object_keys={"cam": ["x", "frames"]},
    )
    docs.append(("descriptor", desc.descriptor_doc))
    frames = np.arange(4 * 6, dtype="<i4").reshape(4, 2, 3)
    np.save(os.path.join(directory, "stream_frames.npy"), frames)
    # compose_run always sets compose_stream_resource; its type allows None.
    sres = run.compose_stream_resource(  # type: ignore[misc]
        mimetype=NPY_STACK_MIMETYPE,
        uri=f"file://localhost{EXTERNAL_ROOT}/stream_frames.npy",
        data_key="frames",
        parameters={"chunk_shape": [1, 2, 3]},
        uid=uid(),
    )
    docs.append(("stream_resource", sres.stream_resource_doc))
    for lo, hi in ((0, 2), (2, 4)):
        docs.append(
            (
                "stream_datum",
                sres.compose_stream_datum(
                    indices={"start": lo, "stop": hi},
                    seq_nums={"start": lo + 1, "stop": hi + 1},
                    descriptor=desc.descriptor_doc,
                ),
            )
        )
    seqs = [1, 2, 3, 4]
    docs.append(
        (
            "event_page",
            desc.compose_event_page(
                data={"x": [0.1 * s for s in seqs]},
                timestamps={"x": [t + s for s in seqs]},
                seq_num=seqs,
                uid=[uid() for _ in seqs],
                time=[t + s for s in seqs],
            ),
        )
    )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    return docs


_DEFAULT_DIR: list[str] = []


def example_runs(directory=None) -> list[list[tuple[str, Any]]]:
    """The example runs, oldest first, as lists of ``(name, doc)``.

    1. ``scan`` (scan_id 1): streams ``primary`` and ``baseline``; scalar,
       inline array (dims ``y``/``x``, uint16) and external (``NPY_SEQ``)
       fields; single events and an event page; datums and a datum page;
       device configuration.
    2. ``count`` (scan_id 2): a scalar without ``dtype_numpy`` and a string.
    3. ``failed`` (scan_id 2 again, later): ``exit_status='fail'``.
    4. ``live`` (scan_id 3): in progress, no stop document.
    5. ``stream`` (scan_id 4): external data via stream_resource/stream_datum.

    Parameters
    ----------
    directory : path, optional
        Where the external data files are written (a temporary directory by
        default). Read them with ``**example_registry(directory)``.

    Examples
    --------
    >>> runs = example_runs()
    >>> [docs[0][1]["scan_id"] for docs in runs]
    [1, 2, 2, 3, 4]
    """
    if directory is None:
        if not _DEFAULT_DIR:
            _DEFAULT_DIR.append(tempfile.mkdtemp(prefix="intake-bluesky-examples-"))
        directory = _DEFAULT_DIR[0]
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    return [
        _scan(directory),
        _simple("count", 2, T0 + 100, 5, "success", "Fe"),
        _simple("failed", 2, T0 + 200, 2, "fail", "Fe"),
        _simple("live", 3, T0 + 300, 3, None, "Ni"),
        _stream(directory),
    ]


def mixed_forms_run(directory=None) -> list[tuple[str, Any]]:
    """The ``scan`` example run with every form a run's documents are stored
    in: single events and an event page, one event as a 1-row event_page,
    single datums, a datum page and a 1-row datum_page.

    ``canonical(fill='no')`` of it stored in a store that keeps each
    document's form gives it back document for document.

    Examples
    --------
    >>> names = [name for name, _ in mixed_forms_run()]
    >>> sorted({"event", "event_page", "datum", "datum_page"} - set(names))
    []
    """
    docs: list[tuple[str, Any]] = []
    event_seen = datum_seen = False
    for name, doc in example_runs(directory)[0]:
        if name == "event" and "ext" in doc["data"] and not event_seen:
            event_seen = True
            name, doc = "event_page", event_model.pack_event_page(doc)
        elif name == "datum" and not datum_seen:
            datum_seen = True
            name, doc = "datum_page", event_model.pack_datum_page(doc)
        docs.append((name, doc))
    return docs
