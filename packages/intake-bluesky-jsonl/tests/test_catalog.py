"""BlueskyJSONLCatalog: real sample files, live and damaged runs, intake integration."""

import json
import os
import pickle
import shutil

import intake
import numpy as np
import pytest

from intake_bluesky.core.testing import NumpySeqHandler, normalize_documents
from intake_bluesky.jsonl import BlueskyJSONLCatalog

RUN0_UID = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1_UID = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
FLY_UID = "42f7726d-25d1-4a57-88fb-fab48dea2de1"
STREAM_UID = "4de19bbf-4131-4734-9f10-a0fd5c996689"
SAMPLE_ROOT = "/data/bluesky-samples/external_npy"


def dump_line(name, doc):
    return json.dumps([name, doc]) + "\n"


@pytest.fixture
def external(samples):
    return {
        "handler_registry": {"NPY_SEQ": NumpySeqHandler},
        "root_map": {SAMPLE_ROOT: str(samples / "external_npy")},
    }


def _events(docs, descriptor_name):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == descriptor_name}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


# --- the samples ----------------------------------------------------------------


def test_sample_catalog_lists_and_finds_runs(samples):
    cat = BlueskyJSONLCatalog(samples / "jsonl")
    assert len(cat) == 2
    assert list(cat) == [RUN0_UID, RUN1_UID]  # oldest first
    assert RUN0_UID in cat
    assert cat[-1].metadata["start"]["uid"] == RUN1_UID
    assert cat[1].metadata["start"]["plan_name"] == "scan"  # scan_id 1
    assert cat["e263"].metadata["stop"]["num_events"] == {"baseline": 2, "primary": 2}
    assert list(cat.search({"plan_name": "count"})) == [RUN1_UID]
    assert list(cat.search({"detectors": "img"})) == [RUN0_UID]


def test_sample_primary_values_and_dtypes(samples, emitted, external):
    cat = BlueskyJSONLCatalog(str(samples / "jsonl"), **external)
    docs = emitted("docs/run0_documents.json")
    events = _events(docs, "primary")
    ds = cat[RUN0_UID].primary.read()

    assert ds["time"].values.tolist() == [e["time"] for e in events]
    assert ds["seq_num"].values.tolist() == [1, 2, 3]
    assert ds["det"].dtype == np.float64
    assert ds["det"].values.tolist() == [e["data"]["det"] for e in events]
    assert ds["motor"].values.tolist() == [-1.0, 0.0, 1.0]
    # Nested lists in the file, an integer array again.
    assert ds["direct_img"].dtype.kind == "i" and ds["direct_img"].shape == (3, 4, 5)
    np.testing.assert_array_equal(
        ds["direct_img"].values, [e["data"]["direct_img"] for e in events]
    )
    # External frames, found through root_map and the handler.
    assert ds["img"].shape == (3, 6, 3) and ds["img"].dtype == np.float64
    for i in range(3):
        np.testing.assert_array_equal(
            ds["img"].values[i], np.load(samples / "external_npy" / f"0d9c43_{i}.npy")
        )
    baseline = cat[RUN0_UID].baseline.read()
    assert baseline["motor1"].dtype == np.int64
    assert baseline["motor1"].values.tolist() == [0, 0]


def test_events_and_pages_read_the_same(samples, external):
    singles = BlueskyJSONLCatalog(samples / "jsonl", **external)[RUN0_UID]
    pages = BlueskyJSONLCatalog(samples / "jsonl_pages", **external)[RUN0_UID]
    for stream in ("primary", "baseline"):
        assert singles[stream].read().identical(pages[stream].read())
    assert normalize_documents(singles.canonical(fill="no")) == normalize_documents(
        pages.canonical(fill="no")
    )


def test_canonical_round_trips_the_emitted_documents(samples, emitted):
    run = BlueskyJSONLCatalog(samples / "jsonl")[RUN1_UID]
    expected = emitted("docs/run1_documents.json")
    got = list(run.canonical(fill="no"))
    assert [n for n, _ in got][0] == "start" and got[-1] == expected[-1]
    assert normalize_documents(got) == normalize_documents(expected)


def test_fly_scan_sample(samples):
    run = BlueskyJSONLCatalog(samples / "jsonl_fly")[-1]
    assert run.metadata["start"]["uid"] == FLY_UID
    assert list(run) == ["flyer2"]
    ds = run.flyer2.read()
    assert ds["seq_num"].values.tolist() == list(range(1, 11))
    np.testing.assert_allclose(ds["motor"].values, np.linspace(1, 5, 10))
    assert np.all(np.diff(ds["time"].values) > 0)


def test_stream_resource_sample_keeps_stream_documents(samples, emitted):
    run = BlueskyJSONLCatalog(samples / "stream_docs" / "jsonl")[STREAM_UID]
    got = list(run.canonical(fill="no"))
    names = [n for n, _ in got]
    assert "stream_resource" in names and "stream_datum" in names
    assert normalize_documents(got) == normalize_documents(
        emitted("stream_docs/composed_documents.json")
    )
    ds = run.primary(exclude=["det_img"]).read()
    assert ds["x"].dtype == np.float64 and ds["x"].size == 3


def test_paths_as_glob_file_and_list(samples):
    cat = BlueskyJSONLCatalog(
        [str(samples / "jsonl" / "e2*.jsonl"), samples / "jsonl_fly" / f"{FLY_UID}.jsonl"]
    )
    assert list(cat) == [RUN1_UID, FLY_UID]


# --- runs that change -----------------------------------------------------------


def test_new_changed_and_deleted_files(tmp_path, make_run, write_jsonl):
    cat = BlueskyJSONLCatalog(tmp_path)
    assert len(cat) == 0
    older = make_run(2, start_time=1000.0, scan_id=7)
    newer = make_run(3, start_time=2000.0, scan_id=8, stop=False)
    older_path = write_jsonl(tmp_path / f"{older[0][1]['uid']}.jsonl", older)
    assert cat[-1].metadata["start"]["scan_id"] == 7

    newer_path = tmp_path / f"{newer[0][1]['uid']}.jsonl"
    write_jsonl(newer_path, newer[:3])
    with open(newer_path, "a") as f:
        f.write(dump_line(*newer[3])[:20])  # an event half written
    assert len(cat) == 2
    live = cat[-1]
    assert live.metadata["start"]["scan_id"] == 8
    assert live.metadata["stop"] is None
    assert live.primary.read()["det"].values.tolist() == [0.0]

    with open(newer_path, "a") as f:
        f.write(dump_line(*newer[3])[20:] + dump_line(*newer[4]))
    assert live.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    stop = {"uid": "stop-8", "time": 2010.0, "run_start": newer[0][1]["uid"],
            "exit_status": "abort", "reason": "user"}  # fmt: skip
    with open(newer_path, "a") as f:
        f.write(dump_line("stop", stop))
    assert cat[8].metadata["stop"] == stop
    assert list(cat.search({"scan_id": {"$gte": 8}})) == [newer[0][1]["uid"]]

    os.remove(older_path)
    assert list(cat) == [newer[0][1]["uid"]]
    with pytest.raises(KeyError):
        cat[7]


def test_corrupt_middle_line_is_reported_when_read(tmp_path, make_run, write_jsonl):
    docs = make_run(4)
    path = tmp_path / f"{docs[0][1]['uid']}.jsonl"
    lines = [dump_line(n, d) for n, d in docs]
    lines[3] = '["event", {"uid": "oops", \n'
    path.write_text("".join(lines))
    cat = BlueskyJSONLCatalog(tmp_path)
    assert len(cat) == 1  # listing reads only the first and last lines
    with pytest.raises(ValueError, match="line 4: not valid JSON") as info:
        cat[-1].primary.read()
    assert str(path) in str(info.value)


def test_corrupt_first_line_is_warned_and_skipped_when_listing(tmp_path, make_run, write_jsonl):
    docs = make_run(2)
    path = tmp_path / f"{docs[0][1]['uid']}.jsonl"
    path.write_text('["start", {"uid": ]\n' + "".join(dump_line(n, d) for n, d in docs[1:]))
    # One damaged file does not make the other runs unlistable: it is named.
    good = make_run(2)
    write_jsonl(tmp_path / f"{good[0][1]['uid']}.jsonl", good)
    with pytest.warns(UserWarning, match=r"line 1: not valid JSON") as record:
        assert list(BlueskyJSONLCatalog(tmp_path)) == [good[0][1]["uid"]]
    assert str(path) in str(record[0].message)


def test_file_without_start_is_skipped_with_a_warning(tmp_path, make_run, write_jsonl):
    good = make_run(2)
    write_jsonl(tmp_path / f"{good[0][1]['uid']}.jsonl", good)
    write_jsonl(tmp_path / "orphan.jsonl", make_run(2)[1:])
    cat = BlueskyJSONLCatalog(tmp_path)
    with pytest.warns(UserWarning, match=r"orphan\.jsonl.*no start document"):
        assert list(cat) == [good[0][1]["uid"]]


def test_nan_values_read_as_nan(tmp_path, make_run, write_jsonl):
    docs = make_run(values=[1.0, float("nan"), float("inf"), 4.0])
    write_jsonl(tmp_path / "run.jsonl", docs)
    values = BlueskyJSONLCatalog(tmp_path)[-1].primary.read()["det"].values
    assert values.dtype == np.float64
    assert values[0] == 1.0 and np.isnan(values[1]) and values[2] == np.inf and values[3] == 4.0


# --- intake integration --------------------------------------------------------------


def _yaml_catalog(tmp_path, samples, driver):
    shutil.copytree(samples / "jsonl", tmp_path / "data")
    path = tmp_path / "catalog.yml"
    path.write_text(
        "sources:\n"
        "  beamline:\n"
        f"    driver: {driver}\n"
        "    description: two runs\n"
        "    args:\n"
        "      paths: '{{ CATALOG_DIR }}/data'\n"
        "  scans:\n"
        f"    driver: {driver}\n"
        "    args:\n"
        "      paths: ['{{ CATALOG_DIR }}/data/*.jsonl']\n"
        "      query: {plan_name: scan}\n"
    )
    return path


@pytest.mark.parametrize(
    "driver", ["bluesky_jsonl_catalog", "intake_bluesky.jsonl.BlueskyJSONLCatalog"]
)
def test_yaml_catalog_file(tmp_path, samples, driver):
    top = intake.open_catalog(str(_yaml_catalog(tmp_path, samples, driver)))
    assert sorted(top) == ["beamline", "scans"]
    beamline = top["beamline"]
    assert isinstance(beamline, BlueskyJSONLCatalog)
    assert list(beamline) == [RUN0_UID, RUN1_UID]
    assert beamline[-1].primary.read()["det"].values.tolist() == pytest.approx([0.6065306] * 2)
    scans = top["scans"]
    assert isinstance(scans, BlueskyJSONLCatalog)
    assert list(scans) == [RUN0_UID]


def test_opener_registered_with_intake(samples):
    cat = intake.open_bluesky_jsonl_catalog(str(samples / "jsonl"), query={"scan_id": 2})
    assert isinstance(cat, BlueskyJSONLCatalog)
    assert list(cat) == [RUN1_UID]


def test_entry_point_in_backends_group():
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group="intake_bluesky.backends") if ep.name == "jsonl"]
    assert entry.load() is BlueskyJSONLCatalog


def test_catalog_serialises_its_arguments(samples, tmp_path):
    cat = BlueskyJSONLCatalog(str(samples / "jsonl"), query={"plan_name": "count"})
    assert cat.paths == str(samples / "jsonl")
    clone = pickle.loads(pickle.dumps(cat))
    assert list(clone) == [RUN1_UID]
    text = cat.yaml()
    assert "driver: intake_bluesky.jsonl.BlueskyJSONLCatalog" in text
    assert f"paths: {samples / 'jsonl'}" in text
    # The exported YAML opens the same catalog again.
    path = tmp_path / "exported.yml"
    path.write_text(text)
    (name,) = list(intake.open_catalog(str(path)))
    assert list(intake.open_catalog(str(path))[name]) == [RUN1_UID]


def test_relative_path_is_absolute_in_yaml(samples, tmp_path, monkeypatch):
    monkeypatch.chdir(samples)
    cat = BlueskyJSONLCatalog("jsonl", index_path=False)
    assert cat.paths == str(samples / "jsonl")
    exported = tmp_path / "exported.yml"
    exported.write_text(cat.yaml())
    monkeypatch.chdir(tmp_path)  # another folder: the YAML still finds the runs
    (name,) = list(intake.open_catalog(str(exported)))
    assert list(intake.open_catalog(str(exported))[name]) == [RUN0_UID, RUN1_UID]


def test_a_msgpack_folder_warns_naming_what_it_holds(tmp_path):
    (tmp_path / "a1b2.msgpack").write_bytes(b"\x92\xa5start\x81\xa3uid\xa1x")
    with pytest.warns(UserWarning, match=r"holds no JSONL files \(\.jsonl\) but 1 \.msgpack file"):
        assert len(BlueskyJSONLCatalog(str(tmp_path), index_path=False)) == 0
