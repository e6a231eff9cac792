"""The peer: tiled + bluesky-tiled-plugins reading the stream workload.

Runs in its own environment (tiled, bluesky-tiled-plugins, h5py: see
``tiled-requirements.txt``; ``nox -s bench`` builds it). The documents of
``bench_stream.py``'s fly scan are written by ``TiledWriter`` into an
in-process tiled app over an embedded SQLite catalog (the HDF5 file is
registered, not copied), then read back through the tiled client, as a user
of that stack reads them. Optionally also the 100,000-event scalar run (a
JSONL file of the main workloads) against the orjson floor.

Usage::

    <tiled env>/bin/python benchmarks/_tiled_peer.py --workload DIR --out OUT.json
        [--reps N] [--scalar RUN.jsonl]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STORED_ROOT = "/bench-data/h5"


def best_of(fn, reps):
    best, result = float("inf"), None
    for _ in range(max(1, reps)):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def serve(directory: Path, readable: list[str]):
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    catalog = from_uri(
        f"sqlite:///{directory / 'catalog.db'}",
        # Files for arrays, an embedded SQLite database for event tables.
        writable_storage=[str(directory / "data"), f"sqlite:///{directory / 'tables.db'}"],
        readable_storage=readable,
        init_if_not_exists=True,
    )
    context = Context.from_app(build_app(catalog))
    return context, from_context(context)


def write(client, docs):
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    for name, doc in docs:
        writer(name, doc)


def fly_scan(workload: Path, reps: int, notes: list) -> list[dict]:
    import h5py

    manifest = json.loads((workload / "manifest.json").read_text())
    docs = json.loads((workload / "documents.json").read_text())
    h5dir = str((workload / "h5").resolve())
    for _, doc in docs:  # tiled has no root_map: point the URIs at the file itself
        if "uri" in doc:
            doc["uri"] = doc["uri"].replace(STORED_ROOT, h5dir)
    with h5py.File(manifest["file"], "r", swmr=True) as f:
        frames, sums = f["/entry/data/data"][()], f["/entry/sum"][()]

    def floor():  # as bench_stream._floor
        with h5py.File(manifest["file"], "r", swmr=True, libver="latest") as f:
            out = []
            for name in ("/entry/data/data", "/entry/sum"):
                dset = f[name]
                array = np.empty(dset.shape, dset.dtype)
                dset.read_direct(array)
                out.append(array)
            return tuple(out)

    t_floor, _ = best_of(floor, reps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        context, client = serve(Path(tmp), [h5dir])
        with context:
            t0 = time.perf_counter()
            write(client, docs)
            t_write = time.perf_counter() - t0
            uid = manifest["uid"]

            def array():
                return client[uid]["primary"]["bdet"].read()

            t, got = best_of(array, reps)
            ok = got.size == frames.size and np.array_equal(
                np.asarray(got).reshape(frames.shape), frames
            )
            rows.append(
                {
                    "label": "bdet array .read()",
                    "value": t,
                    "floor": t_floor,
                    "check": "ok" if ok else "VALUES DIFFER",
                    "note": f"TiledWriter took {t_write:.2f} s; shape {tuple(got.shape)}",
                }
            )

            def dataset():
                return client[uid]["primary"].read()

            try:
                t, ds = best_of(dataset, reps)
                ok = (
                    ds["bdet"].size == frames.size
                    and np.array_equal(ds["bdet"].values.reshape(frames.shape), frames)
                    and np.array_equal(ds["bdet-sum"].values.ravel(), sums)
                )
                rows.append(
                    {
                        "label": "stream .read() (xarray)",
                        "value": t,
                        "floor": t_floor,
                        "check": "ok" if ok else "VALUES DIFFER",
                        "note": "",
                    }
                )
            except Exception as err:  # report, do not hide
                notes.append(f"stream .read() failed: {err!r}"[:300])
    return rows


def scalar_floor(path: Path) -> dict:
    """Decode a JSONL run and build its columns: what any reader must pay."""
    import orjson

    cols: dict = {}
    for name, doc in (orjson.loads(line) for line in path.read_bytes().splitlines() if line):
        if name == "event_page":
            for key, values in doc["data"].items():
                cols.setdefault(key, []).append(np.asarray(values))
        elif name == "event":
            for key, value in doc["data"].items():
                cols.setdefault(key, []).append(np.asarray([value]))
    return {k: np.concatenate(v) for k, v in cols.items()}


def scalar(path: Path, reps: int, notes: list) -> list[dict]:
    import orjson

    docs = [tuple(orjson.loads(line)) for line in path.read_bytes().splitlines() if line]
    uid = docs[0][1]["uid"]
    t_floor, truth = best_of(lambda: scalar_floor(path), reps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        context, client = serve(Path(tmp), [])
        with context:
            t0 = time.perf_counter()
            write(client, docs)
            t_write = time.perf_counter() - t0
            t, ds = best_of(lambda: client[uid]["primary"].read(), reps)
            ok = all(np.array_equal(np.asarray(ds[k].values), v) for k, v in truth.items())
            n = len(next(iter(truth.values())))
            rows.append(
                {
                    "label": f"scalar run .read() ({n} events)",
                    "value": t,
                    "floor": t_floor,
                    "check": "ok" if ok else "VALUES DIFFER",
                    "note": f"vs orjson floor; TiledWriter took {t_write:.1f} s",
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scalar", default="")
    args = parser.parse_args(argv)
    from importlib.metadata import version

    notes: list[str] = []
    result = {
        "versions": {p: version(p) for p in ("tiled", "bluesky-tiled-plugins", "h5py")},
        "rows": [],
        "notes": notes,
    }
    out = Path(args.out)
    try:
        result["rows"] += fly_scan(Path(args.workload), args.reps, notes)
        if args.scalar:
            result["rows"] += scalar(Path(args.scalar), args.reps, notes)
    finally:
        out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
