import re

import pytest

from intake_bluesky.core import and_queries, compile_query, validate_query
from intake_bluesky.core._query.starts import search_starts


@pytest.mark.parametrize(
    "query",
    [
        {"$where": "1"},
        {"a": {"$where": "1"}},
        {"$and": [{"b": 1}, {"$function": {"body": "x", "args": [], "lang": "js"}}]},
        {"$or": [{"$accumulator": {}}]},
        {"a": {"$not": {"$where": "1"}}},
        {"a": {"$elemMatch": {"$where": "1"}}},
        {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}},
        {"$expr": {"$and": [{"$gt": ["$a", 1]}, {"$accumulator": {}}]}},
    ],
)
def test_javascript_operators_refused_anywhere(query):
    for server in (False, True):
        with pytest.raises(ValueError, match="refused"):
            validate_query(query, server=server)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("scan_id == 3", "mapping"),
        (["scan_id"], "mapping"),
        ({"scan_id": {"$gte": 1, "$bogus": 2}}, r"\$bogus"),
        ({"$nonsense": []}, r"\$nonsense"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$and": ["a"]}, "mapping"),
        ({"a": {"$in": "abc"}}, "list"),
        ({"a": {"$regex": "(unclosed"}}, "not a valid pattern"),
        ({"a": {"$regex": 3}}, "string"),
        ({"a": {"$regex": "x", "$options": "q"}}, "imsx"),
        ({"a": {"$options": "i"}}, r"needs a \$regex"),
        ({"a": {"$mod": [2]}}, "divisor"),
        ({"a": {"$mod": [0, 1]}}, "divisor"),
        ({"a": {"$type": "foo"}}, "unknown type"),
        ({"a": {"$size": "3"}}, "integer"),
        ({"a": {"$not": 3}}, "operator expression"),
        ({"a": {"$gt": 1, "b": 2}}, "mixes operators"),
        ({"a": {"$elemMatch": 3}}, "mapping"),
        ({"$text": {"$search": "x"}}, "server"),
        ({1: 2}, "string"),
    ],
)
def test_malformed_queries_name_the_problem(query, message):
    with pytest.raises(ValueError, match=message):
        validate_query(query)


def test_server_only_operators_allowed_for_servers():
    assert validate_query({"$text": {"$search": "x"}}, server=True) == {"$text": {"$search": "x"}}


DOCS = [
    {"uid": "a", "scan_id": 1, "plan_name": "scan", "sample": {"name": "Cu"},
     "tags": ["x", "y"], "det": [{"name": "d1", "exp": 0.1}, {"name": "d2", "exp": 2.0}]},
    {"uid": "b", "scan_id": 2, "plan_name": "count", "sample": {"name": "Fe"}, "empty": None},
    {"uid": "c", "scan_id": "three", "plan_name": "Scan", "flag": True},
]  # fmt: skip


def match(q):
    pred = compile_query(q)
    return [d["uid"] for d in DOCS if pred(d)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["a", "b", "c"]),
        ({"sample.name": "Fe"}, ["b"]),
        ({"scan_id": {"$gt": 1}}, ["b"]),  # "three" is a string: not comparable
        ({"scan_id": {"$gte": "a"}}, ["c"]),
        ({"tags": "y"}, ["a"]),  # an element of the array
        ({"tags": ["x", "y"]}, ["a"]),  # the whole array
        ({"tags": {"$size": 2}}, ["a"]),
        ({"tags": {"$all": ["y", "x"]}}, ["a"]),
        ({"det.name": "d2"}, ["a"]),  # across an array of documents
        ({"det": {"$elemMatch": {"name": "d2", "exp": {"$gt": 1}}}}, ["a"]),
        ({"det": {"$elemMatch": {"name": "d1", "exp": {"$gt": 1}}}}, []),
        ({"det.1.name": "d2"}, ["a"]),
        ({"sample": {"$exists": False}}, ["c"]),
        ({"sample": {"$exists": "yes"}}, ["a", "b"]),  # any truthy value
        ({"empty": None}, ["a", "b", "c"]),  # null matches missing too
        ({"empty": {"$ne": None}}, []),
        ({"empty": {"$exists": True}}, ["b"]),
        ({"empty": {"$in": [None]}}, ["a", "b", "c"]),
        ({"flag": 1}, []),  # booleans are not numbers
        ({"flag": True}, ["c"]),
        ({"scan_id": {}}, []),  # equality with an empty document
        ({"$nor": [{"scan_id": 1}, {"scan_id": 2}]}, ["c"]),
        ({"plan_name": {"$regex": "SC", "$options": "i"}}, ["a", "c"]),
        ({"plan_name": re.compile("^sc")}, ["a"]),
        ({"plan_name": {"$not": re.compile("^sc")}}, ["b", "c"]),
        ({"plan_name": {"$not": {"$regex": "^s", "$options": "i"}}}, ["b"]),
        ({"plan_name": {"$in": [re.compile("^co"), "Scan"]}}, ["b", "c"]),
        ({"scan_id": {"$mod": [2, 0]}}, ["b"]),
        ({"scan_id": {"$type": "string"}}, ["c"]),
        ({"scan_id": {"$type": ["int", "string"]}}, ["a", "b", "c"]),
        ({"scan_id": {"$nin": [1, 2]}}, ["c"]),
        ({"$comment": "why", "scan_id": 1}, ["a"]),
    ],
)
def test_mongodb_semantics(query, expected):
    assert match(query) == expected


def test_descending_order_is_ascending_reversed_with_ties():
    docs = [{"uid": u, "time": 100.0} for u in "abc"] + [{"uid": "d", "time": 50.0}]
    asc = [d["uid"] for d in search_starts(docs, {})]
    desc = [d["uid"] for d in search_starts(docs, {}, sort=[("time", -1)])]
    assert asc == ["d", "a", "b", "c"]
    assert desc == asc[::-1]


def test_and_queries():
    assert and_queries(None, {}) == {}
    assert and_queries({"a": 1}, None) == {"a": 1}
    assert and_queries({"a": 1}, {"b": 2}) == {"$and": [{"a": 1}, {"b": 2}]}
