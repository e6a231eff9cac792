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
from intake_bluesky.hdf5 import HDF5StreamReader

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
    docs, frames = _fly_scan(tmp_path)  # 60 frames of 128 bytes, file chunks of 8 frames
    cat = BlueskyInMemoryCatalog()
    for name, doc in docs:
        cat(name, doc)
    stream = cat[-1].primary
    eager = stream.read()
    np.testing.assert_array_equal(eager["det"].values[:, 0], frames)
    assert np.isnan(eager["time"].values).all()
    lazy = stream.to_dask()
    assert lazy["det"].data.chunks[0] == (60,)  # ~100 MB chunks: all of it
    np.testing.assert_array_equal(lazy["det"].data.compute(), eager["det"].values)
    # A size per chunk is rounded down to whole file chunks: 1.5 KiB = 12 rows -> 8.
    for asked, rows in (("1.5KiB", 8), ("2KiB", 16), ("100B", 8)):
        small = stream.to_dask(chunks=asked)
        time_chunks = small["det"].data.chunks[0]
        assert time_chunks == (rows,) * (60 // rows) + ((60 % rows,) if 60 % rows else ()), (
            asked,
            time_chunks,
        )
        with dask.config.set(scheduler="sync"):
            np.testing.assert_array_equal(small["det"].data.compute(), eager["det"].values)
    # Rows asked for explicitly are the user's choice.
    assert stream.to_dask(chunks=5)["det"].data.chunks[0] == (5,) * 12


def test_to_dask_opens_no_file_before_compute(tmp_path):
    import gc

    from intake_bluesky.hdf5 import open_count

    docs, frames = _fly_scan(tmp_path)
    gc.collect()
    before = open_count()
    cat = BlueskyInMemoryCatalog()
    for name, doc in docs:
        cat(name, doc)
    lazy = cat[-1].primary.to_dask(chunks="2KiB")
    assert open_count() == before
    np.testing.assert_array_equal(lazy["det"].data[16:24].compute()[:, 0], frames[16:24])


def test_new_file_mid_run(tmp_path, write_detector_file):
    """A detector rolls over to a second file: a second stream_resource, indices from 0."""
    first, _ = write_detector_file(tmp_path / "a.h5", 5, shape=(4, 5), dtype="<u2")
    second, _ = write_detector_file(tmp_path / "b.h5", 7, shape=(4, 5), dtype="<u2")
    second = second + 1000  # tell the files apart
    with h5py.File(tmp_path / "b.h5", "r+", libver="latest") as f:
        f["/entry/data/data"][...] = second
    run = event_model.compose_run(metadata={"scan_id": 5, "plan_name": "fly"})
    desc = run.compose_descriptor(
        name="primary",
        data_keys={
            "det": {
                "source": "sim",
                "shape": [1, 4, 5],
                "dtype": "array",
                "dtype_numpy": "<u2",
                "external": "STREAM:",
            }
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    seq = 1
    for name, n in (("a.h5", 5), ("b.h5", 7)):
        bundle = run.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost/old/place/{name}",
            data_key="det",
            parameters={"dataset": "/entry/data/data", "chunk_shape": [1, 4, 5]},
        )
        docs.append(("stream_resource", bundle.stream_resource_doc))
        docs.append(
            (
                "stream_datum",
                bundle.compose_stream_datum(
                    indices={"start": 0, "stop": n},
                    seq_nums={"start": seq, "stop": seq + n},
                    descriptor=desc.descriptor_doc,
                ),
            )
        )
        seq += n
    docs.append(("stop", run.compose_stop()))
    cat = BlueskyInMemoryCatalog(root_map={"/old/place": str(tmp_path)})
    for name, doc in docs:
        cat(name, doc)
    expected = np.concatenate([first, second])[:, None]
    ds = cat[5].primary.read()
    np.testing.assert_array_equal(ds["det"].values, expected)
    np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 13))
    lazy = cat[5].primary.to_dask(chunks=4)
    assert lazy["det"].data.chunks[0] == (4, 4, 4)  # the middle chunk spans both files
    np.testing.assert_array_equal(lazy["det"].data.compute(), expected)


def test_to_dask_in_worker_processes(tmp_path):
    """Dask's process pool: each worker unpickles the readers and opens the file itself."""
    docs, frames = _fly_scan(tmp_path, n_frames=40)
    cat = BlueskyInMemoryCatalog()
    for name, doc in docs:
        cat(name, doc)
    lazy = cat[-1].primary.to_dask(chunks="2KiB")  # 16 rows a chunk: 3 tasks
    with dask.config.set(scheduler="processes", num_workers=2):
        got = lazy["det"].data.compute()
    np.testing.assert_array_equal(got[:, 0], frames)


class _CountingReader(HDF5StreamReader):
    """The installed reader, recording the rows each read asks for."""

    reads: list = []

    def __call__(self, start, stop):
        _CountingReader.reads.append(("call", start, stop))
        return super().__call__(start, stop)

    def read_into(self, start, stop, out):
        _CountingReader.reads.append(("into", start, stop))
        return super().read_into(start, stop, out)


def test_a_slice_of_the_lazy_stream_reads_only_that_row(tmp_path):
    docs, frames = _fly_scan(tmp_path)  # 60 frames, file chunks of 8
    cat = BlueskyInMemoryCatalog(handler_registry={"application/x-hdf5": _CountingReader})
    for name, doc in docs:
        cat(name, doc)
    lazy = cat[-1].primary.to_dask(chunks="2KiB")  # dask chunks of 16 rows
    assert lazy["det"].data.chunks[0] == (16, 16, 16, 12)
    _CountingReader.reads = []
    np.testing.assert_array_equal(lazy["det"][30:31].values[:, 0], frames[30:31])
    assert _CountingReader.reads == [("call", 30, 31)]
    _CountingReader.reads = []
    whole = lazy["det"].data.compute()
    np.testing.assert_array_equal(whole[:, 0], frames)
    # Read straight into the array returned: one read per chunk (the 25-row
    # stream_datums adjoin, so a chunk is one read), no other call.
    assert sorted(_CountingReader.reads) == [
        ("into", 0, 16),
        ("into", 16, 32),
        ("into", 32, 48),
        ("into", 48, 60),
    ]
