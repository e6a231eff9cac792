"""``intake-bluesky export --format nexus`` over a real JSONL store of
ophyd-async runs, ``main(argv)`` in this process. Needs intake-bluesky-jsonl,
intake-bluesky-hdf5 and nexusformat: runs in the ``all_together`` nox
session."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

jsonl = pytest.importorskip("intake_bluesky.jsonl")
pytest.importorskip("intake_bluesky.hdf5")
# nexusformat sets numpy's print options for the whole process when imported:
# keep them as they were, for every other test and doctest.
with np.printoptions():
    nexus = pytest.importorskip("nexusformat.nexus")

pytestmark = pytest.mark.usefixtures("private_index")


def _fields(group) -> dict:
    return {
        str(f.attrs["long_name"]): f
        for f in group.values()
        if isinstance(f, nexus.NXfield) and "long_name" in f.attrs
    }


@pytest.mark.parametrize("link", [False, True])
def test_export_nexus_reads_back_equal(cli, ophyd_async_store, tmp_path, link):
    h5, store, root = ophyd_async_store.h5, ophyd_async_store.store, ophyd_async_store.root
    source = jsonl.BlueskyJSONLCatalog(str(store), root_map={root: str(h5)})
    dest = tmp_path / "out"
    flags = ["--link-external"] if link else []
    out = cli.ok("export", store, dest, "--format", "nexus", "--root-map", f"{root}={h5}", *flags)
    written = out.split()
    assert sorted(written) == sorted(str(dest / f"{uid}.nxs") for uid in source)
    for uid in source:
        want = source[uid].primary.read()
        f = nexus.nxload(str(dest / f"{uid}.nxs"))
        try:
            entry = f[f.attrs["default"]]
            assert entry["entry_identifier"].nxvalue == uid
            got = _fields(entry["primary"])
            assert set(got) == {*want.data_vars, "time", "seq_num"}
            for key in want.data_vars:
                values = np.asarray(got[key].nxdata)
                assert values.dtype == want[key].dtype, key
                np.testing.assert_array_equal(values, want[key].values, err_msg=key)
        finally:
            f.nxfile.close()
        with h5py.File(dest / f"{uid}.nxs", "r") as f:
            # Linked: virtual datasets over the detector files; else copies.
            assert f[f.attrs["default"]]["primary"]["bdet"].is_virtual == link


def test_link_external_needs_a_writer_that_can(cli, ophyd_async_store, tmp_path):
    dest = tmp_path / "out"
    err = cli.fails("export", ophyd_async_store.store, dest, "--link-external")
    assert "'jsonl' writer does not support --link-external" in err
    assert not dest.exists() or not any(dest.iterdir())


def test_copy_external_nexus_export_moves_with_its_files(cli, ophyd_async_store, tmp_path):
    h5, store, root = ophyd_async_store.h5, ophyd_async_store.store, ophyd_async_store.root
    source = jsonl.BlueskyJSONLCatalog(str(store), root_map={root: str(h5)})
    want = {uid: source[uid].primary.read() for uid in source}
    dest = tmp_path / "out"
    cli.ok(
        "export", store, dest, "--format", "nexus", "--copy-external", "--root-map", f"{root}={h5}"
    )
    moved = tmp_path / "moved"
    dest.rename(moved)
    shutil.rmtree(h5)  # only the copies are left
    for uid, ds in want.items():
        with h5py.File(moved / f"{uid}.nxs", "r") as f:
            data = f[f.attrs["default"]]["primary"]
            assert data["bdet"].is_virtual
            np.testing.assert_array_equal(data["bdet"][()], ds["bdet"].values)
