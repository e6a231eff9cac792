"""A run whose HDF5 files are not where root_map says: errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog, FillError, MissingExternalFileError

SAMPLES = Path(__file__).parent / "samples" / "ophyd_async"
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"


@pytest.fixture
def _no_leaked_handles():
    """A catalog keeps its readers (and their files) while it lives: no leak check here."""
    yield


def _catalog(root_map):
    cat = BlueskyInMemoryCatalog(root_map=root_map)
    for name, doc in json.loads((SAMPLES / "documents.json").read_text())["fly_cpe1"]:
        cat(name, doc)
    return cat


def test_missing_file_is_a_file_not_found_error_naming_path_and_uri(tmp_path):
    cat = _catalog({SAMPLE_ROOT: str(tmp_path / "moved")})
    with pytest.raises(FileNotFoundError) as info:
        cat[-1].primary.read()
    assert isinstance(info.value, FillError) and isinstance(info.value, MissingExternalFileError)
    message = str(info.value)
    assert str(tmp_path / "moved") in message  # the path tried, after root_map
    assert f"file://localhost{SAMPLE_ROOT}/" in message  # the stored uri
    assert "root_map" in message and cat[-1].metadata["start"]["uid"] in message


def test_root_map_keyed_by_the_uri_the_documents_show(sample_h5):
    cat = _catalog({f"file://localhost{SAMPLE_ROOT}": str(sample_h5)})
    ds = cat[-1].primary.read()
    key = next(k for k in ds.data_vars if ds[k].ndim == 4)
    assert ds[key].shape[0] == ds["seq_num"].size > 0
    assert np.isfinite(ds[key].values.astype(float)).all()
