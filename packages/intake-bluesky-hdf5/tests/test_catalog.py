"""End to end: ophyd-async runs through a catalog, filled by the installed reader.

Nothing is registered by hand: the reader is found through the
``intake_bluesky.stream_readers`` entry point this package declares, as it is
for a user who only ran ``pip install intake-bluesky-hdf5``.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import event_model
import h5py
import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog

SAMPLES = Path(__file__).parent / "samples" / "ophyd_async"
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"


@pytest.fixture
def _no_leaked_handles():
    """A catalog keeps its readers (and their files) while it lives: no leak check here."""
    yield


@pytest.fixture
def catalog(sample_h5):
    cat = BlueskyInMemoryCatalog(root_map={SAMPLE_ROOT: str(sample_h5)})
    for docs in json.loads((SAMPLES / "documents.json").read_text()).values():
        for name, doc in docs:
            cat(name, doc)
    return cat


def _h5(sample_h5, data_key, dataset):
    path = sample_h5 / Path(data_key["source"]).name
    with h5py.File(path, "r", swmr=True) as f:
        return f[dataset][()]


def test_step_scan(catalog, sample_h5):
    run = catalog[1]
    ds = run.primary.read()
    data_key = {"source": f"file://localhost{SAMPLE_ROOT}/1c0de6ac-c69a-4340-bf32-41dca1d5c2d8.h5"}
    frames = _h5(sample_h5, data_key, "/entry/data/data")
    sums = _h5(sample_h5, data_key, "/entry/sum")
    assert ds["bdet"].shape == (3, 1, 240, 320) and ds["bdet"].dtype == np.uint8
    np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames)
    assert ds["bdet-sum"].shape == (3, 1) and ds["bdet-sum"].dtype == np.dtype("<i8")
    np.testing.assert_array_equal(ds["bdet-sum"].values[:, 0], sums)
    np.testing.assert_array_equal(ds["seq_num"].values, [1, 2, 3])
    assert np.all(np.isfinite(ds["time"].values))  # step scan: times from the events


def test_fly_scan_without_events(catalog, sample_h5):
    run = catalog[3]
    ds = run.primary.read()
    source = {"source": f"file://localhost{SAMPLE_ROOT}/927216f1-11c5-473d-802e-a1e0670de264.h5"}
    frames = _h5(sample_h5, source, "/entry/data/data")
    assert ds.sizes["time"] == 7
    np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 8))
    assert np.isnan(ds["time"].values).all()
    np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames)
    lazy = run.primary.to_dask()
    np.testing.assert_array_equal(lazy["bdet"].data.compute(), ds["bdet"].values)


def test_three_frames_per_row(catalog, sample_h5):
    ds = catalog[4].primary.read()
    source = {"source": f"file://localhost{SAMPLE_ROOT}/ce0580d6-d216-46a6-9438-addb641ada37.h5"}
    frames = _h5(sample_h5, source, "/entry/data/data")
    sums = _h5(sample_h5, source, "/entry/sum")
    assert ds["bdet"].shape == (4, 3, 240, 320)
    np.testing.assert_array_equal(ds["bdet"].values, frames.reshape(4, 3, 240, 320))
    np.testing.assert_array_equal(ds["bdet-sum"].values, sums.reshape(4, 3))


def test_two_detectors_and_a_point_detector_aligned_by_seq_num(catalog, sample_h5):
    run = catalog[2]
    ds = run.primary.read()
    docs = json.loads((SAMPLES / "documents.json").read_text())["scan_two_blobs_point"]
    events = [d for n, d in docs if n == "event"]
    assert ds.sizes["time"] == 4
    np.testing.assert_array_equal(ds["seq_num"].values, [e["seq_num"] for e in events])
    np.testing.assert_array_equal(ds["time"].values, [e["time"] for e in events])
    for field in ("pdet-channel-1-value", "stage-x"):
        np.testing.assert_array_equal(ds[field].values, [e["data"][field] for e in events])
    for det, name in (
        ("bdet", "ca98808b-d431-4428-adf1-14701574ec6e.h5"),
        ("bdet2", "0685b36e-2580-4413-a9e6-626d6651dcb2.h5"),
    ):
        source = {"source": f"file://localhost{SAMPLE_ROOT}/{name}"}
        np.testing.assert_array_equal(
            ds[det].values[:, 0], _h5(sample_h5, source, "/entry/data/data")
        )
        np.testing.assert_array_equal(
            ds[f"{det}-sum"].values[:, 0], _h5(sample_h5, source, "/entry/sum")
        )


def _fly_scan(directory, n_frames=60, frame_chunks=8):
    """A fly scan composed with event-model over a file written like ophyd-async."""
    path = directory / "fly.h5"
    frames = np.stack(
        [((np.arange(64).reshape(8, 8) + i) % 4096).astype("<u2") for i in range(n_frames)]
    )
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            "/entry/data/data",
            shape=(0, 8, 8),
            maxshape=(None, 8, 8),
            chunks=(frame_chunks, 8, 8),
            dtype="<u2",
        )
        f.swmr_mode = True
        data.resize(n_frames, axis=0)
        data[:] = frames
        data.flush()
    run = event_model.compose_run(metadata={"scan_id": 99, "plan_name": "fly"})
    docs = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        data_keys={
            "det": {
                "source": "sim",
                "shape": [1, 8, 8],
                "dtype": "array",
                "dtype_numpy": "<u2",
                "external": "STREAM:",
            }
        },
    )
    docs.append(("descriptor", desc.descriptor_doc))
    bundle = run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="det",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [frame_chunks, 8, 8]},
    )
    docs.append(("stream_resource", bundle.stream_resource_doc))
    for start in range(0, n_frames, 25):  # datums that do not line up with file chunks
        stop = min(start + 25, n_frames)
        docs.append(
            (
                "stream_datum",
                bundle.compose_stream_datum(
                    indices={"start": start, "stop": stop},
                    seq_nums={"start": start + 1, "stop": stop + 1},
                    descriptor=desc.descriptor_doc,
                ),
            )
        )
    docs.append(("stop", run.compose_stop()))
    return docs, frames


def test_to_dask_equals_read_with_chunks_aligned_to_the_file(tmp_path):
    docs, frames = _fly_scan(tmp_path)
    cat = BlueskyInMemoryCatalog()
    for name, doc in docs:
        cat(name, doc)
    stream = cat[-1].primary
    eager = stream.read()
    np.testing.assert_array_equal(eager["det"].values[:, 0], frames)
    lazy = stream.to_dask()
    np.testing.assert_array_equal(lazy["det"].data.compute(), eager["det"].values)
    # Asked for small chunks, it rounds them to whole file chunks (8 frames).
    small = stream.to_dask(chunks={"time": 5}) if _takes_chunks(stream) else None
    if small is None:
        pytest.fail("to_dask() takes no chunks= argument")
    time_chunks = small["det"].data.chunks[0]
    assert all(c % 8 == 0 for c in time_chunks[:-1]), time_chunks
    assert sum(time_chunks) == 60
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(small["det"].data.compute(), eager["det"].values)


def _takes_chunks(stream) -> bool:
    import inspect

    return "chunks" in inspect.signature(stream.to_dask).parameters
