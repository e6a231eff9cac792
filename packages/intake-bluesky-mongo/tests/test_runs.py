"""Run sources over time (a live run) and stream documents, in both layouts."""

import copy

import pytest

from intake_bluesky.core.testing import UIDS, example_runs
from intake_bluesky.mongo import EmbeddedDriver, NormalizedDriver


@pytest.fixture(params=["normalized", "embedded"])
def setup(request, mongo, layouts):
    """(writer, driver) of one layout over fresh databases."""
    if request.param == "normalized":
        mds, assets = mongo.database("mds"), mongo.database("assets")
        return layouts.NormalizedWriter(mds, assets), NormalizedDriver(mds, assets)
    db = mongo.database("datastore")
    return layouts.EmbeddedWriter(db, page_size=2), EmbeddedDriver(db)


def test_live_run_seen_by_the_same_run_source(setup, tmp_path):
    writer, driver = setup
    docs = example_runs(tmp_path)[1]  # count: start, descriptor, event_page(5), stop
    writer.write(docs[:2])
    src = driver.run(UIDS["count"])
    assert src.stop() is None
    desc = src.descriptors()[0]["uid"]
    assert src.event_count(desc) == 0
    assert list(src.event_pages(desc)) == []
    writer.write(docs[:3])
    assert src.event_count(desc) == 5
    assert [v for p in src.event_pages(desc) for v in p["data"]["det"]] == [
        201.0,
        202.0,
        203.0,
        204.0,
        205.0,
    ]
    assert src.stop() is None
    writer.write(docs)
    assert src.stop() == docs[-1][1]
    assert [d["uid"] for d in src.descriptors()] == [desc]


def test_stream_documents(setup, tmp_path):
    writer, driver = setup
    docs = example_runs(tmp_path)[4]
    writer.write(docs)
    src = driver.run(UIDS["stream"])
    stored_sr = [d for n, d in docs if n == "stream_resource"]
    stored_sd = [d for n, d in docs if n == "stream_datum"]
    desc = src.descriptors()[0]["uid"]
    assert src.stream_resources() == stored_sr
    assert src.stream_datums() == stored_sd
    assert src.stream_datums(desc) == stored_sd
    assert src.stream_datums("other") == []


def test_stream_resource_without_run_start_found_through_its_datums(mongo, layouts, tmp_path):
    # run_start is optional in stream_resource documents.
    mds = mongo.database("mds")
    docs = copy.deepcopy(example_runs(tmp_path)[4])
    for name, doc in docs:
        if name == "stream_resource":
            doc.pop("run_start", None)
    layouts.NormalizedWriter(mds).write(docs)
    src = NormalizedDriver(mds).run(UIDS["stream"])
    assert [d["uid"] for d in src.stream_resources()] == [
        d["uid"] for n, d in docs if n == "stream_resource"
    ]


def test_documents_default_order(setup, tmp_path):
    writer, driver = setup
    docs = example_runs(tmp_path)[0]
    writer.write(docs)
    names = [name for name, _ in driver.run(UIDS["scan"]).documents()]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("descriptor") == 2 and names.count("resource") == 1
    assert names.index("resource") < names.index("datum_page")


def test_search_argument_checks(setup):
    _, driver = setup
    for bad in ({"sort": [("time", 2)]}, {"sort": ["time"]}, {"skip": -1}, {"limit": -5}):
        with pytest.raises(ValueError):
            driver.search({}, **bad)
    with pytest.raises(ValueError, match="mapping"):
        driver.search("plan_name=scan")
    with pytest.raises(KeyError):
        driver.run(None)


def test_events_with_equal_times_come_in_seq_num_order(mongo, layouts):
    # A flyer may stamp a whole batch with one time; stored in any order.
    from event_model import compose_run

    bundle = compose_run(metadata={"plan_name": "fly"})
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"x": {"source": "s", "dtype": "number", "shape": []}}
    )
    events = [
        desc.compose_event(data={"x": float(i)}, timestamps={"x": 5.0}, seq_num=i, time=5.0)
        for i in (3, 1, 4, 2)
    ]
    mds = mongo.database("mds")
    layouts.NormalizedWriter(mds).write(
        [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
        + [("event", e) for e in events]
    )
    src = NormalizedDriver(mds).run(bundle.start_doc["uid"])
    (page,) = src.event_pages(desc.descriptor_doc["uid"])
    assert page["seq_num"] == [1, 2, 3, 4]
    assert page["data"]["x"] == [1.0, 2.0, 3.0, 4.0]
