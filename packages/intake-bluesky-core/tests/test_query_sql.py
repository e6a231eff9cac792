"""Queries compiled to SQL over the on-disk index never change an answer.

For generated start documents and queries, the rows SQL keeps (``sup``) hold
every document the evaluator matches, and the rows SQL calls sure (``sub``)
are all matched by it; then the same through catalogs, with and without the
index."""

import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from intake_bluesky.core import BlueskyCatalog, FileDriver
from intake_bluesky.core._files import diskindex as _diskindex
from intake_bluesky.core._files import headers as _headers
from intake_bluesky.core._query.evaluate import compile_query
from intake_bluesky.core._query.sql import compile_sql, side_values

# Values chosen where SQL and MongoDB part ways: numbers at and beyond 64 bits,
# -0.0, NaN and infinities, bools (not numbers), NUL characters (json_extract
# cuts strings there), strings that read like JSON, the last code point.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([2**53 + 1, -(2**63), 2**63 - 1, 2**64 - 1, 2**70, -(2**70)]),
    st.sampled_from([0.5, -0.0, 1.0, 2.5, 3.0000000000000004, 1e300, float("nan"), float("inf")]),
    st.sampled_from(["", "a", "ab", "a.b", "b", "a\x00", "a\x00b", "é", "\U0010ffff", "[1]", "1"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["name", "0", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)
KEYS = ["uid", "time", "scan_id", "plan_name", "sample", "a"]
DOCS = st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5), max_size=10)

FIELDS = st.sampled_from(
    ["uid", "time", "scan_id", "plan_name", "sample", "sample.name", "a", "a.0", "a.x", "nope"]
)
PATTERNS = st.sampled_from(["^a", "^", "a", "^a\\.", "^é", "^a\\x00", "b$", "^[ab]"])
CONDITIONS = st.one_of(
    VALUES,
    st.builds(
        lambda op, v: {op: v},
        st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
        VALUES,
    ),
    st.builds(
        lambda op, v: {op: v},
        st.sampled_from(["$in", "$nin", "$all"]),
        st.lists(VALUES, max_size=3),
    ),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
    st.builds(lambda p, o: {"$regex": p, "$options": o}, PATTERNS, st.sampled_from(["", "i"])),
    st.builds(lambda p: re.compile(p), PATTERNS),
    st.builds(lambda v: {"$not": {"$gt": v}}, VALUES),
    st.builds(lambda p: {"$not": re.compile(p)}, PATTERNS),
    st.builds(lambda v: {"$gte": v, "$lt": 3}, st.integers(-3, 3)),
    st.sampled_from([{"$size": 1}, {"$elemMatch": {"$gt": 0}}, {"$type": "string"}]),
    st.sampled_from([{"$mod": [2, 0]}, {"name": "a"}]),
)
QUERIES = st.recursive(
    st.dictionaries(FIELDS, CONDITIONS, min_size=1, max_size=2),
    lambda inner: st.builds(
        lambda op, parts: {op: parts},
        st.sampled_from(["$and", "$or", "$nor"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=4,
)

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return _diskindex.DiskIndex(str(tmp_path_factory.mktemp("sql") / "index.sqlite"))


def _evaluator(query):
    try:
        return compile_query(query)
    except ValueError:
        return None  # refused by the evaluator (e.g. a pattern RE2 lacks)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=DOCS, query=QUERIES)
def test_sql_keeps_every_match_and_is_sure_only_of_matches(index, docs, query):
    match = _evaluator(query)
    assume(match is not None)
    try:
        expected_docs = [match(doc) for doc in docs]
    except ValueError:
        assume(False)
    directory = f"/sql-{next(_prefixes)}"
    entries = [(f"{directory}/{i}", ((1, 2, 3, i),), doc, None) for i, doc in enumerate(docs)]
    skipped = set(index.put("f", entries))
    expected = {
        loc for (loc, _, _, _), hit in zip(entries, expected_docs, strict=True) if hit
    } - skipped
    compiled = compile_sql(query)
    if compiled is None:
        return  # SQL does not narrow: every row is evaluated
    rows = index.candidates("f", directory, *compiled)
    assert rows is not None
    kept = {row[0] for row in rows}
    sure = {row[0] for row in rows if row[7]}
    assert expected <= kept, (query, [docs[int(loc.rsplit("/", 1)[1])] for loc in expected - kept])
    assert sure <= expected, (query, [docs[int(loc.rsplit("/", 1)[1])] for loc in sure - expected])


@pytest.mark.parametrize(
    ("start", "values"),
    [
        ({"uid": "a", "time": 1.5, "scan_id": 3, "plan_name": "scan"}, ("a", 1.5, 3, "scan", 0)),
        ({"uid": "a", "scan_id": True, "plan_name": None}, ("a", None, None, None, 0b1100)),
        (
            {"uid": "a\x00", "time": float("nan"), "scan_id": 2**64},
            ("a\x00", None, None, None, 0b0111),
        ),
        ({"uid": "a", "plan_name": ["scan"], "time": "2026"}, ("a", "2026", None, None, 0b1000)),
        (None, (None, None, None, None, 0)),
    ],
)
def test_side_columns_hold_only_what_sql_compares_exactly(start, values):
    assert side_values(start) == values


@pytest.mark.parametrize(
    ("query", "narrows"),
    [
        ({"plan_name": "scan"}, True),
        ({"uid": {"$regex": "^a1b2"}}, True),  # a partial uid: a range of the uid column
        ({"sample.name": {"$in": ["Fe", "Cu"]}}, True),
        ({"plan_name": {"$ne": "scan"}}, True),
        ({"plan_name": {"$type": "string"}}, False),  # left to the evaluator
        ({"detectors": {"$size": 2}}, True),  # only rows holding an array there
        ({"$or": [{"plan_name": "scan"}, {"scan_id": {"$mod": [2, 0]}}]}, False),
        ({"$comment": "all"}, False),
        ({}, False),
    ],
)
def test_what_sql_narrows(query, narrows):
    assert (compile_sql(query) is not None) == narrows


# --- through catalogs: SQL answers equal the evaluator's ------------------------

_TABLE_DOCS = [
    {"uid": "r0", "time": 5.0, "scan_id": 1, "plan_name": "scan", "sample": {"name": "Fe"}},
    {"uid": "r1", "time": 1.0, "scan_id": 2, "plan_name": "count", "sample": "Fe"},
    {"uid": "r2", "time": 3.0, "scan_id": 2.0, "plan_name": ["scan", "count"], "motors": ("x",)},
    {"uid": "r3", "time": 2.0, "scan_id": "2", "plan_name": None, "sample": [{"name": "Cu"}]},
    {"uid": "r4", "time": 4.0, "scan_id": True, "sample": {"name": None}, "n": 2**64 - 1},
    {"uid": "r5", "time": 6.0, "plan_name": "a\x00b", "sample": {"name": "Fe\x00"}},
    {"uid": "r6", "time": 0.5, "scan_id": 2**63 - 1, "plan_name": "scan", "x": float("nan")},
]
_TABLE_QUERIES = [
    {"plan_name": "scan"},
    {"plan_name": {"$ne": "scan"}},
    {"plan_name": None},
    {"plan_name": {"$exists": False}},
    {"plan_name": {"$in": ["count", None]}},
    {"plan_name": {"$nin": ["scan"]}},
    {"plan_name": {"$regex": "^a"}},
    {"plan_name": "a\x00b"},
    {"scan_id": 2},
    {"scan_id": {"$gte": 2}},
    {"scan_id": {"$gt": "1"}},
    {"scan_id": {"$not": {"$gt": 1}}},
    {"scan_id": {"$lt": 2**63}},
    {"sample.name": "Fe"},
    {"sample.name": None},
    {"sample.name": {"$ne": "Fe"}},
    {"sample": "Fe"},
    {"motors": "x"},
    {"n": {"$gt": 2**63}},
    {"n": 18446744073709551615},
    {"time": {"$gte": 2, "$lt": 5}},
    {"$or": [{"scan_id": 1}, {"plan_name": "count"}]},
    {"$nor": [{"scan_id": 1}, {"plan_name": "count"}]},
    {"$and": [{"time": {"$gt": 1}}, {"sample.name": {"$exists": True}}]},
    {"uid": {"$regex": "^r"}},
    {"uid": {"$in": ["r1", "r5"]}},
    {"x": {"$exists": True}},
]


@pytest.fixture
def table_dir(tmp_path):
    import json

    from intake_bluesky.core import FileFormat

    directory = tmp_path / "runs"
    directory.mkdir()
    for doc in _TABLE_DOCS:
        with open(directory / f"{doc['uid']}.lines", "w") as f:
            f.write(json.dumps(["start", doc]) + "\n")
            f.write(
                json.dumps(["stop", {"uid": "s" + doc["uid"], "run_start": doc["uid"]}]) + "\n"
            )
    # Old: the listing is stored, and a new catalog takes it unlisted.
    os.utime(directory, ns=(10**18, 10**18))

    class Lines(FileFormat):
        suffixes = (".lines",)
        name = "lines"

        def read_documents(self, location):
            with open(location) as f:
                return [tuple(json.loads(line)) for line in f if line.strip()]

    return directory, Lines


@pytest.mark.parametrize("query", _TABLE_QUERIES, ids=repr)
def test_catalogs_answer_alike_with_and_without_the_index(tmp_path, table_dir, query):
    directory, fmt = table_dir
    index = tmp_path / "index.sqlite"
    expected = list(BlueskyCatalog(FileDriver(directory, fmt(), index_path=False)).search(query))
    len(BlueskyCatalog(FileDriver(directory, fmt(), index_path=index)))  # writes the index
    for _ in ("listed from the index", "answered from the index alone"):
        _headers._HEADERS.clear()
        cat = BlueskyCatalog(FileDriver(directory, fmt(), index_path=index))
        if _ == "listed from the index":
            len(cat)  # lists the directory: entries from the index, documents not decoded
        assert list(cat.search(query)) == expected, _
        assert len(cat.search(query)) == len(expected)
