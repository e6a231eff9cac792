"""Runs written into a real tiled server by TiledWriter from a real RunEngine,
read back through BlueskyTiledCatalog: the same Datasets as the in-memory
catalog of the documents TiledWriter received."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.tiled import BlueskyTiledCatalog

SAMPLES = Path(__file__).parents[2] / "intake-bluesky-hdf5" / "tests" / "samples" / "ophyd_async"
SAMPLE_ROOT = "/data/ophyd-async-samples/h5"


def as_json(doc):
    """A document as any JSON store keeps it (tuples become lists)."""
    return json.loads(json.dumps(doc))


def memory_catalog(documents):
    """The in-memory catalog of the documents TiledWriter received, as a JSON
    store keeps them."""
    cat = BlueskyInMemoryCatalog()
    for docs in documents.values():
        for name, doc in docs:
            cat(name, as_json(doc))
    return cat


def assert_same_dataset(ours: xr.Dataset, expected: xr.Dataset) -> None:
    """Equal values, dims, coords and dtypes; attrs equal except the
    ``dtype_numpy`` TiledWriter's normalizer adds to data keys."""
    xr.testing.assert_equal(ours, expected)
    assert list(ours.data_vars) == list(expected.data_vars)
    for name, variable in expected.variables.items():
        assert ours[name].dtype == variable.dtype, name
        attrs = {k: v for k, v in ours[name].attrs.items() if k != "dtype_numpy"}
        want = {k: v for k, v in variable.attrs.items() if k != "dtype_numpy"}
        assert attrs == want, name


@pytest.fixture
def scalar_runs(beamline):
    import bluesky.plans as bp
    from bluesky.preprocessors import SupplementalData
    from ophyd.sim import det, det4, motor, motor1, motor2

    beamline.RE.preprocessors.append(SupplementalData(baseline=[motor1, motor2]))
    first = beamline.RE(bp.scan([det], motor, -1, 1, 7), sample="Au", operator="ada")[0]
    second = beamline.RE(bp.count([det4], num=3), sample="Cu")[0]
    return beamline, [first, second]


def test_scalar_scans_with_baseline_and_configuration(scalar_runs):
    beamline, uids = scalar_runs
    cat = BlueskyTiledCatalog(beamline.container)
    expected = memory_catalog(beamline.documents)
    assert list(cat) == uids
    assert len(cat) == 2
    for uid in uids:
        run, want = cat[uid], expected[uid]
        assert run.metadata["start"] == want.metadata["start"]
        assert run.metadata["stop"] == want.metadata["stop"]
        assert sorted(run) == sorted(want) == ["baseline", "primary"]
        for stream in want:
            assert_same_dataset(run[stream].read(), want[stream].read())
            assert_same_dataset(run[stream].to_dask().compute(), want[stream].read())
            for device, config in want[stream].config.items():
                assert_same_dataset(run[stream].config[device].read(), config.read())
            assert_same_dataset(run[stream].timestamps.read(), want[stream].timestamps.read())
    assert cat[-1].uid == uids[1]
    assert cat[1].uid == uids[0]
    # A partial uid of digits only would be a scan_id.
    partial = next(uids[0][:n] for n in range(8, 37) if not uids[0][:n].isdigit())
    assert cat[partial].uid == uids[0]
    primary = cat[uids[0]].primary.read()
    assert primary["motor"].values.tolist() == pytest.approx(np.linspace(-1, 1, 7).tolist())


def test_search_agrees_with_the_in_memory_catalog(scalar_runs):
    beamline, uids = scalar_runs
    cat = BlueskyTiledCatalog(beamline.container)
    expected = memory_catalog(beamline.documents)
    queries = [
        {},
        {"sample": "Au"},
        {"plan_name": "count"},
        {"scan_id": {"$gte": 2}},
        {"plan_name": {"$in": ["scan", "count"]}},
        {"$or": [{"sample": "Cu"}, {"operator": "ada"}]},
        {"detectors": "det4"},
        {"motors": {"$exists": False}},
        {"uid": {"$regex": "^" + uids[1][:6]}},
        {"num_points": {"$gt": 5}},
        {"plan_name": {"$ne": "scan"}},
    ]
    for query in queries:
        assert list(cat.search(query)) == list(expected.search(query)), query
        assert len(cat.search(query)) == len(expected.search(query)), query
    nested = cat.search({"sample": {"$in": ["Au", "Cu"]}}).search({"plan_name": "scan"})
    assert list(nested) == [uids[0]]


@pytest.fixture
def ophyd_async_run(beamline):
    import bluesky.plans as bp

    stage, pdet, bdet = beamline.ophyd_async_devices()
    uid = beamline.RE(bp.scan([bdet, pdet], stage.x, 1, 2, 4))[0]
    return beamline, uid


@pytest.mark.parametrize("data_access", ["auto", "direct", "http"])
def test_ophyd_async_step_scan(ophyd_async_run, data_access):
    beamline, uid = ophyd_async_run
    cat = BlueskyTiledCatalog(beamline.container, data_access=data_access)
    want = memory_catalog(beamline.documents)[uid].primary.read()
    run = cat[uid]
    assert run.describe()["args"]["data_access"] == (
        "direct" if data_access == "auto" else data_access
    )
    ours = run.primary.read()
    assert_same_dataset(ours, want)
    assert ours["bdet"].dtype == np.uint8 and ours["bdet"].shape == (4, 1, 240, 320)
    lazy = run.primary.to_dask()
    assert_same_dataset(lazy.compute(), want)
    np.testing.assert_array_equal(lazy["bdet"][2:3].values, want["bdet"][2:3].values)


def test_http_when_files_are_not_reachable(ophyd_async_run, tmp_path):
    beamline, uid = ophyd_async_run
    want = memory_catalog(beamline.documents)[uid].primary.read()
    # The files move away from where tiled registered them: auto falls back
    # to tiled's array endpoints... which read the files where tiled has them.
    moved = tmp_path / "moved"
    shutil.copytree(beamline.h5_dir, moved)
    cat = BlueskyTiledCatalog(beamline.container, root_map={str(beamline.h5_dir): "/nonexistent"})
    run = cat[uid]
    assert run.describe()["args"]["data_access"] == "http"
    assert_same_dataset(run.primary.read(), want)
    # ... and with a root_map to where they are now, they are read directly.
    cat = BlueskyTiledCatalog(beamline.container, root_map={str(beamline.h5_dir): str(moved)})
    assert cat[uid].describe()["args"]["data_access"] == "direct"
    assert_same_dataset(cat[uid].primary.read(), want)


def _sample_documents(case, root):
    docs = json.loads((SAMPLES / "documents.json").read_text())[case]
    text = json.dumps(docs).replace(SAMPLE_ROOT, str(root))
    return json.loads(text)


@pytest.fixture
def sample_root(tmp_path):
    root = tmp_path / "samples"
    shutil.copytree(SAMPLES / "h5", root)
    return root


@pytest.mark.parametrize("case", ["count_blob", "scan_two_blobs_point", "fly_cpe1", "fly_cpe3"])
def test_recorded_ophyd_async_runs(beamline, sample_root, case):
    """Runs a RunEngine recorded (fly scans without events, 3 frames per
    event), replayed into TiledWriter."""
    from bluesky_tiled_plugins import TiledWriter

    documents = _sample_documents(case, sample_root)
    writer = TiledWriter(beamline.container)
    for name, doc in documents:
        writer(name, doc)
    uid = documents[0][1]["uid"]
    expected = memory_catalog({uid: documents})[uid]
    for access in ("direct", "http"):
        run = BlueskyTiledCatalog(beamline.container, data_access=access)[uid]
        assert sorted(run) == sorted(expected)
        for stream in expected:
            want = expected[stream].read()
            assert_same_dataset(run[stream].read(), want)
            assert_same_dataset(run[stream].to_dask().compute(), want)


def test_follow_shows_rows_as_a_run_is_written(beamline):
    """A RunEngine writes a slow count through TiledWriter while another
    thread follows the run: every row, in order, most before the stop."""
    import threading
    import time

    import bluesky.plans as bp
    from ophyd.sim import det

    cat = BlueskyTiledCatalog(beamline.container)
    arrivals: list = []
    errors: list = []

    def follow():
        try:
            deadline = time.monotonic() + 30
            while not len(cat):
                assert time.monotonic() < deadline, "the run never appeared"
                time.sleep(0.02)
            for name, doc in cat[-1].follow(poll_interval=0.05, idle_timeout=30):
                arrivals.append((time.monotonic(), name, doc))
        except Exception as err:  # reported by the main thread
            errors.append(err)

    written: dict = {}
    beamline.RE.subscribe(lambda name, doc: written.setdefault(name, time.monotonic()))
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    # The RunEngine runs in the main thread (it installs signal handlers).
    beamline.RE(bp.count([det], num=6, delay=0.4))
    follower.join(timeout=60)
    assert not errors, errors
    names = [name for _, name, _ in arrivals]
    assert names[0] == "start" and names[-1] == "stop"
    rows = [
        seq
        for _, name, doc in arrivals
        if name in ("event", "event_page")
        for seq in ([doc["seq_num"]] if name == "event" else list(doc["seq_num"]))
    ]
    assert rows == [1, 2, 3, 4, 5, 6]
    first_row_at = next(t for t, name, _ in arrivals if name in ("event", "event_page"))
    # The first row came while the run was still being written.
    assert first_row_at < written["stop"]
    (uid,) = beamline.documents
    want = memory_catalog(beamline.documents)[uid].primary.read()
    assert_same_dataset(cat[uid].primary.read(), want)


def test_export_takes_runs_home_with_their_detector_files(ophyd_async_run, tmp_path):
    """``export --copy-external`` of a tiled run: JSONL with the HDF5 files
    beside it, read offline (no tiled) with the same values."""
    pytest.importorskip("intake_bluesky.jsonl")
    from intake_bluesky.core.export import export_runs
    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    beamline, uid = ophyd_async_run
    cat = BlueskyTiledCatalog(beamline.container)
    want = memory_catalog(beamline.documents)[uid].primary.read()
    home = tmp_path / "home"
    export_runs(cat, str(home), format="jsonl", copy_external=True)
    shutil.rmtree(beamline.h5_dir)  # the originals are gone: only the copies remain
    offline = BlueskyJSONLCatalog(str(home))
    assert list(offline) == [uid]
    assert_same_dataset(offline[uid].primary.read(), want)
    copies = list((home / "external").rglob("*.h5"))
    assert len(copies) == 1  # one detector file, used by two data keys
