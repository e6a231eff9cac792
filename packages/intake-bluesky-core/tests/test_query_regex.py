"""$regex in the in-process evaluator: RE2, so that no pattern can run away."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from intake_bluesky.core import compile_query, validate_query
from intake_bluesky.core._query.evaluate import _linear_pattern


def test_catastrophic_pattern_answers_correctly_in_a_subprocess():
    # With a backtracking engine this search runs for hours; the timeout is
    # generous, the answer is what is checked.
    code = textwrap.dedent(
        """
        from intake_bluesky.core import BlueskyInMemoryCatalog
        cat = BlueskyInMemoryCatalog()
        for uid, operator in (("bad", "a" * 40 + "!"), ("good", "a" * 40), ("short", "aaa!")):
            cat("start", {"uid": uid, "time": len(uid), "operator": operator})
        print(list(cat.search({"operator": {"$regex": "^(a+)+$"}})))
        print(list(cat.search({"operator": {"$not": re.compile("^(a+)+$")}})))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", "import re\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['good']", "['bad', 'short']"]


def test_evaluator_matches_with_re2():
    engine = _linear_pattern(re.compile("^(a+)+$"), "query.operator")
    assert type(engine).__module__.split(".")[0] == "re2"
    assert engine.search("a" * 40 + "!") is None
    assert engine.search("a" * 40) is not None


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"$regex": "^AL", "$options": "i"}, ["alice"]),
        ({"$regex": "^b.b$", "$options": "s"}, ["b\nb"]),
        ({"$regex": "^b$", "$options": "m"}, ["b\nb"]),
        ({"$regex": "^b$"}, []),
        # Verbose: whitespace and comments dropped, except escaped or in a class.
        ({"$regex": " ^ a l  # the first two letters\n i", "$options": "x"}, ["alice"]),
        ({"$regex": r"^x\ y[ #]z$", "$options": "x"}, ["x y z", "x y#z"]),
        ({"$regex": "ice$"}, ["alice"]),
        (re.compile("^AL", re.IGNORECASE), ["alice"]),
        ({"$in": [re.compile("^x y"), "alice"]}, ["alice", "x y z", "x y#z"]),
        ({"$not": re.compile("^[ab]")}, ["x y z", "x y#z"]),
    ],
)
def test_regex_semantics_with_re2(condition, expected):
    docs = ["alice", "b\nb", "x y z", "x y#z"]
    match = compile_query({"operator": condition})
    assert [d for d in docs if match({"operator": d})] == expected


@pytest.mark.parametrize("pattern", ["a(?=b)", "a(?!b)", "(?<=a)b", r"(a)\1", r"a\Z", "a++"])
def test_constructs_re2_lacks_are_a_clear_error_here_but_go_to_a_server(pattern):
    query = {"operator": {"$regex": pattern}}
    with pytest.raises(ValueError, match="RE2") as info:
        validate_query(query)
    message = str(info.value)
    assert repr(pattern) in message and "query.operator" in message
    assert "MongoDB" in message
    with pytest.raises(ValueError, match="RE2"):
        compile_query({"operator": re.compile(pattern)})
    # A MongoDB server evaluates its queries with its own engine.
    assert validate_query(query, server=True) == query
