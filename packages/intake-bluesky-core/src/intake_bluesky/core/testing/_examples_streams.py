"""Example runs with stream data (stream_resource/stream_datum) as
ophyd-async writes it: a step scan, a fly scan, several detectors, a file
rollover.

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
from ._examples import EXTERNAL_ROOT, T0, _stop, _uid_factory

__all__ = [
    "NPZ_MIMETYPE",
    "NpzFramesReader",
    "STREAM_UIDS",
    "stream_runs",
    "stream_registry",
]

NPZ_MIMETYPE = "application/x-intake-bluesky-npz"

STREAM_UIDS = {
    "step": "5e000000-0000-4000-8000-000000000001",
    "fly": "5e000000-0000-4000-8000-000000000002",
    "multi": "5e000000-0000-4000-8000-000000000003",
    "rollover": "5e000000-0000-4000-8000-000000000004",
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
