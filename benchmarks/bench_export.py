"""Export benchmarks: runs re-written as JSONL / msgpack files (``intake-bluesky export``).

Workloads (suitcase-msgpack files, written by ``workloads.py``'s writers):
a step scan of 100,000 scalar events (``--quick``: 10,000) and a step scan of
200 inline 512x512 uint16 frames (``--quick``: 20). Rows, each best of N:

* ours: :func:`intake_bluesky.core.export.export_runs` from the msgpack
  catalog to ``jsonl`` and to ``msgpack`` (what the command does after
  start-up);
* floor: what any converter must pay -- decode every record of the file
  (msgpack + msgpack-numpy) and encode it again into the output format
  (orjson with its numpy support, or ``msgpack.packb`` with msgpack-numpy),
  written to a file and synced to disk (as the export does, so that a
  complete-looking file is a complete file);
* peer: databroker 1.2.5's msgpack catalog, ``run.canonical(fill='no')``
  into ``suitcase.jsonl.export`` / ``suitcase.msgpack.export`` (how runs
  were exported with databroker), in its own environment
  (``--anchor-python``, built by ``nox -s bench``), against the same floor
  measured there.

Usage::

    python benchmarks/bench_export.py [--quick] [--reps N] [--anchor-python PATH]

``run.py`` runs it after its own rows. Only the standard library is imported
at module level: the peer side runs this file in databroker's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / ".workloads"
VERSION = 1
SIZES = {"full": {"events": 100_000, "frames": 200}, "quick": {"events": 10_000, "frames": 20}}


def ensure_workload(quick: bool, log=print) -> tuple[Path, dict]:
    """The two run files (cached under ``.workloads/``)."""
    size = "quick" if quick else "full"
    root = WORKLOADS / f"export-v{VERSION}-{size}"
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        return root, json.loads(manifest_path.read_text())
    sys.path.insert(0, str(HERE))
    import workloads

    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"generating export workloads in {root} ...")
    p = SIZES[size]
    scalar = workloads.write_msgpack(workloads.scalar_run(p["events"], None), tmp / "scalar")
    images = workloads.write_msgpack(
        workloads.image_run(p["frames"], (512, 512), external=False), tmp / "images"
    )
    manifest = {
        "scalar": str(root / "scalar" / scalar.name),
        "images": str(root / "images" / images.name),
        **p,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root, manifest


def _best(fn, reps: int, setup=None) -> float:
    import gc

    best = float("inf")
    for _ in range(reps):
        if setup is not None:
            setup()
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def floor(path: str, fmt: str, out: str) -> None:
    """Decode every record of ``path`` and encode it again as ``fmt`` into ``out``."""
    import msgpack
    import msgpack_numpy

    with open(path, "rb") as f, open(out, "wb") as g:
        unpacker = msgpack.Unpacker(
            f, raw=False, object_hook=msgpack_numpy.decode, max_buffer_size=2**31 - 1
        )
        if fmt == "jsonl":
            import orjson

            option = orjson.OPT_SERIALIZE_NUMPY
            for record in unpacker:
                g.write(orjson.dumps(record, option=option) + b"\n")
        else:
            pack = msgpack.Packer(default=msgpack_numpy.encode).pack
            for record in unpacker:
                g.write(pack(record))
        g.flush()
        os.fsync(g.fileno())


def _fresh(directory: str, source: str | None = None, where: list | None = None):
    def setup():
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        if source is not None:
            # A copy in a new folder: nothing in this process has read it (the
            # core caches parsed runs and follows growing files by path), so
            # each timed call reads the file, as a first export does.
            folder = tempfile.mkdtemp(prefix="export-source-")
            shutil.copy(source, folder)
            if where:
                shutil.rmtree(where.pop(), ignore_errors=True)
            where.append(folder)

    return setup


def ours(manifest: dict, reps: int, log=print) -> list[dict]:
    from intake_bluesky.core.export import export_runs
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in ("scalar", "images"):
            path = manifest[workload]
            for fmt in ("jsonl", "msgpack"):
                out = os.path.join(tmp, "out")
                t_floor = _best(
                    lambda path=path, fmt=fmt, out=out: floor(path, fmt, os.path.join(out, "x")),
                    reps,
                    _fresh(out),
                )

                where: list = []

                def run(fmt=fmt, out=out, where=where):
                    cat = BlueskyMsgpackCatalog(where[0])
                    export_runs(cat, out, format=fmt)

                t = _best(run, reps, _fresh(out, path, where))
                for folder in where:
                    shutil.rmtree(folder, ignore_errors=True)
                check = _check(path, out, fmt)
                rows.append(
                    {
                        "workload": workload,
                        "format": fmt,
                        "ours": t,
                        "floor": t_floor,
                        "check": check,
                    }
                )
                log(f"  {workload} -> {fmt}: {t:.3f} s, floor {t_floor:.3f} s, {t / t_floor:.2f}x")
    return rows


def _check(path: str, out: str, fmt: str) -> str:
    """The export reads back with the source's values."""
    import numpy as np

    from intake_bluesky.jsonl import BlueskyJSONLCatalog
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    src = BlueskyMsgpackCatalog(os.path.dirname(path))[-1].primary.read()
    cls = BlueskyJSONLCatalog if fmt == "jsonl" else BlueskyMsgpackCatalog
    got = cls(out)[-1].primary.read()
    same = all(np.array_equal(got[k].values, src[k].values) for k in src.data_vars)
    return "ok" if same else "values differ"


def peer_side(manifest_path: str, reps: int) -> None:
    """Run in databroker 1.2.5's environment: one JSON line per row on stdout."""
    import suitcase.jsonl
    import suitcase.msgpack
    from databroker._drivers.msgpack import BlueskyMsgpackCatalog

    manifest = json.loads(Path(manifest_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for workload in ("scalar", "images"):
            path = manifest[workload]
            for fmt, export in (
                ("jsonl", suitcase.jsonl.export),
                ("msgpack", suitcase.msgpack.export),
            ):
                out = os.path.join(tmp, "out")
                t_floor = _best(
                    lambda path=path, fmt=fmt, out=out: floor(path, fmt, os.path.join(out, "x")),
                    reps,
                    _fresh(out),
                )

                def run(path=path, export=export, out=out):
                    cat = BlueskyMsgpackCatalog(f"{os.path.dirname(path)}/*.msgpack")
                    export(cat[-1].canonical(fill="no"), out)

                t = _best(run, reps, _fresh(out))
                print(
                    json.dumps(
                        {"workload": workload, "format": fmt, "peer": t, "peer_floor": t_floor}
                    )
                )
                sys.stdout.flush()


def peer(anchor_python, root: Path, reps: int, notes: list, log=print) -> dict:
    if not anchor_python:
        notes.append("databroker 1.2.5 + suitcase rows skipped: no --anchor-python given")
        return {}
    proc = subprocess.run(
        [anchor_python, __file__, "--peer-side", str(root / "manifest.json"), "--reps", str(reps)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        notes.append(f"peer failed: {proc.stderr.strip().splitlines()[-1:]}")
    rows = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        rows[(r["workload"], r["format"])] = r
        log(f"  peer {r['workload']} -> {r['format']}: {r['peer']:.3f} s")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 events, 20 frames")
    parser.add_argument("--reps", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--anchor-python", help="python of an environment with databroker 1.2.5")
    parser.add_argument("--peer-side", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_side:
        peer_side(args.peer_side, args.reps)
        return 0
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    root, manifest = ensure_workload(args.quick, log)
    notes: list[str] = []
    log(f"export rows ({manifest['events']} scalar events; {manifest['frames']} frames):")
    rows = ours(manifest, args.reps, log)
    peer_rows = peer(args.anchor_python, root, args.reps, notes, log)
    print(
        "\nexport: msgpack run -> run file (floor: decode + re-encode every record; "
        "peer: databroker 1.2.5 canonical() into suitcase, against the floor measured in its "
        "environment)"
    )
    head = f"{'run -> format':<28}{'ours':>9}{'/floor':>8}{'peer':>9}{'/floor':>8}"
    print(f"{head}{'ours/peer':>11}  check")
    for r in rows:
        label = (
            f"{manifest['events']} events"
            if r["workload"] == "scalar"
            else f"{manifest['frames']} frames"
        )
        p = peer_rows.get((r["workload"], r["format"]))
        if p:
            peer_bits = f"{p['peer']:>8.3f}s{p['peer'] / p['peer_floor']:>7.2f}x"
            peer_bits += f"{r['ours'] / p['peer']:>10.2f}x"
        else:
            peer_bits = f"{'-':>9}{'-':>8}{'-':>11}"
        print(
            f"{label + ' -> ' + r['format']:<28}{r['ours']:>8.3f}s{r['ours'] / r['floor']:>7.2f}x"
            f"{peer_bits}  {r['check']}"
        )
    for n in notes:
        print("note: " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
