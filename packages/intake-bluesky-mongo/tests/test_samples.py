"""Runs written by the real suitcase-mongo (the sample dumps), read through
both layouts, against what the RunEngine emitted."""

import numpy as np
import pytest

from intake_bluesky.core.testing import NumpySeqHandler, normalize_documents
from intake_bluesky.mongo import (
    BlueskyMongoCatalog,
    BlueskyMongoEmbeddedCatalog,
    EmbeddedDriver,
    NormalizedDriver,
)

RUN0 = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1 = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
SAMPLE_ROOT = "/data/bluesky-samples/external_npy"
BASELINE0 = "3c3ff4bf-b944-497a-beb3-23e9a2f66200"
PRIMARY0 = "9fe522bc-633b-4140-a4cf-316bb4a72ec8"
RESOURCE0 = "cdfdbf8a-121d-4c25-b69d-9e31bb598e84"


@pytest.fixture(params=["normalized", "embedded"])
def layout(request, normalized_samples, embedded_samples):
    """(layout name, catalog factory, driver) over the sample dumps."""
    if request.param == "normalized":
        mds, assets = normalized_samples

        def factory(**common):
            return BlueskyMongoCatalog(mds, assets, **common)

        return request.param, factory, NormalizedDriver(mds, assets)

    def factory(**common):
        return BlueskyMongoEmbeddedCatalog(embedded_samples, **common)

    return request.param, factory, EmbeddedDriver(embedded_samples)


@pytest.fixture
def common(samples_dir):
    return {
        "handler_registry": {"NPY_SEQ": NumpySeqHandler},
        "root_map": {SAMPLE_ROOT: str(samples_dir / "external_npy")},
    }


def _emitted_events(emitted, descriptor):
    return [d for n, d in emitted if n == "event" and d["descriptor"] == descriptor]


def test_catalog_lists_runs_oldest_first(layout, emitted):
    _, factory, _ = layout
    cat = factory()
    assert list(cat) == [RUN0, RUN1]
    assert len(cat) == 2
    assert cat[-1].metadata["start"] == emitted[1][0][1]
    assert cat[1].metadata["start"]["plan_name"] == "scan"
    assert cat["1b33"].metadata["stop"] == emitted[0][-1][1]


def test_search_on_sample_metadata(layout):
    _, factory, _ = layout
    cat = factory()
    assert list(cat.search({"sample": "S2"})) == [RUN1]
    assert list(cat.search({"versions.bluesky": "1.15.1"})) == [RUN0, RUN1]
    assert list(cat.search({"motors": "motor"})) == [RUN0]
    assert list(cat.search({"$or": [{"scan_id": 2}, {"purpose": {"$exists": True}}]})) == [
        RUN0,
        RUN1,
    ]
    assert list(cat.search({"detectors": {"$size": 3}})) == [RUN0]


def test_run_source_documents_equal_emitted(layout, emitted):
    _, _, driver = layout
    src = driver.run(RUN0)
    docs = emitted[0]
    assert src.start() == docs[0][1]
    assert src.stop() == docs[-1][1]
    emitted_desc = [d for n, d in docs if n == "descriptor"]
    assert [d["uid"] for d in src.descriptors()] == [BASELINE0, PRIMARY0]
    assert src.descriptors() == sorted(emitted_desc, key=lambda d: d["time"])
    assert src.resources() == [d for n, d in docs if n == "resource"]
    assert src.event_count(PRIMARY0) == 3
    assert src.event_count(BASELINE0) == 2
    assert src.event_count("no-such-descriptor") == 0


def test_event_pages_values_and_order(layout, emitted):
    _, _, driver = layout
    src = driver.run(RUN0)
    events = _emitted_events(emitted[0], PRIMARY0)
    pages = list(src.event_pages(PRIMARY0))
    assert sum(len(p["seq_num"]) for p in pages) == 3
    page = pages[0]
    assert page["descriptor"] == PRIMARY0
    assert list(page["seq_num"]) == [1, 2, 3]
    assert list(page["uid"]) == [e["uid"] for e in events]
    assert list(page["time"]) == [e["time"] for e in events]
    assert list(page["data"]["direct_img"]) == [e["data"]["direct_img"] for e in events]
    assert list(page["data"]["img"]) == [e["data"]["img"] for e in events]
    assert list(page["timestamps"]["det"]) == [e["timestamps"]["det"] for e in events]
    assert list(page["filled"]["img"]) == [False, False, False]
    assert set(page["data"]) == {"det", "direct_img", "img", "motor", "motor_setpoint"}


def test_event_pages_fields_and_rows(layout, emitted):
    _, _, driver = layout
    src = driver.run(RUN0)
    events = _emitted_events(emitted[0], PRIMARY0)
    (page,) = src.event_pages(PRIMARY0, fields=["det"], rows=(1, 3))
    assert list(page["seq_num"]) == [2, 3]
    assert list(page["uid"]) == [e["uid"] for e in events[1:]]
    assert page["data"] == {"det": [e["data"]["det"] for e in events[1:]]}
    assert list(page["timestamps"]) == ["det"]
    (page,) = src.event_pages(PRIMARY0, fields=[], rows=(0, 1))
    assert page["data"] == {} and list(page["seq_num"]) == [1]
    assert list(src.event_pages(PRIMARY0, rows=(3, 10))) == []
    assert list(src.event_pages(PRIMARY0, rows=(2, 2))) == []


def test_datums(layout, emitted):
    _, _, driver = layout
    src = driver.run(RUN0)
    datums = [d for n, d in emitted[0] if n == "datum"]
    ids = [d["datum_id"] for d in datums]
    assert src.datums(ids[::-1] + ["missing"]) == {d["datum_id"]: d for d in datums}
    assert src.datums([]) == {}
    pages = list(src.datum_pages())
    assert [i for p in pages for i in p["datum_id"]] == ids
    assert all(p["resource"] == RESOURCE0 for p in pages)
    assert [i for p in src.datum_pages(RESOURCE0) for i in p["datum_id"]] == ids
    assert list(src.datum_pages("other")) == []
    assert driver.run(RUN1).datums(ids) == {d["datum_id"]: d for d in datums}
    assert list(driver.run(RUN1).datum_pages()) == []


def test_no_stream_documents_in_samples(layout):
    _, _, driver = layout
    src = driver.run(RUN0)
    assert src.stream_resources() == []
    assert src.stream_datums() == []
    assert src.stream_datums(PRIMARY0) == []


def test_read_primary_with_external_data(layout, emitted, common, samples_dir):
    _, factory, _ = layout
    ds = factory(**common)[RUN0].primary.read()
    events = _emitted_events(emitted[0], PRIMARY0)
    np.testing.assert_array_equal(ds["time"].values, [e["time"] for e in events])
    np.testing.assert_array_equal(ds["det"].values, [e["data"]["det"] for e in events])
    np.testing.assert_array_equal(ds["motor"].values, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        ds["direct_img"].values, np.array([e["data"]["direct_img"] for e in events])
    )
    frames = [np.load(samples_dir / "external_npy" / f"0d9c43_{i}.npy") for i in range(3)]
    assert ds["img"].shape == (3, 6, 3)
    np.testing.assert_array_equal(ds["img"].values, np.stack(frames))
    lazy = factory(**common)[RUN0].primary.to_dask()
    assert lazy.compute().identical(ds)


def test_read_baseline_and_second_run(layout, emitted):
    _, factory, _ = layout
    cat = factory()
    base = cat[RUN0].baseline.read()
    assert base["motor1"].values.tolist() == [0, 0]
    assert base["time"].values.tolist() == [
        e["time"] for e in _emitted_events(emitted[0], BASELINE0)
    ]
    primary1 = next(
        d["uid"] for n, d in emitted[1] if n == "descriptor" and d["name"] == "primary"
    )
    events = _emitted_events(emitted[1], primary1)
    ds = cat[RUN1].primary.read()
    assert ds["det"].values.tolist() == [e["data"]["det"] for e in events]
    assert ds["seq_num"].values.tolist() == [1, 2]


@pytest.mark.parametrize("index", [0, 1])
def test_canonical_round_trip(layout, emitted, index):
    _, factory, _ = layout
    uid = emitted[index][0][1]["uid"]
    docs = list(factory()[uid].canonical(fill="no"))
    assert docs[0] == ("start", emitted[index][0][1])
    assert docs[-1] == ("stop", emitted[index][-1][1])
    assert normalize_documents(docs) == normalize_documents(emitted[index])
    # Events in time order across streams, as emitted.
    times = []
    for name, doc in docs:
        if name == "event":
            times.append(doc["time"])
        elif name == "event_page":
            times.extend(doc["time"])
    emitted_times = [d["time"] for n, d in emitted[index] if n == "event"]
    assert times == emitted_times


def test_canonical_fill_yes_loads_frames(layout, common, samples_dir):
    _, factory, _ = layout
    frames = [np.load(samples_dir / "external_npy" / f"0d9c43_{i}.npy") for i in range(3)]
    seen = []
    for name, doc in factory(**common)[RUN0].canonical(fill="yes"):
        if name in ("event", "event_page") and doc["descriptor"] == PRIMARY0:
            values = [doc["data"]["img"]] if name == "event" else list(doc["data"]["img"])
            seen.extend(np.asarray(v) for v in values)
    assert len(seen) == 3
    for got, want in zip(seen, frames, strict=True):
        np.testing.assert_array_equal(got, want)


def test_unknown_run_is_key_error(layout):
    _, factory, driver = layout
    with pytest.raises(KeyError):
        driver.run("nope")
    with pytest.raises(KeyError):
        factory()["nope"]
