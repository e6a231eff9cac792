"""End to end: a fly scan whose frames are TIFF file series, read through a catalog."""

from __future__ import annotations

import event_model
import numpy as np
import pytest
import tifffile

from intake_bluesky.core import (
    BlueskyInMemoryCatalog,
    DataNotWrittenError,
    FillError,
    HandlerRegistry,
    MissingExternalFileError,
)
from intake_bluesky.tiff import TIFF_MIMETYPE, MultipartTiffReader

SHAPE = (6, 7)


def _fly_scan(root, frame, written=None):
    """10 frames in two stream_resources (two directories, numbering from 0 in each)."""
    frames = np.stack([frame(i, SHAPE) for i in range(10)])
    run = event_model.compose_run(metadata={"scan_id": 7, "plan_name": "fly"})
    docs = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        data_keys={
            "cam": {
                "source": "ca://CAM:TIFF1:",
                "shape": [1, *SHAPE],
                "dtype": "array",
                "dtype_numpy": "<u2",
                "external": "STREAM:",
            }
        },
    )
    docs.append(("descriptor", desc.descriptor_doc))
    seq = 1
    for part, (first, last) in enumerate([(0, 6), (6, 10)]):
        directory = root / f"part{part}"
        directory.mkdir()
        for n, i in enumerate(range(first, last)):
            if written is None or i < written:
                tifffile.imwrite(directory / f"cam_{n:06d}.tiff", frames[i])
        bundle = run.compose_stream_resource(
            mimetype=TIFF_MIMETYPE,
            uri=f"file://localhost/written/elsewhere/part{part}/",
            data_key="cam",
            parameters={
                "template": "%s%s_%6.6d.tiff",
                "filename": "cam",
                "chunk_shape": [1, *SHAPE],
            },
        )
        docs.append(("stream_resource", bundle.stream_resource_doc))
        for start in range(0, last - first, 4):
            stop = min(start + 4, last - first)
            docs.append(
                (
                    "stream_datum",
                    bundle.compose_stream_datum(
                        indices={"start": start, "stop": stop},
                        seq_nums={"start": seq, "stop": seq + stop - start},
                        descriptor=desc.descriptor_doc,
                    ),
                )
            )
            seq += stop - start
    docs.append(("stop", run.compose_stop()))
    return docs, frames


def _catalog(docs, root, **kwargs):
    cat = BlueskyInMemoryCatalog(root_map={"/written/elsewhere": str(root)}, **kwargs)
    for name, doc in docs:
        cat(name, doc)
    return cat


def test_fly_scan_of_two_file_series(tmp_path, frame):
    docs, frames = _fly_scan(tmp_path, frame)
    cat = _catalog(docs, tmp_path, handler_registry={TIFF_MIMETYPE: MultipartTiffReader})
    ds = cat[7].primary.read()
    assert ds["cam"].shape == (10, 1, *SHAPE) and ds["cam"].dtype == np.dtype("<u2")
    np.testing.assert_array_equal(ds["cam"].values[:, 0], frames)
    np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 11))
    assert np.isnan(ds["time"].values).all()
    lazy = cat[7].primary.to_dask()
    np.testing.assert_array_equal(lazy["cam"].data.compute(), ds["cam"].values)


def test_found_through_the_entry_point(tmp_path, frame):
    """No handler_registry: installing intake-bluesky-tiff is all a user does."""
    # Registered as '...type%3Dimage/tiff': entry point names cannot hold '='.
    found = HandlerRegistry().resolve(TIFF_MIMETYPE)
    assert found is MultipartTiffReader
    docs, frames = _fly_scan(tmp_path, frame)
    ds = _catalog(docs, tmp_path)[7].primary.read()
    np.testing.assert_array_equal(ds["cam"].values[:, 0], frames)


def test_frames_not_written_yet(tmp_path, frame):
    docs, _ = _fly_scan(tmp_path, frame, written=8)
    cat = _catalog(docs, tmp_path, handler_registry={TIFF_MIMETYPE: MultipartTiffReader})
    with pytest.raises(DataNotWrittenError, match="cam_000002.tiff"):
        cat[7].primary.read()


def test_missing_series_is_a_file_not_found_error(tmp_path, frame):
    (tmp_path / "written").mkdir()
    docs, _ = _fly_scan(tmp_path / "written", frame)
    cat = _catalog(docs, tmp_path / "moved", handler_registry={TIFF_MIMETYPE: MultipartTiffReader})
    with pytest.raises(FileNotFoundError) as info:
        cat[7].primary.read()
    assert isinstance(info.value, FillError) and isinstance(info.value, MissingExternalFileError)
    message = str(info.value)
    assert str(tmp_path / "moved" / "part0") in message  # the folder tried, after root_map
    assert "file://localhost/written/elsewhere/part0/" in message and "root_map" in message
