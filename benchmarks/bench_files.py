"""Big and growing file catalogs: the on-disk index, unchanged
catalogs, and a run file that grows.

Workload: N small JSONL run files in one directory (start, descriptor, one
event, stop; plan_name varied) and one run of 100,000 single events without a
stop, generated once into ``benchmarks/.workloads/files-<N>/``.

Rows (each against its floor, measured in the same run; the new-process rows
also with another checkout of the code, ``--before DIR``, interleaved, medians):

* open, cold, new process, no index — vs reading each file's first and last line
* re-open, new process, with the index — vs listing the directory and statting every file
* first selective search, new process, with the index (``list(cat.search(q))``,
  1% of the runs by ``scan_id``; 2% by two keys without side columns) — vs
  SQLite ``json_extract`` over a table of the same start documents
* len() / cat[-1] / search {plan_name} on the open catalog, nothing changed —
  vs listing + statting every file (len), decoding that run's first line
  (cat[-1]), the query over the start documents in memory (search); notes
  give the syscalls per call (stat, scandir, open): none per file
* len() after one new file — vs listing the directory + reading that file's
  first and last line
* a 100,000-event run after one appended line (``run.metadata``) — vs decoding
  that one line; and its ``read()`` — vs the read() floor (decoding every
  line + columns)

Usage::

    python benchmarks/bench_files.py [--n 100000] [--reps 3] [--before DIR]
    python benchmarks/run.py --files N        # the same, through run.py
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

GROWING_EVENTS = 100_000
VERSION = 1


# --------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------


def _uid(rng) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _small_run(rng, i: int) -> list:
    uid = _uid(rng)
    t0 = 1.7e9 + i * 60.0
    desc_uid = _uid(rng)
    start = {
        "uid": uid,
        "time": t0,
        "scan_id": i + 1,
        "plan_name": ("scan", "count", "rel_scan")[i % 3],
        "sample": f"S{i % 17}",
        "operator": ("ana", "bo", "cy")[i % 3],
        "versions": {"bluesky": "1.15", "ophyd": "1.10"},
        "hints": {"dimensions": [[["motor"], "primary"]]},
    }
    descriptor = {
        "uid": desc_uid,
        "run_start": uid,
        "name": "primary",
        "time": t0 + 0.1,
        "data_keys": {"det": {"source": "sim", "dtype": "number", "shape": []}},
        "object_keys": {"det": ["det"]},
        "configuration": {},
        "hints": {},
    }
    event = {
        "uid": _uid(rng),
        "descriptor": desc_uid,
        "seq_num": 1,
        "time": t0 + 0.2,
        "data": {"det": rng.random()},
        "timestamps": {"det": t0 + 0.2},
        "filled": {},
    }
    stop = {
        "uid": _uid(rng),
        "run_start": uid,
        "time": t0 + 1,
        "exit_status": "success",
        "reason": "",
        "num_events": {"primary": 1},
    }
    return [("start", start), ("descriptor", descriptor), ("event", event), ("stop", stop)]


def _text(docs) -> str:
    return "".join(json.dumps([name, doc]) + "\n" for name, doc in docs)


def _event(desc_uid: str, i: int, t0: float) -> dict:
    return {
        "uid": f"ev-{i:08d}",
        "descriptor": desc_uid,
        "seq_num": i + 1,
        "time": t0 + i * 0.01,
        "data": {"det": float(i), "x": i * 0.5},
        "timestamps": {"det": t0 + i * 0.01, "x": t0 + i * 0.01},
        "filled": {},
    }


def ensure(n: int, log=print) -> Path:
    """Generate (once) the workload of ``n`` run files; its root."""
    root = C.WORKLOADS_DIR / f"files-v{VERSION}-{n}"
    if (root / "done.json").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    runs = root / "runs"
    runs.mkdir(parents=True)
    log(f"generating {n:,} run files in {runs} ...")
    rng = random.Random(14)
    t = time.perf_counter()
    for i in range(n):
        docs = _small_run(rng, i)
        (runs / f"{docs[0][1]['uid']}.jsonl").write_text(_text(docs))
    # Old mtimes, as for files written long ago (a directory modified in the
    # last two seconds is listed again on every access, to be safe).
    old = (time.time() - 3600) * 1e9
    os.utime(runs, ns=(int(old), int(old)))
    growing = root / "growing"
    growing.mkdir()
    run = _small_run(rng, n)
    start, descriptor = run[0][1], run[1][1]
    descriptor["data_keys"]["x"] = {"source": "sim", "dtype": "number", "shape": []}
    with open(growing / f"{start['uid']}.jsonl", "w") as f:
        f.write(_text([("start", start), ("descriptor", descriptor)]))
        f.writelines(
            json.dumps(["event", _event(descriptor["uid"], i, start["time"])]) + "\n"
            for i in range(GROWING_EVENTS)
        )
    os.utime(growing, ns=(int(old), int(old)))
    (root / "done.json").write_text(
        json.dumps({"n": n, "growing": start["uid"], "descriptor": descriptor["uid"]})
    )
    log(f"  ... in {time.perf_counter() - t:.0f} s")
    return root


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

OPEN_SCRIPT = """
import json, os, sys, tempfile, time
from intake_bluesky.jsonl import BlueskyJSONLCatalog
directory, index = sys.argv[1], sys.argv[2]
query = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
# Imports and first use warmed up on an empty directory.
len(BlueskyJSONLCatalog(tempfile.mkdtemp(), index_path=False))
opened = []
import builtins
_open = builtins.open
def counting(file, *a, **k):
    if str(file).endswith(".jsonl"):
        opened.append(file)
    return _open(file, *a, **k)
builtins.open = counting
t, cpu = time.perf_counter(), time.process_time()
cat = BlueskyJSONLCatalog(directory, index_path=index)
n = len(cat) if query is None else len(list(cat.search(query)))
dt, cpu = time.perf_counter() - t, time.process_time() - cpu
# The index may still be being written (a writer thread): when it is done.
index = getattr(cat.driver, "_index", None)
if index is not None and hasattr(index, "flush"):
    index.flush()
written = time.perf_counter() - t
print(json.dumps({"seconds": dt, "cpu": cpu, "n": n, "opened": len(opened), "written": written}))
"""

SQL_FLOOR_SCRIPT = """
import json, sqlite3, sys, time
import orjson
path, where, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t, cpu = time.perf_counter(), time.process_time()
conn = sqlite3.connect(path)
rows = conn.execute(
    f"SELECT start FROM starts WHERE {where} ORDER BY json_extract(start, '$.time')", params
).fetchall()
docs = [orjson.loads(text) for (text,) in rows]
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu,
                  "n": len(docs)}))
"""


#: The selective searches: (label, query, the same as SQL over a table of
#: start documents, its parameters).
def _searches(n: int) -> list[tuple[str, dict, str, list]]:
    lo = n // 2
    hi = lo + max(1, n // 100)
    return [
        (
            "scan_id range, 1%",
            {"scan_id": {"$gte": lo, "$lt": hi}},
            "json_extract(start, '$.scan_id') >= ? AND json_extract(start, '$.scan_id') < ?",
            [lo, hi],
        ),
        (
            "sample and operator, 2%",
            {"sample": "S3", "operator": "bo"},
            "json_extract(start, '$.sample') = ? AND json_extract(start, '$.operator') = ?",
            ["S3", "bo"],
        ),
    ]


def _floor_table(runs: Path, path: Path) -> None:
    """A table of every run's start document (as JSON text): the least an
    SQL answer over the same documents reads."""
    import sqlite3

    import orjson

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE starts (uid TEXT PRIMARY KEY, start TEXT)")
    rows = []
    for name in sorted(os.listdir(runs)):
        with open(runs / name, "rb") as f:
            start = orjson.loads(f.readline())[1]
        rows.append((start["uid"], orjson.dumps(start).decode()))
    conn.executemany("INSERT INTO starts VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


FLOOR_SCRIPT = """
import json, os, sys, time
sys.path.insert(0, sys.argv[3])
import _common as C
directory, what = sys.argv[1], sys.argv[2]
t, cpu = time.perf_counter(), time.process_time()
if what == "headers":
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory))
    n = C.without_gc(lambda: C.floor_headers_jsonl(files))()
else:
    n = C.floor_stat(directory)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "n": n}))
"""


def _in_new_process(script: str, *args, before: str | None = None) -> dict:
    """``script`` in a fresh interpreter; ``before``: a checkout whose packages
    are imported instead of the installed ones."""
    env = None
    if before is not None:
        paths = [str(Path(before) / "packages" / p / "src") for p in _PACKAGES]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


_PACKAGES = ("intake-bluesky-core", "intake-bluesky-jsonl")


def _median(results: list[dict]) -> float:
    return _median_of(results, "seconds")


def _median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _interleaved(reps: int, sides: dict) -> dict[str, list[dict]]:
    """Each side's results, the sides taking turns (a busy shared machine
    slows them alike)."""
    out: dict[str, list[dict]] = {name: [] for name in sides}
    for i in range(reps):
        for name, call in sides.items():
            if call is not None:
                out[name].append(call(i))
    return out


def _before_note(results: list[dict], floor: float) -> str:
    if not results:
        return ""
    value = _median(results)
    shown = f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"; before: {shown} ({value / floor:.2f}x)"


def _cpu_note(sides: dict[str, list[dict]]) -> str:
    """Medians of CPU time (user + system) to the floor's: steadier than wall
    time when other work shares the cores."""
    floor = statistics.median(r["cpu"] for r in sides["floor"])
    out = [f"CPU /floor: {statistics.median(r['cpu'] for r in sides['ours']) / floor:.2f}"]
    if sides.get("before"):
        out.append(f"before {statistics.median(r['cpu'] for r in sides['before']) / floor:.2f}")
    return "; " + ", ".join(out)


class Syscalls:
    """Counts stat/lstat/scandir/listdir/open calls while active."""

    NAMES = (("stat", os), ("lstat", os), ("scandir", os), ("listdir", os), ("open", builtins))

    def __init__(self):
        self.counts = dict.fromkeys((n for n, _ in self.NAMES), 0)
        self._saved = []

    def __enter__(self):
        for name, module in self.NAMES:
            original = getattr(module, name)
            self._saved.append((module, name, original))

            def counted(*a, _name=name, _original=original, **k):
                self.counts[_name] += 1
                return _original(*a, **k)

            setattr(module, name, counted)
        return self

    def __exit__(self, *exc):
        for module, name, original in self._saved:
            setattr(module, name, original)


def _row(kind, label, value, floor, note, n):
    return {
        "backend": "jsonl",
        "bench": kind,
        "kind": kind,
        "label": label,
        "workload": f"files-{n}",
        "unit": "s",
        "value": value,
        "floor": floor,
        "extra": {"note": note},
        "floor_extra": {},
        "check": "ok",
    }


def _counted(fn) -> str:
    with Syscalls() as calls:
        fn()
    counts = {k: v for k, v in calls.counts.items() if v}
    return "syscalls/call: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")


def rows(n: int = 100_000, reps: int = 3, log=print, before: str | None = None) -> list[dict]:
    """Measure every row over ``n`` run files (``before``: see :func:`_in_new_process`)."""
    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    root = ensure(n, log)
    manifest = json.loads((root / "done.json").read_text())
    runs = root / "runs"
    out = []
    scratch = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        log(f"file-catalog rows over {n:,} run files ...")

        # --- new processes --------------------------------------------------
        def ours(args):
            return lambda i: _in_new_process(OPEN_SCRIPT, runs, *args(i))

        def previous(args):
            if before is None:
                return None
            return lambda i: _in_new_process(OPEN_SCRIPT, runs, *args(i), before=before)

        cold = _interleaved(
            reps,
            {
                "ours": ours(lambda i: [scratch / f"cold-{i}.sqlite"]),
                "before": previous(lambda i: [scratch / f"before-cold-{i}.sqlite"]),
                "floor": lambda i: _in_new_process(FLOOR_SCRIPT, runs, "headers", HERE),
            },
        )
        index = scratch / "cold-0.sqlite"
        size_mib = sum(f.stat().st_size for f in scratch.glob("cold-0.sqlite*")) / 2**20
        floor = _median(cold["floor"])
        out.append(
            _row(
                "files_open_cold",
                f"open {n:,} runs, new process, no index",
                _median(cold["ours"]),
                floor,
                f"{cold['ours'][0]['n']} runs; writes the index ({size_mib:.0f} MiB), "
                f"written after {_median_of(cold['ours'], 'written'):.2f} s"
                + _before_note(cold["before"], floor)
                + _cpu_note(cold),
                n,
            )
        )
        warm = _interleaved(
            reps,
            {
                "ours": ours(lambda i: [index]),
                "before": previous(lambda i: [scratch / "before-cold-0.sqlite"]),
                "floor": lambda i: _in_new_process(FLOOR_SCRIPT, runs, "stat", HERE),
            },
        )
        floor = _median(warm["floor"])
        out.append(
            _row(
                "files_open_indexed",
                f"re-open {n:,} runs, new process, index",
                _median(warm["ours"]),
                floor,
                f"{warm['ours'][0]['n']} runs; files opened: {warm['ours'][0]['opened']}"
                + _before_note(warm["before"], floor)
                + _cpu_note(warm),
                n,
            )
        )
        table = scratch / "starts.sqlite"
        _floor_table(runs, table)
        for label, query, where, params in _searches(n):
            q = json.dumps(query)
            found = _interleaved(
                reps,
                {
                    "ours": ours(lambda i, q=q: [index, q]),
                    "before": previous(lambda i, q=q: [scratch / "before-cold-0.sqlite", q]),
                    "floor": lambda i, where=where, params=params: _in_new_process(
                        SQL_FLOOR_SCRIPT, table, where, json.dumps(params)
                    ),
                },
            )
            hits = {r["n"] for side in found.values() for r in side}
            floor = _median(found["floor"])
            out.append(
                _row(
                    "files_search_fresh",
                    f"first search, new process, index: {label}",
                    _median(found["ours"]),
                    floor,
                    f"{found['floor'][0]['n']} found"
                    + ("" if len(hits) == 1 else f"; MISMATCH: found {sorted(hits)}")
                    + "; floor: SQLite json_extract over the start documents"
                    + _before_note(found["before"], floor)
                    + _cpu_note(found),
                    n,
                )
            )
        # --- the open catalog, nothing changed --------------------------------
        cat = BlueskyJSONLCatalog(str(runs), index_path=index)
        len(cat)
        value = C.best_of(lambda: len(cat), reps)[0]
        floor = C.best_of(lambda: C.floor_stat(runs), reps)[0]
        out.append(
            _row(
                "files_len", "len(), nothing changed", value, floor, _counted(lambda: len(cat)), n
            )
        )
        newest = max(manifest_uids(cat), key=lambda s: s["time"])
        value = C.best_of(lambda: cat[-1].metadata["start"]["uid"], reps)[0]
        path = runs / f"{newest['uid']}.jsonl"
        floor = C.best_of(lambda: C.floor_first_record(path, "jsonl"), reps)[0]
        note = _counted(lambda: cat[-1].metadata["start"])
        out.append(_row("files_last", "cat[-1], nothing changed", value, floor, note, n))
        q = {"plan_name": "count"}
        starts = manifest_uids(cat)
        found = C.best_of(lambda: list(cat.search(q)), reps)
        floor = C.best_of(lambda: C.floor_search(starts, q), reps)[0]
        note = _counted(lambda: list(cat.search(q))) + f"; {len(found[2])} found; answers cached"
        out.append(
            _row("files_search", "search {plan_name}, nothing changed", found[0], floor, note, n)
        )
        # The same, its first time: the catalog's cache of answers emptied.
        uncached = C.best_of(lambda: list(cat.search(q)), reps, setup=cat.driver._matches.clear)
        note = f"{len(uncached[2])} found; each call evaluates the query"
        out.append(
            _row("files_search_new", "search {plan_name}, first time", uncached[0], floor, note, n)
        )
        # --- one new file -------------------------------------------------------
        rng = random.Random(41)
        times, floors, notes = [], [], []
        for i in range(reps):
            docs = _small_run(rng, n + 10 + i)
            new = runs / f"{docs[0][1]['uid']}.jsonl"
            new.write_text(_text(docs))
            try:
                with Syscalls() as calls:
                    t = time.perf_counter()
                    got = len(cat)
                    times.append(time.perf_counter() - t)
                assert got == n + 1, got
                notes.append({k: v for k, v in calls.counts.items() if v})
                t = time.perf_counter()
                _list(runs)
                C.floor_headers_jsonl([new])
                floors.append(time.perf_counter() - t)
            finally:
                new.unlink()
                len(cat)
        note = "syscalls: " + ", ".join(f"{k} {v}" for k, v in notes[0].items())
        out.append(_row("files_new", "len() after one new file", min(times), min(floors), note, n))
        # --- a growing run ---------------------------------------------------
        out.extend(_growing_rows(root, manifest, scratch, reps, n))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _list(directory) -> int:
    with os.scandir(directory) as it:
        return sum(1 for _ in it)


def manifest_uids(cat) -> list[dict]:
    """The catalog's start documents (for the floors)."""
    cat.driver._ensure_documents()
    return [entry.start for entry in cat.driver._runs.values()]


def _growing_rows(root: Path, manifest: dict, scratch: Path, reps: int, n: int) -> list[dict]:
    import orjson

    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    source = root / "growing" / f"{manifest['growing']}.jsonl"
    directory = scratch / "growing"
    directory.mkdir()
    path = directory / source.name
    shutil.copyfile(source, path)
    run = BlueskyJSONLCatalog(str(directory), index_path=False)[-1]
    assert run.primary.read()["det"].size == GROWING_EVENTS
    t0 = 1.7e9
    times, reads, floors, notes = [], [], [], []
    for i in range(reps):
        line = json.dumps(["event", _event(manifest["descriptor"], GROWING_EVENTS + i, t0)])
        with open(path, "a") as f:
            f.write(line + "\n")
        with Syscalls() as calls:
            t = time.perf_counter()
            run.metadata["stop"]
            times.append(time.perf_counter() - t)
        notes.append({k: v for k, v in calls.counts.items() if v})
        floors.append(C.best_of(lambda line=line: orjson.loads(line), 5)[0])
        t = time.perf_counter()
        ds = run.primary.read()
        reads.append(time.perf_counter() - t)
        assert ds["det"].size == GROWING_EVENTS + i + 1
        assert ds["det"].values[-1] == float(GROWING_EVENTS + i)
    fields = {"det": "<f8", "x": "<f8"}
    read_floor = C.best_of(
        C.without_gc(lambda: C.floor_columns_file(path, "jsonl", fields)), reps
    )[0]
    note = "syscalls: " + ", ".join(f"{k} {v}" for k, v in notes[0].items())
    return [
        _row(
            "files_append",
            "100k-event run, one line appended",
            min(times),
            min(floors),
            note + "; floor: decode that line",
            n,
        ),
        _row(
            "files_append_read",
            "read() after one appended line",
            min(reads),
            read_floor,
            "floor: decode every line + columns",
            n,
        ),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="run files (default 100,000)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="a checkout of another version: its new-process figures beside ours",
    )
    args = parser.parse_args(argv)
    import run as runner

    measured = rows(
        args.n, args.reps, log=lambda s: print(s, file=sys.stderr, flush=True), before=args.before
    )
    runner.merge(measured, {})
    print(runner.table(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
