"""The on-disk index, cheap refreshes of unchanged catalogs, and the other
file-catalog behaviours."""

import gc
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref

import intake
import pytest

from intake_bluesky.core import (
    BlueskyCatalog,
    FileDriver,
    FileFormat,
    IndexUnavailableWarning,
)
from intake_bluesky.core._files import diskindex as _diskindex
from intake_bluesky.core._files import headers as _headers
from intake_bluesky.core._files import runsource as _runsource
from intake_bluesky.core.testing import UIDS, example_runs

# A format in its own module, so that a subprocess can import it by name (its
# index key is the same in both processes). It counts the files it opens.
FORMAT_MODULE = textwrap.dedent(
    """
    import builtins, json, os
    from intake_bluesky.core import FileFormat

    OPENED = []
    _open = builtins.open

    def _counting_open(file, *args, **kwargs):
        if str(file).endswith(".lines"):
            OPENED.append(str(file))
        return _open(file, *args, **kwargs)

    builtins.open = _counting_open

    class CountedLines(FileFormat):
        suffixes = (".lines",)
        name = "counted lines"

        def read_documents(self, location):
            with open(location) as f:
                return [tuple(json.loads(line)) for line in f if line.strip()]
    """
)

OPEN_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    sys.path.insert(0, sys.argv[1])
    import countfmt
    from intake_bluesky.core import BlueskyCatalog, FileDriver
    warnings.simplefilter("error")
    cat = BlueskyCatalog(FileDriver(sys.argv[2], countfmt.CountedLines(), index_path=sys.argv[3]))
    print(len(cat), len(set(countfmt.OPENED)), cat[-1].metadata["start"]["uid"])
    """
)


def _write(path, docs):
    with open(path, "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc], default=lambda o: o.tolist()) + "\n")


def _run_dir(tmp_path, n=None):
    runs = example_runs(tmp_path / "ext")
    directory = tmp_path / "runs"
    directory.mkdir()
    for docs in runs if n is None else runs[:n]:
        _write(directory / f"{docs[0][1]['uid']}.lines", docs)
    return directory, runs


class Lines(FileFormat):
    suffixes = (".lines",)
    name = "test lines"
    headers_read = 0

    def read_documents(self, location):
        with open(location) as f:
            return [tuple(json.loads(line)) for line in f if line.strip()]

    def read_header(self, location):
        type(self).headers_read += 1
        return super().read_header(location)


def _run_in_new_process(tmp_path, script, directory, index) -> list[str]:
    """What ``script`` prints (split), run in a new process with the counting
    format importable and the directory and index as its arguments."""
    (tmp_path / "mod").mkdir(exist_ok=True)
    (tmp_path / "mod" / "countfmt.py").write_text(FORMAT_MODULE)
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "mod"), str(directory), str(index)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def _open_in_new_process(tmp_path, directory, index):
    out = _run_in_new_process(tmp_path, OPEN_SCRIPT, directory, index)
    return int(out[0]), int(out[1]), out[2]


def test_a_new_process_reads_no_file_of_an_unchanged_directory(tmp_path):
    directory, runs = _run_dir(tmp_path)
    index = tmp_path / "index.sqlite"
    # First process: every file's header is read once, and indexed.
    assert _open_in_new_process(tmp_path, directory, index) == (5, 5, UIDS["stream"])
    assert index.exists()
    # A new process: no file opened at all.
    assert _open_in_new_process(tmp_path, directory, index) == (5, 0, UIDS["stream"])
    # One file changed (the run in progress got its stop): only it is read.
    live = directory / f"{UIDS['live']}.lines"
    with open(live, "a") as f:
        stop = {"uid": "s", "run_start": UIDS["live"], "time": 1e9, "exit_status": "success"}
        f.write(json.dumps(["stop", stop]) + "\n")
    assert _open_in_new_process(tmp_path, directory, index) == (5, 1, UIDS["stream"])


def test_several_processes_share_the_index_at_once(tmp_path):
    directory, _ = _run_dir(tmp_path)
    index = tmp_path / "index.sqlite"
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "countfmt.py").write_text(FORMAT_MODULE)
    args = [sys.executable, "-c", OPEN_SCRIPT, str(tmp_path / "mod"), str(directory), str(index)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate()[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o[0] for o in outs] == ["5"] * 4
    assert _open_in_new_process(tmp_path, directory, index)[:2] == (5, 0)


def test_index_path_false_writes_nothing(tmp_path, monkeypatch):
    directory, _ = _run_dir(tmp_path, 2)
    monkeypatch.setenv("INTAKE_BLUESKY_INDEX", str(tmp_path / "env-index.sqlite"))
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=False))
    assert len(cat) == 2
    assert not (tmp_path / "env-index.sqlite").exists()
    # The environment variable places it when the argument is not given
    # (created by the first write: the runs read again, as in a new process).
    _headers._HEADERS.clear()
    assert len(BlueskyCatalog(FileDriver(directory, Lines()))) == 2
    assert _rows(tmp_path / "env-index.sqlite") == 2
    monkeypatch.setenv("INTAKE_BLUESKY_INDEX", "off")
    assert _diskindex.resolve_index_path(None) is None
    monkeypatch.delenv("INTAKE_BLUESKY_INDEX")
    assert _diskindex.resolve_index_path(None) == _diskindex.default_index_path()
    assert "intake-bluesky" in _diskindex.default_index_path()
    # A directory: the index file inside it.
    assert _diskindex.resolve_index_path(tmp_path) == str(tmp_path / "file-index.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_location_warns_once_and_works(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        index = str(locked / "sub" / "index.sqlite")
        with pytest.warns(IndexUnavailableWarning, match="cannot be used") as record:
            cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
            assert len(cat) == 2
            cat2 = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
            assert len(cat2) == 2
        assert len([w for w in record if w.category is IndexUnavailableWarning]) == 1
        assert cat[-1].metadata["start"]["uid"] == UIDS["count"]
    finally:
        locked.chmod(0o700)


def test_unusable_location_warns_once_and_works(tmp_path):
    # Works as root too: the index's folder would have to be made inside a file.
    directory, _ = _run_dir(tmp_path, 2)
    (tmp_path / "a-file").write_text("")
    index = str(tmp_path / "a-file" / "index.sqlite")
    with pytest.warns(IndexUnavailableWarning, match="cannot be used") as record:
        assert len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))) == 2
        assert len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))) == 2
    assert len([w for w in record if w.category is IndexUnavailableWarning]) == 1


def test_write_failure_degrades_with_one_warning(tmp_path, monkeypatch):
    directory, _ = _run_dir(tmp_path, 3)
    index = _diskindex.DiskIndex(str(tmp_path / "full.sqlite"))

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(index, "_conn", _Failing(index._conn, full))
    with pytest.warns(IndexUnavailableWarning, match="disk is full") as record:
        index.put("fmt", [("/a", ((1, 2),), {"uid": "a"}, None)])
        index.put("fmt", [("/b", ((1, 2),), {"uid": "b"}, None)])
        assert index.get_all("fmt") == {}
    assert len(record) == 1


class _Failing:
    def __init__(self, conn, fail):
        self._conn, self._fail = conn, fail

    def execute(self, *args, **kwargs):
        return self._fail()

    def executemany(self, *args, **kwargs):
        return self._fail()

    def close(self):
        self._conn.close()


def test_corrupt_index_is_rebuilt(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    index = tmp_path / "index.sqlite"
    assert _open_in_new_process_or_here(directory, index) == 2
    opened = _diskindex._OPEN.pop(str(index), None)  # (gone if no catalog holds it)
    if opened is not None:
        opened._conn.close()  # the last connection: WAL checkpointed
    # Damaged past its header (which still says it is ours).
    data = bytearray(index.read_bytes())
    data[100:8192] = b"this is not an sqlite page, it was damaged.".ljust(8092, b"!")
    index.write_bytes(bytes(data))
    _headers._HEADERS.clear()  # as in a new process
    with pytest.warns(IndexUnavailableWarning, match="corrupt"):
        assert _open_in_new_process_or_here(directory, index) == 2
    # Rebuilt: a valid database holding the two runs' headers.
    with sqlite3.connect(index) as conn:
        assert conn.execute(f"SELECT count(*) FROM {_diskindex._TABLE}").fetchone()[0] == 2
        assert conn.execute("PRAGMA application_id").fetchone()[0] == _diskindex.APPLICATION_ID


def _foreign_files(tmp_path, directory):
    """Files an index path might name by mistake, by what they are."""
    text = tmp_path / "notes.txt"
    text.write_text("my notes, not an index\n" * 50)
    garbage = tmp_path / "index.sqlite"  # named like an index, but not one
    garbage.write_bytes(b"this is not an sqlite database" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE samples (name TEXT)")
        conn.execute("INSERT INTO samples VALUES ('Si')")
    conn.close()
    marked = tmp_path / "marked.db"
    with sqlite3.connect(marked) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE headers_v5 (x)")
    conn.close()
    run_file = directory / f"{UIDS['count']}.lines"
    return {
        "not an SQLite database": [text, garbage, run_file],
        "tables samples": [other],
        "another application": [marked],
    }


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_file_that_is_not_an_index_is_left_untouched(tmp_path, monkeypatch, how):
    directory, _ = _run_dir(tmp_path, 2)
    for reason, paths in _foreign_files(tmp_path, directory).items():
        for path in paths:
            before = path.read_bytes()
            siblings = sorted(os.listdir(path.parent))
            _diskindex._OPEN.pop(str(path), None)
            if how == "environment":
                monkeypatch.setenv("INTAKE_BLUESKY_INDEX", str(path))
                index_path = None
            else:
                index_path = path
            with pytest.warns(IndexUnavailableWarning) as record:
                cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index_path))
                assert sorted(cat) == sorted([UIDS["scan"], UIDS["count"]])
                assert cat[UIDS["count"]].metadata["stop"]["exit_status"] == "success"
            (message,) = [str(w.message) for w in record]
            assert message.startswith(f"{path} is not an index of intake-bluesky's file")
            assert reason in message and "left untouched" in message
            assert "a new file name or a folder" in message
            # Byte for byte as it was; no journal beside it.
            assert path.read_bytes() == before, path
            assert sorted(os.listdir(path.parent)) == siblings, path


def test_an_index_of_an_older_version_is_recognised_and_reused(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    index = tmp_path / "index.sqlite"
    # As versions without an application id wrote it (WAL, its own tables).
    with sqlite3.connect(index) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE headers_v4_m4 (fmt TEXT NOT NULL, location TEXT NOT NULL,"
            " version TEXT NOT NULL, uid TEXT, start BLOB, stop BLOB,"
            " PRIMARY KEY (fmt, location))"
        )
    conn.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _open_in_new_process_or_here(directory, index) == 2
    with sqlite3.connect(index) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == _diskindex.APPLICATION_ID
        assert conn.execute(f"SELECT count(*) FROM {_diskindex._TABLE}").fetchone()[0] == 2
    conn.close()
    assert int.from_bytes(index.read_bytes()[68:72], "big") == _diskindex.APPLICATION_ID


def _open_in_new_process_or_here(directory, index):
    _diskindex._OPEN.pop(str(index), None)
    return len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index)))


def test_documents_are_stored_exactly_or_in_memory_only(tmp_path):
    import numpy as np

    index = _diskindex.DiskIndex(str(tmp_path / "i.sqlite"))
    exact = {"uid": "b", "motors": ("x", "y"), "n": float("nan"), 1: [b"raw", None]}
    index.put("f", [("/a", ((1, 2),), {"uid": "a", "x": np.float64(2.5)}, None)])
    index.put("f", [("/b", ((1, 2),), exact, {"uid": "s"})])
    index.put("f", [("/c", ((1, 2),), {"uid": "c", "img": np.zeros(2)}, None)])
    stored = index.get_all("f")
    assert list(stored) == ["/b"]  # numpy values would not come back as they were
    version, start, stop = stored["/b"]
    assert version == ((1, 2),) and stop == {"uid": "s"}
    assert start["motors"] == ("x", "y") and start[1] == [b"raw", None]
    assert start["n"] != start["n"]  # NaN
    # A damaged entry is skipped (the file is read again), never an error.
    with sqlite3.connect(index.path) as conn:
        conn.execute(f"UPDATE {_diskindex._TABLE} SET start = x'00ff'")
    assert index.get_all("f") == {}


def test_index_entries_are_json_and_come_back_exactly(tmp_path):
    import marshal

    import orjson

    index = _diskindex.DiskIndex(str(tmp_path / "i.sqlite"))
    plain = {"uid": "p", "time": 1.5, "n": 2**64 - 1, "m": -(2**63), "z": -0.0, "x": [None, True]}
    special = {
        "uid": "s",
        "big": 2**70,
        "small": -(2**63) - 1,
        "nan": float("nan"),
        "inf": [float("inf"), float("-inf")],
        "pair": ("x", ("y", [])),
        "raw": b"\x00\xff",
        "c": 1 - 2j,
        3: {None: "none key", 2.5: "float key", ("t",): "tuple key"},
    }
    index.put("f", [("/p", ((1, 2),), plain, None), ("/s", ((1, 2),), special, {"uid": "e"})])
    index.put("g", [("/q", ((1, 2),), {"uid": "q", "v": 2**80, "w": float("nan")}, None)], True)
    # Stored as JSON (decoded by orjson, or the standard json module for the
    # tagged form of values JSON cannot hold): never marshal or pickle.
    # Plain JSON is SQL text (form 0) that SQLite's json_extract reads.
    with sqlite3.connect(index.path) as conn:
        rows = conn.execute(f"SELECT location, form, start, stop FROM {_diskindex._TABLE}")
        stored = {loc: (form, start, stop) for loc, form, start, stop in rows}
        assert conn.execute(
            f"SELECT json_extract(start, '$.m') FROM {_diskindex._TABLE} WHERE location = '/p'"
        ).fetchone() == (-(2**63),)
    assert stored["/p"][0] == 0 and orjson.loads(stored["/p"][1]) == plain
    assert stored["/s"][0] == 2 and isinstance(json.loads(stored["/s"][1]), list)
    assert stored["/s"][2][:1] == b"J" and orjson.loads(stored["/s"][2][1:]) == {"uid": "e"}
    got = {**index.get_all("f"), **index.get_all("g")}
    start = got["/p"][1]
    assert start == plain and type(start["n"]) is int and str(start["z"]) == "-0.0"
    start = got["/s"][1]
    assert repr(start) == repr(special)  # tuples stay tuples, keys keep their types
    assert type(start["pair"]) is tuple and type(start["pair"][1][1]) is list
    assert start["big"] == 2**70 and start["small"] == -(2**63) - 1
    assert start["nan"] != start["nan"] and start["inf"] == [float("inf"), float("-inf")]
    start = got["/q"][1]
    assert start["v"] == 2**80 and start["w"] != start["w"]  # not rounded, not null
    # A marshal blob (what older versions stored) is not decoded: the file is
    # read again instead.
    with sqlite3.connect(index.path) as conn:
        conn.execute(
            f"UPDATE {_diskindex._TABLE} SET start = ? WHERE location = '/p'",
            (marshal.dumps({"uid": "p"}),),
        )
    with pytest.raises(ValueError, match="damaged"):
        _diskindex.decode(marshal.dumps({"uid": "p"}))
    assert "/p" not in index.get_all("f")


def test_entries_of_an_older_index_schema_are_dropped(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    index = tmp_path / "index.sqlite"
    assert _open_in_new_process_or_here(directory, index) == 2
    # An index written by an older version: its table is dropped, not read.
    with sqlite3.connect(index) as conn:
        conn.execute("CREATE TABLE headers_v4_m4 (fmt TEXT, location TEXT, start BLOB)")
        conn.execute("INSERT INTO headers_v4_m4 VALUES ('x', '/a', x'00')")
    assert _open_in_new_process_or_here(directory, index) == 2
    with sqlite3.connect(index) as conn:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert sorted(tables) == ["dirs_v7", "formats_v7", "headers_v7"]
    assert _diskindex._TABLE == "headers_v7"


def test_a_file_rewritten_with_its_old_size_and_mtime_is_read_again(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    index = tmp_path / "index.sqlite"
    path = directory / f"{UIDS['count']}.lines"
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert cat[UIDS["count"]].metadata["stop"]["exit_status"] == "success"
    before = os.stat(path)
    data = path.read_bytes()
    assert data.count(b'"success"') == 1
    # Rewritten in place (same size), its mtime set back as cp -p or rsync do.
    while True:
        with open(path, "r+b") as f:
            f.write(data.replace(b'"success"', b'"aborted"'))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        if after.st_ctime_ns != before.st_ctime_ns:
            break  # (else rewritten within one tick of the clock: again)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    # A new catalog in this process (headers cached in memory), then as in a
    # new process (headers from the on-disk index only).
    for fresh_process in (False, True):
        if fresh_process:
            _headers._HEADERS.clear()
            _runsource._SOURCES.clear()
        run = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))[UIDS["count"]]
        assert run.metadata["stop"]["exit_status"] == "aborted"
        assert list(run.canonical(fill="no"))[-1][1]["exit_status"] == "aborted"


def test_a_file_holding_two_runs_says_so_naming_both(tmp_path):
    runs = example_runs(tmp_path / "ext")
    path = tmp_path / "two.lines"
    _write(path, runs[1] + runs[2])
    cat = BlueskyCatalog(FileDriver(tmp_path, Lines(), index_path=False))
    assert list(cat) == [UIDS["count"]]  # listed by its first start document
    expected = (
        f"{path} holds more than one run: it begins with the start document of run "
        f"'{UIDS['count']}' and has another, of run '{UIDS['failed']}', after it"
    )
    with pytest.raises(ValueError, match=expected):
        cat[UIDS["count"]].read()


# --- no per-file syscalls when nothing changed -------------------------------


class _Counter:
    def __init__(self, monkeypatch):
        self.calls = {"stat": 0, "scandir": 0, "open": 0}
        for name, module, attr in (
            ("stat", os, "stat"),
            ("scandir", os, "scandir"),
            ("open", __import__("builtins"), "open"),
        ):
            original = getattr(module, attr)
            monkeypatch.setattr(module, attr, self._wrap(name, original))

    def _wrap(self, name, original):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return original(*args, **kwargs)

        return counted

    def reset(self):
        for k in self.calls:
            self.calls[k] = 0
        return self


def _syscalls_of_accesses(tmp_path, monkeypatch, n_copies):
    """Syscalls of len/list/cat[-1]/cat[scan_id]/search on an unchanged catalog."""
    directory, runs = _run_dir(tmp_path)
    # More finished runs: copies of the 'count' run under other uids.
    for i in range(n_copies):
        docs = [(n, dict(d)) for n, d in runs[1]]
        uid = f"copy-{i:04d}"
        docs[0][1]["uid"] = uid
        docs[0][1]["scan_id"] = 100 + i
        _write(directory / f"{uid}.lines", docs)
    # An old directory mtime: its listing is trusted (not racy).
    os.utime(directory, ns=(10**18, 10**18))
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=False))
    assert len(cat) == 5 + n_copies
    counter = _Counter(monkeypatch)
    results = {}
    accesses = {
        "len": lambda: len(cat),
        "list": lambda: list(cat),
        "cat[-1]": lambda: cat[-1],
        "cat[scan_id]": lambda: cat[2],
        "search": lambda: len(cat.search({"plan_name": "count"})),
    }
    for name, access in accesses.items():
        access()  # results cached per call are allowed to warm up
        counter.reset()
        access()
        results[name] = dict(counter.calls)
    monkeypatch.undo()
    return results


def test_unchanged_catalog_costs_no_per_file_syscalls(tmp_path, monkeypatch):
    small = _syscalls_of_accesses(tmp_path / "small", monkeypatch, 0)
    big = _syscalls_of_accesses(tmp_path / "big", monkeypatch, 40)
    assert small == big  # the same with 5 and 45 files
    for name, calls in small.items():
        # A refresh stats the directory and the run in progress (its stop may
        # come): list() refreshes twice (its length, then its entries); the
        # run that cat[...] returns stats its own file.
        assert calls["scandir"] == 0 and calls["open"] == 0, name
        assert calls["stat"] <= 4, (name, calls)


def test_changes_are_noticed(tmp_path):
    directory, runs = _run_dir(tmp_path, 2)
    os.utime(directory, ns=(10**18, 10**18))
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=False))
    assert len(cat) == 2
    # A new file changes the directory's mtime.
    _write(directory / "new.lines", runs[2])
    assert len(cat) == 3
    # A deleted one too.
    os.remove(directory / f"{UIDS['scan']}.lines")
    assert list(cat) == [UIDS["count"], UIDS["failed"]]
    # A file replaced under the same name (write aside, rename): a new inode.
    os.utime(directory, ns=(10**18, 10**18))
    _write(tmp_path / "aside.lines", runs[4])
    os.replace(tmp_path / "aside.lines", directory / "new.lines")
    os.utime(directory, ns=(10**18 + 5, 10**18 + 5))
    assert list(cat) == [UIDS["count"], UIDS["stream"]]


def test_globs_over_directories_and_lists_of_files(tmp_path):
    runs = example_runs(tmp_path / "ext")
    for i, docs in enumerate(runs):
        (tmp_path / f"d{i % 2}").mkdir(exist_ok=True)
        _write(tmp_path / f"d{i % 2}" / f"{docs[0][1]['uid']}.lines", docs)
    glob_cat = BlueskyCatalog(FileDriver(str(tmp_path / "d*" / "*.lines"), Lines(), False))
    assert len(glob_cat) == 5
    (tmp_path / "d2").mkdir()
    extra = [(n, dict(d)) for n, d in runs[1]]
    extra[0][1]["uid"] = "extra"
    _write(tmp_path / "d2" / "extra.lines", extra)
    assert len(glob_cat) == 6  # a new directory matched by the glob
    files = [str(tmp_path / "d0" / f"{UIDS['scan']}.lines"), str(tmp_path / "d2" / "extra.lines")]
    list_cat = BlueskyCatalog(FileDriver(files, Lines(), False))
    assert sorted(list_cat) == sorted([UIDS["scan"], "extra"])
    os.remove(files[1])
    with pytest.warns(UserWarning, match="extra.lines' names no file"):
        assert list(list_cat) == [UIDS["scan"]]


# --- folders of other formats, and more ---------------------------------------


def test_a_folder_of_another_format_warns_naming_it(tmp_path):
    (tmp_path / "a.msgpack").write_bytes(b"\x92\xa5start\x80")
    (tmp_path / "b.msgpack").write_bytes(b"\x92\xa5start\x80")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match=r"holds no test lines files \(\.lines\) but 2 \.msgpack"):
        assert len(BlueskyCatalog(FileDriver(tmp_path, Lines(), index_path=False))) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # An empty folder (runs yet to come) is not warned about.
        (tmp_path / "empty").mkdir()
        assert len(BlueskyCatalog(FileDriver(tmp_path / "empty", Lines(), False))) == 0


class LinesCatalog(BlueskyCatalog):
    # Importable by this name once the tests' folder is on sys.path.
    __module__ = "test_file_index"

    def __init__(self, paths, *, index_path=None, **common):
        super().__init__(FileDriver.for_catalog(self, paths, Lines(), index_path), **common)


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    directory, _ = _run_dir(tmp_path, 2)
    monkeypatch.chdir(tmp_path)
    cat = LinesCatalog("runs", index_path=False)
    assert cat.paths == str(directory)
    assert f"paths: {directory}" in cat.yaml()
    for given in (["runs"], [os.path.join("runs", "*.lines")]):
        assert LinesCatalog(given, index_path=False).paths[0].startswith(str(tmp_path))
    # Loaded from another folder, the YAML opens the same runs.
    exported = tmp_path / "exported.yml"
    exported.write_text(cat.yaml())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.syspath_prepend(os.path.dirname(__file__))
    top = intake.open_catalog(str(exported))
    (name,) = list(top)
    assert len(top[name]) == 2


# --- searches answered by the index --------------------------------------------


def _copies(tmp_path, n_copies):
    """A directory of 5 + n_copies runs (copies of one, scan_ids from 100)
    and the runs, with an old mtime (its listing is kept)."""
    directory, runs = _run_dir(tmp_path)
    for i in range(n_copies):
        docs = [(n, dict(d)) for n, d in runs[1]]
        docs[0][1]["uid"] = f"copy-{i:04d}"
        docs[0][1]["scan_id"] = 100 + i
        _write(directory / f"copy-{i:04d}.lines", docs)
    os.utime(directory, ns=(10**18, 10**18))
    return directory, runs


def _indexed_dir(tmp_path, n_copies=40):
    """A directory of 5 + n_copies runs (one in progress), indexed, its listing
    stored (an old mtime), and this process's memory of the headers emptied."""
    directory, runs = _copies(tmp_path, n_copies)
    index = tmp_path / "index.sqlite"
    assert len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))) == 5 + n_copies
    _headers._HEADERS.clear()
    return directory, runs, index


def test_a_new_process_searches_in_the_index_alone(tmp_path, monkeypatch):
    directory, runs, index = _indexed_dir(tmp_path)
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    before = Lines.headers_read
    counter = _Counter(monkeypatch)
    found = list(cat.search({"scan_id": {"$gte": 110, "$lt": 113}}))
    assert found == ["copy-0010", "copy-0011", "copy-0012"]
    # No listing, no file read: the directory and the run in progress are
    # stat'ed for the count and again for the entries, each run found once.
    assert counter.calls["scandir"] == 0 and counter.calls["open"] == 0
    assert counter.calls["stat"] <= 2 * 2 + 3, counter.calls
    assert Lines.headers_read == before and cat.driver._files is None
    monkeypatch.undo()
    # The runs found are opened without listing the directory either.
    assert cat["copy-0011"].metadata["start"]["scan_id"] == 111
    assert cat.driver._files is None
    # Anything else lists it, once, from the index.
    assert len(cat) == 45 and cat.driver._files is not None


def test_an_index_answer_notices_changes(tmp_path):
    directory, runs, index = _indexed_dir(tmp_path, 5)
    live = next(docs for docs in runs if docs[-1][0] != "stop")
    uid = live[0][1]["uid"]
    query = {"uid": {"$in": [uid, "copy-0001"]}}
    expected = list(BlueskyCatalog(FileDriver(directory, Lines(), False)).search(query))
    assert sorted(expected) == sorted([uid, "copy-0001"])
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert list(cat.search(query)) == expected and cat.driver._files is None
    # The run in progress is finished (its file grows, not its directory):
    # noticed, and the search is answered by listing the directory.
    with open(directory / f"{uid}.lines", "a") as f:
        f.write(json.dumps(["stop", {"uid": "s", "run_start": uid, "time": 1e10}]) + "\n")
    _headers._HEADERS.clear()
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert len(cat.search(query)) == 2 and cat.driver._files is not None
    assert cat[uid].metadata["stop"]["uid"] == "s"
    # A run removed (its directory changes): not in the index's answer.
    os.remove(directory / "copy-0001.lines")
    _headers._HEADERS.clear()
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert list(cat.search(query)) == [uid]


def test_an_index_answer_leaves_out_files_of_another_run_of_the_same_uid(tmp_path):
    directory, runs, index = _indexed_dir(tmp_path, 0)
    docs = [(n, dict(d)) for n, d in runs[1]]
    _write(directory / "zz-copy.lines", docs)  # the same run twice
    os.utime(directory, ns=(10**18 + 1, 10**18 + 1))
    with pytest.warns(UserWarning, match="stored twice"):
        assert len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))) == 5
    _headers._HEADERS.clear()
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    with pytest.warns(UserWarning, match="stored twice"):
        found = list(cat.search({"uid": docs[0][1]["uid"]}))
    assert found == [docs[0][1]["uid"]] and cat.driver._files is not None


def test_an_index_no_catalog_uses_closes_its_connection(tmp_path):
    directory, _ = _run_dir(tmp_path, 2)
    index = str(tmp_path / "index.sqlite")
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert len(cat) == 2
    opened = _diskindex._OPEN[index]
    assert opened._conn is not None
    again = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))
    assert again.driver._index is opened  # one connection per index file
    held = weakref.ref(opened)
    del cat, again, opened
    gc.collect()
    assert index not in _diskindex._OPEN
    assert held() is None  # its connection went with it
    # The file stays: a new catalog finds the runs in it.
    assert len(BlueskyCatalog(FileDriver(directory, Lines(), index_path=index))) == 2


def _rows(index_path) -> int:
    with sqlite3.connect(index_path) as conn:
        found = conn.execute(f"SELECT count(*) FROM {_diskindex._TABLE}").fetchone()[0]
    conn.close()
    return found


def test_a_first_index_is_written_after_the_answer_and_read_after_the_write(tmp_path, monkeypatch):
    from intake_bluesky.core._files import driver as _driver

    monkeypatch.setattr(_driver, "_DEFER_WRITES", 10)
    directory, _ = _copies(tmp_path, 40)
    index_path = str(tmp_path / "index.sqlite")
    index = _diskindex.open_index(index_path)
    put, gate, writing = index.put, threading.Event(), threading.Event()

    def held_put(*args, **kwargs):
        writing.set()
        assert gate.wait(30)
        return put(*args, **kwargs)

    monkeypatch.setattr(index, "put", held_put)
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index_path))
    assert len(cat) == 45  # answered while the write is held
    assert writing.wait(30) and not os.path.exists(index_path)  # made by the write
    # A new catalog over the same index waits for the write, then takes the
    # listing and the entries from it: it opens no run file.
    _headers._HEADERS.clear()
    before = Lines.headers_read
    threading.Timer(0.2, gate.set).start()
    other = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index_path))
    assert list(other.search({"scan_id": {"$gte": 110, "$lt": 113}})) == [
        "copy-0010",
        "copy-0011",
        "copy-0012",
    ]
    assert Lines.headers_read == before and other.driver._files is None
    assert _rows(index_path) == 45


def test_a_few_new_runs_are_written_before_the_answer(tmp_path):
    directory, _ = _run_dir(tmp_path, 3)
    index_path = str(tmp_path / "index.sqlite")
    cat = BlueskyCatalog(FileDriver(directory, Lines(), index_path=index_path))
    assert len(cat) == 3
    index = cat.driver._index
    assert not index._jobs and not index._writing and _rows(index_path) == 3


def test_a_process_that_ends_writes_what_it_deferred(tmp_path):
    directory, _ = _copies(tmp_path, 20)
    index_path = tmp_path / "index.sqlite"
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import countfmt
        from intake_bluesky.core import BlueskyCatalog, FileDriver
        from intake_bluesky.core._files import driver
        driver._DEFER_WRITES = 1
        fmt = countfmt.CountedLines()
        cat = BlueskyCatalog(FileDriver(sys.argv[2], fmt, index_path=sys.argv[3]))
        print(len(cat))
        """
    )
    out = _run_in_new_process(tmp_path, script, directory, index_path)
    assert out[0] == "25"  # the script ended with the write still to do (or doing)
    assert _rows(index_path) == 25


def test_a_failing_deferred_write_is_shown_and_the_next_still_runs(tmp_path, monkeypatch):
    index = _diskindex.DiskIndex(str(tmp_path / "index.sqlite"))
    shown = []
    monkeypatch.setattr(threading, "excepthook", lambda args: shown.append(args.exc_type))
    ran = []
    index.defer(lambda: 1 / 0)
    index.defer(lambda: ran.append(index.put("f", [("/a", ((1, 2, 3, 4),), {"uid": "a"}, None)])))
    assert index.get_all("f") == {"/a": (((1, 2, 3, 4),), {"uid": "a"}, None)}
    assert ran == [[]] and shown == [ZeroDivisionError]
    assert not index._jobs and not index._writing


def test_a_versioned_header_is_that_of_the_file_read(tmp_path):
    directory, runs = _run_dir(tmp_path, 2)
    path = str(directory / f"{runs[0][0][1]['uid']}.lines")
    version, start, stop = Lines().read_versioned_header(path)
    st = os.stat(path)
    assert version == ((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino),)
    assert (start, stop) == Lines().read_header(path)
    assert start["uid"] == runs[0][0][1]["uid"]
    os.remove(path)
    assert Lines().read_versioned_header(path) == (None, None, None)


def test_an_index_file_is_created_by_its_first_write(tmp_path):
    path = tmp_path / "sub" / "index.sqlite"
    index = _diskindex.open_index(str(path))
    # Reads of an index not yet created find nothing, and create nothing.
    assert index.get_all("f") == {} and index.listing("f", "/data") is None
    assert not path.parent.exists()
    index.put("f", [("/data/a", ((1, 2, 3, 4),), {"uid": "a"}, None)])
    assert _rows(path) == 1
    assert index.get_all("f") == {"/data/a": (((1, 2, 3, 4),), {"uid": "a"}, None)}
    # An index another process created meanwhile is read.
    other = tmp_path / "other.sqlite"
    late = _diskindex.DiskIndex(str(other), create_on_write=True)
    _diskindex.DiskIndex(str(other)).put("f", [("/b", ((5, 6, 7, 8),), {"uid": "b"}, None)])
    assert list(late.get_all("f")) == ["/b"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_wait_for_its_parents_writer(tmp_path):
    index = _diskindex.DiskIndex(str(tmp_path / "index.sqlite"))
    gate = threading.Event()
    index.defer(lambda: gate.wait(30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        pid = os.fork()
    if pid == 0:
        try:
            index.flush()  # returns: the held job is the parent's
            index.put("f", [("/c", ((1, 2, 3, 4),), {"uid": "c"}, None)])
            os._exit(0 if "/c" in index.get_all("f") else 3)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    gate.set()
    index.flush()
    assert os.waitstatus_to_exitcode(status) == 0
