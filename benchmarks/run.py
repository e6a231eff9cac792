"""Run the intake-bluesky benchmarks and print every figure as a ratio.

Each figure is reported as a ratio to its *floor* (what any reader must pay
for the same result, measured here on the same files) and to databroker 1.2.5
measured in the same run on the same files (in its own environment, through
``_anchor.py``). See README.md for what is measured and what each floor is.

Usage::

    python benchmarks/run.py [--anchor-python PATH] [--quick] [--only BACKEND ...]

``nox -s bench`` builds both environments and runs this.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import _suite  # noqa: E402
import bench_mongo  # noqa: E402
from _handlers import SPEC, NpySeqHandler  # noqa: E402

RESULTS_DIR = HERE / "results"

MODULES = {
    "jsonl": "intake_bluesky.jsonl",
    "msgpack": "intake_bluesky.msgpack",
    "mongo_normalized": "intake_bluesky.mongo",
    "mongo_embedded": "intake_bluesky.mongo",
    "tiff": "intake_bluesky.tiff",
}


class Backend:
    """intake-bluesky's catalog of one backend over the workloads."""

    def __init__(self, name: str, root: Path, manifest: dict):
        self.name = name
        self.root = root
        self.m = manifest
        self.mod = importlib.import_module(MODULES[name])
        self.common = {
            "handler_registry": {SPEC: NpySeqHandler},
            "root_map": {C.NPY_ROOT_STORED: str(root / "npy")},
        }

    def empty(self, directory: str):
        """A catalog over an empty directory (to warm imports up)."""
        return {
            "jsonl": lambda: self.mod.BlueskyJSONLCatalog(directory),
            "msgpack": lambda: self.mod.BlueskyMsgpackCatalog(directory),
            "tiff": lambda: self.mod.BlueskyTiffCatalog(directory),
        }[self.name]()

    def catalog(self, workload: str):
        kind = _suite.KIND_OF[self.name]
        if kind == "file":
            cls = (
                self.mod.BlueskyJSONLCatalog
                if self.name == "jsonl"
                else self.mod.BlueskyMsgpackCatalog
            )
            return cls(str(self.root / self.name / self.m["dirs"][workload]), **self.common)
        if kind == "mongo":
            dbs = C.load_mongo(self.root)
            which = "small" if workload == "small" else "big"
            if self.name == "mongo_normalized":
                return self.mod.BlueskyMongoCatalog(
                    dbs[f"{which}_mds"], dbs[f"{which}_assets"], **self.common
                )
            return self.mod.BlueskyMongoEmbeddedCatalog(dbs[f"{which}_embedded"], **self.common)
        tiff = self.m["tiff"]
        if workload == "bucket":
            return self.mod.BlueskyTiffCatalog(str(self.root / tiff["bucket"]))
        if workload == "bucket_series":
            return self.mod.BlueskyTiffCatalog(str(self.root / tiff["bucket"]), group_by="series")
        if workload == "series":
            return self.mod.BlueskyTiffCatalog(str(self.root / tiff["series"]))
        raise _suite.Unsupported(workload)


def make_backends(root: Path, manifest: dict, names=_suite.BACKENDS, notes=None) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = Backend(name, root, manifest)
        except Exception as e:  # ImportError, or a package broken mid-development
            if notes is not None:
                notes.append(f"{name}: skipped, {MODULES[name]} does not import ({e})")
    return out


# --------------------------------------------------------------------------
# The databroker 1.2.5 side
# --------------------------------------------------------------------------


def run_anchor(python: str, root: Path, names: list[str], reps: int, timeout: float, notes):
    """Run ``_anchor.py`` with databroker's Python; its rows (possibly partial)."""
    try:
        check = subprocess.run(
            [python, "-c", "import databroker, sys; print(databroker.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"databroker rows skipped: {python} does not run ({e})")
        return {}, {}
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        notes.append(f"databroker rows skipped: `{python}` cannot import databroker ({last})")
        return {}, {}
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as out:
        out_path = out.name
    cmd = [
        python,
        str(HERE / "_anchor.py"),
        "--workloads",
        str(root),
        "--out",
        out_path,
        "--reps",
        str(reps),
        "--only",
        *names,
    ]
    print(f"\ndatabroker {check.stdout.strip()} side: {' '.join(cmd)}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            notes.append(f"databroker side exited with {proc.returncode}; its rows may be partial")
    except subprocess.TimeoutExpired:
        notes.append(f"databroker side stopped after {timeout:.0f} s; its rows are partial")
    print(f"databroker side took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows, header = {}, {}
    with open(out_path) as f:
        for line in f:
            rec = json.loads(line)
            if "header" in rec:
                header = rec["header"]
            else:
                rows[(rec["backend"], rec["bench"])] = rec
    os.unlink(out_path)
    return rows, header


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------


def fmt_value(v, unit):
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if v < 1e-3:
        return f"{v * 1e6:.0f} us"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def _si(n) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return f"{n:.0f}"


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    if r >= 0.1:
        return f"{r:.2f}"
    return f"{r:.3f}"


def merge(rows: list[dict], anchor: dict) -> None:
    for row in rows:
        a = anchor.get((row["backend"], row["bench"]))
        row["db"] = a["value"] if a else None
        row["db_floor"] = a.get("floor") if a else None
        row["db_extra"] = a.get("extra") if a else None
        row["db_note"] = (a.get("skipped") or a.get("error")) if a else None
        expected = (row.get("floor_extra") or {}).get("found")
        got = (row["db_extra"] or {}).get("found")
        if expected is not None and got is not None and got != expected:
            # A fast wrong answer is not a comparison.
            row["db_wrong"] = f"db found {got} runs, not {expected}"
        v, f, d, df = row["value"], row["floor"], row["db"], row["db_floor"]
        row["to_floor"] = v / f if v is not None and f else None
        row["to_db"] = None
        if v is not None and d and not row.get("db_wrong"):
            if _suite.KIND_OF[row["backend"]] == "mongo" and f and df:
                # Same-process ratios: each side against its own mongomock find.
                row["to_db"] = (v / f) / (d / df)
                row["to_db_normalized"] = True
            else:
                row["to_db"] = v / d


def note_of(row) -> str:
    e = row.get("extra") or {}
    bits = []
    if row.get("error"):
        return "ERROR " + row["error"]
    if row.get("skipped"):
        return "skipped: " + row["skipped"]
    if "found" in e:
        bits.append(f"{e['found']} found")
    if "note" in e:
        bits.append(e["note"])
    if "events_per_s" in e:
        bits.append(f"{_si(e['events_per_s'])} events/s in {e['docs']} docs")
    if "tasks" in e:
        bits.append(f"{e['tasks']} tasks")
    if "peak_mib" in e:
        bits.append(f"peak {e['peak_mib']:.1f} MiB for {e['nbytes_mib']:.1f}")
    if "all_headers_s" in (row.get("floor_extra") or {}):
        bits.append(f"every file's header: {fmt_value(row['floor_extra']['all_headers_s'], 's')}")
    if "runs" in e and row["kind"].startswith("open"):
        bits.append(f"{e['runs']} runs")
    if row.get("check", "ok") != "ok":
        bits.append(row["check"])
    if row.get("to_db_normalized"):
        bits.append("/db: same-process ratios")
    if row.get("db_wrong"):
        bits.append(row["db_wrong"] + " (wrong, no ratio)")
    if row.get("db_note") and row["db"] is None:
        bits.append(f"db: {row['db_note'][:60]}")
    elif row.get("db_extra") and row["db_extra"].get("timed"):
        bits.append("db timed once")
    return "; ".join(bits)


def markdown(result: dict) -> str:
    """A results JSON (``results/<stamp>.json``) as a Markdown table, for the README."""
    head = ["backend", "benchmark", "ours", "floor", "/floor", "db 1.2.5", "/db", "notes"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [
            r["backend"],
            r["label"],
            fmt_value(r["value"], r["unit"]),
            fmt_value(r["floor"], r["unit"]),
            fmt_ratio(r["to_floor"]),
            fmt_value(r.get("db"), r["unit"]),
            fmt_ratio(r.get("to_db")),
            note_of(r).replace("|", "/"),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    head = ["backend", "benchmark", "ours", "floor", "/floor", "db 1.2.5", "/db", "notes"]
    lines = []
    for r in rows:
        lines.append(
            [
                r["backend"],
                r["label"],
                fmt_value(r["value"], r["unit"]),
                fmt_value(r["floor"], r["unit"]),
                fmt_ratio(r["to_floor"]),
                fmt_value(r["db"], r["unit"]),
                fmt_ratio(r["to_db"]),
                note_of(r),
            ]
        )
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head) - 1)]
    out = []
    for i, line in enumerate([head, *lines]):
        cells = [
            str(c).ljust(w) if j < 2 else str(c).rjust(w)
            for j, (c, w) in enumerate(zip(line, widths))
        ]
        out.append("  ".join(cells) + "  " + line[-1])
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    return "\n".join(out)


# --------------------------------------------------------------------------


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _suite.probe_entry(argv, make_backends):
        return 0
    if "--table" in argv:  # the table of runs only (bench_table.py)
        return importlib.import_module("bench_table").main([a for a in argv if a != "--table"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor-python", help="python of an environment with databroker 1.2.5")
    parser.add_argument("--quick", action="store_true", help="small workloads (smoke run)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*_suite.BACKENDS, bench_mongo.NAME],
        metavar="BACKEND",
        help=f"only these backends ({', '.join([*_suite.BACKENDS, bench_mongo.NAME])})",
    )
    parser.add_argument("--reps", type=int, default=3, help="best of N (default 3)")
    parser.add_argument(
        "--anchor-timeout",
        type=float,
        default=2400.0,
        help="stop the databroker side after this many seconds",
    )
    parser.add_argument("--regenerate", action="store_true", help="rewrite the workloads")
    parser.add_argument("--files", type=int, metavar="N", help="only bench_files.py, N run files")
    parser.add_argument("--tiled-python", help="python with tiled (bench_stream.py's peer)")
    parser.add_argument(
        "--markdown",
        metavar="RESULTS_JSON",
        help="only print that results file as a Markdown table",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0

    import bench_files
    import workloads

    if args.files:
        return bench_files.main(["--n", str(args.files), "--reps", str(args.reps)])
    # The suite's rows measure the in-memory index; bench_files the on-disk one.
    os.environ["INTAKE_BLUESKY_INDEX"] = "off"
    size = "quick" if args.quick else "full"
    root, manifest = workloads.ensure(
        size, force=args.regenerate, log=lambda s: print(s, file=sys.stderr)
    )
    names = args.only or [*_suite.BACKENDS, bench_mongo.NAME]
    server_rows = bench_mongo.NAME in names
    names = [n for n in names if n != bench_mongo.NAME]
    notes: list[str] = []
    backends = make_backends(root, manifest, names, notes)
    machine = C.machine_info()
    ours_versions = C.versions(
        "intake-bluesky-core",
        "intake-bluesky-jsonl",
        "intake-bluesky-msgpack",
        "intake-bluesky-mongo",
        "intake-bluesky-tiff",
        "intake",
        "xarray",
        "dask",
        "numpy",
        "orjson",
        "msgpack",
        "mongomock",
        "tifffile",
        "event-model",
    )
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), file=sys.stderr)
    for n in notes:
        print("note: " + n, file=sys.stderr)

    t0 = time.perf_counter()
    print(f"\nintake-bluesky side ({size} workloads, best of {args.reps}):", file=sys.stderr)
    suite = _suite.Suite(
        root,
        manifest,
        backends,
        str(Path(__file__).resolve()),
        reps=args.reps,
        floors="all",
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    rows = list(suite.run(names))
    if "jsonl" in names:
        rows += bench_files.rows(
            2_000 if args.quick else 100_000, args.reps, log=lambda s: print(s, file=sys.stderr)
        )
    t_ours = time.perf_counter() - t0

    anchor_rows, anchor_header = {}, {}
    if args.anchor_python and names:
        anchor_rows, anchor_header = run_anchor(
            args.anchor_python, root, names, args.reps, args.anchor_timeout, notes
        )
    elif not args.anchor_python:
        notes.append("databroker rows skipped: no --anchor-python given")
    merge(rows, anchor_rows)
    if server_rows:
        log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        rows += bench_mongo.run(root, manifest, size, args.reps, args.anchor_python, notes, log)

    for r in rows:
        if r.get("error"):
            notes.append(f"{r['backend']} {r['bench']}: {r['error']}")
        if r.get("check", "ok") != "ok":
            notes.append(
                f"{r['backend']} {r['bench']}: values differ from the floor's: {r['check']}"
            )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = {
        "timestamp": stamp,
        "size": size,
        "reps": args.reps,
        "machine": machine,
        "versions": ours_versions,
        "anchor": anchor_header,
        "workloads": manifest["params"],
        "seconds": {"ours": round(t_ours, 1), "total": round(time.perf_counter() - t0, 1)},
        "notes": notes,
        "rows": rows,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=1, default=str))

    print()
    print(f"intake-bluesky benchmarks ({size} workloads), {stamp}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    print("ours: " + ", ".join(f"{k} {v}" for k, v in ours_versions.items()))
    if anchor_header:
        print(
            "databroker side: "
            + ", ".join(f"{k} {v}" for k, v in anchor_header.get("versions", {}).items())
        )
    print(
        "times: best of N wall seconds; /floor = ours / floor; /db = ours / databroker 1.2.5 "
        "(< 1: faster); memory rows: peak RSS growth during read() / Dataset nbytes"
    )
    print()
    print(table(rows))
    print()
    for n in notes:
        print("note: " + n)
    print(f"\nwritten {out} ({time.perf_counter() - t0:.0f} s)")
    if not args.only:  # stream data rows: bench_stream.py (runnable alone too)
        import bench_stream

        peer = ["--tiled-python", args.tiled_python] if args.tiled_python else []
        bench_stream.main([*(["--quick"] if args.quick else []), "--reps", str(args.reps), *peer])
        import bench_export  # export rows: bench_export.py (runnable alone too)

        anchor = ["--anchor-python", args.anchor_python] if args.anchor_python else []
        bench_export.main(
            [*(["--quick"] if args.quick else []), "--reps", str(args.reps), *anchor]
        )
        import bench_nexus  # NeXus export rows: bench_nexus.py (runnable alone too)

        bench_nexus.main([*(["--quick"] if args.quick else []), "--reps", str(args.reps)])
        import bench_tiled  # runs kept in tiled: bench_tiled.py (runnable alone too)

        bench_tiled.main([*(["--quick"] if args.quick else []), "--reps", str(args.reps)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
