"""Example runs of the second round: stream data as ophyd-async writes it,
and the cases that once gave wrong answers (lossless casts, tuples in start
documents, zero-row streams).

Stream data is stored in ``.npz`` files read by :class:`NpzFramesReader`, a
tiny reader of the kit's own that behaves like the HDF5 reader of
intake-bluesky-hdf5 (a named dataset per data key, several keys in one file,
k frames per row, "not written yet" past the end), so that the core and
every backend test stream data without h5py.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import event_model
import numpy as np

from .._model.filling import DataNotWrittenError
from ._examples import EXTERNAL_ROOT, T0, _uid_factory

__all__ = [
    "NPZ_MIMETYPE",
    "NpzFramesReader",
    "STREAM_UIDS",
    "CORRECTNESS_UIDS",
    "stream_runs",
    "DAMAGED_UIDS",
    "correctness_runs",
    "damaged_run",
    "exact_runs",
    "stream_registry",
]

NPZ_MIMETYPE = "application/x-intake-bluesky-npz"

STREAM_UIDS = {
    "step": "5e000000-0000-4000-8000-000000000001",
    "fly": "5e000000-0000-4000-8000-000000000002",
    "multi": "5e000000-0000-4000-8000-000000000003",
    "rollover": "5e000000-0000-4000-8000-000000000004",
}

CORRECTNESS_UIDS = {
    "casts": "c0000000-0000-4000-8000-000000000001",
    "tuples": "c0000000-0000-4000-8000-000000000002",
    "empty": "c0000000-0000-4000-8000-000000000003",
    "mixed": "c0000000-0000-4000-8000-000000000004",
    "exact": "c0000000-0000-4000-8000-000000000005",
    "uint64": "c0000000-0000-4000-8000-000000000006",
}

#: Runs of :func:`damaged_run`, by what is damaged.
DAMAGED_UIDS = {
    "time": "da000000-0000-4000-8000-000000000001",
    "list": "da000000-0000-4000-8000-000000000002",
    "shape": "da000000-0000-4000-8000-000000000003",
    "dtype_numpy": "da000000-0000-4000-8000-000000000004",
}

#: Frame shape of the example detector, and its dtype.
FRAME = (4, 5)
FRAME_DTYPE = "<u2"


class NpzFramesReader:
    """Stream reader (protocol v2) for ``.npz`` files: parameter ``dataset``
    names the array of a data key; rows have the data key's ``shape``.

    Counts instances (class attribute) so tests can check that nothing is
    opened before a dask compute.
    """

    instances = 0
    _lock = threading.Lock()

    def __init__(self, path, *, data_key, dataset, chunk_shape=None):
        with NpzFramesReader._lock:
            NpzFramesReader.instances += 1
        self.path = path
        self.dataset = dataset
        with np.load(path) as npz:
            self._frames = npz[dataset]
        self.shape = tuple(data_key.get("shape") or ())
        frame_size = math.prod(self._frames.shape[1:])
        self.k = max(1, math.prod(self.shape) // max(1, frame_size))

    @classmethod
    def chunk_rows(cls, data_key, parameters):
        chunk_shape = parameters.get("chunk_shape")
        if not chunk_shape:
            return None
        shape = data_key.get("shape") or ()
        frame = math.prod(shape[1:]) if len(shape) > 1 else 1
        k = max(1, math.prod(shape) // max(1, frame)) if len(shape) > 1 else 1
        # Rows that hold whole storage chunks of frames.
        return math.lcm(int(chunk_shape[0]), k) // k

    def __call__(self, start, stop):
        have = len(self._frames) // self.k
        if stop > have:
            raise DataNotWrittenError(
                f"{self.path!r} dataset {self.dataset!r}: rows {start}:{stop} asked for, "
                f"{have} written so far."
            )
        frames = self._frames[start * self.k : stop * self.k]
        return frames.reshape((stop - start, *self.shape))


def stream_registry(directory) -> dict:
    """Catalog keyword arguments that make :func:`stream_runs` readable."""
    return {
        "handler_registry": {NPZ_MIMETYPE: NpzFramesReader},
        "root_map": {EXTERNAL_ROOT: os.fspath(directory)},
    }


def frames(n: int, seed: int) -> np.ndarray:
    """``n`` deterministic detector frames."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 60000, size=(n, *FRAME), dtype=FRAME_DTYPE)


def _uri(name: str) -> str:
    return f"file://localhost{EXTERNAL_ROOT}/{name}"


def _detector_keys(det: str, per_row: int, file: str) -> dict:
    return {
        det: {
            "source": _uri(file),
            "shape": [per_row, *FRAME],
            "dtype": "array",
            "dtype_numpy": FRAME_DTYPE,
            "external": "STREAM:",
            "object_name": det,
        },
        f"{det}-sum": {
            "source": _uri(file),
            "shape": [per_row],
            "dtype": "number" if per_row == 1 else "array",
            "dtype_numpy": "<i8",
            "external": "STREAM:",
            "object_name": det,
        },
    }


def _write_detector(directory, file: str, data: np.ndarray) -> None:
    sums = data.reshape(len(data), -1).sum(axis=1).astype("<i8")
    np.savez(os.path.join(directory, file), data=data, sum=sums)


def _stream_resources(run, det: str, file: str, uid) -> dict:
    out = {}
    for key, dataset, chunk in ((det, "data", [1, *FRAME]), (f"{det}-sum", "sum", [1024])):
        out[key] = run.compose_stream_resource(
            mimetype=NPZ_MIMETYPE,
            uri=_uri(file),
            data_key=key,
            parameters={"dataset": dataset, "chunk_shape": chunk},
            uid=uid(),
        )
    return out


def _datum(sres, desc, rows: tuple[int, int], seqs: tuple[int, int]):
    return (
        "stream_datum",
        sres.compose_stream_datum(
            indices={"start": rows[0], "stop": rows[1]},
            seq_nums={"start": seqs[0], "stop": seqs[1]},
            descriptor=desc.descriptor_doc,
        ),
    )


def _step(directory: str) -> list:
    """Two detectors in two files beside inline fields: 4 events, each with
    a stream_datum per stream key emitted just before it."""
    uid = _uid_factory("v2-step")
    t = T0 + 1000
    run = event_model.compose_run(
        uid=STREAM_UIDS["step"],
        time=t,
        metadata={"scan_id": 11, "plan_name": "scan", "detectors": ["bdet", "bdet2", "pdet"]},
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    keys = {
        **_detector_keys("bdet", 1, "step_bdet.npz"),
        **_detector_keys("bdet2", 1, "step_bdet2.npz"),
        "pdet": {"source": "SIM:pdet", "dtype": "integer", "shape": [], "dtype_numpy": "<i8"},
        "x": {"source": "SIM:x", "dtype": "number", "shape": [], "dtype_numpy": "<f8"},
    }
    desc = run.compose_descriptor(name="primary", uid=uid(), time=t + 0.1, data_keys=keys)
    docs.append(("descriptor", desc.descriptor_doc))
    _write_detector(directory, "step_bdet.npz", frames(4, 1))
    _write_detector(directory, "step_bdet2.npz", frames(4, 2))
    sres = {
        **_stream_resources(run, "bdet", "step_bdet.npz", uid),
        **_stream_resources(run, "bdet2", "step_bdet2.npz", uid),
    }
    for key in sres:
        docs.append(("stream_resource", sres[key].stream_resource_doc))
    for i in range(4):
        for key in sres:
            docs.append(_datum(sres[key], desc, (i, i + 1), (i + 1, i + 2)))
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"pdet": 100 + i, "x": -1.0 + i},
                    timestamps={"pdet": t + i, "x": t + i},
                    seq_num=i + 1,
                    time=t + 1 + i,
                    uid=uid(),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 10)))
    return docs


def _fly(directory: str) -> list:
    """A fly scan: no events at all, 7 rows in three stream_datums."""
    uid = _uid_factory("v2-fly")
    t = T0 + 1100
    run = event_model.compose_run(
        uid=STREAM_UIDS["fly"], time=t, metadata={"scan_id": 12, "plan_name": "fly"}
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys=_detector_keys("bdet", 1, "fly.npz"),
    )
    docs.append(("descriptor", desc.descriptor_doc))
    _write_detector(directory, "fly.npz", frames(7, 3))
    sres = _stream_resources(run, "bdet", "fly.npz", uid)
    for key in sres:
        docs.append(("stream_resource", sres[key].stream_resource_doc))
    for rows in ((0, 3), (3, 6), (6, 7)):
        for key in sres:
            docs.append(_datum(sres[key], desc, rows, (rows[0] + 1, rows[1] + 1)))
    docs.append(("stop", _stop(run, uid(), t + 5, {"primary": 7})))
    return docs


def _multi(directory: str) -> list:
    """Three frames per row: data key shape [3, y, x], 12 frames in the
    file, stream_datum indices 0..4; no events."""
    uid = _uid_factory("v2-multi")
    t = T0 + 1200
    run = event_model.compose_run(
        uid=STREAM_UIDS["multi"], time=t, metadata={"scan_id": 13, "plan_name": "fly"}
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary", uid=uid(), time=t + 0.1, data_keys=_detector_keys("bdet", 3, "multi.npz")
    )
    docs.append(("descriptor", desc.descriptor_doc))
    _write_detector(directory, "multi.npz", frames(12, 4))
    sres = _stream_resources(run, "bdet", "multi.npz", uid)
    for key in sres:
        docs.append(("stream_resource", sres[key].stream_resource_doc))
    for i in range(4):
        for key in sres:
            docs.append(_datum(sres[key], desc, (i, i + 1), (i + 1, i + 2)))
    docs.append(("stop", _stop(run, uid(), t + 5, {"primary": 4})))
    return docs


def _rollover(directory: str) -> list:
    """A detector that starts a new file mid-run: a second stream_resource
    for the same key, its indices starting again at 0."""
    uid = _uid_factory("v2-rollover")
    t = T0 + 1300
    run = event_model.compose_run(
        uid=STREAM_UIDS["rollover"], time=t, metadata={"scan_id": 14, "plan_name": "count"}
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary", uid=uid(), time=t + 0.1, data_keys=_detector_keys("bdet", 1, "roll_a.npz")
    )
    docs.append(("descriptor", desc.descriptor_doc))
    all_frames = frames(6, 5)
    for part, (file, lo, hi) in enumerate((("roll_a.npz", 0, 3), ("roll_b.npz", 3, 6))):
        _write_detector(directory, file, all_frames[lo:hi])
        sres = _stream_resources(run, "bdet", file, uid)
        for key in sres:
            docs.append(("stream_resource", sres[key].stream_resource_doc))
        for i in range(hi - lo):
            for key in sres:
                docs.append(_datum(sres[key], desc, (i, i + 1), (lo + i + 1, lo + i + 2)))
            docs.append(
                (
                    "event",
                    desc.compose_event(
                        data={}, timestamps={}, seq_num=lo + i + 1, time=t + 1 + lo + i, uid=uid()
                    ),
                )
            )
        del part
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 10)))
    return docs


def _stop(run, uid: str, time: float, num_events: dict) -> dict:
    # As the RunEngine counts them: rows collected from stream_datums too,
    # which event-model's composer (counting composed events) does not see.
    return {**run.compose_stop(uid=uid, time=time), "num_events": num_events}


def stream_runs(directory) -> list[list[tuple[str, Any]]]:
    """Runs with stream data as ophyd-async writes it, files in ``directory``.

    1. ``step`` (scan_id 11): two detectors (each an image key and a sum key
       in one file) beside inline ``pdet``/``x``, 4 events.
    2. ``fly`` (12): no events; 7 rows in stream_datums of 3, 3 and 1 rows.
    3. ``multi`` (13): 3 frames per row (data key shape ``[3, 4, 5]``), 4 rows.
    4. ``rollover`` (14): a second file (stream_resource) after 3 of 6 rows.

    Read them with ``**stream_registry(directory)``.

    Examples
    --------
    >>> import tempfile
    >>> [docs[0][1]["scan_id"] for docs in stream_runs(tempfile.mkdtemp())]
    [11, 12, 13, 14]
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    return [_step(directory), _fly(directory), _multi(directory), _rollover(directory)]


def correctness_runs() -> list[list[tuple[str, Any]]]:
    """Runs that once gave wrong answers.

    1. ``casts`` (scan_id 21): baseline ``motor1_setpoint`` declared
       ``dtype: 'integer'`` recording 0 then 2.5 (as ophyd does), ``counts``
       declared ``dtype_numpy '<i8'`` recording 1 then 2.5, and ``ok``, a
       genuine integer.
    2. ``tuples`` (22): a start document holding tuples, as a live RunEngine
       emits it (``motors``, ``hints.dimensions``).
    3. ``empty`` (23): a stream with a descriptor and no events, with a
       large image field.
    4. ``mixed`` (24): ints and floats in one field (``sp``: 0 then 2.5;
       ``n``: 2**53 + 1 then 0.5), as a device reading whatever it gets.
    """
    out: list[list[tuple[str, Any]]] = []
    uid = _uid_factory("v2-casts")
    t = T0 + 2000
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["casts"], time=t, metadata={"scan_id": 21, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="baseline",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "motor1_setpoint": {"source": "SIM:sp", "dtype": "integer", "shape": []},
            "counts": {"source": "SIM:c", "dtype": "number", "shape": [], "dtype_numpy": "<i8"},
            "ok": {"source": "SIM:ok", "dtype": "integer", "shape": []},
        },
    )
    docs: list[tuple[str, Any]] = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, (sp, c) in enumerate(((0, 1), (2.5, 2.5))):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"motor1_setpoint": sp, "counts": c, "ok": 7 + i},
                    timestamps={"motor1_setpoint": t, "counts": t, "ok": t},
                    seq_num=i + 1,
                    time=t + 1 + i,
                    uid=uid(),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)

    uid = _uid_factory("v2-tuples")
    t = T0 + 2100
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["tuples"],
        time=t,
        metadata={
            "scan_id": 22,
            "plan_name": "scan",
            "motors": ("motor",),
            "hints": {"dimensions": [(["motor"], "primary")]},
        },
    )
    out.append([("start", run.start_doc), ("stop", run.compose_stop(uid=uid(), time=t + 1))])

    uid = _uid_factory("v2-empty")
    t = T0 + 2200
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["empty"], time=t, metadata={"scan_id": 23, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "image": {
                "source": "SIM:img",
                "dtype": "array",
                "shape": [1, 240, 320],
                "dtype_numpy": "|u1",
            },
            "x": {"source": "SIM:x", "dtype": "number", "shape": []},
        },
    )
    out.append(
        [
            ("start", run.start_doc),
            ("descriptor", desc.descriptor_doc),
            ("stop", _stop(run, uid(), t + 1, {"primary": 0})),
        ]
    )

    uid = _uid_factory("v2-mixed")
    t = T0 + 2300
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["mixed"], time=t, metadata={"scan_id": 24, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={
            "sp": {"source": "SIM:sp", "dtype": "number", "shape": []},
            "n": {"source": "SIM:n", "dtype": "number", "shape": []},
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, (sp, n) in enumerate(((0, 2**53 + 1), (2.5, 0.5))):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"sp": sp, "n": n},
                    timestamps={"sp": t, "n": t},
                    seq_num=i + 1,
                    time=t + 1 + i,
                    uid=uid(),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    return out


def exact_runs(uint64: bool = True) -> list[list[tuple[str, Any]]]:
    """Runs whose values numpy would change if asked carelessly.

    1. ``exact`` (scan_id 25): stream ``primary`` of two descriptors, the
       second without events. Its fields: ``n`` (``'number'``, no
       ``dtype_numpy``) holding 2**60 + 1, 0.5 and 0.25, written as an
       event_page of one row and then two single events; ``s``, strings with
       NUL characters (``'a\\x00'``, ``'\\x00\\x00'``); ``a``, an ``'array'``
       of shape ``[2]`` without ``dtype_numpy`` holding integers above 2**53.
    2. ``uint64`` (26), when ``uint64`` (a format that holds unsigned 64-bit
       integers; BSON does not): ``i`` declared ``'integer'`` recording 0,
       2**63 + 1 and 7.
    """
    out: list[list[tuple[str, Any]]] = []
    uid = _uid_factory("v2-exact")
    t = T0 + 2400
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["exact"], time=t, metadata={"scan_id": 25, "plan_name": "count"}
    )
    keys = {
        "n": {"source": "SIM:n", "dtype": "number", "shape": []},
        "s": {"source": "SIM:s", "dtype": "string", "shape": []},
        "a": {"source": "SIM:a", "dtype": "array", "shape": [2]},
    }
    desc = run.compose_descriptor(name="primary", uid=uid(), time=t + 0.1, data_keys=keys)
    spare = run.compose_descriptor(name="primary", uid=uid(), time=t + 0.2, data_keys=keys)
    rows = [
        (2**60 + 1, "a\x00", [2**60 + 1, 1]),
        (0.5, "b", [2, 2**53 + 1]),
        (0.25, "\x00\x00", [-(2**62) - 1, 0]),
    ]
    docs: list[tuple[str, Any]] = [
        ("start", run.start_doc),
        ("descriptor", desc.descriptor_doc),
        ("descriptor", spare.descriptor_doc),
    ]
    n, s, a = rows[0]
    page = desc.compose_event_page(
        data={"n": [n], "s": [s], "a": [a]},
        timestamps={"n": [t], "s": [t], "a": [t]},
        seq_num=[1],
        time=[t + 1],
        uid=[uid()],
    )
    docs.append(("event_page", page))
    for i, (n, s, a) in enumerate(rows[1:], start=2):
        event = desc.compose_event(
            data={"n": n, "s": s, "a": a},
            timestamps={"n": t, "s": t, "a": t},
            seq_num=i,
            time=t + i,
            uid=uid(),
        )
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    if not uint64:
        return out

    uid = _uid_factory("v2-uint64")
    t = T0 + 2500
    run = event_model.compose_run(
        uid=CORRECTNESS_UIDS["uint64"], time=t, metadata={"scan_id": 26, "plan_name": "count"}
    )
    desc = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t + 0.1,
        data_keys={"i": {"source": "SIM:i", "dtype": "integer", "shape": []}},
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for k, value in enumerate((0, 2**63 + 1, 7), start=1):
        event = desc.compose_event(
            data={"i": value}, timestamps={"i": t}, seq_num=k, time=t + k, uid=uid()
        )
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=uid(), time=t + 5)))
    out.append(docs)
    return out


def damaged_run(damage: str) -> list[tuple[str, Any]]:
    """A run of three events of ``x`` (a number) and ``y`` (an integer) in
    stream ``primary``, damaged as ``damage`` says (a key of
    :data:`DAMAGED_UIDS`):

    * ``"time"``: event 2 has ``time: 'yesterday'``;
    * ``"list"``: event 2 holds ``[1, 2]`` in ``x``, declared ``shape: []``;
    * ``"shape"``: the descriptor declares ``x`` with ``shape: 'abc'``;
    * ``"dtype_numpy"``: the descriptor declares ``x`` with
      ``dtype_numpy: 'garbage'``.

    Descriptor uid ``<run uid>-desc``, event uids ``<run uid>-e<seq_num>``.
    """
    uid = DAMAGED_UIDS[damage]
    t = T0 + 2600
    run = event_model.compose_run(uid=uid, time=t, metadata={"scan_id": 27, "plan_name": "count"})
    keys = {
        "x": {"source": "SIM:x", "dtype": "number", "shape": []},
        "y": {"source": "SIM:y", "dtype": "integer", "shape": []},
    }
    desc = run.compose_descriptor(name="primary", uid=f"{uid}-desc", time=t + 0.1, data_keys=keys)
    # Any: damaged documents are, on purpose, not of the schema's types.
    descriptor: Any = desc.descriptor_doc
    if damage in ("shape", "dtype_numpy"):
        # Written as a faulty program would: past event-model's validation.
        x = {
            **keys["x"],
            **({"shape": "abc"} if damage == "shape" else {"dtype_numpy": "garbage"}),
        }
        descriptor = {**descriptor, "data_keys": {**keys, "x": x}}
    docs: list[tuple[str, Any]] = [("start", run.start_doc), ("descriptor", descriptor)]
    for seq in (1, 2, 3):
        event: Any = desc.compose_event(
            data={"x": 0.5 * seq, "y": seq},
            timestamps={"x": t + seq, "y": t + seq},
            seq_num=seq,
            time=t + seq,
            uid=f"{uid}-e{seq}",
        )
        if seq == 2 and damage == "time":
            event = {**event, "time": "yesterday"}
        elif seq == 2 and damage == "list":
            event = {**event, "data": {**event["data"], "x": [1, 2]}}
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(uid=f"{uid}-stop", time=t + 5)))
    return docs
