"""Fixtures: HDF5 files written the way ophyd-async detectors write them.

ophyd-async's HDF writers (areaDetector's HDF5 plugin, the simulated blob
detector) create the file with ``libver='latest'``, create chunked datasets
with an unlimited first axis, switch on SWMR mode, then for every frame
resize the datasets, write and flush. ``write_detector_file`` does the same.
Helpers are fixtures because tests are imported in importlib mode.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from intake_bluesky.hdf5 import open_count

SAMPLES = Path(__file__).parent / "samples" / "ophyd_async"
#: The root the sample documents' URIs name (they were written elsewhere).
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"


def frame(i: int, shape=(4, 5), dtype="u1") -> np.ndarray:
    """A frame whose pixels tell which frame it is and where they are."""
    return ((np.arange(int(np.prod(shape))).reshape(shape) + 7 * i) % 251).astype(dtype)


def write_detector_file(
    path,
    n_frames: int,
    shape=(4, 5),
    dtype="u1",
    frame_chunks: int = 1,
    sum_chunks: int = 1024,
    **filters,
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``n_frames`` frames and their sums as an ophyd-async detector does.

    Returns the frames and sums written, for comparison.
    """
    frames = (
        np.stack([frame(i, shape, dtype) for i in range(n_frames)])
        if n_frames
        else (np.zeros((0, *shape), dtype))
    )
    sums = frames.reshape(n_frames, -1).sum(axis=1).astype("<i8")
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            "/entry/data/data",
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(frame_chunks, *shape),
            dtype=dtype,
            **filters,
        )
        total = f.create_dataset(
            "/entry/sum", shape=(0,), maxshape=(None,), chunks=(sum_chunks,), dtype="<i8"
        )
        f.swmr_mode = True
        for i in range(n_frames):
            data.resize(i + 1, axis=0)
            data[i] = frames[i]
            total.resize(i + 1, axis=0)
            total[i] = sums[i]
            data.flush()
            total.flush()
    return frames, sums


@pytest.fixture(name="frame")
def _frame_fixture():
    return frame


@pytest.fixture(name="write_detector_file")
def _write_fixture():
    return write_detector_file


@pytest.fixture
def sample_docs():
    """``{case: [(name, doc), ...]}`` of the ophyd-async sample runs."""
    runs = json.loads((SAMPLES / "documents.json").read_text())
    return {case: [tuple(pair) for pair in docs] for case, docs in runs.items()}


@pytest.fixture
def sample_h5(tmp_path) -> Path:
    """A writable copy of the samples' HDF5 folder."""
    dest = tmp_path / "h5"
    shutil.copytree(SAMPLES / "h5", dest)
    for p in dest.iterdir():
        p.chmod(0o644)
    return dest


@pytest.fixture(autouse=True)
def _no_leaked_handles():
    """Every test must give back the file handles it took."""
    import gc

    before = open_count()
    yield
    gc.collect()
    assert open_count() == before, "a test left HDF5 files open"
