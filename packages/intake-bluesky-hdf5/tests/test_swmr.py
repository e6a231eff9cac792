"""Reading while a separate writer process appends frames (SWMR)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.hdf5 import HDF5StreamReader, open_count

SHAPE = (6, 8)
WAIT = 30  # seconds; generous for a loaded 2-core machine, never reached when healthy


def _frame(i):
    return ((np.arange(48).reshape(SHAPE) + 11 * i) % 65521).astype("<u2")


def _writer(path, ready, go, done, errors):
    """An ophyd-async-like detector: SWMR file, frames flushed as they come."""
    try:
        import h5py

        with h5py.File(path, "w", libver="latest") as f:
            data = f.create_dataset(
                "/entry/data/data",
                shape=(0, *SHAPE),
                maxshape=(None, *SHAPE),
                chunks=(1, *SHAPE),
                dtype="<u2",
            )
            f.swmr_mode = True
            written = 0
            for batch in (2, 3):
                for _ in range(batch):
                    data.resize(written + 1, axis=0)
                    data[written] = _frame(written)
                    written += 1
                data.flush()
                ready.set()
                if not go.wait(WAIT):
                    raise TimeoutError("reader never answered")
                go.clear()
            done.wait(WAIT)
    except BaseException as err:  # report to the test rather than die silently
        errors.put(repr(err))
        ready.set()


def test_rows_appear_while_the_writer_appends(tmp_path):
    path = str(tmp_path / "live.h5")
    ctx = multiprocessing.get_context("spawn")
    ready, go, done, errors = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_writer, args=(path, ready, go, done, errors), daemon=True)
    writer.start()
    reader = HDF5StreamReader(
        path,
        data_key={"shape": [1, *SHAPE], "dtype_numpy": "<u2"},
        dataset="/entry/data/data",
        chunk_shape=[1, *SHAPE],
    )
    try:
        assert ready.wait(WAIT), "writer never flushed its first frames"
        assert errors.empty(), errors.get()
        ready.clear()
        first = reader(0, 2)
        np.testing.assert_array_equal(first[:, 0], [_frame(0), _frame(1)])
        with pytest.raises(DataNotWrittenError, match=r"rows \[1, 3\).*2 row\(s\)"):
            reader(1, 3)
        go.set()
        assert ready.wait(WAIT), "writer never flushed its second batch"
        assert errors.empty(), errors.get()
        # The same open handle sees the new frames once refreshed.
        assert open_count() == 1
        rows = reader(2, 5)
        np.testing.assert_array_equal(rows[:, 0], [_frame(i) for i in (2, 3, 4)])
        np.testing.assert_array_equal(reader(0, 5)[:, 0], [_frame(i) for i in range(5)])
        with pytest.raises(DataNotWrittenError, match="5 row"):
            reader(4, 6)
        go.set()
    finally:
        reader.close()
        done.set()
        writer.join(WAIT)
    assert writer.exitcode == 0
    assert errors.empty()
