"""The ophyd-async samples (real RunEngine runs, real SWMR files) read back equal to h5py.

``samples/ophyd_async/`` holds the documents of four runs made by bluesky
1.15.1 with ophyd-async 0.21.3 simulated detectors and the HDF5 files they
wrote; the URIs in the documents say ``/data/ophyd-async-samples/h5``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest

from intake_bluesky.hdf5 import HDF5StreamReader

SAMPLES = Path(__file__).parent / "samples" / "ophyd_async"
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"

CASES = ["count_blob", "scan_two_blobs_point", "fly_cpe1", "fly_cpe3"]


def _local(uri: str, root) -> str:
    path = urlparse(uri).path
    assert path.startswith(SAMPLE_ROOT + "/")
    return str(root) + path[len(SAMPLE_ROOT) :]


def _stream_parts(docs):
    descriptors = {d["uid"]: d for n, d in docs if n == "descriptor"}
    resources = {d["uid"]: d for n, d in docs if n == "stream_resource"}
    datums = defaultdict(list)
    for name, doc in docs:
        if name == "stream_datum":
            datums[doc["stream_resource"]].append(doc)
    return descriptors, resources, datums


@pytest.mark.parametrize("case", CASES)
def test_every_stream_datum_reads_back_equal_to_h5py(case, sample_docs, sample_h5):
    descriptors, resources, datums = _stream_parts(sample_docs[case])
    assert resources, "the sample has stream resources"
    for uid, sr in resources.items():
        sds = datums[uid]
        data_key = descriptors[sds[0]["descriptor"]]["data_keys"][sr["data_key"]]
        path = _local(sr["uri"], sample_h5)
        with h5py.File(path, "r", swmr=True, libver="latest") as f:
            truth = f[sr["parameters"]["dataset"]][()]
        shape = data_key["shape"]
        frames_per_row = int(np.prod(shape)) // int(np.prod(truth.shape[1:]))
        with HDF5StreamReader(path, data_key=data_key, **sr["parameters"]) as reader:
            parts = []
            for sd in sds:
                start, stop = sd["indices"]["start"], sd["indices"]["stop"]
                rows = reader(start, stop)
                assert rows.shape == (stop - start, *shape)
                assert rows.dtype == np.dtype(data_key["dtype_numpy"])
                k = frames_per_row
                np.testing.assert_array_equal(
                    rows, truth[start * k : stop * k].reshape(stop - start, *shape)
                )
                parts.append(rows)
        # The stream_datums cover the whole dataset, in order, without gaps.
        np.testing.assert_array_equal(np.concatenate(parts).reshape(truth.shape), truth)


def test_three_frames_per_event_sample(sample_docs, sample_h5):
    """scan_id 4: data key [3,240,320], 12 frames in the file, indices 0..4."""
    descriptors, resources, datums = _stream_parts(sample_docs["fly_cpe3"])
    (sr,) = [r for r in resources.values() if r["data_key"] == "bdet"]
    data_key = next(iter(descriptors.values()))["data_keys"]["bdet"]
    assert data_key["shape"] == [3, 240, 320]
    path = _local(sr["uri"], sample_h5)
    with h5py.File(path, "r", swmr=True) as f:
        frames = f["/entry/data/data"][()]
    assert frames.shape == (12, 240, 320)
    with HDF5StreamReader(path, data_key=data_key, **sr["parameters"]) as reader:
        rows = reader(0, 4)
    assert rows.shape == (4, 3, 240, 320)
    np.testing.assert_array_equal(rows[3, 2], frames[11])
    np.testing.assert_array_equal(rows[1, 0], frames[3])


def test_three_frames_per_event_equivalent_file(sample_docs, tmp_path, write_detector_file):
    """The same documents over a file written here (12 frames, as the detector writes)."""
    descriptors, resources, datums = _stream_parts(sample_docs["fly_cpe3"])
    frames, sums = write_detector_file(tmp_path / "det.h5", 12, shape=(240, 320), dtype="|u1")
    data_keys = next(iter(descriptors.values()))["data_keys"]
    expected = {"bdet": frames.reshape(4, 3, 240, 320), "bdet-sum": sums.reshape(4, 3)}
    for uid, sr in resources.items():
        with HDF5StreamReader(
            str(tmp_path / "det.h5"), data_key=data_keys[sr["data_key"]], **sr["parameters"]
        ) as reader:
            got = np.concatenate(
                [reader(sd["indices"]["start"], sd["indices"]["stop"]) for sd in datums[uid]]
            )
        np.testing.assert_array_equal(got, expected[sr["data_key"]])


def test_missing_sample_file_names_the_path(sample_docs, sample_h5):
    descriptors, resources, datums = _stream_parts(sample_docs["fly_cpe3"])
    sr = next(iter(resources.values()))
    path = _local(sr["uri"], sample_h5)
    (sample_h5 / path.rsplit("/", 1)[1]).unlink()
    data_key = next(iter(descriptors.values()))["data_keys"][sr["data_key"]]
    with HDF5StreamReader(path, data_key=data_key, **sr["parameters"]) as reader:
        with pytest.raises(FileNotFoundError) as info:
            reader(0, 1)
    assert path in str(info.value)


def test_samples_are_present():
    assert len(list((SAMPLES / "h5").glob("*.h5"))) == 5
