"""Reading while a separate writer process appends frames (SWMR)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from intake_bluesky.core import DataNotWrittenError
from intake_bluesky.hdf5 import HDF5StreamReader, open_count

SHAPE = (6, 8)

#: An ophyd-async-like detector: a SWMR file, frames flushed batch by batch.
#: It says "flushed N" after each batch and waits for a line on stdin.
WRITER = """
import sys
import h5py, numpy as np

def frame(i):
    return ((np.arange(48).reshape(6, 8) + 11 * i) % 65521).astype("<u2")

with h5py.File(sys.argv[1], "w", libver="latest") as f:
    data = f.create_dataset("/entry/data/data", shape=(0, 6, 8), maxshape=(None, 6, 8),
                            chunks=(1, 6, 8), dtype="<u2")
    f.swmr_mode = True
    written = 0
    for batch in (2, 3):
        for _ in range(batch):
            data.resize(written + 1, axis=0)
            data[written] = frame(written)
            written += 1
        data.flush()
        print("flushed", written, flush=True)
        sys.stdin.readline()
"""


def _frame(i):
    return ((np.arange(48).reshape(SHAPE) + 11 * i) % 65521).astype("<u2")


def test_rows_appear_while_the_writer_appends(tmp_path):
    path = str(tmp_path / "live.h5")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    reader = HDF5StreamReader(
        path,
        data_key={"shape": [1, *SHAPE], "dtype_numpy": "<u2"},
        dataset="/entry/data/data",
        chunk_shape=[1, *SHAPE],
    )
    try:
        assert writer.stdout.readline().split() == ["flushed", "2"]
        first = reader(0, 2)
        np.testing.assert_array_equal(first[:, 0], [_frame(0), _frame(1)])
        with pytest.raises(DataNotWrittenError, match=r"rows \[1, 3\).*2 row\(s\)"):
            reader(1, 3)
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().split() == ["flushed", "5"]
        # The same open handle sees the new frames once refreshed.
        assert open_count() == 1
        rows = reader(2, 5)
        np.testing.assert_array_equal(rows[:, 0], [_frame(i) for i in (2, 3, 4)])
        np.testing.assert_array_equal(reader(0, 5)[:, 0], [_frame(i) for i in range(5)])
        with pytest.raises(DataNotWrittenError, match="5 row"):
            reader(4, 6)
        writer.stdin.write("done\n")
        writer.stdin.flush()
        assert writer.wait(60) == 0
    finally:
        reader.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_only_a_dataset_opened_earlier_is_refreshed(tmp_path, monkeypatch):
    """A dataset opened for a read is as on disk: that read skips refresh().
    Reads of a dataset opened earlier (by another reader, or by
    frames_per_row) refresh, and so see what the writer appended since."""
    import h5py

    refreshed = []
    original = h5py.Dataset.refresh

    def counting(self):
        refreshed.append(self.name)
        original(self)

    monkeypatch.setattr(h5py.Dataset, "refresh", counting)
    path = str(tmp_path / "live.h5")
    script = tmp_path / "writer.py"
    script.write_text(WRITER.replace("for batch in (2, 3):", "for batch in (2, 1, 2):"))
    writer = subprocess.Popen(
        [sys.executable, str(script), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    options = {
        "data_key": {"shape": [1, *SHAPE], "dtype_numpy": "<u2"},
        "dataset": "/entry/data/data",
    }
    early, first, second = (HDF5StreamReader(path, **options) for _ in range(3))

    def flushed(n):
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().split() == ["flushed", str(n)]

    try:
        assert writer.stdout.readline().split() == ["flushed", "2"]
        assert early.frames_per_row() == 1  # opens the dataset, reads no row
        flushed(3)
        np.testing.assert_array_equal(early(2, 3)[:, 0], [_frame(2)])
        assert refreshed == ["/entry/data/data"]
        early.close()
        assert open_count() == 0
        # Opened for this read: its extent is the one on disk, no refresh.
        np.testing.assert_array_equal(first(0, 3)[:, 0], [_frame(i) for i in range(3)])
        assert len(refreshed) == 1
        flushed(5)
        # The dataset the readers share was opened before these frames.
        np.testing.assert_array_equal(second(3, 5)[:, 0], [_frame(3), _frame(4)])
        np.testing.assert_array_equal(first(4, 5)[:, 0], [_frame(4)])
        assert len(refreshed) == 3
        with pytest.raises(DataNotWrittenError, match="5 row"):
            first(4, 6)
        writer.stdin.write("done\n")
        writer.stdin.flush()
        assert writer.wait(60) == 0
    finally:
        for reader in (early, first, second):
            reader.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
