import os
import pickle
import threading
from importlib.metadata import entry_points

import numpy as np
import pytest
import tifffile

from intake_bluesky.tiff import SPEC, TiffPagesHandler, TiffReadError, _handler


@pytest.fixture(autouse=True)
def _fresh_open_files():
    _handler.close_all()
    yield
    _handler.close_all()


def test_pages_equal_tifffile_imread(bucket):
    for path in sorted(bucket.iterdir()):
        expected = tifffile.imread(path)
        handler = TiffPagesHandler(str(path))
        if expected.ndim == 2:
            got = handler(page=0)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        else:  # the 5-page stack
            got = np.stack([handler(page=i) for i in range(len(expected))])
            assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_construction_does_not_touch_the_file(tmp_path):
    handler = TiffPagesHandler(str(tmp_path / "not-yet.tif"))  # no error yet
    with pytest.raises(TiffReadError, match="not-yet.tif"):
        handler(page=0)


def test_handler_pickles_and_knows_its_files(tmp_path, write_tif, frame):
    path = write_tif(tmp_path / "a.tif", frame(1))
    handler = pickle.loads(pickle.dumps(TiffPagesHandler(str(path), unused="kwarg")))
    assert np.array_equal(handler(page=0), frame(1))
    assert handler.get_file_list([{"page": 0}]) == [str(path)]


def test_unreadable_pixels_raise_naming_the_file(tmp_path, write_tif, frame):
    path = write_tif(tmp_path / "cut.tif", frame(1))
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        (offset,) = tif.pages[0].dataoffsets
    path.write_bytes(data[: offset + 4])  # header intact, pixels cut
    with pytest.raises(TiffReadError, match="cut.tif") as info:
        TiffPagesHandler(str(path))(page=0)
    assert "page 0" in str(info.value)


def test_not_a_tiff_and_missing_page_raise_naming_the_file(tmp_path, write_tif, frame):
    junk = tmp_path / "junk.tif"
    junk.write_text("no tiff here")
    with pytest.raises(TiffReadError, match="junk.tif"):
        TiffPagesHandler(str(junk))(page=0)
    one = write_tif(tmp_path / "one.tif", frame(1))
    with pytest.raises(TiffReadError, match="one.tif has no page 3"):
        TiffPagesHandler(str(one))(page=3)


def test_a_changed_file_is_reopened(tmp_path, write_tif, frame, t0):
    path = write_tif(tmp_path / "a.tif", frame(1), mtime=t0)
    handler = TiffPagesHandler(str(path))
    assert np.array_equal(handler(page=0), frame(1))
    write_tif(path, frame(2), mtime=t0 + 5)
    assert np.array_equal(handler(page=0), frame(2))


def test_open_files_are_bounded_and_thread_safe(tmp_path, write_tif, frame):
    n = _handler.MAX_OPEN_FILES * 3
    paths = [write_tif(tmp_path / f"f_{i}.tif", frame(i)) for i in range(n)]
    handlers = [TiffPagesHandler(str(p)) for p in paths]
    errors = []

    def read_all(offset):
        try:
            for k in range(n):
                i = (k + offset) % n
                assert np.array_equal(handlers[i](page=0), frame(i))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=read_all, args=(j * 7,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_handler._OPEN) <= _handler.MAX_OPEN_FILES
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if fds is not None:
        assert fds < 200


def test_registered_in_databroker_handlers_group():
    eps = {ep.name: ep for ep in entry_points(group="databroker.handlers")}
    assert SPEC == "TIFF_PAGES"
    assert eps[SPEC].load() is TiffPagesHandler
