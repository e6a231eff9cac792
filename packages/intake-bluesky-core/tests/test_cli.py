"""The ``intake-bluesky`` command with the core alone: help, errors, and
ls/show over a YAML catalog whose driver is a catalog class of the test (the
core ships no file backend). ``main(argv)`` runs in this process; a few smoke
tests at the end run the installed script in a subprocess."""

from __future__ import annotations

import json
import textwrap

import pytest

from intake_bluesky.core._cli.stores import KNOWN_BACKENDS
from intake_bluesky.core._cli.timeq import time_query
from intake_bluesky.core._registry import BACKEND_GROUP, entry_point_objects
from intake_bluesky.core.export import WRITER_GROUP
from intake_bluesky.core.testing import UIDS

# A catalog of the example runs, importable through PYTHONPATH.
EXAMPLES_MODULE = """
from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.testing import example_runs


class ExampleCatalog(BlueskyInMemoryCatalog):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for docs in example_runs():
            self.ingest(docs)
"""


@pytest.fixture
def yaml_store(tmp_path):
    (tmp_path / "cli_examples_module.py").write_text(EXAMPLES_MODULE)
    path = tmp_path / "catalog.yml"
    path.write_text(
        textwrap.dedent(
            """
            sources:
              examples:
                driver: cli_examples_module.ExampleCatalog
              empty:
                driver: intake_bluesky.core.BlueskyInMemoryCatalog
            """
        )
    )
    return path, {"PYTHONPATH": str(tmp_path)}


def test_help_shows_commands_and_examples(cli):
    out = cli.ok("--help")
    for command in ("ls", "show", "export"):
        assert command in out
    assert "examples:" in out and "intake-bluesky export" in out
    for command in ("ls", "show", "export"):
        sub = cli.ok(command, "--help")
        assert "examples:" in sub and f"intake-bluesky {command}" in sub


def test_version_and_usage_errors(cli):
    from intake_bluesky.core import __version__

    assert cli.ok("--version").strip() == f"intake-bluesky {__version__}"
    assert "usage" in cli.fails(code=2)
    assert "invalid choice" in cli.fails("frobnicate", code=2)
    assert "--limit" in cli.fails("ls", ".", "--limit", "0", code=2)


def test_ls_yaml_catalog_entry(cli, yaml_store):
    path, env = yaml_store
    out = cli.ok("ls", path, "--entry", "examples", env=env)
    lines = out.splitlines()
    assert lines[0].split() == [
        "uid",
        "scan_id",
        "plan_name",
        "time",
        "duration",
        "exit_status",
        "num_events",
    ]
    # Newest last: the example runs in time order.
    assert [line.split()[0] for line in lines[1:]] == [u[:8] for u in UIDS.values()]
    assert "running" in lines[4]  # the live run has no stop
    assert "primary:6" in lines[1] and "baseline:" in lines[1]


def test_ls_json_search_fields_limit(cli, yaml_store):
    path, env = yaml_store
    out = cli.ok(
        "ls",
        path,
        "--entry",
        "examples",
        "--search",
        '{"sample.name": {"$in": ["Cu", "Au"]}}',
        "--fields",
        "sample.name,operator",
        "--json",
        env=env,
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["uid"] for r in rows] == [UIDS["scan"], UIDS["stream"]]
    assert [r["sample.name"] for r in rows] == ["Cu", "Au"]
    assert [r["operator"] for r in rows] == ["alice", "alice"]
    assert rows[0]["num_events"] == {"baseline": 2, "primary": 6}
    assert rows[0]["exit_status"] == "success"
    limited = cli.ok("ls", path, "--entry", "examples", "--limit", "2", "--json", env=env)
    assert [json.loads(line)["uid"] for line in limited.splitlines()] == [
        UIDS["live"],
        UIDS["stream"],
    ]


def test_ls_since_until(cli, yaml_store):
    path, env = yaml_store
    # The examples start at 1_700_000_000 (2023-11-14T22:13:20Z), then +100 s ...
    out = cli.ok(
        "ls",
        path,
        "--entry",
        "examples",
        "--since",
        "2023-11-14T22:16:00+00:00",
        "--until",
        "2023-11-14T22:18:30+00:00",
        "--json",
        env=env,
    )
    assert [json.loads(line)["uid"] for line in out.splitlines()] == [
        UIDS["failed"],
        UIDS["live"],
    ]
    err = cli.fails("ls", path, "--entry", "examples", "--since", "last tuesday", env=env)
    assert "--since 'last tuesday'" in err and "2026-03-01" in err


def test_time_query_naive_times_in_given_zone():
    q = time_query("2026-01-01", "2026-01-02", "UTC")
    assert q == {"time": {"$gte": 1767225600.0, "$lt": 1767312000.0}}
    assert time_query(None, None) == {}


def test_show_summary_and_documents(cli, yaml_store):
    path, env = yaml_store
    out = cli.ok("show", path, "a1b2c", "--entry", "examples", env=env)
    assert UIDS["scan"] in out and "plan_name    scan" in out
    assert "stream primary: 6 events" in out and "stream baseline: 2 events" in out
    # fields with dtype, shape, dtype_numpy
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert table["img"] == ["array", "[4,5]", "<u2", "-", "-"]
    assert table["ext"] == ["array", "[3,2]", "<f8", "FILESTORE:", "-"]
    assert table["det"] == ["number", "[]", "<f8", "-", "counts"]
    info = json.loads(cli.ok("show", path, "1", "--entry", "examples", "--json", env=env))
    assert info["start"]["uid"] == UIDS["scan"]
    assert info["stop"]["exit_status"] == "success"
    fields = info["streams"]["primary"]["fields"]
    assert fields["det"]["dtype"] == "number"
    assert info["streams"]["primary"]["events"] == 6
    # -N and the live run: counts from storage, no stop
    live = json.loads(cli.ok("show", path, "-2", "--entry", "examples", "--json", env=env))
    assert live["start"]["uid"] == UIDS["live"] and live["stop"] is None
    assert live["streams"]["primary"]["events"] == 3
    docs = cli.ok("show", path, "-1", "--entry", "examples", "--documents", env=env)
    names = [json.loads(line)[0] for line in docs.splitlines()]
    assert names[0] == "start" and names[-1] == "stop"
    assert "stream_resource" in names and "stream_datum" in names


def test_show_documents_equal_canonical(cli, yaml_store):
    from intake_bluesky.core import BlueskyInMemoryCatalog
    from intake_bluesky.core.testing import example_runs, normalize_documents

    path, env = yaml_store
    out = cli.ok("show", path, UIDS["scan"], "--entry", "examples", "--documents", env=env)
    printed = [tuple(json.loads(line)) for line in out.splitlines()]
    cat = BlueskyInMemoryCatalog()
    cat.ingest(example_runs()[0])
    expected = list(cat[UIDS["scan"]].canonical(fill="no"))
    assert [n for n, _ in printed] == [n for n, _ in expected]
    assert normalize_documents(printed) == normalize_documents(expected)


def test_user_errors_have_no_traceback(cli, yaml_store, tmp_path):
    path, env = yaml_store
    assert "No run with uid" in cli.fails("show", path, "ffff", "--entry", "examples", env=env)
    assert "ambiguous" in cli.fails("show", path, "a1b2", "--entry", "examples", env=env)
    assert "out of range" in cli.fails("show", path, "-9", "--entry", "examples", env=env)
    assert "scan_id 99" in cli.fails("show", path, "99", "--entry", "examples", env=env)
    err = cli.fails("ls", path, "--entry", "examples", "--search", "{not json", env=env)
    assert "--search is not valid JSON" in err
    err = cli.fails("ls", path, "--entry", "examples", "--search", '{"$where": "1"}', env=env)
    assert "$where" in err
    assert "2 entries" in cli.fails("ls", path, env=env)
    assert "no entry 'nope'" in cli.fails("ls", path, "--entry", "nope", env=env)
    assert "no such file" in cli.fails("ls", tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    assert "no run files found" in cli.fails("ls", tmp_path)
    assert "OLD=NEW" in cli.fails("ls", path, "--entry", "empty", "--root-map", "x", env=env)


def test_empty_yaml_entry_lists_header_only(cli, yaml_store):
    path, env = yaml_store
    out = cli.ok("ls", path, "--entry", "empty", env=env)
    assert out.split() == [
        "uid",
        "scan_id",
        "plan_name",
        "time",
        "duration",
        "exit_status",
        "num_events",
    ]
    assert cli.ok("ls", path, "--entry", "empty", "--json", env=env) == ""


def _missing(known: dict, group: str):
    installed = entry_point_objects(group)
    return next(((n, p) for n, p in known.items() if n not in installed), None)


def test_missing_backend_names_the_package(cli, tmp_path):
    known = {n: pkg for n, (pkg, sfx) in KNOWN_BACKENDS.items() if sfx}
    missing = _missing(known, BACKEND_GROUP)
    if missing is None:
        pytest.skip("every file backend is installed here (all_together)")
    name, package = missing
    suffix = KNOWN_BACKENDS[name][1][0]
    (tmp_path / f"run{suffix}").write_bytes(b"")
    err = cli.fails("ls", tmp_path)
    assert f"pip install {package}" in err
    err = cli.fails("ls", tmp_path, "--backend", name)
    assert f"pip install {package}" in err


def test_missing_writer_names_the_package(cli, yaml_store, tmp_path):
    from intake_bluesky.core.export import WRITER_PACKAGES

    missing = _missing(WRITER_PACKAGES, WRITER_GROUP)
    if missing is None:
        pytest.skip("every writer is installed here (all_together)")
    name, package = missing
    path, env = yaml_store
    dest = tmp_path / "out"
    err = cli.fails("export", path, dest, "--entry", "examples", "--format", name, env=env)
    assert f"pip install {package}" in err
    assert not dest.exists() or not any(dest.iterdir())


def test_mongo_uri_without_mongo_backend(cli):
    if "mongo_normalized" in entry_point_objects(BACKEND_GROUP):
        pytest.skip("intake-bluesky-mongo is installed here")
    assert "pip install intake-bluesky-mongo" in cli.fails("ls", "mongodb://localhost:1/mds")


def test_interrupted_write_leaves_no_run_file(tmp_path):
    from intake_bluesky.core.export import _write_atomically

    class Breaks:
        suffix = ".jsonl"

        def write(self, documents, file):
            for name, _ in documents:
                file.write(name.encode() + b"\n")
                if name == "descriptor":
                    raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a run

    target = tmp_path / "run.jsonl"
    docs = [("start", {}), ("descriptor", {}), ("stop", {})]
    with pytest.raises(KeyboardInterrupt):
        _write_atomically(Breaks(), docs, str(target), overwrite=False)
    assert list(tmp_path.iterdir()) == []

    class Works(Breaks):
        def write(self, documents, file):
            for name, _ in documents:
                file.write(name.encode() + b"\n")

    _write_atomically(Works(), docs, str(target), overwrite=False)
    assert target.read_bytes() == b"start\ndescriptor\nstop\n"
    assert list(tmp_path.iterdir()) == [target]


def test_readme_commands_parse(repo):
    """Every command the README shows is accepted by the parser as written."""
    import re
    import shlex

    from intake_bluesky.core._cli.main import build_parser

    text = (repo / "README.md").read_text()
    block = re.search(r"## The command line.*?```\n(.*?)```", text, re.S).group(1)
    commands = [line.split("  #")[0] for line in block.splitlines() if line.strip()]
    assert len(commands) >= 6
    parser = build_parser()
    subs = {a.dest: a for a in parser._actions if a.dest == "command"}["command"].choices
    for line in commands:
        words = shlex.split(line)
        assert words[0] == "intake-bluesky"
        sub = subs[words[1]]
        args = sub.parse_intermixed_args(words[2:])
        assert args.store


def test_show_counts_rows_of_a_live_fly_scan(tmp_path):
    """No events and no stop yet: the rows are those the stream_datums declare."""
    from intake_bluesky.core import BlueskyInMemoryCatalog
    from intake_bluesky.core._cli.showing import summary
    from intake_bluesky.core.testing import stream_runs

    fly = stream_runs(tmp_path)[1]
    cat = BlueskyInMemoryCatalog()
    for name, doc in fly:
        if name != "stop":
            cat(name, doc)
    info = summary(cat[-1])
    assert info["stop"] is None
    (stream,) = info["streams"].values()
    assert stream["events"] == 0 and stream["stream_datum_rows"] == 7
    stop = fly[-1][1]
    cat("stop", stop)
    ((name, stream),) = summary(cat[-1])["streams"].items()
    # Once stopped, the stop document's count (bluesky counts the rows).
    assert stream["events"] == stop["num_events"][name] == 7
    assert "stream_datum_rows" not in stream


def test_install_hints_say_how_to_install_from_a_checkout(monkeypatch):
    from intake_bluesky.core import export
    from intake_bluesky.core._cli import stores
    from intake_bluesky.core._cli.errors import CLIError

    checkout = (
        "python3 -m pip install ./packages/intake-bluesky-core ./packages/intake-bluesky-msgpack"
    )
    monkeypatch.setattr(stores, "entry_point_objects", lambda group: {})
    with pytest.raises(CLIError) as info:
        stores.backend_class("msgpack")
    assert "pip install intake-bluesky-msgpack" in str(info.value)
    assert checkout in str(info.value) and "from a checkout" in str(info.value)
    monkeypatch.setattr(export, "writers", lambda: {})
    with pytest.raises(export.ExportError) as info:
        export.get_writer("msgpack")
    assert "pip install intake-bluesky-msgpack" in str(info.value)
    assert checkout in str(info.value)


# --- the installed script, in a subprocess ------------------------------------
def test_script_prints_its_version(script):
    from intake_bluesky.core import __version__

    assert script.ok("--version").strip() == f"intake-bluesky {__version__}"


def test_script_lists_a_yaml_catalog(script, yaml_store):
    path, env = yaml_store
    lines = script.ok("ls", path, "--entry", "examples", env=env).splitlines()
    assert [line.split()[0] for line in lines[1:]] == [u[:8] for u in UIDS.values()]


def test_script_errors_are_one_line_with_a_status(script, tmp_path):
    assert "no such file" in script.fails("ls", tmp_path / "missing")
    assert "invalid choice" in script.fails("frobnicate", code=2)
