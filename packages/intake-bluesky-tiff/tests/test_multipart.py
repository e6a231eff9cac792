"""Stream readers of areaDetector file series, on files written by tifffile and Pillow."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import numpy as np
import pytest
import tifffile

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.tiff import (
    JPEG_MIMETYPE,
    TIFF_MIMETYPE,
    MultipartJpegReader,
    MultipartTiffReader,
    TiffReadError,
    UnknownParameterWarning,
    entry_point_name,
    file_name,
)

SHAPE = (4, 5)


def key(shape, dtype="<u2"):
    return {"shape": list(shape), "dtype_numpy": np.dtype(dtype).str, "external": "STREAM:"}


@pytest.fixture
def series(tmp_path, frame):
    """12 single-frame files cam_000000.tiff .. cam_000011.tiff, as the TIFF plugin writes."""
    frames = np.stack([frame(i, SHAPE) for i in range(12)])
    for i, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"cam_{i:06d}.tiff", f)
    return tmp_path, frames


@pytest.mark.parametrize("shape", [[1, *SHAPE], list(SHAPE)])
def test_one_frame_per_file_per_row(series, shape):
    directory, frames = series
    reader = MultipartTiffReader(
        str(directory), data_key=key(shape), template="cam_{:06d}.tiff", chunk_shape=[1, *SHAPE]
    )
    rows = reader(2, 6)
    assert rows.shape == (4, *shape) and rows.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(rows.reshape(4, *SHAPE), frames[2:6])


@pytest.mark.parametrize(
    "params",
    [
        {"template": "%s%s_%6.6d.tiff", "filename": "cam"},  # the plugin's FileTemplate
        {"template": "cam_%6.6d.tiff"},
        {"file_template": "cam_{:06d}.tiff"},  # newer ophyd-async's parameter name
    ],
)
def test_template_styles(series, params):
    directory, frames = series
    reader = MultipartTiffReader(str(directory), data_key=key([1, *SHAPE]), **params)
    np.testing.assert_array_equal(reader(11, 12)[0, 0], frames[11])


def test_k_files_per_row(series):
    directory, frames = series
    reader = MultipartTiffReader(
        str(directory),
        data_key=key([3, *SHAPE]),
        template="cam_{:06d}.tiff",
        chunk_shape=[1, *SHAPE],
    )
    # Rows [1, 3) are files [3, 9).
    np.testing.assert_array_equal(reader(1, 3), frames[3:9].reshape(2, 3, *SHAPE))
    np.testing.assert_array_equal(reader(0, 4), frames.reshape(4, 3, *SHAPE))
    with pytest.raises(DataNotWrittenError) as info:
        reader(3, 5)
    assert "cam_000012.tiff" in str(info.value) and "rows [3, 5)" in str(info.value)


def test_several_frames_per_file(tmp_path, frame):
    frames = np.stack([frame(i, SHAPE) for i in range(12)])
    for n in range(3):  # 4 pages per file
        tifffile.imwrite(
            tmp_path / f"stack_{n}.tif", frames[4 * n : 4 * n + 4], photometric="minisblack"
        )
    one = MultipartTiffReader(
        str(tmp_path), data_key=key([1, *SHAPE]), template="stack_{}.tif", chunk_shape=[4, *SHAPE]
    )
    # Rows [2, 7) span the end of file 0 and the start of file 1.
    np.testing.assert_array_equal(one(2, 7)[:, 0], frames[2:7])
    two = MultipartTiffReader(
        str(tmp_path), data_key=key([2, *SHAPE]), template="stack_{}.tif", chunk_shape=[4, *SHAPE]
    )
    np.testing.assert_array_equal(two(1, 6), frames[2:12].reshape(5, 2, *SHAPE))
    assert MultipartTiffReader.chunk_rows(key([2, *SHAPE]), {"chunk_shape": [4, *SHAPE]}) == 2
    short = MultipartTiffReader(
        str(tmp_path), data_key=key([1, *SHAPE]), template="stack_{}.tif", chunk_shape=[5, *SHAPE]
    )
    with pytest.raises(TiffReadError, match="fewer than 5 frames"):
        short(0, 5)


def test_frame_shape_learned_from_the_files_without_chunk_shape(series):
    directory, frames = series
    reader = MultipartTiffReader(
        str(directory), data_key=key([2, *SHAPE]), template="cam_{:06d}.tiff"
    )
    np.testing.assert_array_equal(reader(5, 6)[0], frames[10:12])
    legacy = MultipartTiffReader(str(directory), template="cam_{:06d}.tiff")  # no data key
    np.testing.assert_array_equal(legacy(0, 12), frames)


def test_missing_directory_names_it_and_root_map(tmp_path):
    reader = MultipartTiffReader(
        str(tmp_path / "moved"), data_key=key([1, *SHAPE]), template="cam_{:06d}.tiff"
    )
    with pytest.raises(FileNotFoundError) as info:
        reader(0, 1)
    assert str(tmp_path / "moved") in str(info.value) and "root_map" in str(info.value)


def test_dtype_and_shape_mismatch(series):
    directory, _ = series
    wrong_dtype = MultipartTiffReader(
        str(directory), data_key=key([1, *SHAPE], "<f4"), template="cam_{:06d}.tiff"
    )
    with pytest.raises(ValueError) as info:
        wrong_dtype(0, 1)
    assert "<f4" in str(info.value) and "<u2" in str(info.value)
    assert str(directory) in str(info.value)
    wrong_shape = MultipartTiffReader(
        str(directory), data_key=key([5, 4]), template="cam_{:06d}.tiff"
    )
    with pytest.raises(ValueError, match="cannot make rows"):
        wrong_shape(0, 1)
    lying_chunks = MultipartTiffReader(
        str(directory),
        data_key=key([1, 2, 10]),
        template="cam_{:06d}.tiff",
        chunk_shape=[1, 2, 10],
    )
    with pytest.raises(ValueError, match="cannot make rows"):
        lying_chunks(0, 1)


def test_parameters_checked(series):
    directory, _ = series
    with pytest.raises(ValueError, match="no place for the file number"):
        MultipartTiffReader(str(directory), template="cam.tiff")
    with pytest.raises(ValueError, match="no 'template'"):
        MultipartTiffReader(str(directory))
    with pytest.raises(ValueError, match="give one"):
        MultipartTiffReader(str(directory), template="a_{}.tif", file_template="b_{}.tif")
    with pytest.warns(UnknownParameterWarning, match="join_method"):
        MultipartTiffReader(str(directory), template="a_{}.tif", join_method="stack")
    assert file_name("%s%s_%6.6d.tiff", 3, filename="50%") == "50%_000003.tiff"


@pytest.mark.parametrize(
    "data_key, parameters, rows",
    [
        (key([1, *SHAPE]), {"chunk_shape": [1, *SHAPE]}, 1),
        (key([3, *SHAPE]), {"chunk_shape": [1, *SHAPE]}, 1),
        (key([1, *SHAPE]), {"chunk_shape": [10, *SHAPE]}, 10),
        (key([1, *SHAPE]), {}, 1),  # one frame per file: any whole row is whole files
        (None, {}, 1),
        (key([7]), {"chunk_shape": [1, *SHAPE]}, None),
    ],
)
def test_chunk_rows(data_key, parameters, rows):
    assert MultipartTiffReader.chunk_rows(data_key, parameters) == rows


def test_registered_entry_points():
    found = {e.name: e for e in entry_points(group="intake_bluesky.stream_readers")}
    assert found[entry_point_name(TIFF_MIMETYPE)].load() is MultipartTiffReader
    assert found[entry_point_name(JPEG_MIMETYPE)].load() is MultipartJpegReader
    # Entry point names cannot hold '=': importlib.metadata would cut the name there.
    assert all("=" not in name for name in found)


# --- JPEG ---------------------------------------------------------------------


def test_jpeg_series(tmp_path, frame):
    from PIL import Image

    frames = np.stack([frame(i, (16, 24), "uint8") for i in range(4)])
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"cam_{i:06d}.jpg", quality=95)
    reader = MultipartJpegReader(
        str(tmp_path),
        data_key=key([1, 16, 24], "|u1"),
        template="%s%s_%6.6d.jpg",
        filename="cam",
        chunk_shape=[1, 16, 24],
    )
    rows = reader(1, 4)
    assert rows.shape == (3, 1, 16, 24) and rows.dtype == np.uint8
    for i in (1, 2, 3):  # exactly what Pillow decodes, close to what was written (lossy)
        with Image.open(tmp_path / f"cam_{i:06d}.jpg") as image:
            np.testing.assert_array_equal(rows[i - 1, 0], np.asarray(image))
        assert np.abs(rows[i - 1, 0].astype(int) - frames[i]).mean() < 8
    with pytest.raises(DataNotWrittenError, match="cam_000004.jpg"):
        reader(3, 5)
    with pytest.raises(ValueError, match="one frame"):
        MultipartJpegReader(str(tmp_path), template="cam_{:06d}.jpg", chunk_shape=[2, 16, 24])


def test_jpeg_without_the_extra_names_it(monkeypatch, tmp_path):
    # As if Pillow were not installed.
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError) as info:
        MultipartJpegReader(str(tmp_path), template="cam_{:06d}.jpg")
    assert "intake-bluesky-tiff[jpeg]" in str(info.value)


def test_readers_pickle(series):
    import pickle

    directory, frames = series
    reader = MultipartTiffReader(
        str(directory),
        data_key=key([2, *SHAPE]),
        template="cam_{:06d}.tiff",
        chunk_shape=[1, *SHAPE],
    )
    reader(0, 1)
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone(2, 4), frames[4:8].reshape(2, 2, *SHAPE))
