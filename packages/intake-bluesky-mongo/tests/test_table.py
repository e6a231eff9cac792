"""A table of runs (``cat.to_dataframe()``) is answered by the server:
projection, sort and limit pushed down, no event or descriptor read."""

import pytest
from event_model import compose_run

from intake_bluesky.core import run_rows
from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog

T0 = 1_600_000_000.0


def _run(i, stopped=True):
    bundle = compose_run(
        uid=f"{i:08x}-0000-4000-8000-{i:012x}",
        time=T0 + 10 * i,
        metadata={
            "scan_id": i,
            "plan_name": "count" if i % 2 else "scan",
            "sample": {"name": f"S{i}", "notes": "x" * 1000},
            "motors": ["m1", "m2"],
            "big": list(range(500)),
        },
    )
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"det": {"source": "s", "dtype": "number", "shape": []}},
        time=T0 + 10 * i + 1,
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for k in range(i % 3 + 1):
        docs.append(
            ("event", desc.compose_event(data={"det": 1.0}, timestamps={"det": 0}, seq_num=k + 1))
        )
    if stopped:
        docs.append(
            (
                "stop",
                bundle.compose_stop(time=T0 + 10 * i + 4, reason=f"r{i}", exit_status="success"),
            )
        )
    return docs


@pytest.fixture(params=["normalized", "embedded"])
def layout(request, mongo, layouts):
    if request.param == "normalized":
        mds, assets = mongo.database("mds"), mongo.database("assets")
        writer = layouts.NormalizedWriter(mds, assets)
        cat = BlueskyMongoCatalog(mds, assets)
        dbs = [mds, assets]
    else:
        db = mongo.database("datastore")
        writer = layouts.EmbeddedWriter(db)
        cat = BlueskyMongoEmbeddedCatalog(db)
        dbs = [db]
    for i in range(12):
        writer.write(_run(i, stopped=i != 11))

    def reads():
        return [op for db in dbs for op in mongo.log(db)]

    def clear():
        for db in dbs:
            mongo.log(db).clear()

    return request.param, cat, reads, clear


def test_table_is_pushed_down(layout):
    name, cat, reads, clear = layout
    clear()
    rows = run_rows(cat, fields=["sample.name", "motors.1", "stop.reason"], limit=3)
    assert [r["scan_id"] for r in rows] == [9, 10, 11]
    assert [r["sample.name"] for r in rows] == ["S9", "S10", "S11"]
    assert [r["motors.1"] for r in rows] == ["m2"] * 3
    assert [r["stop.reason"] for r in rows] == ["r9", "r10", None]
    assert [r["duration"] for r in rows] == [4.0, 4.0, None]
    assert [r["num_events"] for r in rows] == [{"primary": 1}, {"primary": 2}, {}]
    ops = reads()
    collections = [op.collection for op in ops]
    if name == "normalized":
        assert collections == ["run_start", "run_stop"]
        starts, stops = ops
        assert starts.projection == {
            "_id": False,
            "motors": True,
            "plan_name": True,
            "sample.name": True,
            "scan_id": True,
            "time": True,
            "uid": True,
        }
        assert starts.sort == [("time", -1), ("_id", -1)] and starts.limit == 3
        assert stops.filter == {"run_start": {"$in": [r["uid"] for r in rows[::-1]]}}
        assert set(stops.projection) == {
            "_id",
            "run_start",
            "time",
            "exit_status",
            "num_events",
            "reason",
        }
    else:
        assert collections == ["header"]
        (op,) = ops
        assert op.sort == [("start.time", -1), ("_id", -1)] and op.limit == 3
        assert "start.big" not in op.projection and "start" not in op.projection
        assert op.projection["start.sample.name"] and op.projection["stop.reason"]
        assert "descriptors" not in op.projection


def test_table_of_a_search_and_no_big_keys(layout):
    name, cat, reads, clear = layout
    counts = cat.search({"plan_name": "count"})
    clear()
    df = counts.to_dataframe(fields=["sample"])
    assert df["scan_id"].tolist() == [1, 3, 5, 7, 9, 11]
    assert df["sample"].iloc[0] == {"name": "S1", "notes": "x" * 1000}
    assert df["events.primary"].tolist()[:5] == [2, 1, 3, 2, 1]
    filters = [op.filter for op in reads() if op.collection in ("run_start", "header")]
    assert filters == [
        {"plan_name": "count"} if name == "normalized" else {"start.plan_name": "count"}
    ]


def test_many_runs_batch_the_stop_queries(layout, monkeypatch):
    from intake_bluesky.mongo import _summaries

    name, cat, reads, clear = layout
    monkeypatch.setattr(_summaries, "STOP_BATCH", 5)
    clear()
    rows = run_rows(cat)
    assert [r["scan_id"] for r in rows] == list(range(12))
    assert [r["exit_status"] for r in rows] == ["success"] * 11 + [None]
    if name == "normalized":
        stop_reads = [op for op in reads() if op.collection == "run_stop"]
        assert [len(op.filter["run_start"]["$in"]) for op in stop_reads] == [5, 5, 2]
