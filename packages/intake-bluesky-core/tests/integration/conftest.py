"""Fixtures shared by the tests that need several backends installed."""

import json
import shutil
from types import SimpleNamespace

import pytest

#: The root the ophyd-async sample documents store their HDF5 files under.
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"


@pytest.fixture
def ophyd_async_store(repo, tmp_path):
    """The hdf5 package's ophyd-async sample runs as a folder of JSONL files.

    ``store`` holds one ``<uid>.jsonl`` per run (written as suitcase-jsonl
    writes them), ``h5`` a copy of their detector files, ``root`` the root
    the documents store and ``base`` the samples folder.
    """
    pytest.importorskip("intake_bluesky.hdf5")
    base = repo / "packages" / "intake-bluesky-hdf5" / "tests" / "samples" / "ophyd_async"
    if not base.is_dir():
        pytest.skip("the hdf5 package's samples are not in this checkout")
    h5 = tmp_path / "h5"
    shutil.copytree(base / "h5", h5)
    store = tmp_path / "store"
    store.mkdir()
    for docs in json.loads((base / "documents.json").read_text()).values():
        with open(store / f"{docs[0][1]['uid']}.jsonl", "w") as f:
            for name, doc in docs:
                f.write(json.dumps([name, doc]) + "\n")
    return SimpleNamespace(base=base, h5=h5, store=store, root=SAMPLE_ROOT)
