"""Check the workload writers against the real serializers (a development aid).

Run it with the databroker 1.2.5 environment's Python, which has
suitcase-jsonl, suitcase-msgpack and suitcase-mongo::

    <anchor venv>/bin/python benchmarks/_check_writers.py

It writes small versions of every workload with both and compares: JSONL and
msgpack byte for byte, Mongo collection by collection (ignoring ``_id``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402


def _runs():
    yield "scalar pages", list(workloads.scalar_run(50, 20))
    yield "scalar events", list(workloads.scalar_run(50, None))
    yield "small", next(workloads.small_runs(1, 5))
    yield "image inline", list(workloads.image_run(3, (8, 6), external=False))
    yield "image external", list(workloads.image_run(3, (8, 6), external=True))


def _strip(docs):
    out = []
    for d in docs:
        d = dict(d)
        d.pop("_id", None)
        out.append(d)
    return out


def main() -> int:
    import mongomock
    import suitcase.jsonl
    import suitcase.mongo_normalized
    import suitcase.msgpack

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, docs in _runs():
            for fmt, theirs_mod, ours in (
                ("jsonl", suitcase.jsonl, workloads.write_jsonl),
                ("msgpack", suitcase.msgpack, workloads.write_msgpack),
            ):
                a, b = tmp / label / fmt / "suitcase", tmp / label / fmt / "ours"
                a.mkdir(parents=True)
                with theirs_mod.Serializer(str(a)) as ser:
                    for name, doc in docs:
                        ser(name, doc)
                ours(docs, b)
                fa, fb = sorted(a.iterdir()), sorted(b.iterdir())
                same = [x.name for x in fa] == [x.name for x in fb] and all(
                    x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb)
                )
                print(f"{label:16} {fmt:8} {'identical' if same else 'DIFFERENT'}")
                failures += not same

            if label == "image inline":
                continue  # no inline frames in the Mongo workloads
            client = mongomock.MongoClient()
            mds, assets = client["mds"], client["assets"]
            ser = suitcase.mongo_normalized.Serializer(mds, assets)
            for name, doc in docs:
                ser(name, doc)
            mine_mds: dict = {}
            mine_assets: dict = {}
            workloads.mongo_normalized(docs, mine_mds, mine_assets)
            same = True
            for db, mine in ((mds, mine_mds), (assets, mine_assets)):
                for coll in set(db.list_collection_names()) | set(mine):
                    theirs = _strip(db[coll].find())
                    if theirs != _strip(mine.get(coll, [])):
                        same = False
                        print(f"   normalized {coll} differs")
            print(f"{label:16} {'mongo-n':8} {'same documents' if same else 'DIFFERENT'}")
            failures += not same

    # suitcase.mongo_embedded cannot write into mongomock 4.3 with pymongo 4.x
    # (bulk_write API mismatch), so the embedded layout is compared with the
    # dump of what it wrote for the project's sample run (into a compatible
    # mongomock), from the same documents.
    samples = _samples()
    if samples is None:
        print("embedded layout: samples/ not found, not checked")
    else:
        dump = json.loads((samples / "mongo_dumps" / "embedded.json").read_text())
        mine: dict = {}
        for run in ("run0", "run1"):
            docs = json.loads((samples / "docs" / f"{run}_documents.json").read_text())
            workloads.mongo_embedded(docs, mine)
        same = True
        for coll in set(dump) | set(mine):
            theirs = _canon(dump.get(coll, {}).get("docs", []))
            ours = _canon(mine.get(coll, []))
            if theirs != ours:
                same = False
                print(f"   embedded {coll} differs:\n     suitcase {theirs}\n     ours     {ours}")
        print(f"{'samples runs':16} {'mongo-e':8} {'same documents' if same else 'DIFFERENT'}")
        failures += not same
    return 1 if failures else 0


def _samples():
    for base in (HERE.parent.parent / "shared", Path("/work/shared")):
        if (base / "samples" / "mongo_dumps").is_dir():
            return base / "samples"
    return None


def _canon(docs):
    """Documents without ``_id``, page ``size`` (suitcase counts it per insert
    batch) and ``count_*`` (written by a racing thread), sorted."""
    out = []
    for d in docs:
        d = {k: v for k, v in d.items() if k not in ("_id", "size") and not k.startswith("count_")}
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)


if __name__ == "__main__":
    sys.exit(main())
