"""The embedded layout's ``start.`` prefix, for every operator."""

import copy

import pytest

from intake_bluesky.core import compile_query
from intake_bluesky.mongo import EmbeddedDriver, NormalizedDriver, prefix_query


def test_fields_are_prefixed_operators_are_not():
    query = {"scan_id": 3, "sample.name": {"$in": ["Cu", "Fe"]}, "time": {"$gt": 1, "$lt": 5}}
    assert prefix_query(query) == {
        "start.scan_id": 3,
        "start.sample.name": {"$in": ["Cu", "Fe"]},
        "start.time": {"$gt": 1, "$lt": 5},
    }


def test_logical_operators_at_any_depth():
    query = {
        "$and": [
            {"plan_name": "scan"},
            {"$or": [{"scan_id": {"$gte": 2}}, {"$nor": [{"operator": "bob"}, {"x.y": None}]}]},
        ],
        "$nor": [{"sample": {"$exists": False}}],
    }
    assert prefix_query(query) == {
        "$and": [
            {"start.plan_name": "scan"},
            {
                "$or": [
                    {"start.scan_id": {"$gte": 2}},
                    {"$nor": [{"start.operator": "bob"}, {"start.x.y": None}]},
                ]
            },
        ],
        "$nor": [{"start.sample": {"$exists": False}}],
    }


def test_values_are_left_alone():
    # $elemMatch documents address array elements, $not wraps a condition,
    # a literal sub-document is compared as is: none of them gain a prefix.
    query = {
        "detectors": {"$elemMatch": {"name": "det", "gain": {"$gt": 1}}},
        "plan_name": {"$not": {"$regex": "^fly"}},
        "sample": {"name": "Cu", "mass": 2.5},
    }
    original = copy.deepcopy(query)
    assert prefix_query(query) == {"start." + k: v for k, v in original.items()}
    assert query == original  # not mutated


def test_text_and_comment_unchanged():
    query = {"$text": {"$search": "copper"}, "$comment": "why", "scan_id": 1}
    assert prefix_query(query) == {
        "$text": {"$search": "copper"},
        "$comment": "why",
        "start.scan_id": 1,
    }


def test_expr_field_paths_rebased_on_the_start_document():
    query = {
        "$or": [
            {"$expr": {"$gt": ["$num_points", {"$multiply": ["$scan_id", 2]}]}},
            {"$expr": {"$eq": ["$$ROOT.plan_name", {"$literal": "$plan_name"}]}},
            {"$expr": {"$lt": ["$time", "$$NOW"]}},
        ]
    }
    var = "$$bluesky_start_doc"
    let = {"$arrayElemAt": ["$start", 0]}
    assert prefix_query(query) == {
        "$or": [
            {
                "$expr": {
                    "$let": {
                        "vars": {"bluesky_start_doc": let},
                        "in": {"$gt": [f"{var}.num_points", {"$multiply": [f"{var}.scan_id", 2]}]},
                    }
                }
            },
            {
                "$expr": {
                    "$let": {
                        "vars": {"bluesky_start_doc": let},
                        "in": {"$eq": [f"{var}.plan_name", {"$literal": "$plan_name"}]},
                    }
                }
            },
            {
                "$expr": {
                    "$let": {
                        "vars": {"bluesky_start_doc": let},
                        "in": {"$lt": [f"{var}.time", "$$NOW"]},
                    }
                }
            },
        ]
    }


STARTS = [
    {
        "uid": "u0",
        "time": 0.0,
        "scan_id": 1,
        "plan_name": "scan",
        "sample": {"name": "Cu"},
        "detectors": ["det", "cam"],
        "num_points": 5,
        "operator": "alice",
    },
    {
        "uid": "u1",
        "time": 1.0,
        "scan_id": 2,
        "plan_name": "count",
        "sample": {"name": "Fe"},
        "detectors": ["det"],
        "num_points": 2,
    },
    {
        "uid": "u2",
        "time": 2.0,
        "scan_id": 3,
        "plan_name": "scan",
        "sample": {"name": "Fe"},
        "detectors": [],
        "num_points": 9,
        "operator": "bob",
    },
    {
        "uid": "u3",
        "time": 3.0,
        "scan_id": 4,
        "plan_name": "fly",
        "sample": "bare string",
        "detectors": ["cam"],
        "operator": "alice",
        "num_points": 1,
    },
]

QUERIES = [
    {},
    {"plan_name": "scan"},
    {"sample.name": "Fe"},
    {"detectors": "cam"},
    {"detectors": {"$size": 0}},
    {"detectors": {"$all": ["det", "cam"]}},
    {"operator": {"$exists": False}},
    {"operator": {"$ne": "alice"}},
    {"operator": {"$nin": ["alice"]}},
    {"scan_id": {"$not": {"$gt": 2}}},
    {"plan_name": {"$regex": "^sc"}},
    {"$and": [{"plan_name": "scan"}, {"$or": [{"scan_id": 1}, {"sample.name": "Fe"}]}]},
    {"$or": [{"$and": [{"scan_id": {"$gte": 2}}, {"scan_id": {"$lt": 4}}]}, {"uid": "u3"}]},
    {"$nor": [{"plan_name": "scan"}, {"operator": {"$exists": False}}]},
    {"$and": [{"$nor": [{"scan_id": 2}]}, {"$or": [{"detectors": "det"}, {"plan_name": "fly"}]}]},
    {"scan_id": {"$in": [1, 4]}, "$or": [{"operator": "alice"}, {"operator": "bob"}]},
    {"scan_id": {"$mod": [2, 0]}},
    {"sample": {"$type": "string"}},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_embedded_matches_normalized_and_core(mongo, query):
    if not mongo.real and "$mod" in str(query):
        pytest.skip("mongomock does not implement $mod")
    mds, datastore = mongo.database("mds"), mongo.database("datastore")
    mds.run_start.insert_many([dict(s) for s in STARTS])
    datastore.header.insert_many([{"run_id": s["uid"], "start": [dict(s)]} for s in STARTS])
    predicate = compile_query(query)
    expected = [s["uid"] for s in STARTS if predicate(s)]
    normalized = [s["uid"] for s in NormalizedDriver(mds).search(query)]
    embedded = [s["uid"] for s in EmbeddedDriver(datastore).search(query)]
    assert embedded == expected
    assert normalized == expected
    assert EmbeddedDriver(datastore).count(query) == len(expected)


def test_embedded_expr_end_to_end(mongo):
    datastore = mongo.database("datastore")
    datastore.header.insert_many([{"run_id": s["uid"], "start": [dict(s)]} for s in STARTS])
    driver = EmbeddedDriver(datastore)
    found = driver.search({"$expr": {"$gt": ["$num_points", {"$multiply": ["$scan_id", 2]}]}})
    assert [s["uid"] for s in found] == ["u0", "u2"]
    found = driver.search({"$or": [{"$expr": {"$eq": ["$scan_id", 4]}}, {"uid": "u1"}]})
    assert [s["uid"] for s in found] == ["u1", "u3"]


def test_embedded_sort_keys_are_prefixed(mongo):
    datastore = mongo.database("datastore")
    datastore.header.insert_many([{"run_id": s["uid"], "start": [dict(s)]} for s in STARTS])
    mongo.log(datastore).clear()
    found = EmbeddedDriver(datastore).search({}, sort=[("scan_id", -1)], limit=2)
    assert [s["uid"] for s in found] == ["u3", "u2"]
    (op,) = mongo.log(datastore)
    assert op.sort == [("start.scan_id", -1), ("_id", -1)]
    assert op.projection == {"_id": False, "start": True}
