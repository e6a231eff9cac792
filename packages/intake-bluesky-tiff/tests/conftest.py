"""Fixtures: writable copies of the TIFF samples, and TIFF writers.

Modification times are part of a run's identity and git does not keep them,
so tests work on copies in ``tmp_path`` and set times where they matter.
Helpers are fixtures because tests are imported in importlib mode (no
``from conftest import ...``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

SAMPLES = Path(__file__).parent / "samples"

#: An mtime generated files start from (2024-01-01T00:00:00Z).
T0 = 1_704_067_200


def _write_tif(path, data, mtime: float | None = None, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(data), **kwargs)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _frame(i: int, shape=(4, 5), dtype="uint16") -> np.ndarray:
    # Every pixel tells which frame it belongs to and where it is.
    return (np.arange(int(np.prod(shape))).reshape(shape) + 100 * i).astype(dtype)


def _copy_sample(name: str, dest: Path, mtime: float | None = None) -> Path:
    shutil.copytree(SAMPLES / name, dest)
    for i, path in enumerate(sorted(dest.iterdir())):
        os.chmod(path, 0o644)
        if mtime is not None:
            # Distinct, known times: file i is mtime + i seconds.
            os.utime(path, (mtime + i, mtime + i))
    return dest


@pytest.fixture
def t0() -> int:
    return T0


@pytest.fixture
def write_tif():
    """``write_tif(path, data, mtime=None, **imwrite_kwargs) -> Path``."""
    return _write_tif


@pytest.fixture
def frame():
    """``frame(i, shape=(4, 5), dtype='uint16')``: frame ``i``, distinct values."""
    return _frame


@pytest.fixture
def copy_sample():
    """``copy_sample(name, dest, mtime=None)``: a writable copy of ``samples/<name>``."""
    return _copy_sample


@pytest.fixture
def bucket(tmp_path) -> Path:
    """samples/bucket: series sampleA_*, sampleB_* and stack.tif; times T0, T0+1, ..."""
    return _copy_sample("bucket", tmp_path / "bucket", mtime=T0)


@pytest.fixture
def series_dir(tmp_path) -> Path:
    """frame_1 .. frame_12 (4x5 uint16, one page each), mtime of frame_i = T0 + i."""
    d = tmp_path / "series"
    for i in range(1, 13):
        _write_tif(d / f"frame_{i}.tif", _frame(i), mtime=T0 + i)
    return d
