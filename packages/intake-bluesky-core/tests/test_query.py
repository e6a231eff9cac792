import pytest

from intake_bluesky.core import and_queries, compile_query, validate_query


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
        ({"$text": {"$search": "x"}}, "server"),
        ({1: 2}, "string"),
    ],
)
def test_malformed_queries_name_the_problem(query, message):
    with pytest.raises(ValueError, match=message):
        validate_query(query)


def test_server_only_operators_allowed_for_servers():
    assert validate_query({"$text": {"$search": "x"}}, server=True) == {"$text": {"$search": "x"}}


def test_compile_query_semantics():
    docs = [
        {"uid": "a", "scan_id": 1, "sample": {"name": "Cu"}, "tags": ["x", "y"]},
        {"uid": "b", "scan_id": 2, "sample": {"name": "Fe"}},
        {"uid": "c", "scan_id": "three"},
    ]

    def match(q):
        pred = compile_query(q)
        return [d["uid"] for d in docs if pred(d)]

    assert match({}) == ["a", "b", "c"]
    assert match({"sample.name": "Fe"}) == ["b"]
    assert match({"scan_id": {"$gt": 1}}) == ["b"]  # "three" is not comparable: no match
    assert match({"tags": "y"}) == ["a"]
    assert match({"sample": {"$exists": False}}) == ["c"]
    assert match({"$nor": [{"scan_id": 1}, {"scan_id": 2}]}) == ["c"]
    assert match({"uid": {"$not": {"$regex": "^a"}}}) == ["b", "c"]


def test_and_queries():
    assert and_queries(None, {}) == {}
    assert and_queries({"a": 1}, None) == {"a": 1}
    assert and_queries({"a": 1}, {"b": 2}) == {"$and": [{"a": 1}, {"b": 2}]}
