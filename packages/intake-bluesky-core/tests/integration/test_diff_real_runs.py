"""run.diff, the diff command and run.replay on real RunEngine runs.

bluesky's RunEngine scans ophyd.sim devices with a baseline; the runs differ
in sample, one baseline motor's position and the detector's configuration.
One run is written to JSONL as suitcase-jsonl lays it out, the other to
mongomock in suitcase-mongo's normalized layout (and one kept in memory), so
the comparisons cross backends. Needs intake-bluesky-jsonl,
intake-bluesky-mongo, mongomock, bluesky and ophyd: runs in the
``all_together`` nox session.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

bluesky = pytest.importorskip("bluesky")
ophyd_sim = pytest.importorskip("ophyd.sim")
jsonl = pytest.importorskip("intake_bluesky.jsonl")
mongo = pytest.importorskip("intake_bluesky.mongo")
mongomock = pytest.importorskip("mongomock")
event_model = pytest.importorskip("event_model")

from bluesky import RunEngine  # noqa: E402
from bluesky.plans import count, scan  # noqa: E402
from bluesky.preprocessors import SupplementalData  # noqa: E402

from intake_bluesky.core import BlueskyInMemoryCatalog  # noqa: E402
from intake_bluesky.core._model.diff import MISSING  # noqa: E402
from intake_bluesky.core._model.replay import replay  # noqa: E402
from intake_bluesky.core.testing import NumpySeqHandler, plain  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_index")


def _record(*, sample, base_position, sigma, points=5, plan="scan"):
    """The documents of one real run: a scan of a simulated detector over a
    motor, with two baseline motors; fresh devices for each run."""
    motor = ophyd_sim.SynAxis(name="motor")
    det = ophyd_sim.SynGauss("det", motor, "motor", center=0, Imax=10, sigma=1)
    stage_x = ophyd_sim.SynAxis(name="stage_x")
    stage_y = ophyd_sim.SynAxis(name="stage_y")
    stage_x.set(base_position).wait(timeout=5)
    stage_y.set(2.0).wait(timeout=5)
    det.sigma.put(sigma)
    RE = RunEngine({}, context_managers=[])
    RE.preprocessors.append(SupplementalData(baseline=[stage_x, stage_y]))
    documents = []
    RE.subscribe(lambda name, doc: documents.append((name, copy.deepcopy(doc))))
    if plan == "scan":
        RE(scan([det], motor, -1, 1, points), sample=sample)
    else:
        RE(count([det], num=points), sample=sample)
    return documents


@pytest.fixture(scope="module")
def recorded():
    good = _record(sample="Cu", base_position=1.0, sigma=1.0)
    bad = _record(sample="Fe", base_position=1.25, sigma=2.0)
    return {
        "good": good,
        "bad": bad,
        "good_again": _record(sample="Cu", base_position=1.0, sigma=1.0),
    }


def _write_jsonl(folder, documents):
    """A run file as suitcase-jsonl writes it: one [name, doc] line each."""
    folder.mkdir(exist_ok=True)
    with open(folder / f"{documents[0][1]['uid']}.jsonl", "w") as f:
        for name, doc in documents:
            f.write(json.dumps([name, plain(doc)]) + "\n")


def _write_mongo(db, documents):
    """suitcase.mongo_normalized's collections (one document per event)."""
    collections = {
        "start": "run_start",
        "stop": "run_stop",
        "descriptor": "event_descriptor",
        "event": "event",
        "resource": "resource",
        "datum": "datum",
    }
    for name, doc in documents:
        doc = plain(copy.deepcopy(doc))
        if name == "event_page":
            for event in event_model.unpack_event_page(doc):
                db.event.insert_one(plain(event))
        elif name == "datum_page":
            for datum in event_model.unpack_datum_page(doc):
                db.datum.insert_one(plain(datum))
        else:
            db[collections[name]].insert_one(doc)


@pytest.fixture
def stores(recorded, tmp_path):
    """The good run in a JSONL folder, the bad one in mongomock."""
    _write_jsonl(tmp_path / "jsonl", recorded["good"])
    db = mongomock.MongoClient()["diff_mds"]
    _write_mongo(db, recorded["bad"])
    return {
        "jsonl": jsonl.BlueskyJSONLCatalog(str(tmp_path / "jsonl")),
        "mongo": mongo.BlueskyMongoCatalog(db),
        "jsonl_path": tmp_path / "jsonl",
    }


def _keyed(diff, section):
    return {c.key: (c.a, c.b) for c in diff.section(section)}


def test_what_changed_between_a_good_and_a_bad_run_across_backends(stores, recorded):
    good, bad = stores["jsonl"][-1], stores["mongo"][-1]
    assert good.uid == recorded["good"][0][1]["uid"]
    assert bad.uid == recorded["bad"][0][1]["uid"]
    diff = good.diff(bad)
    assert _keyed(diff, "start") == {"sample": ("Cu", "Fe")}
    # The detector's sigma, as each stream's first descriptor recorded it
    # (ophyd records the detector's configuration in the primary stream).
    assert _keyed(diff, "configuration") == {"primary.det.det_sigma": (1.0, 2.0)}
    # One baseline motor moved; its readback and setpoint both differ, at
    # the start and the end of the run; the other did not.
    assert _keyed(diff, "baseline") == {
        "stage_x.first": (1.0, 1.25),
        "stage_x.last": (1.0, 1.25),
        "stage_x_setpoint.first": (1.0, 1.25),
        "stage_x_setpoint.last": (1.0, 1.25),
    }
    # Same plan, same points: the streams and versions agree.
    assert not diff.section("streams")
    assert not diff.section("versions")
    assert not diff.section("external")
    # The detector's readings differ with its sigma, but a diff compares
    # baselines, not the primary stream's data: nothing else shows.
    assert {c.section for c in diff} == {"start", "configuration", "baseline"}
    assert "bluesky" in good.metadata["start"]["versions"]


def test_the_same_run_from_two_backends_is_equal(stores, recorded, tmp_path):
    # The bad run in JSONL too: JSONL against mongomock, document for document.
    _write_jsonl(tmp_path / "jsonl", recorded["bad"])
    cat = jsonl.BlueskyJSONLCatalog(str(tmp_path / "jsonl"))
    from_jsonl = cat[recorded["bad"][0][1]["uid"]]
    from_mongo = stores["mongo"][-1]
    diff = from_jsonl.diff(from_mongo)
    assert not diff, str(diff)
    assert from_mongo.diff(from_jsonl).to_dict()["equal"] is True


def test_in_memory_against_jsonl_and_tolerance(stores, recorded):
    memory = BlueskyInMemoryCatalog()
    for name, doc in recorded["good_again"]:
        memory(name, doc)
    again = memory[-1]
    good = stores["jsonl"][-1]
    # A second run with the same settings: nothing differs but the identity.
    diff = again.diff(good)
    assert not diff, str(diff)
    assert diff.a["uid"] != diff.b["uid"]
    bad = stores["mongo"][-1]
    # The baseline motor moved by 0.25: inside atol=0.3, outside 0.2.
    assert not again.diff(bad, atol=0.3).section("baseline")
    assert again.diff(bad, atol=0.2).section("baseline")


def test_streams_differ_in_rows_and_plan(tmp_path):
    short = _record(sample="Cu", base_position=1.0, sigma=1.0, points=3, plan="count")
    longer = _record(sample="Cu", base_position=1.0, sigma=1.0, points=5, plan="scan")
    memory = BlueskyInMemoryCatalog()
    memory.ingest(short)
    _write_jsonl(tmp_path / "runs", longer)
    diff = memory[-1].diff(jsonl.BlueskyJSONLCatalog(str(tmp_path / "runs"))[-1])
    streams = _keyed(diff, "streams")
    assert streams["primary.rows"] == (3, 5)
    # scan reads the motor too; count does not.
    assert streams["primary.motor"][0] is MISSING
    assert streams["primary.motor"][1]["dtype"] == "number"
    assert streams["primary.motor_setpoint"][0] is MISSING
    assert _keyed(diff, "start")["plan_name"] == ("count", "scan")


def test_diff_command_across_stores(cli, stores, recorded):
    good_uid = recorded["good"][0][1]["uid"]
    # A mongomock database has no URI to name on a command line: the command
    # compares two JSONL stores (the API tests above cross backends).
    jsonl_b = stores["jsonl_path"].parent / "jsonl_b"
    _write_jsonl(jsonl_b, recorded["bad"])
    out = json.loads(
        cli.ok("diff", stores["jsonl_path"], good_uid[:8], "1", "--store-b", jsonl_b, "--json")
    )
    assert out["sections"]["start"] == [{"key": "sample", "a": "Cu", "b": "Fe"}]
    assert out["sections"]["configuration"] == [
        {"key": "primary.det.det_sigma", "a": 1.0, "b": 2.0}
    ]
    text = cli.ok("diff", stores["jsonl_path"], "-1", "-1")
    assert text.splitlines()[-1] == "no differences (rtol=0, atol=0)"


def test_replay_a_real_run_into_a_new_catalog(stores, recorded):
    # Replaying a run into an in-memory catalog (a document callback) gives
    # the same run back: diff says so.
    good = stores["jsonl"][-1]
    copy_cat = BlueskyInMemoryCatalog()
    waits = []
    clock = [0.0]

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    replay(good.canonical(), copy_cat, speed=100.0, sleep=sleep, clock=lambda: clock[0])
    assert not copy_cat[-1].diff(good)
    times = [doc["time"] for name, doc in recorded["good"] if name in ("start", "stop")]
    # The waits add up to the run's duration, a hundred times faster.
    assert sum(waits) == pytest.approx((times[1] - times[0]) / 100.0, abs=1e-6)
    assert len(waits) > 5


def test_external_files_of_a_real_detector_across_backends(tmp_path):
    # ophyd.sim's detector with a registry saves each frame as an .npy file
    # (spec NPY_SEQ) and puts resource/datum documents in the stream.
    frames = tmp_path / "frames"
    frames.mkdir()
    img = ophyd_sim.SynSignalWithRegistry(
        lambda: np.arange(20.0).reshape(4, 5), name="img", save_path=str(frames)
    )
    RE = RunEngine({}, context_managers=[])
    documents = []
    RE.subscribe(lambda name, doc: documents.append((name, copy.deepcopy(doc))))
    RE(count([img], num=3))
    assert sum(name == "datum" for name, _ in documents) == 3
    _write_jsonl(tmp_path / "jsonl", documents)
    db = mongomock.MongoClient()["diff_external"]
    _write_mongo(db, documents)
    handlers = {"NPY_SEQ": NumpySeqHandler}
    from_jsonl = jsonl.BlueskyJSONLCatalog(str(tmp_path / "jsonl"), handler_registry=handlers)[-1]
    from_mongo = mongo.BlueskyMongoCatalog(db, handler_registry=handlers)[-1]
    assert not from_jsonl.diff(from_mongo)

    # The same run, its frames copied elsewhere with one lost on the way.
    moved = tmp_path / "moved"
    moved.mkdir()
    saved = sorted(frames.iterdir())
    assert len(saved) == 3
    for path in saved[:2]:
        (moved / path.name).write_bytes(path.read_bytes())
    relocated = mongo.BlueskyMongoCatalog(
        db, handler_registry=handlers, root_map={str(frames): str(moved)}
    )[-1]
    size = saved[0].stat().st_size
    diff = from_jsonl.diff(relocated)
    assert {c.key: (c.a, c.b) for c in diff} == {
        "img.files": (3, 2),
        "img.bytes": (3 * size, 2 * size),
    }
