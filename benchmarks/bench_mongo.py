"""The Mongo rows on a real MongoDB wire-protocol server (SecantusDB).

``run.py`` calls :func:`run` (``--only mongo_server``, and in every full run):
it starts a SecantusDB server in a child process (standalone, in memory,
``python -m secantus``; a server in the benchmark's own process would share
its GIL), loads into it a 100,000-event scalar run in both suitcase-mongo
layouts and the 2,000 small runs of the workloads, creates the indexes
(``create_indexes``/``create_embedded_indexes``; the same ones serve
databroker), and measures, for each layout:

* ``read()``, ``to_dask().compute()``, ``canonical()`` of the scalar run
  (a new catalog per call);
* ``search`` with the suite's two queries over the 2,000 runs, ``cat[-1]``.

Each figure is divided by its floor, a plain pymongo ``find`` of the same
documents on the same server in the same process (``_common.floor_mongo_*``),
and by databroker 1.2.5 measured against the same server in the same run:
this file, run with the anchor environment's Python (``--side databroker``),
which also measures its own floor (``db floor`` in the JSON).

By hand::

    python benchmarks/run.py --only mongo_server [--quick] [--anchor-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

#: The pseudo-backend name ``run.py --only`` knows these rows by.
NAME = "mongo_server"
LAYOUTS = ("normalized", "embedded")
#: Scalar events of the server run (quick: a smoke run).
EVENTS = {"full": 100_000, "quick": 5_000}
PLAN = [
    ("read", "scalar"),
    ("dask", "scalar"),
    ("canonical", "scalar"),
    ("search_eq", "small"),
    ("search_complex", "small"),
    ("lookup_latest", "small"),
    ("lookup_uid", "small"),
    ("lookup_scan_id", "small"),
]
#: databroker 1.2.5's read() costs ~1-2 ms per event: timed once (its budget),
#: and its to_dask() is the same code path (read() is to_dask().load()).
DB_SKIP = {"dask": "= read() (to_dask().load()); minutes per call"}


# --------------------------------------------------------------------------
# The server and its data (our side)
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log) -> tuple[subprocess.Popen, str]:
    """``python -m secantus`` on a free port; (process, URI) once it answers."""
    import pymongo

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--port",
            str(port),
            "--storage-path",
            ":memory:",
            "--standalone",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000) as client:
                version = client.server_info().get("version")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("SecantusDB did not start (python -m secantus)") from None
            time.sleep(0.2)
    log(f"  SecantusDB at {uri} (reports MongoDB {version})")
    return proc, uri


def load(uri: str, root: Path, manifest: dict, size: str, log) -> dict:
    """Fill the server; the spec both sides measure from (uids, queries...)."""
    import msgpack
    import pymongo
    import workloads

    from intake_bluesky.mongo import create_embedded_indexes, create_indexes

    client = pymongo.MongoClient(uri)
    t0 = time.perf_counter()
    with open(root / "mongo" / "normalized.msgpack", "rb") as f:
        small = {k: v for k, v in msgpack.unpackb(f.read(), raw=False).items() if "small" in k}
    with open(root / "mongo" / "embedded.msgpack", "rb") as f:
        small.update(
            {k: v for k, v in msgpack.unpackb(f.read(), raw=False).items() if "small" in k}
        )
    n = EVENTS[size]
    docs = list(workloads.scalar_run(n, None, seed=11))
    big: dict = {"big_mds": {}, "big_assets": {}, "big_embedded": {}}
    workloads.mongo_normalized(docs, big["big_mds"], big["big_assets"])
    workloads.mongo_embedded(docs, big["big_embedded"])
    for db_name, collections in {**small, **big}.items():
        client.drop_database(db_name)
        for coll, items in collections.items():
            for i in range(0, len(items), 10_000):
                client[db_name][coll].insert_many([dict(d) for d in items[i : i + 10_000]])
    create_indexes(client["small_mds"], client["small_assets"])
    create_indexes(client["big_mds"], client["big_assets"])
    create_embedded_indexes(client["small_embedded"])
    create_embedded_indexes(client["big_embedded"])
    client.close()
    log(f"  loaded {n:,} events x 2 layouts + small runs in {time.perf_counter() - t0:.0f} s")
    small_info = manifest["runs"]["small"]
    return {
        "uri": uri,
        "events": n,
        "runs": manifest["params"]["small_runs"],
        "uid": docs[0][1]["uid"],
        "descriptor": docs[1][1]["uid"],
        "fields": workloads.SCALAR_FIELDS,
        "queries": {k: manifest["queries"][k] for k in ("search_eq", "search_complex")},
        "lookups": {
            "lookup_latest": [-1, "latest", small_info["latest_uid"]],
            "lookup_uid": [small_info["lookup_uid"], "uid", small_info["lookup_uid"]],
            "lookup_scan_id": [small_info["lookup_scan_id"], "scan_id", small_info["lookup_uid"]],
        },
    }


# --------------------------------------------------------------------------
# Measuring (either side)
# --------------------------------------------------------------------------


class Side:
    """One side's catalogs over the server: ``ours`` or ``databroker``."""

    def __init__(self, side: str, uri: str):
        import pymongo

        self.side = side
        self.client = pymongo.MongoClient(uri)

    def db(self, name):
        return self.client[name]

    def catalog(self, layout: str, which: str):
        if self.side == "ours":
            from intake_bluesky.mongo import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog
        elif layout == "normalized":
            from databroker._drivers.mongo_normalized import BlueskyMongoCatalog
        else:
            from databroker._drivers.mongo_embedded import BlueskyMongoCatalog

            BlueskyMongoEmbeddedCatalog = BlueskyMongoCatalog
        if layout == "normalized":
            return BlueskyMongoCatalog(self.db(f"{which}_mds"), self.db(f"{which}_assets"))
        return BlueskyMongoEmbeddedCatalog(self.db(f"{which}_embedded"))


def _label(kind: str, spec: dict) -> str:
    what = f"{spec['events'] // 1000}k scalar"
    return {
        "read": f"read() {what}",
        "dask": f"to_dask().compute() {what}",
        "canonical": f"canonical() {what}",
        "search_eq": f"search {{plan_name}}, {spec['runs']:,} runs",
        "search_complex": f"search $or/$in/$regex/range, {spec['runs']:,} runs",
        "lookup_latest": f"cat[-1], {spec['runs']:,} runs",
        "lookup_uid": f"cat[uid], {spec['runs']:,} runs",
        "lookup_scan_id": f"cat[scan_id], {spec['runs']:,} runs",
    }[kind]


def _canonical(cat, uid):
    docs = events = 0
    for name, doc in cat[uid].canonical(fill="no"):
        docs += 1
        if name == "event":
            events += 1
        elif name == "event_page":
            events += len(doc["seq_num"])
    return docs, events


def measure(side: Side, spec: dict, reps: int, budget: float, log) -> list[dict]:
    """Every row of the plan for one side, each with its own same-process floor."""
    from _suite import _same_values

    rows = []
    uid = spec["uid"]
    for layout in LAYOUTS:
        big = side.db("big_mds" if layout == "normalized" else "big_embedded")
        small = side.db("small_mds" if layout == "normalized" else "small_embedded")
        for kind, workload in PLAN:
            row = {
                "backend": f"mongo_{layout}@secantus",
                "kind": kind,
                "workload": workload,
                "bench": f"server:{kind}:{workload}",
                "label": _label(kind, spec),
                "unit": "s",
                "value": None,
                "floor": None,
                "extra": {},
                "error": None,
                "skipped": None,
            }
            rows.append(row)
            if side.side == "databroker" and kind in DB_SKIP:
                row["skipped"] = DB_SKIP[kind]
                continue
            log(f"  {side.side:10} {row['backend']:26} {row['label']} ...")
            if kind in ("read", "dask", "canonical"):

                def fn(kind=kind, layout=layout):
                    cat = side.catalog(layout, "big")
                    if kind == "canonical":
                        return _canonical(cat, uid)
                    if kind == "read":
                        return cat[uid].primary.read()
                    return cat[uid].primary.to_dask().compute()

                if kind == "canonical":
                    floor = lambda layout=layout, big=big: C.floor_mongo_count_run(  # noqa: E731
                        big, layout, uid
                    )
                else:
                    floor = lambda layout=layout, big=big: C.floor_mongo_columns(  # noqa: E731
                        big, layout, spec["descriptor"], spec["fields"]
                    )
            elif kind.startswith("search"):
                cat = side.catalog(layout, "small")
                len(cat)
                q = spec["queries"][kind]

                def fn(cat=cat, q=q):
                    return list(cat.search(q))

                floor = lambda layout=layout, small=small, q=q: C.floor_mongo_search(  # noqa: E731
                    small, layout, q
                )
            else:
                cat = side.catalog(layout, "small")
                len(cat)
                key, how, expected = spec["lookups"][kind]

                def fn(cat=cat, key=key):
                    return cat[key].metadata["start"]["uid"]

                floor = lambda layout=layout, small=small, how=how, key=key: (  # noqa: E731
                    C.floor_mongo_lookup(small, layout, how, key)
                )
            try:
                best, calls, result = C.best_of(fn, reps, budget)
                row.update(value=best, calls=calls)
                fbest, fcalls, fresult = C.best_of(C.without_gc(floor), reps, budget)
                row.update(floor=fbest, floor_calls=fcalls)
                if kind in ("read", "dask"):
                    row["check"] = _same_values(result, fresult)
                elif kind == "canonical":
                    docs, events = result
                    row["extra"].update(
                        docs=docs,
                        events=events,
                        docs_per_s=round(docs / best),
                        events_per_s=round(events / best),
                    )
                    if events != fresult[1]:
                        row["check"] = f"MISMATCH: {events} events, floor {fresult[1]}"
                elif kind.startswith("search"):
                    row["extra"]["found"] = len(result)
                    row["floor_extra"] = {"found": len(fresult)}
                    if len(result) != len(fresult):
                        row["check"] = f"MISMATCH: found {len(result)}, floor {len(fresult)}"
                elif result != expected:
                    row["check"] = f"MISMATCH: cat[{key!r}] is {result}, not {expected}"
            except Exception as e:  # a broken side must not stop the others
                row["error"] = f"{type(e).__name__}: {e}"[:500]
                row["traceback"] = traceback.format_exc()[-3000:]
    return rows


# --------------------------------------------------------------------------
# Both sides, from run.py
# --------------------------------------------------------------------------


def run(root: Path, manifest: dict, size: str, reps: int, anchor_python, notes, log) -> list:
    """Start the server, load it, measure ours and databroker's; the rows."""
    try:
        import secantus  # noqa: F401
    except ImportError as e:
        notes.append(f"{NAME}: skipped, SecantusDB is not installed ({e})")
        return []
    proc, uri = start_server(log)
    try:
        spec = load(uri, root, manifest, size, log)
        rows = measure(Side("ours", uri), spec, reps, 20.0, log)
        anchor = _run_anchor(anchor_python, spec, reps, notes, log) if anchor_python else {}
        if not anchor_python:
            notes.append(f"{NAME}: databroker rows skipped: no --anchor-python given")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for row in rows:
        a = anchor.get(row["bench"] + row["backend"])
        row["db"] = a["value"] if a else None
        row["db_floor"] = a.get("floor") if a else None
        row["db_extra"] = a.get("extra") if a else None
        row["db_note"] = (a.get("skipped") or a.get("error")) if a else None
        found = (row.get("floor_extra") or {}).get("found")
        db_found = (row["db_extra"] or {}).get("found")
        if found is not None and db_found is not None and db_found != found:
            row["db_wrong"] = f"db found {db_found} runs, not {found}"
        if a and a.get("check", "ok") != "ok":
            row["db_wrong"] = f"db: {a['check']}"
        v, f, d = row["value"], row["floor"], row["db"]
        row["to_floor"] = v / f if v is not None and f else None
        # Same server, same documents: databroker's time is compared directly.
        row["to_db"] = v / d if v is not None and d and not row.get("db_wrong") else None
        if row.get("error"):
            notes.append(f"{row['backend']} {row['bench']}: {row['error']}")
        if row.get("check", "ok") != "ok":
            notes.append(f"{row['backend']} {row['bench']}: {row['check']}")
    return rows


def _run_anchor(python: str, spec: dict, reps: int, notes, log) -> dict:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_mongo_{os.getpid()}.jsonl"
    cmd = [python, str(Path(__file__).resolve()), "--side", "databroker", "--out", str(out)]
    cmd += ["--reps", str(reps), "--spec", json.dumps(spec)]
    log(f"\n{NAME}: databroker side: {python} {Path(__file__).name} --side databroker")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=3600, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            notes.append(f"{NAME}: databroker side exited with {proc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"{NAME}: databroker side stopped ({e}); its rows may be partial")
    log(f"{NAME}: databroker side took {time.perf_counter() - t0:.0f} s")
    rows = {}
    if out.exists():
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            rows[rec["bench"] + rec["backend"]] = rec
        out.unlink()
    return rows


def main(argv=None) -> int:
    """The databroker side (``--side databroker``), run with the anchor's Python."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["databroker", "ours"], required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # databroker 1.2.5 on today's libraries warns a lot
    spec = json.loads(args.spec)
    side = Side(args.side, spec["uri"])
    rows = measure(
        side,
        spec,
        args.reps,
        10.0,
        lambda s: print(s, file=sys.stderr, flush=True),
    )
    with open(args.out, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
