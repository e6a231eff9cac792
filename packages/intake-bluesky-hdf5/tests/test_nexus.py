"""The NeXus writer: files from real RunEngine runs read back by NeXus readers.

Runs come from a bluesky RunEngine driving ophyd.sim devices (a scan with a
baseline, a grid scan, a count of an inline image, an external image filled
by a handler) and from the ophyd-async samples (real SWMR detector files).
Each file is opened with ``nexusformat.nexus.nxload`` -- what NeXpy uses --
and every field is compared with ``run.<stream>.read()``: values, dtype and
order. ``nxvalidate`` (offline NeXus definitions) checks the structure.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

import event_model
import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.export import ExportError, export_runs
from intake_bluesky.hdf5 import NexusWriter

# nexusformat sets numpy's print options for the whole process when imported
# (threshold=5): keep them as they were, for every other test and doctest.
with np.printoptions():
    from nexusformat import nexus

SAMPLE_ROOT = "/data/ophyd-async-samples/h5"
CASES = ["count_blob", "scan_two_blobs_point", "fly_cpe1", "fly_cpe3"]


# --- runs ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_catalog():
    """Real RunEngine runs of ophyd.sim devices, with a baseline, in memory."""
    pytest.importorskip("bluesky")
    pytest.importorskip("ophyd")
    import bluesky.plans as bp
    from bluesky import RunEngine
    from bluesky.preprocessors import SupplementalData
    from ophyd.sim import det, det4, direct_img, img, motor, motor1, motor2

    from intake_bluesky.core.testing import NumpySeqHandler

    cat = BlueskyInMemoryCatalog(handler_registry={"NPY_SEQ": NumpySeqHandler})
    RE = RunEngine({})
    RE.preprocessors.append(SupplementalData(baseline=[motor1, motor2]))
    RE.subscribe(cat)
    motor.delay = 0
    RE(bp.scan([det, img], motor, -1, 1, 5), sample="Si", proposal_id="p-42")
    RE(bp.grid_scan([det4], motor1, -1, 1, 3, motor2, -1, 1, 2))
    RE(bp.count([direct_img], 3), title="three frames")
    return cat


@pytest.fixture
def sample_catalog(sample_docs, sample_h5):
    """The ophyd-async sample runs, their files in a writable copy."""
    cat = BlueskyInMemoryCatalog(root_map={SAMPLE_ROOT: str(sample_h5)})
    for case in CASES:
        for name, doc in sample_docs[case]:
            cat(name, doc)
    return cat


def _case_uid(sample_docs, case):
    return sample_docs[case][0][1]["uid"]


# --- reading back -------------------------------------------------------------
def _entry(root):
    return root[root.attrs["default"]]


def _fields(group) -> dict:
    """``read()`` name -> NXfield, for the fields of an NXdata group."""
    return {
        str(f.attrs["long_name"]): f
        for f in group.values()
        if isinstance(f, nexus.NXfield) and "long_name" in f.attrs
    }


def _values(field) -> np.ndarray:
    """A field's values as stored (h5py gives UTF-8 strings as bytes)."""
    # nexusformat gives a one-element text field as a bare string.
    data = np.asarray(field.nxdata, dtype=object if field.dtype == object else None)
    data = data.reshape(field.shape)
    if data.dtype == object and data.size and isinstance(data.flat[0], bytes):
        data = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(data)
    if field.attrs.get("encoding") == "json":  # text HDF5 strings cannot hold
        data = np.vectorize(json.loads, otypes=[object])(data)
    return data


def _assert_stream_equal(group, ds):
    fields = _fields(group)
    assert set(fields) == set(ds.data_vars) | {"time", "seq_num"}
    for name, field in fields.items():
        got = _values(field)
        want = ds[name].values
        assert got.shape == want.shape, name
        if want.dtype.kind in "UO":  # text: UTF-8 strings in the file
            assert got.dtype == object, name
            want = want.astype(object)
        else:
            assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def _assert_file_equal(path, run):
    root = nexus.nxload(path)
    try:
        entry = _entry(root)
        for stream in run:
            ds = run[stream].read()
            _assert_stream_equal(entry[_group_name(entry, stream)], ds)
    finally:
        root.nxfile.close()


def _group_name(entry, stream):
    (name,) = [k for k, g in entry.items() if isinstance(g, nexus.NXdata) and k.startswith(stream)]
    return name


def _export(cat, tmp_path, name="out", **kwargs):
    return export_runs(cat, tmp_path / name, format="nexus", **kwargs)


# --- ophyd.sim runs -------------------------------------------------------------
def test_sim_runs_read_back_equal_to_read(sim_catalog, tmp_path):
    paths = _export(sim_catalog, tmp_path)
    assert [Path(p).name for p in paths] == [f"{uid}.nxs" for uid in sim_catalog]
    for path, uid in zip(paths, sim_catalog, strict=True):
        _assert_file_equal(path, sim_catalog[uid])


def test_entry_fields_and_documents(sim_catalog, tmp_path):
    run = sim_catalog[-3]  # the scan
    start, stop = run.metadata["start"], run.metadata["stop"]
    (path,) = export_runs([run], tmp_path, format="nexus")
    with h5py.File(path, "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        assert f.attrs["file_name"] == f"{run.uid}.nxs"  # the final name, not the temporary one
        assert f.attrs["creator"].startswith("intake-bluesky-hdf5 ")
        datetime.datetime.fromisoformat(f.attrs["file_time"])
        entry_name = f"scan_{start['scan_id']}"
        assert f.attrs["default"] == entry_name
        entry = f[entry_name]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry.attrs["default"] == "primary"
        assert entry["entry_identifier"].asstr()[()] == run.uid
        assert entry["experiment_identifier"].asstr()[()] == "p-42"
        assert entry["title"].asstr()[()] == f"scan (scan_id {start['scan_id']})"
        began = datetime.datetime.fromisoformat(entry["start_time"].asstr()[()])
        ended = datetime.datetime.fromisoformat(entry["end_time"].asstr()[()])
        assert began.tzinfo is not None
        assert began.timestamp() == pytest.approx(start["time"], abs=1e-6)
        assert ended.timestamp() == pytest.approx(stop["time"], abs=1e-6)
        docs = entry["documents"]
        assert docs.attrs["NX_class"] == "NXcollection"
        assert json.loads(docs["start"].asstr()[()]) == json.loads(json.dumps(start))
        assert json.loads(docs["stop"].asstr()[()]) == json.loads(json.dumps(stop))
        descriptors = json.loads(docs["descriptors"].asstr()[()])
        assert [d["uid"] for d in descriptors] == [d["uid"] for d in run.descriptors]
        meta = entry["metadata"]
        assert meta["sample"].asstr()[()] == "Si"
        assert meta["scan_id"][()] == start["scan_id"]
        assert [m.decode() for m in meta["detectors"][()]] == ["det", "img"]
        assert meta["plan_name"].asstr()[()] == "scan"


def test_title_from_the_start_document(sim_catalog, tmp_path):
    (path,) = export_runs([sim_catalog[-1]], tmp_path, format="nexus")
    with h5py.File(path, "r") as f:
        assert _h5_entry(f)["title"].asstr()[()] == "three frames"


def _h5_entry(f):
    return f[f.attrs["default"]]


def test_signal_and_axes_from_the_hints(sim_catalog, tmp_path):
    scan, grid, count = (sim_catalog[i] for i in (-3, -2, -1))
    paths = export_runs([scan, grid, count], tmp_path, format="nexus")
    with h5py.File(paths[0], "r") as f:
        data = _h5_entry(f)["primary"]
        assert data.attrs["NX_class"] == "NXdata"
        assert data.attrs["signal"] == "det"  # the hinted detector, before the image
        assert list(data.attrs["axes"]) == ["motor"]
        assert data.attrs["motor_indices"] == 0
        # The baseline has no detector and no scanned motor: its hinted
        # fields are plotted against time.
        base = _h5_entry(f)["baseline"]
        signals = {base.attrs["signal"], *base.attrs["auxiliary_signals"]}
        assert signals == {"motor1", "motor2"}
        assert list(base.attrs["axes"]) == ["time"]
    with h5py.File(paths[1], "r") as f:
        data = _h5_entry(f)["primary"]
        assert data.attrs["signal"] == "det4"
        assert list(data.attrs["axes"]) == ["motor1"]  # rows are the flattened grid
        assert data.attrs["motor1_indices"] == 0 and data.attrs["motor2_indices"] == 0
    with h5py.File(paths[2], "r") as f:
        data = _h5_entry(f)["primary"]
        assert data.attrs["signal"] == "img"
        assert list(data.attrs["axes"]) == ["time", ".", "."]  # one name per signal dim


def test_units_from_the_data_keys(sample_catalog, sample_docs, tmp_path):
    run = sample_catalog[_case_uid(sample_docs, "scan_two_blobs_point")]
    (path,) = export_runs([run], tmp_path, format="nexus")
    data_keys = run.primary.descriptors[0]["data_keys"]
    root = nexus.nxload(path)
    try:
        fields = _fields(_entry(root)["primary"])
        assert fields["stage-x"].attrs["units"] == data_keys["stage-x"]["units"] == "mm"
        assert fields["time"].attrs["units"] == "s"
        for name, field in fields.items():
            if name not in ("time", "seq_num"):
                assert field.attrs.get("units") == data_keys[name].get("units"), name
                assert json.loads(field.attrs["data_key"]) == data_keys[name]
    finally:
        root.nxfile.close()


def test_timestamps_per_field(sim_catalog, tmp_path):
    run = sim_catalog[-3]
    (path,) = export_runs([run], tmp_path, format="nexus")
    want = run.primary.timestamps.read()
    with h5py.File(path, "r") as f:
        stamps = _h5_entry(f)["primary"]["timestamps"]
        assert stamps.attrs["NX_class"] == "NXcollection"
        got = {stamps[k].attrs["long_name"]: stamps[k][()] for k in stamps}
    assert set(got) == set(want.data_vars) == {"det", "img", "motor", "motor_setpoint"}
    for key, values in got.items():
        np.testing.assert_array_equal(values, want[key].values)
        assert values.dtype == np.float64


def test_configuration_per_device(sim_catalog, tmp_path):
    run = sim_catalog[-3]
    (path,) = export_runs([run], tmp_path, format="nexus")
    root = nexus.nxload(path)
    try:
        data = _entry(root)["primary"]
        assert sorted(run.primary.config) == ["det", "img", "motor"]
        for device in run.primary.config:
            want = run.primary.config[device].read()
            coll = data[f"{device}_configuration"]
            assert coll.nxclass == "NXcollection"
            got = {
                str(f.attrs["long_name"]): _values(f)
                for f in coll.values()
                if "long_name" in f.attrs
            }
            assert set(got) == set(want.data_vars)
            for key, value in got.items():
                np.testing.assert_array_equal(value, want[key].values.astype(value.dtype))
            np.testing.assert_array_equal(coll["time"].nxdata, want["time"].values)
    finally:
        root.nxfile.close()


def test_inline_frames_are_chunked_and_compressed(tmp_path):
    """Frames that are no HDF5 file's (inline in events) get the writer's filter."""
    frames = np.arange(4 * 64 * 64, dtype="<u2").reshape(4, 64, 64)
    cat = BlueskyInMemoryCatalog()
    for name, doc in _inline_image_run(frames):
        cat(name, doc)
    (path,) = export_runs(cat, tmp_path / "gzip", format="nexus")
    with h5py.File(path, "r") as f:
        dset = _h5_entry(f)["primary"]["cam"]
        assert dset.chunks == (1, 64, 64)
        assert dset.compression == "gzip" and dset.shuffle
        np.testing.assert_array_equal(dset[()], frames)
    writer = NexusWriter(compression=hdf5plugin.Bitshuffle())
    path = str(tmp_path / "lz4.nxs")
    writer.write_run(cat[-1], path)
    with h5py.File(path, "r") as f:
        dset = _h5_entry(f)["primary"]["cam"]
        assert str(hdf5plugin.BSHUF_ID) in dset._filters
        np.testing.assert_array_equal(dset[()], frames)


def _inline_image_run(frames):
    bundle = event_model.compose_run(metadata={"scan_id": 7})
    yield "start", bundle.start_doc
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "cam": {
                "source": "sim",
                "shape": list(frames.shape[1:]),
                "dtype": "array",
                "dtype_numpy": frames.dtype.str,
            }
        },
    )
    yield "descriptor", desc.descriptor_doc
    for i, frame in enumerate(frames):
        yield (
            "event",
            desc.compose_event(data={"cam": frame}, timestamps={"cam": 1.0 + i}, seq_num=i + 1),
        )
    yield "stop", bundle.compose_stop()


# --- ophyd-async runs: detector HDF5 files ------------------------------------------------
@pytest.mark.parametrize("link_external", [False, True])
def test_ophyd_async_samples_read_back_equal(sample_catalog, tmp_path, link_external):
    paths = _export(sample_catalog, tmp_path, link_external=link_external)
    assert len(paths) == len(CASES)
    for path, uid in zip(paths, sample_catalog, strict=True):
        _assert_file_equal(path, sample_catalog[uid])


def test_copies_keep_the_source_chunking(sample_catalog, sample_docs, tmp_path):
    run = sample_catalog[_case_uid(sample_docs, "fly_cpe3")]  # 3 frames per row
    (path,) = export_runs([run], tmp_path, format="nexus")
    with h5py.File(path, "r") as f:
        data = _h5_entry(f)["primary"]
        assert data["bdet"].shape == (4, 3, 240, 320)
        assert not data["bdet"].is_virtual
        # The file's chunks are single frames; a row is 3 of them: one row per chunk.
        assert data["bdet"].chunks == (1, 3, 240, 320)
        assert data["bdet"].compression == "gzip"  # the source is uncompressed
        assert np.isnan(data["time"][()]).all()  # a fly scan: no event times
        assert data["seq_num"][()].tolist() == [1, 2, 3, 4]


def test_link_external_makes_virtual_datasets(sample_catalog, sample_docs, sample_h5, tmp_path):
    run = sample_catalog[_case_uid(sample_docs, "scan_two_blobs_point")]
    (copied,) = export_runs([run], tmp_path / "copy", format="nexus")
    (linked,) = export_runs([run], tmp_path / "link", format="nexus", link_external=True)
    with h5py.File(linked, "r") as f:
        data = _h5_entry(f)["primary"]
        for key in ("bdet", "bdet2"):
            assert data[key].is_virtual
            files = {s.file_name for s in data[key].virtual_sources()}
            # The locations after root_map, where the readers found them.
            assert files and all(Path(p).parent == sample_h5 for p in files)
            # One mapping per row, as nexusformat counts a virtual field's rows.
            assert len(data[key].virtual_sources()) == data[key].shape[0]
        assert not data["bdet_sum"].is_virtual  # small per-row values are copied
        assert data["bdet_sum"].attrs["long_name"] == "bdet-sum"
        frames = run.primary.read()["bdet"].values
        np.testing.assert_array_equal(data["bdet"][()], frames)
    # Two detectors' frames are referred to, not held (the copy compresses
    # these synthetic frames to almost nothing, so the raw size is the measure).
    assert os.path.getsize(linked) < 2 * frames.nbytes / 10
    with h5py.File(copied, "r") as f:
        assert not _h5_entry(f)["primary"]["bdet"].is_virtual


def test_link_external_refuses_a_missing_file(sample_docs, tmp_path):
    cat = BlueskyInMemoryCatalog(root_map={SAMPLE_ROOT: str(tmp_path / "nowhere")})
    for name, doc in sample_docs["fly_cpe1"]:
        cat(name, doc)
    with pytest.raises(FileNotFoundError, match="nowhere") as info:
        export_runs(cat, tmp_path / "out", format="nexus", link_external=True)
    assert "--root-map" in str(info.value)
    assert os.listdir(tmp_path / "out") == []  # no partial or temporary file left


def test_link_external_refuses_a_file_cut_short(sample_docs, sample_h5, tmp_path):
    docs = sample_docs["fly_cpe1"]
    (sr,) = [d for n, d in docs if n == "stream_resource" and d["data_key"] == "bdet"]
    path = sample_h5 / Path(sr["uri"]).name
    with h5py.File(path, "a", libver="latest") as f:
        f["/entry/data/data"].resize(5, axis=0)  # the run's datums name 7 frames
    cat = BlueskyInMemoryCatalog(root_map={SAMPLE_ROOT: str(sample_h5)})
    for name, doc in docs:
        cat(name, doc)
    with pytest.raises(ValueError, match="holds 5 frames"):
        export_runs(cat, tmp_path / "out", format="nexus", link_external=True)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("filters", "raw_copy"),
    [
        (dict(hdf5plugin.Bitshuffle()), True),
        (dict(hdf5plugin.Blosc(cname="zstd")), True),
        ({"compression": "gzip", "shuffle": True}, True),
        # Blosc2's parameters hold the chunk's shape: its chunk bytes do not
        # fit a copy with one more axis, so they are decoded and encoded again.
        (dict(hdf5plugin.Blosc2()), False),
    ],
    ids=["bitshuffle", "blosc", "gzip", "blosc2"],
)
def test_compressed_detector_file_keeps_its_filter(
    tmp_path, write_detector_file, filters, raw_copy
):
    """A compressed detector file is copied with its own filter and chunking,
    its chunks byte for byte where the filter allows."""
    h5 = tmp_path / "h5"
    h5.mkdir()
    frames, sums = write_detector_file(
        h5 / "det.h5", 7, shape=(32, 48), dtype="<u2", frame_chunks=2, **filters
    )
    cat = BlueskyInMemoryCatalog(root_map={"/stored": str(h5)})
    for name, doc in _fly_run("/stored/det.h5", 7, (32, 48), "<u2"):
        cat(name, doc)
    (path,) = export_runs(cat, tmp_path / "out", format="nexus")
    want = cat[-1].primary.read()["det"].values
    with h5py.File(path, "r") as f, h5py.File(h5 / "det.h5", "r") as src:
        dset = _h5_entry(f)["primary"]["det"]
        source = src["/entry/data/data"]
        assert dset.dtype == np.dtype("<u2")
        assert dset.chunks == (2, 1, 32, 48)
        assert list(dset._filters) == list(source._filters)
        np.testing.assert_array_equal(dset[()], frames.reshape(7, 1, 32, 48))
        np.testing.assert_array_equal(dset[()], want)
        np.testing.assert_array_equal(_h5_entry(f)["primary"]["det_sum"][()], sums[:, None])
        same_bytes = [
            dset.id.read_direct_chunk((r, 0, 0, 0)) == source.id.read_direct_chunk((r, 0, 0))
            for r in range(0, 7, 2)
        ]
        assert all(same_bytes) == raw_copy


def test_chunks_are_copied_without_recompression(tmp_path):
    """Chunk bytes no gzip level-1 encoder makes (level 9, though the dataset
    says level 1) reach the copy unchanged: they were not decoded and encoded
    again."""
    import zlib

    h5 = tmp_path / "h5"
    h5.mkdir()
    frames = (np.arange(8 * 32 * 48) % 251).astype("<u2").reshape(8, 32, 48)
    with h5py.File(h5 / "det.h5", "w", libver="latest") as f:
        data = f.create_dataset(
            "/entry/data/data",
            shape=(8, 32, 48),
            chunks=(2, 32, 48),
            dtype="<u2",
            compression="gzip",
            compression_opts=1,
        )
        for r in range(0, 8, 2):
            data.id.write_direct_chunk((r, 0, 0), zlib.compress(frames[r : r + 2].tobytes(), 9))
        f.create_dataset("/entry/sum", data=frames.reshape(8, -1).sum(axis=1).astype("<i8"))
    cat = BlueskyInMemoryCatalog(root_map={"/stored": str(h5)})
    for name, doc in _fly_run("/stored/det.h5", 8, (32, 48), "<u2"):
        cat(name, doc)
    (path,) = export_runs(cat, tmp_path / "out", format="nexus")
    with h5py.File(path, "r") as f, h5py.File(h5 / "det.h5", "r") as src:
        dset, source = _h5_entry(f)["primary"]["det"], src["/entry/data/data"]
        np.testing.assert_array_equal(dset[()], frames[:, None])
        for r in range(0, 8, 2):
            stored = source.id.read_direct_chunk((r, 0, 0))
            assert dset.id.read_direct_chunk((r, 0, 0, 0)) == stored
            assert stored[1] != zlib.compress(frames[r : r + 2].tobytes(), 1)


@pytest.mark.parametrize("link_external", [False, True])
@pytest.mark.parametrize("filters", [{}, dict(hdf5plugin.Bitshuffle())], ids=["plain", "bslz4"])
def test_rows_in_another_order_than_the_file(
    tmp_path, write_detector_file, filters, link_external
):
    """Stream datums whose seq_nums run against the file's order: rows are
    still the readers' rows (copied, chunk-copied or linked)."""
    h5 = tmp_path / "h5"
    h5.mkdir()
    # Frames of 6 kB: big enough to be linked rather than copied.
    write_detector_file(h5 / "det.h5", 6, shape=(48, 64), dtype="<u2", frame_chunks=2, **filters)
    docs = list(_fly_run("/stored/det.h5", 6, (48, 64), "<u2"))
    for _, doc in docs:  # the file's frames 0-2 are rows 4-6, frames 3-5 rows 1-3
        if "seq_nums" in doc:
            first = doc["indices"]["start"]
            doc["seq_nums"] = {"start": 4 - first, "stop": 7 - first}
    cat = BlueskyInMemoryCatalog(root_map={"/stored": str(h5)})
    for name, doc in docs:
        cat(name, doc)
    want = cat[-1].primary.read()
    (path,) = export_runs(cat, tmp_path / "out", format="nexus", link_external=link_external)
    with h5py.File(path, "r") as f:
        data = _h5_entry(f)["primary"]
        assert data["det"].is_virtual == link_external
        np.testing.assert_array_equal(data["det"][()], want["det"].values)
        np.testing.assert_array_equal(data["det_sum"][()], want["det-sum"].values)
        assert data["seq_num"][()].tolist() == [1, 2, 3, 4, 5, 6]
    # Not the file's order: row 0 is the file's frame 3.
    with h5py.File(h5 / "det.h5", "r") as src:
        np.testing.assert_array_equal(want["det"].values[0, 0], src["/entry/data/data"][3])


def _fly_run(uri_path, n, shape, dtype):
    """A fly scan's documents over one detector file (as ophyd-async writes them)."""
    bundle = event_model.compose_run(metadata={"scan_id": 3, "plan_name": "fly"})
    yield "start", bundle.start_doc
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "det": {
                "source": "sim",
                "shape": [1, *shape],
                "dtype": "array",
                "dtype_numpy": dtype,
                "external": "STREAM:",
            },
            "det-sum": {
                "source": "sim",
                "shape": [1],
                "dtype": "number",
                "dtype_numpy": "<i8",
                "external": "STREAM:",
            },
        },
        hints={"det": {"fields": ["det"]}},
    )
    yield "descriptor", desc.descriptor_doc
    resources = []
    for key, dataset in (("det", "/entry/data/data"), ("det-sum", "/entry/sum")):
        res = bundle.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{uri_path}",
            data_key=key,
            parameters={"dataset": dataset, "chunk_shape": [1]},
        )
        resources.append(res)
        yield "stream_resource", res.stream_resource_doc
    for a in range(0, n, 3):
        b = min(n, a + 3)
        for res in resources:
            yield (
                "stream_datum",
                res.compose_stream_datum(
                    indices={"start": a, "stop": b},
                    seq_nums={"start": a + 1, "stop": b + 1},
                    descriptor=desc.descriptor_doc,
                ),
            )
    yield "stop", bundle.compose_stop()


# --- the export rules ---------------------------------------------------------------
def test_no_silent_overwrite_and_no_temporary_files(sim_catalog, tmp_path):
    run = sim_catalog[-1]
    (path,) = export_runs([run], tmp_path, format="nexus")
    before = Path(path).read_bytes()
    with pytest.raises(ExportError, match="already exist"):
        export_runs([run], tmp_path, format="nexus")
    assert Path(path).read_bytes() == before
    assert export_runs([run], tmp_path, format="nexus", existing="skip") == []
    assert export_runs([run], tmp_path, format="nexus", existing="overwrite") == [path]
    assert sorted(os.listdir(tmp_path)) == [Path(path).name]


def test_progress_counts_every_row(sim_catalog, tmp_path):
    counts = []
    export_runs(sim_catalog, tmp_path, format="nexus", progress=counts.append)
    want = sum(
        sim_catalog[uid][s].read().sizes["time"] for uid in sim_catalog for s in sim_catalog[uid]
    )
    assert sum(counts) == want
    assert all(c > 0 for c in counts)


def test_copy_external_links_to_copies_that_move_with_the_export(
    sample_catalog, sample_docs, sample_h5, tmp_path
):
    run = sample_catalog[_case_uid(sample_docs, "scan_two_blobs_point")]
    want = run.primary.read()
    (path,) = export_runs([run], tmp_path / "out", format="nexus", copy_external=True)
    copies = sorted(p.name for p in (tmp_path / "out" / "external").rglob("*.h5"))
    docs = sample_docs["scan_two_blobs_point"]
    used = {Path(d["uri"]).name for n, d in docs if n == "stream_resource"}
    assert copies == sorted(used)  # each detector file once
    # Moved, and the originals gone: the links follow the export.
    moved = tmp_path / "elsewhere"
    (tmp_path / "out").rename(moved)
    for p in sample_h5.iterdir():
        p.unlink()
    with h5py.File(moved / Path(path).name, "r") as f:
        data = _h5_entry(f)["primary"]
        assert data["bdet"].is_virtual
        names = {s.file_name for s in data["bdet"].virtual_sources()}
        assert names and all(n.startswith("external/") for n in names)
        np.testing.assert_array_equal(data["bdet"][()], want["bdet"].values)
        np.testing.assert_array_equal(data["bdet2"][()], want["bdet2"].values)


def test_copy_external_refuses_a_missing_file(sample_docs, tmp_path):
    cat = BlueskyInMemoryCatalog(root_map={SAMPLE_ROOT: str(tmp_path / "nowhere")})
    for name, doc in sample_docs["fly_cpe1"]:
        cat(name, doc)
    with pytest.raises(ExportError, match="not found"):
        export_runs(cat, tmp_path / "out", format="nexus", copy_external=True)
    assert not list((tmp_path / "out").glob("*.nxs"))


# --- structure -----------------------------------------------------------------------
def test_nxvalidate_reports_no_errors(sim_catalog, sample_catalog, tmp_path, monkeypatch):
    pytest.importorskip("nxvalidate")
    # nxvalidate sizes its report to the terminal; under pytest there is none.
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size((120, 40)))
    from nxvalidate import validate

    paths = _export(sim_catalog, tmp_path, "sim")
    paths += _export(sample_catalog, tmp_path, "samples", link_external=True)
    validate.logger.setLevel(logging.WARNING)
    for path in paths:
        validate.logger.total = {"warning": 0, "error": 0}
        warnings_, errors = validate.validate_file(path)
        assert (warnings_, errors) == (0, 0), path


# --- values, whatever they are ----------------------------------------------------------
_DTYPES = ["<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8", "|b1"]


@st.composite
def _columns(draw):
    n = draw(st.integers(1, 6))
    cols = {}
    for i in range(draw(st.integers(1, 4))):
        dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
        shape = draw(st.sampled_from([(), (3,), (2, 2)]))
        cols[f"f{i}-x"] = draw(
            hnp.arrays(
                dtype, (n, *shape), elements={"allow_nan": False} if dtype.kind == "f" else None
            )
        )
    if draw(st.booleans()):
        cols["label"] = np.array(
            draw(st.lists(st.text(min_size=0, max_size=5), min_size=n, max_size=n)), dtype=object
        )
    return cols


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cols=_columns())
def test_values_round_trip(cols, tmp_path_factory):
    n = len(next(iter(cols.values())))
    bundle = event_model.compose_run(metadata={"scan_id": 1})
    data_keys = {}
    for key, col in cols.items():
        if col.dtype == object:
            data_keys[key] = {"source": "x", "shape": [], "dtype": "string"}
        else:
            data_keys[key] = {
                "source": "x",
                "shape": list(col.shape[1:]),
                "dtype": "array" if col.ndim > 1 else "number",
                "dtype_numpy": col.dtype.str,
            }
    desc = bundle.compose_descriptor(name="primary", data_keys=data_keys)
    cat = BlueskyInMemoryCatalog()
    cat("start", bundle.start_doc)
    cat("descriptor", desc.descriptor_doc)
    for i in range(n):
        data = {k: c[i] for k, c in cols.items()}
        cat(
            "event",
            desc.compose_event(data=data, timestamps=dict.fromkeys(cols, 1.0 + i), seq_num=i + 1),
        )
    cat("stop", bundle.compose_stop())
    run = cat[-1]
    (path,) = export_runs([run], tmp_path_factory.mktemp("nx"), format="nexus")
    ds = run.primary.read()
    root = nexus.nxload(path)
    try:
        fields = _fields(_entry(root)["primary"])
        for key, col in cols.items():
            got = _values(fields[key])
            if col.dtype == object:
                assert got.tolist() == list(ds[key].values) == col.tolist()
                continue
            assert got.dtype == ds[key].dtype == col.dtype
            np.testing.assert_array_equal(got, ds[key].values)
            np.testing.assert_array_equal(got, col)
    finally:
        root.nxfile.close()
