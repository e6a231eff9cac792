"""Benchmarks of the table of runs (``cat.to_dataframe()``).

Rows, each reported as ratios to its *floor* and to its *peer*, measured in
the same run on the same data:

* ``table_all``: the whole catalog as a table, on an open (indexed) catalog.
* ``table_newest``: the newest 20 runs (``limit=20``).

Backends: ``jsonl`` (a directory of run files, as suitcase-jsonl writes
them) and ``mongo_normalized`` (mongomock).

Floor: what any reader must pay for the same table once the documents are
at hand: the same start/stop documents, already in memory (files: their
index; Mongo: a plain projected ``find`` on ``run_start`` plus one ``$in``
on ``run_stop``), turned into the same rows and ``pandas.DataFrame``.
Peer: the habit the table replaces, apstools' ``listruns`` style: open each
run through the catalog and read ``run.metadata['start'/'stop']``, here and,
with ``--anchor-python``, with databroker 1.2.5 on the same files
(``for uid in cat: cat[uid].metadata``).

Usage::

    python benchmarks/bench_table.py [--quick] [--reps N] [--anchor-python PATH]
    python benchmarks/run.py --table [...]      # the same
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEWEST = 20


def write_runs(directory: Path, n: int) -> list[list]:
    """``n`` small runs (10 events, start metadata like a beamline's), JSONL."""
    import event_model

    directory.mkdir(parents=True, exist_ok=True)
    runs = []
    t0 = 1_700_000_000.0
    for i in range(n):
        t = t0 + 60 * i
        bundle = event_model.compose_run(
            uid=f"{i:08x}-7ab1-4000-8000-{i:012x}",
            time=t,
            metadata={
                "scan_id": i + 1,
                "plan_name": ("count", "scan", "rel_scan")[i % 3],
                "sample": {"name": f"S{i % 17}", "composition": "Cu3Au"},
                "operator": ("alice", "bob")[i % 2],
                "proposal_id": f"P{i // 100}",
                "detectors": ["det1", "det2"],
                "motors": ["m1"],
                "hints": {"dimensions": [[["m1"], "primary"]]},
                "plan_args": {"num": 10, "per_step": "None", "args": ["m1", -1, 1]},
            },
        )
        desc = bundle.compose_descriptor(
            name="primary",
            data_keys={
                k: {"source": "sim", "dtype": "number", "shape": [], "dtype_numpy": "<f8"}
                for k in ("det1", "det2", "m1")
            },
            time=t + 0.1,
        )
        docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
        seq = list(range(1, 11))
        docs.append(
            (
                "event_page",
                desc.compose_event_page(
                    data={k: [float(s) for s in seq] for k in ("det1", "det2", "m1")},
                    timestamps={k: [t + s for s in seq] for k in ("det1", "det2", "m1")},
                    seq_num=seq,
                    time=[t + s for s in seq],
                ),
            )
        )
        docs.append(("stop", bundle.compose_stop(time=t + 11)))
        runs.append(docs)
        path = directory / f"{bundle.start_doc['uid']}.jsonl"
        if not path.exists():
            with open(path, "w") as f:
                for name, doc in docs:
                    f.write(json.dumps([name, doc]) + "\n")
    return runs


def floor_frame(pairs):
    """The same table from (start, stop) pairs at hand, with plain pandas."""
    import datetime

    import pandas as pd

    records = []
    for start, stop in pairs:
        t0 = start["time"]
        records.append(
            {
                "uid": start["uid"],
                "scan_id": start.get("scan_id"),
                "plan_name": start.get("plan_name"),
                "time": datetime.datetime.fromtimestamp(t0).astimezone(),
                "duration": stop["time"] - t0 if stop else None,
                "exit_status": stop.get("exit_status") if stop else None,
                "events.primary": (stop or {}).get("num_events", {}).get("primary"),
            }
        )
    return pd.DataFrame.from_records(records)


def peer_loop(cat, newest: int | None):
    """apstools-style: open each run and read its metadata."""
    runs = cat[-newest:] if newest else cat.values()
    return floor_frame([(r.metadata["start"], r.metadata["stop"]) for r in runs])


def best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _mongo(runs):
    import mongomock

    db = mongomock.MongoClient()["bench_table"]
    for docs in runs:
        for name, doc in docs:
            if name == "start":
                db.run_start.insert_one(dict(doc))
            elif name == "stop":
                db.run_stop.insert_one(dict(doc))
            elif name == "descriptor":
                db.event_descriptor.insert_one(dict(doc))
    db.run_start.create_index([("time", -1), ("_id", -1)])
    db.run_stop.create_index("run_start")
    return db


def _anchor(python: str, directory: Path, reps: int) -> dict:
    """databroker 1.2.5, the listruns habit, on the same files."""
    code = f"""
import json, time, warnings
warnings.simplefilter("ignore")
from databroker._drivers.jsonl import BlueskyJSONLCatalog
cat = BlueskyJSONLCatalog({str(directory) + "/*.jsonl"!r})
len(cat)
def loop(newest):
    uids = list(cat)
    if newest:
        uids = uids[-newest:]
    return [(cat[u].metadata["start"], cat[u].metadata["stop"]) for u in uids]
out = {{}}
for key, newest in (("table_all", None), ("table_newest", {NEWEST})):
    best = float("inf")
    for _ in range({reps}):
        t = time.perf_counter(); loop(newest); best = min(best, time.perf_counter() - t)
    out[key] = best
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=1800, env=env
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as err:  # the anchor is optional
        print(f"note: databroker side failed: {err!r}", file=sys.stderr)
        return {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 runs instead of 2,000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--anchor-python", help="python of an environment with databroker 1.2.5")
    args, _ = parser.parse_known_args(argv)
    n = 200 if args.quick else 2000
    from intake_bluesky.core import set_progress
    from intake_bluesky.jsonl import BlueskyJSONLCatalog
    from intake_bluesky.mongo import BlueskyMongoCatalog

    set_progress(False)
    directory = HERE / ".workloads" / f"table-v1-{n}"
    runs = write_runs(directory, n)
    rows = []

    cat = BlueskyJSONLCatalog(str(directory))
    len(cat)  # index once: the rows measure an open catalog
    pairs = [(docs[0][1], docs[-1][1]) for docs in runs]
    assert cat.to_dataframe()["uid"].tolist() == [s["uid"] for s, _ in pairs]
    anchor = _anchor(args.anchor_python, directory, args.reps) if args.anchor_python else {}
    for key, limit in (("table_all", None), ("table_newest", NEWEST)):
        subset = pairs[-limit:] if limit else pairs
        ours = best_of(lambda limit=limit: cat.to_dataframe(limit=limit), args.reps)
        floor = best_of(lambda subset=subset: floor_frame(subset), args.reps)
        peer = best_of(lambda limit=limit: peer_loop(cat, limit), args.reps)
        rows.append(("jsonl", key, ours, floor, peer, anchor.get(key)))

    db = _mongo(runs)
    mcat = BlueskyMongoCatalog(db)
    assert mcat.to_dataframe(limit=3)["uid"].tolist() == [s["uid"] for s, _ in pairs[-3:]]

    def mongo_floor(limit):
        cursor = db.run_start.find(
            {}, {"_id": 0, "uid": 1, "scan_id": 1, "plan_name": 1, "time": 1}
        ).sort([("time", -1), ("_id", -1)])
        starts = list(cursor.limit(limit) if limit else cursor)[::-1]
        stops = {
            s["run_start"]: s
            for s in db.run_stop.find(
                {"run_start": {"$in": [s["uid"] for s in starts]}},
                {"_id": 0, "run_start": 1, "time": 1, "exit_status": 1, "num_events": 1},
            )
        }
        return floor_frame([(s, stops.get(s["uid"])) for s in starts])

    for key, limit in (("table_all", None), ("table_newest", NEWEST)):
        ours = best_of(lambda limit=limit: mcat.to_dataframe(limit=limit), args.reps)
        floor = best_of(lambda limit=limit: mongo_floor(limit), args.reps)
        peer = best_of(lambda limit=limit: peer_loop(mcat, limit), args.reps)
        rows.append(("mongo_normalized", key, ours, floor, peer, None))

    print(f"\ntable of runs ({n} runs, best of {args.reps}; ratios: ours / other)")
    print(
        f"{'backend':18} {'bench':13} {'ours':>9} {'/floor':>7} {'/peer':>7} {'/databroker':>12}"
    )
    for backend, key, ours, floor, peer, db125 in rows:
        anchor_ratio = f"{ours / db125:12.3f}" if db125 else f"{'-':>12}"
        print(
            f"{backend:18} {key:13} {ours * 1e3:7.1f}ms {ours / floor:7.2f} "
            f"{ours / peer:7.3f} {anchor_ratio}"
        )
    return 0


if __name__ == "__main__":
    tempfile.tempdir = tempfile.gettempdir()
    sys.exit(main())
