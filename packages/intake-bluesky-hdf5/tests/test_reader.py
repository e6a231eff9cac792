"""HDF5StreamReader on real files written by h5py the way ophyd-async writes them."""

from __future__ import annotations

import pickle
import subprocess
import sys
from importlib.metadata import entry_points

import h5py
import hdf5plugin
import numpy as np
import pytest

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.core._model.filling import HandlerRegistry
from intake_bluesky.hdf5 import HDF5StreamReader, UnknownParameterWarning, open_count, parse_slice

FRAMES = "/entry/data/data"
SUMS = "/entry/sum"


def key(shape, dtype):
    return {"shape": list(shape), "dtype_numpy": np.dtype(dtype).str, "external": "STREAM:"}


@pytest.fixture
def det(tmp_path, write_detector_file):
    """12 frames of 4x5 uint8 and their int64 sums."""
    path = tmp_path / "det.h5"
    frames, sums = write_detector_file(path, 12)
    return str(path), frames, sums


def test_one_frame_per_row_with_leading_1(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([1, 4, 5], "u1"), dataset=FRAMES) as reader:
        rows = reader(2, 5)
    assert rows.shape == (3, 1, 4, 5)
    assert rows.dtype == np.uint8
    np.testing.assert_array_equal(rows[:, 0], frames[2:5])


def test_frame_shape_without_leading_1(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([4, 5], "u1"), dataset=FRAMES) as reader:
        np.testing.assert_array_equal(reader(0, 12), frames)


def test_k_frames_per_row(det):
    path, frames, _ = det
    # data key [3, 4, 5]: the file holds 3x as many frames as the indices count.
    with HDF5StreamReader(path, data_key=key([3, 4, 5], "u1"), dataset=FRAMES) as reader:
        rows = reader(0, 4)
        assert rows.shape == (4, 3, 4, 5)
        np.testing.assert_array_equal(rows, frames.reshape(4, 3, 4, 5))
        np.testing.assert_array_equal(reader(1, 3), frames[3:9].reshape(2, 3, 4, 5))
        assert reader.frames_per_row() == 3
        # The 12 frames make 4 rows: a fifth is not on disk.
        with pytest.raises(DataNotWrittenError, match=r"rows \[3, 5\).*4 row\(s\) \(12 frames\)"):
            reader(3, 5)


def test_scalar_rows_shape_1_and_shape_empty(det):
    path, _, sums = det
    with HDF5StreamReader(path, data_key=key([1], "<i8"), dataset=SUMS) as reader:
        rows = reader(0, 12)
    assert rows.shape == (12, 1) and rows.dtype == np.dtype("<i8")
    np.testing.assert_array_equal(rows[:, 0], sums)
    with HDF5StreamReader(path, data_key=key([], "<i8"), dataset=SUMS) as reader:
        np.testing.assert_array_equal(reader(4, 7), sums[4:7])
    # k values per row of a 1-D dataset (fly scan, 3 frames per event).
    with HDF5StreamReader(path, data_key=key([3], "<i8"), dataset=SUMS) as reader:
        np.testing.assert_array_equal(reader(1, 4), sums[3:12].reshape(3, 3))


def test_two_keys_in_one_file_share_one_handle(det):
    path, frames, sums = det
    assert open_count() == 0
    a = HDF5StreamReader(path, data_key=key([1, 4, 5], "u1"), dataset=FRAMES)
    b = HDF5StreamReader(path, data_key=key([1], "<i8"), dataset=SUMS)
    assert open_count() == 0  # nothing opened before the first read
    np.testing.assert_array_equal(a(0, 2)[:, 0], frames[:2])
    np.testing.assert_array_equal(b(0, 2)[:, 0], sums[:2])
    assert open_count() == 1
    assert a._dset.file.id == b._dset.file.id
    a.close()
    assert open_count() == 1  # b still reads it
    np.testing.assert_array_equal(b(2, 3)[:, 0], sums[2:3])
    b.close()
    assert open_count() == 0


def test_garbage_collected_reader_gives_its_handle_back(det):
    import gc

    path, _, sums = det
    reader = HDF5StreamReader(path, data_key=key([1], "<i8"), dataset=SUMS)
    reader(0, 1)
    assert open_count() == 1
    del reader
    gc.collect()
    assert open_count() == 0


def test_dtype_mismatch_names_both_dtypes_file_and_dataset(det):
    path, _, _ = det
    reader = HDF5StreamReader(path, data_key=key([1, 4, 5], "<u2"), dataset=FRAMES)
    with pytest.raises(ValueError) as info:
        reader(0, 1)
    message = str(info.value)
    for part in ("<u2", "|u1", path, FRAMES, "not cast"):
        assert part in message
    reader.close()


def test_rows_not_written_yet(tmp_path, write_detector_file):
    path = str(tmp_path / "partial.h5")
    frames, _ = write_detector_file(path, 5)
    with HDF5StreamReader(path, data_key=key([1, 4, 5], "u1"), dataset=FRAMES) as reader:
        np.testing.assert_array_equal(reader(3, 5)[:, 0], frames[3:5])
        with pytest.raises(DataNotWrittenError) as info:
            reader(3, 6)
    message = str(info.value)
    assert path in message and FRAMES in message
    assert "rows [3, 6)" in message and "5 row(s)" in message


@pytest.mark.parametrize(
    "compression",
    [
        hdf5plugin.Bitshuffle(cname="lz4"),
        hdf5plugin.LZ4(),
        hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    ],
    ids=["bitshuffle-lz4", "lz4", "blosc-lz4"],
)
def test_compressed_detector_files(tmp_path, write_detector_file, compression):
    path = str(tmp_path / "compressed.h5")
    frames, _ = write_detector_file(path, 6, shape=(32, 48), dtype="<u2", **compression)
    with h5py.File(path, "r") as f:
        # The dataset really is stored through the plugin filter.
        filter_ids = [
            f["/entry/data/data"].id.get_create_plist().get_filter(i)[0]
            for i in range(f["/entry/data/data"].id.get_create_plist().get_nfilters())
        ]
    assert compression.filter_id in filter_ids
    with HDF5StreamReader(path, data_key=key([1, 32, 48], "<u2"), dataset=FRAMES) as reader:
        np.testing.assert_array_equal(reader(0, 6)[:, 0], frames)


def test_reader_pickles_without_its_handle_and_reopens(det, tmp_path):
    path, frames, _ = det
    reader = HDF5StreamReader(path, data_key=key([3, 4, 5], "u1"), dataset=FRAMES)
    reader(0, 1)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._dset is None
    np.testing.assert_array_equal(clone(2, 4), frames[6:12].reshape(2, 3, 4, 5))
    assert open_count() == 1  # the clone shares the process's handle
    reader.close()
    clone.close()
    # In another process (a dask worker) it opens the file there.
    blob = tmp_path / "reader.pickle"
    blob.write_bytes(pickle.dumps(reader))
    script = (
        "import pickle, sys; r = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(int(r(3, 4).sum()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(blob)], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == int(frames[9:12].astype(np.int64).sum())


def test_legacy_path_parameter_and_conflicts(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([1, 4, 5], "u1"), path="entry/data/data") as reader:
        np.testing.assert_array_equal(reader(0, 1)[0, 0], frames[0])
    with pytest.raises(ValueError, match="give one"):
        HDF5StreamReader(path, dataset=FRAMES, path=SUMS)
    with pytest.raises(ValueError, match="no 'dataset' parameter"):
        HDF5StreamReader(path, data_key=key([1], "<i8"))


def test_missing_dataset_lists_what_is_there(det):
    path, _, _ = det
    reader = HDF5StreamReader(path, data_key=key([1], "<i8"), dataset="/entry/nope")
    with pytest.raises(KeyError) as info:
        reader(0, 1)
    assert "/entry/nope" in str(info.value) and "/entry/sum" in str(info.value)
    reader = HDF5StreamReader(path, data_key=key([1], "<i8"), dataset="/entry")
    with pytest.raises(KeyError, match="is a group"):
        reader(0, 1)


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "gone" / "det.h5")
    reader = HDF5StreamReader(path, data_key=key([1], "<i8"), dataset=SUMS)
    with pytest.raises(FileNotFoundError) as info:
        reader(0, 1)
    assert path in str(info.value) and "root_map" in str(info.value)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "det.h5"
    path.write_bytes(b"not hdf5 at all" * 10)
    reader = HDF5StreamReader(str(path), data_key=key([1], "<i8"), dataset=SUMS)
    with pytest.raises(OSError, match="could not be opened"):
        reader(0, 1)


def test_slice_and_squeeze(tmp_path):
    path = str(tmp_path / "table.h5")
    table = np.arange(40, dtype="<f8").reshape(10, 1, 4)
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/t", data=table, maxshape=(None, 1, 4), chunks=(5, 1, 4))
    # One column of a table, one value per row.
    with HDF5StreamReader(path, data_key=key([], "<f8"), dataset="/t", slice=":, 0, 2") as r:
        np.testing.assert_array_equal(r(2, 5), table[2:5, 0, 2])
    with HDF5StreamReader(
        path, data_key=key([2], "<f8"), dataset="/t", slice="[..., 1:3]", squeeze=True
    ) as r:
        np.testing.assert_array_equal(r(0, 10), table[:, 0, 1:3])
    with HDF5StreamReader(path, data_key=key([4], "<f8"), dataset="/t", squeeze=True) as r:
        np.testing.assert_array_equal(r(9, 10), table[9:10, 0])
    with HDF5StreamReader(path, data_key=key([], "<f8"), dataset="/t", slice="2:5, 0, 0") as r:
        with pytest.raises(ValueError, match="first axis"):
            r(0, 1)
    with pytest.raises(ValueError, match="cannot parse"):
        HDF5StreamReader(path, dataset="/t", slice=":, __import__('os')")
    assert parse_slice("(:, 3)") == (slice(None), 3)


def test_multiplier_must_agree_with_the_data_key(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([3, 4, 5], "u1"), dataset=FRAMES, multiplier=3) as r:
        np.testing.assert_array_equal(r(0, 1)[0], frames[:3])
    with HDF5StreamReader(path, data_key=key([3, 4, 5], "u1"), dataset=FRAMES, multiplier=2) as r:
        with pytest.raises(ValueError, match="multiplier=2"):
            r(0, 1)
    # No data key (the older protocol): the multiplier alone says frames per row.
    with HDF5StreamReader(path, dataset=FRAMES, multiplier=2) as r:
        np.testing.assert_array_equal(r(1, 2), frames[2:4][None])


@pytest.mark.parametrize("shape", [[5, 4], [7], [2, 4, 5, 1, 3], [None, 4, 5]])
def test_data_key_shape_that_frames_cannot_make(det, shape):
    path, _, _ = det
    with HDF5StreamReader(path, data_key=key(shape, "u1"), dataset=FRAMES) as reader:
        with pytest.raises(ValueError, match="cannot make rows|cannot be read as rows"):
            reader(0, 1)


def test_without_a_data_key_a_row_is_a_frame(det):
    path, frames, _ = det
    with HDF5StreamReader(path, dataset=FRAMES) as reader:
        np.testing.assert_array_equal(reader(0, 12), frames)


def test_unknown_parameters_warn(det):
    path, _, _ = det
    with pytest.warns(UnknownParameterWarning, match="join_method"):
        HDF5StreamReader(path, dataset=FRAMES, join_method="stack")


def test_bad_ranges(det):
    path, _, _ = det
    with HDF5StreamReader(path, dataset=FRAMES) as reader:
        with pytest.raises(ValueError, match="valid range"):
            reader(3, 2)
        assert reader(2, 2).shape == (0, 4, 5)


@pytest.mark.parametrize(
    "data_key, parameters, rows",
    [
        ({"shape": [1, 240, 320]}, {"chunk_shape": [1, 240, 320]}, 1),
        ({"shape": [1]}, {"chunk_shape": [1024]}, 1024),
        ({"shape": []}, {"chunk_shape": [16384]}, 16384),
        ({"shape": [3, 240, 320]}, {"chunk_shape": [1, 240, 320]}, 1),
        ({"shape": [3, 240, 320]}, {"chunk_shape": [6, 240, 320]}, 2),
        ({"shape": [3, 240, 320]}, {"chunk_shape": [2, 240, 320]}, 2),
        ({"shape": [3]}, {"chunk_shape": [1024]}, 1024),
        ({"shape": [240, 320]}, {"chunk_shape": [10, 240, 320]}, 10),
        (None, {"chunk_shape": [4, 2, 2], "multiplier": 2}, 2),
        ({"shape": [1]}, {"chunk_shape": []}, None),
        ({"shape": [1]}, {}, None),
        ({"shape": [1]}, {"chunk_shape": [8], "slice": ":"}, None),
        ({"shape": [3, 2, 2]}, {"chunk_shape": [4, 2, 2], "multiplier": 2}, None),
        ({"shape": [9, 9, 9, 9]}, {"chunk_shape": [4, 2]}, None),
    ],
)
def test_chunk_rows(data_key, parameters, rows):
    assert HDF5StreamReader.chunk_rows(data_key, parameters) == rows


def test_registered_under_its_mimetype():
    (ep,) = [
        e
        for e in entry_points(group="intake_bluesky.stream_readers")
        if e.name == "application/x-hdf5"
    ]
    assert ep.load() is HDF5StreamReader
    assert HandlerRegistry().resolve("application/x-hdf5") is HDF5StreamReader


def test_read_into_writes_the_rows_into_the_buffer_given(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([3, 4, 5], "u1"), dataset=FRAMES) as reader:
        out = np.zeros((2, 3, 4, 5), "u1")
        assert reader.read_into(1, 3, out) is True
        np.testing.assert_array_equal(out.reshape(6, 4, 5), frames[3:9])
        assert reader.read_into(0, 0, out[:0]) is True
        # Not the file's dtype, not contiguous, not the rows' shape: nothing
        # read (no value converted); the caller reads the usual way.
        wide = np.zeros((2, 3, 4, 5), "u2")
        assert reader.read_into(1, 3, wide) is False and not wide.any()
        strided = np.zeros((2, 3, 4, 10), "u1")[..., ::2]
        assert reader.read_into(1, 3, strided) is False and not strided.any()
        assert reader.read_into(1, 2, out) is False
        with pytest.raises(DataNotWrittenError):
            reader.read_into(3, 5, out)


def test_read_into_declines_a_sliced_dataset(det):
    path, frames, _ = det
    with HDF5StreamReader(path, data_key=key([5], "u1"), dataset=FRAMES, slice=":, 0") as reader:
        out = np.zeros((2, 5), "u1")
        assert reader.read_into(0, 2, out) is False
        np.testing.assert_array_equal(reader(0, 2), frames[0:2, 0])
