"""``intake-bluesky diff``: two runs of one store or of two stores, text and
JSON, run lookup, exit statuses. ``main(argv)`` runs in this process over
YAML catalogs whose drivers are catalog classes of the test."""

from __future__ import annotations

import json
import textwrap

import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.testing import UIDS, example_runs

# Two catalogs, importable through PYTHONPATH: the example runs, and the
# example ``scan`` run again as it would be with another sample and a
# slower detector.
MODULE = """
import copy

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.testing import example_runs


class ExampleCatalog(BlueskyInMemoryCatalog):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for docs in example_runs():
            self.ingest(docs)


class ChangedCatalog(BlueskyInMemoryCatalog):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        docs = copy.deepcopy(example_runs()[0])
        docs[0][1]["sample"]["name"] = "Ag"
        for name, doc in docs:
            if name == "descriptor" and doc["name"] == "primary":
                doc["configuration"]["det"]["data"]["det_exposure"] = 0.5
        self.ingest(docs)
"""


@pytest.fixture
def stores(tmp_path):
    (tmp_path / "cli_diff_module.py").write_text(MODULE)
    for name, cls in (("examples", "ExampleCatalog"), ("changed", "ChangedCatalog")):
        (tmp_path / f"{name}.yml").write_text(
            textwrap.dedent(
                f"""
                sources:
                  {name}:
                    driver: cli_diff_module.{cls}
                """
            )
        )
    return tmp_path / "examples.yml", tmp_path / "changed.yml", {"PYTHONPATH": str(tmp_path)}


@pytest.fixture
def examples():
    cat = BlueskyInMemoryCatalog()
    for docs in example_runs():
        cat.ingest(docs)
    return cat


def test_diff_two_runs_of_a_store(cli, stores, examples):
    store, _, env = stores
    # -4 is "count", scan_id 2 the most recent run with it ("failed").
    out = cli.ok("diff", store, "-4", "2", env=env)
    lines = out.splitlines()
    assert lines[0].startswith(f"run A  {UIDS['count']}  scan_id 2  count")
    assert lines[1].startswith(f"run B  {UIDS['failed']}  scan_id 2  count")
    assert lines[2] == "4 difference(s) (rtol=0, atol=0)"
    assert out.endswith(
        "stop metadata\n"
        "                      A          B\n"
        "  exit_status         'success'  'fail'\n"
        "  reason              ''         'detector timeout'\n"
        "  num_events.primary  5          2\n"
        "\n"
        "streams\n"
        "                A  B\n"
        "  primary.rows  5  2\n"
    )
    assert out == str(examples[UIDS["count"]].diff(examples[UIDS["failed"]])) + "\n"


def test_diff_json_is_to_dict(cli, stores, examples):
    store, _, env = stores
    # partial uids: "a1b2ff" is count's beginning, "c0ffee" failed's.
    out = json.loads(cli.ok("diff", store, "a1b2ff", "c0ffee", "--json", env=env))
    assert out == examples[UIDS["count"]].diff(examples[UIDS["failed"]]).to_dict()
    assert out["equal"] is False
    assert out["sections"]["stop"][0] == {"key": "exit_status", "a": "success", "b": "fail"}


def test_same_run_no_differences_exit_zero(cli, stores):
    store, _, env = stores
    out = cli.ok("diff", store, UIDS["scan"], "1", env=env)
    assert out.splitlines()[-1] == "no differences (rtol=0, atol=0)"
    out = json.loads(cli.ok("diff", store, "-1", "-1", "--json", env=env))
    assert out["equal"] is True and not any(out["sections"].values())


def test_diff_across_stores(cli, stores):
    store, changed, env = stores
    out = json.loads(
        cli.ok("diff", store, UIDS["scan"], "-1", "--store-b", changed, "--json", env=env)
    )
    assert {name: rows for name, rows in out["sections"].items() if rows} == {
        "start": [{"key": "sample.name", "a": "Cu", "b": "Ag"}],
        "configuration": [{"key": "primary.det.det_exposure", "a": 0.1, "b": 0.5}],
    }
    # B is looked up in STORE2 only: the changed store has one run.
    err = cli.fails("diff", store, "1", UIDS["count"], "--store-b", changed, env=env)
    assert str(changed) in err and UIDS["count"] in err


def test_tolerance_options(cli, stores):
    store, changed, env = stores
    out = json.loads(
        cli.ok("diff", store, "1", "1", "--store-b", changed, "--atol", "0.5", "--json", env=env)
    )
    assert out["atol"] == 0.5 and out["rtol"] == 0.0
    # 0.1 vs 0.5 is within 0.5: only the sample differs.
    assert [row["key"] for rows in out["sections"].values() for row in rows] == ["sample.name"]
    err = cli.fails("diff", store, "1", "1", "--rtol", "-1", env=env, code=2)
    assert "must be a finite number >= 0" in err


def test_errors_exit_one_with_a_message(cli, stores, tmp_path):
    store, _, env = stores
    err = cli.fails("diff", store, "-1", "deadbeef", env=env)
    assert "deadbeef" in err and str(store) in err
    err = cli.fails("diff", store, "a1b2", "-1", env=env)  # two runs begin so
    assert UIDS["scan"] in err and UIDS["count"] in err
    err = cli.fails("diff", store, "-1", "-9", env=env)
    assert str(store) in err
    err = cli.fails("diff", tmp_path / "nothing-here", "-1", "-2")
    assert "no such file or directory" in err


def test_help_says_the_exit_status(cli):
    out = cli.ok("diff", "--help")
    assert "exit status is 0 whether the runs differ or not" in " ".join(out.split())
    assert "--store-b STORE2" in out and "--json" in out
    assert "intake-bluesky diff data/ -2 -1" in cli.ok("--help")
