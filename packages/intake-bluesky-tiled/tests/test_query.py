"""Mongo queries -> tiled queries: what is sent to the server, and when the
server's answer is exact."""

from __future__ import annotations

import pytest

from intake_bluesky.tiled import SCALAR_KEYS, translate


def _shown(queries):
    return [(type(q).__name__, q.encode()) for q in queries]


@pytest.mark.parametrize(
    ("query", "sent", "exact"),
    [
        ({}, [], True),
        ({"plan_name": "scan"}, [("Eq", {"key": "start.plan_name", "value": '"scan"'})], True),
        ({"scan_id": 7}, [("Eq", {"key": "start.scan_id", "value": "7"})], True),
        # JSON true is 1 to SQL: sent, but the evaluator decides.
        ({"owner": True}, [], False),
        ({"time": {"$gte": 1.5, "$lt": 2}}, None, False),
        ({"plan_name": {"$in": ["a", "b"]}}, None, True),
        ({"plan_name": {"$in": ["a", None]}}, [], False),
        ({"plan_name": {"$ne": "a"}}, [], False),  # Mongo's $ne matches missing keys
        ({"plan_name": None}, [], False),
        ({"$or": [{"scan_id": 1}, {"scan_id": 2}]}, [], False),
        ({"$and": [{"scan_id": 1}, {"plan_name": "x"}]}, None, True),
        ({"sample": "Au"}, [], False),  # may be an array: not a scalar key
        ({"uid": {"$regex": "^ab"}}, None, False),
        ({"uid": {"$regex": "ab"}}, [], False),
        ({"uid": {"$regex": "^ab", "$options": "i"}}, [], False),
    ],
)
def test_translation(query, sent, exact):
    queries, got_exact = translate(query)
    assert got_exact is exact
    if sent is not None:
        assert _shown(queries) == sent


def test_comparisons_and_in_are_sent():
    queries, _ = translate({"time": {"$gte": 1.5, "$lt": 2}, "plan_name": {"$in": ["a", "b"]}})
    names = sorted(type(q).__name__ for q in queries)
    assert names == ["Comparison", "Comparison", "In"]
    operators = sorted(q.operator for q in queries if type(q).__name__ == "Comparison")
    assert operators == ["ge", "lt"]


def test_partial_uid_prefix_is_unescaped_for_like():
    queries, exact = translate({"uid": {"$regex": r"^a1b2\-c3\.d"}})
    assert [q.pattern for q in queries] == ["a1b2-c3.d%"] and exact is False


def test_facility_scalar_keys_are_sent():
    queries, exact = translate({"sample": "Au"}, SCALAR_KEYS | {"sample"})
    assert _shown(queries) == [("Eq", {"key": "start.sample", "value": '"Au"'})]
    assert exact is True
    # A dotted key of a facility: each part a plain name.
    queries, _ = translate({"sample.name": "Au"}, SCALAR_KEYS | {"sample.name"})
    assert [q.key for q in queries] == ["start.sample.name"]


def test_listings_longer_than_a_server_page_are_whole_and_in_order(tiled_container):
    # Run nodes as TiledWriter makes them (metadata start and stop), more
    # than the server sends in one page: listing, skipping, limiting and
    # searching must follow its pages.
    from tiled.structures.core import Spec

    from intake_bluesky.core import BlueskyInMemoryCatalog
    from intake_bluesky.tiled import BlueskyTiledCatalog

    memory = BlueskyInMemoryCatalog()
    for i in range(230):
        start = {
            "uid": f"{i:04d}-run",
            "time": 1000.0 + (i * 37) % 230,  # stored out of time order
            "scan_id": i % 7,
            "plan_name": "scan" if i % 3 else "count",
        }
        stop = {"uid": f"{i:04d}-stop", "run_start": start["uid"], "time": start["time"] + 1,
                "exit_status": "success", "num_events": {}}  # fmt: skip
        tiled_container.create_container(
            key=start["uid"],
            metadata={"start": start, "stop": stop},
            specs=[Spec("BlueskyRun", version="3.0")],
        )
        memory.ingest([("start", start), ("stop", stop)])
    cat = BlueskyTiledCatalog(tiled_container)
    assert list(cat) == list(memory)
    assert len(list(cat)) == 230
    scans = {"plan_name": "scan"}
    assert list(cat.search(scans)) == list(memory.search(scans))
    assert [r.start["uid"] for r in cat[-120:]] == [r.start["uid"] for r in memory[-120:]]
    assert cat.to_dataframe().index.tolist() == memory.to_dataframe().index.tolist()
    window = [s["uid"] for s in memory.driver.search({}, skip=95, limit=110)]
    assert len(window) == 110
    assert [s["uid"] for s in cat.driver.search({}, skip=95, limit=110)] == window
    summaries = list(cat.driver.summaries({}, skip=95, limit=110))
    assert [start["uid"] for start, _ in summaries] == window
    assert all(stop["run_start"] == start["uid"] for start, stop in summaries)
