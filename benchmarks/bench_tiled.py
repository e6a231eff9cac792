"""tiled benchmarks: BlueskyTiledCatalog against tiled's own client, one server.

One tiled server (``tiled serve catalog``: SQLite catalog, arrays in a
folder, event tables in DuckDB, an api key) runs over real HTTP in a process
of its own, so both clients pay the same HTTP costs; bluesky-tiled-plugins'
``TiledWriter`` (default batch size) fills it with:

* a 100,000-event scalar run (``workloads.scalar_run``: 3 float64 and 1
  int64 fields, event pages of 1,000 rows; ``--quick``: 5,000 events);
* the fly scan of ``bench_stream.py``: 1,000 frames of 512x512 uint16 in an
  HDF5 file written as ophyd-async detectors write it (SWMR, chunks of one
  frame), registered through stream_resource/stream_datum documents, no
  events (``--quick``: 100 frames);
* 200 small runs (``workloads.small_runs``) in a container of their own, for
  searches and lookups.

Rows, each a median of interleaved repeats (ours, the peer and the floor
called in turn, so load from other processes hits all alike):

* ``read()`` of the scalar stream: ``BlueskyTiledCatalog(uri)[uid].primary
  .read()`` vs tiled's client ``from_uri(uri)[uid]["primary"].read()``; floors:
  the event table fetched once over HTTP as Arrow and turned into numpy
  columns, and orjson decoding the same documents as JSONL plus columns;
* ``read()`` of the fly scan with ``data_access="direct"`` (the registered
  file read by intake-bluesky-hdf5) and ``"http"`` (rows through tiled's
  array endpoint) vs tiled's client reading the same stream (and its ``bdet``
  array alone); floor: h5py reading both datasets;
* searches and lookups on an open catalog / client: ``search`` on
  ``plan_name``, ``cat[-1]``, ``search`` on ``scan_id``, ``cat[scan_id]``, vs
  bluesky-tiled-plugins' ``CatalogOfBlueskyRuns`` (``Key``, ``ScanID``,
  ``client[-1]``, ``client[scan_id]``).

Every result is checked against the floor's values (dtypes included) or the
runs the in-memory search finds.

Usage::

    python benchmarks/bench_tiled.py [--quick] [--reps N] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

RESULTS_DIR = HERE / "results"
#: The container of the two big runs and the one of the small runs.
DATA, RUNS = "data", "raw"
N_RUNS = 200


# ------------------------------------------------------------------ server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(base: Path, readable: Path, key: str, log) -> tuple[subprocess.Popen, str]:
    """``tiled serve catalog`` in its own process; its root URI."""
    port = _free_port()
    command = [
        sys.executable, "-m", "tiled", "serve", "catalog", str(base / "catalog.db"), "--init",
        "-w", str(base / "data"), "-w", f"duckdb:///{base / 'tables.duckdb'}",
        "-r", str(readable), "--api-key", key, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_file = open(base / "server.log", "wb")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    "tiled serve did not start: " + (base / "server.log").read_text()[-2000:]
                ) from None
            time.sleep(0.1)
    log(f"tiled server on port {port} (pid {process.pid})")
    return process, f"http://127.0.0.1:{port}/api/v1/metadata/"


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ------------------------------------------------------------------ writing
def write(container: Any, docs) -> float:
    from bluesky_tiled_plugins import TiledWriter

    t0 = time.perf_counter()
    writer = TiledWriter(container)
    for name, doc in docs:
        writer(name, doc)
    return time.perf_counter() - t0


def fill(uri: str, key: str, tmp: Path, quick: bool, log) -> dict:
    """Write the three workloads; what the rows need to find and check them."""
    import bench_stream
    import orjson
    import workloads
    from tiled.client import from_uri
    from tiled.structures.core import Spec

    root = from_uri(uri, api_key=key)
    spec = [Spec("CatalogOfBlueskyRuns", version="3.0")]
    data = root.create_container(key=DATA, specs=spec)
    runs = root.create_container(key=RUNS, specs=spec)
    out: dict = {}

    n_events = 5_000 if quick else 100_000
    docs = list(workloads.scalar_run(n_events, 1_000))
    jsonl = tmp / "scalar.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps([n, d]) + b"\n" for n, d in docs))
    took = write(data, docs)
    out["scalar"] = {"uid": docs[0][1]["uid"], "events": n_events, "jsonl": str(jsonl)}
    log(f"  scalar run: {n_events} events written in {took:.1f} s")

    stream_root, manifest = bench_stream.ensure_workload(quick, log)
    h5dir = str((stream_root / "h5").resolve())
    fly = json.loads((stream_root / "documents.json").read_text())
    for _, doc in fly:  # tiled has no root_map: the URIs name the file itself
        if "uri" in doc:
            doc["uri"] = doc["uri"].replace(bench_stream.STORED_ROOT, h5dir)
    took = write(data, fly)
    out["fly"] = {"uid": manifest["uid"], "file": manifest["file"], "frames": manifest["frames"]}
    log(f"  fly scan: {manifest['frames']} frames registered in {took:.1f} s")

    n_runs = 40 if quick else N_RUNS
    t0 = time.perf_counter()
    starts = []
    for run_docs in workloads.small_runs(n_runs, 5):
        write(runs, run_docs)
        starts.append(run_docs[0][1])
    log(f"  {n_runs} small runs written in {time.perf_counter() - t0:.1f} s")
    out["starts"] = starts
    return out


# ------------------------------------------------------------------ timing
def interleaved(fns: dict, checks: dict, reps: int) -> dict:
    """Median time of each callable, called round by round in turn; results
    checked (``checks[name](result)``) on the first round."""
    times: dict = {name: [] for name in fns}
    ok: dict = dict.fromkeys(fns, "ok")
    for round_ in range(max(1, reps)):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t0)
            if round_ == 0 and name in checks:
                ok[name] = checks[name](result)
            del result
    return {name: (statistics.median(times[name]), ok[name]) for name in fns}


def _same(got: Any, want: np.ndarray) -> bool:
    got = np.asarray(got)
    return (
        got.dtype == want.dtype
        and got.size == want.size
        and np.array_equal(got.reshape(want.shape), want)
    )


def _verdict(checks: list[tuple[str, bool]]) -> str:
    bad = [name for name, good in checks if not good]
    return "ok" if not bad else "VALUES DIFFER: " + ", ".join(bad)


# ------------------------------------------------------------------ rows
def scalar_rows(uri: str, key: str, info: dict, reps: int, log) -> list[dict]:
    import httpx
    import pyarrow as pa
    from _tiled_peer import scalar_floor
    from tiled.client import from_uri

    from intake_bluesky.tiled import BlueskyTiledCatalog

    uid = info["scalar"]["uid"]
    truth = scalar_floor(Path(info["scalar"]["jsonl"]))
    server = uri.split("/api/v1/")[0]
    table_url = f"{server}/api/v1/table/full/{DATA}/{uid}/primary/internal"
    http = httpx.Client(headers={"Authorization": f"Apikey {key}"}, timeout=120)

    def arrow_floor():
        response = http.get(table_url, params={"format": "application/vnd.apache.arrow.file"})
        response.raise_for_status()
        table = pa.ipc.open_file(pa.py_buffer(response.content)).read_all()
        return {name: table.column(name).to_numpy() for name in table.column_names}

    def ours():
        return BlueskyTiledCatalog(uri + DATA, api_key=key)[uid].primary.read()

    def peer():
        return from_uri(uri + DATA, api_key=key)[uid]["primary"].read()

    def check(ds):
        return _verdict([(k, _same(ds[k].values, v)) for k, v in truth.items()])

    def check_floor(cols):
        return _verdict([(k, _same(cols[k], v)) for k, v in truth.items()])

    timed = interleaved(
        {
            "orjson": lambda: scalar_floor(Path(info["scalar"]["jsonl"])),
            "arrow": arrow_floor,
            "ours": ours,
            "peer": peer,
        },
        {"ours": check, "peer": check, "arrow": check_floor},
        reps,
    )
    http.close()
    n = info["scalar"]["events"]
    return [
        _row(
            f"read() {n:,}-event scalar stream",
            timed,
            "arrow",
            {"orjson floor": timed["orjson"][0], "/orjson": timed["ours"][0] / timed["orjson"][0]},
        )
    ]


def fly_rows(uri: str, key: str, info: dict, reps: int, log) -> list[dict]:
    import bench_stream
    from tiled.client import from_uri

    from intake_bluesky.tiled import BlueskyTiledCatalog

    uid, path = info["fly"]["uid"], info["fly"]["file"]
    frames, sums = bench_stream._floor(path)

    def ours(access):
        return lambda: BlueskyTiledCatalog(uri + DATA, api_key=key, data_access=access)[
            uid
        ].primary.read()

    def peer():
        return from_uri(uri + DATA, api_key=key)[uid]["primary"].read()

    def peer_array():
        return from_uri(uri + DATA, api_key=key)[uid]["primary"]["bdet"].read()

    def check(ds):
        return _verdict(
            [
                ("bdet", _same(ds["bdet"].values, frames)),
                ("bdet-sum", _same(ds["bdet-sum"].values, sums)),
            ]
        )

    timed = interleaved(
        {
            "h5py": lambda: bench_stream._floor(path),
            "direct": ours("direct"),
            "http": ours("http"),
            "peer": peer,
            "peer array": peer_array,
        },
        {
            "direct": check,
            "http": check,
            "peer": check,
            "peer array": lambda a: _verdict([("bdet", _same(a, frames))]),
        },
        reps,
    )
    n = info["fly"]["frames"]
    label = f"read() fly scan {n:,} x 512x512 u2"
    both = {"direct": timed["direct"], "http": timed["http"], "h5py": timed["h5py"]}
    array = {"peer array": timed["peer array"]}
    return [
        _row(
            f'{label}, data_access="direct"',
            {**both, "ours": both["direct"], "peer": timed["peer"]},
            "h5py",
            {},
        ),
        _row(
            f'{label}, data_access="http"',
            {**both, "ours": both["http"], "peer": timed["peer"]},
            "h5py",
            {},
        ),
        _row(
            "tiled's client: primary['bdet'].read() alone",
            {"ours": array["peer array"], "peer": timed["peer"], "h5py": timed["h5py"]},
            "h5py",
            {"note": "the peer column is its stream read(); ours is its array read"},
        ),
    ]


def search_rows(uri: str, key: str, info: dict, reps: int, log) -> list[dict]:
    from bluesky_tiled_plugins.queries import ScanID
    from tiled.client import from_uri
    from tiled.queries import Key

    from intake_bluesky.tiled import BlueskyTiledCatalog

    starts = info["starts"]
    plan = "scan"
    want_plan = sorted(s["uid"] for s in starts if s["plan_name"] == plan)
    want_7 = [s["uid"] for s in starts if s["scan_id"] == 7]
    newest = max(starts, key=lambda s: s["time"])["uid"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = BlueskyTiledCatalog(uri + RUNS, api_key=key)
        client = from_uri(uri + RUNS, api_key=key)
    assert type(client).__name__ == "CatalogOfBlueskyRuns", type(client)

    rows = []
    cases = [
        (
            f"search plan_name, {len(starts)} runs -> uids",
            lambda: list(cat.search({"plan_name": plan})),
            lambda: list(client.search(Key("plan_name") == plan)),
            want_plan,
        ),
        (
            f"search scan_id, {len(starts)} runs -> uids",
            lambda: list(cat.search({"scan_id": 7})),
            lambda: list(client.search(ScanID(7))),
            want_7,
        ),
        (
            "cat[-1].metadata['start']",
            lambda: [cat[-1].metadata["start"]["uid"]],
            lambda: [client[-1].metadata["start"]["uid"]],
            [newest],
        ),
        (
            "cat[7].metadata['start'] (scan_id)",
            lambda: [cat[7].metadata["start"]["uid"]],
            lambda: [client[7].metadata["start"]["uid"]],
            want_7,
        ),
    ]
    for label, ours, peer, want in cases:
        timed = interleaved(
            {"ours": ours, "peer": peer},
            {
                "ours": lambda f, w=want: (
                    "ok" if sorted(f) == sorted(w) else f"ours found {f[:3]}"
                ),
                "peer": lambda f, w=want: (
                    "ok" if sorted(f) == sorted(w) else f"peer found {f[:3]}"
                ),
            },
            max(reps, 7),
        )
        rows.append(_row(label, timed, None, {"found": len(want)}))
    return rows


def _row(label: str, timed: dict, floor: str | None, extra: dict) -> dict:
    value, ok = timed["ours"]
    peer, peer_ok = timed["peer"]
    f = timed[floor][0] if floor else None
    checks = [c for c in (ok, peer_ok, timed[floor][1] if floor else "ok") if c != "ok"]
    return {
        "label": label,
        "ours": value,
        "peer": peer,
        "floor": f,
        "floor_name": floor,
        "to_floor": value / f if f else None,
        "peer_to_floor": peer / f if f else None,
        "to_peer": value / peer,
        "check": "; ".join(checks) or "ok",
        "extra": extra,
    }


# ------------------------------------------------------------------ output
def _t(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 1e-3:
        return f"{v * 1e6:.0f} us"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def _r(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(rows: list[dict]) -> str:
    head = [
        "benchmark",
        "ours",
        "tiled client",
        "floor",
        "ours/floor",
        "tiled/floor",
        "ours/tiled",
        "notes",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        notes = [] if r["check"] == "ok" else [r["check"]]
        e = r["extra"]
        if r["floor_name"]:
            notes.insert(0, f"floor: {r['floor_name']}")
        if "/orjson" in e:
            notes.append(f"orjson floor {_t(e['orjson floor'])}, ours/orjson {e['/orjson']:.2f}")
        if "found" in e:
            notes.append(f"{e['found']} found")
        if "note" in e:
            notes.append(e["note"])
        cells = [
            r["label"],
            _t(r["ours"]),
            _t(r["peer"]),
            _t(r["floor"]),
            _r(r["to_floor"]),
            _r(r["peer_to_floor"]),
            _r(r["to_peer"]),
            "; ".join(notes),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (smoke run)")
    parser.add_argument("--reps", type=int, default=5, help="median of N interleaved calls")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--only", nargs="+", choices=["scalar", "fly", "search"], help="only these rows"
    )
    args = parser.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        import bluesky_tiled_plugins  # noqa: F401
        import tiled.server  # noqa: F401

        import intake_bluesky.tiled  # noqa: F401
    except ImportError as err:
        print(f"tiled rows skipped: {err}")
        return 0
    import bench_stream
    from _common import machine_info, versions

    only = args.only or ["scalar", "fly", "search"]
    key = secrets.token_hex(16)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tiled-") as tmp_:
        tmp = Path(tmp_)
        stream_root, _ = bench_stream.ensure_workload(args.quick, log)
        process, uri = start_server(tmp, (stream_root / "h5").resolve(), key, log)
        try:
            log("writing through TiledWriter:")
            info = fill(uri, key, tmp, args.quick, log)
            rows: list[dict] = []
            for name, fn in (("scalar", scalar_rows), ("fly", fly_rows), ("search", search_rows)):
                if name in only:
                    log(f"{name} rows (median of {args.reps} interleaved calls)...")
                    new = fn(uri, key, info, args.reps, log)
                    for r in new:
                        ratio = f"ours/tiled {r['to_peer']:.2f}, /floor {_r(r['to_floor'])}"
                        log(f"  {r['label']}: {ratio}")
                    rows += new
        finally:
            stop_server(process)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = {
        "timestamp": stamp,
        "quick": args.quick,
        "reps": args.reps,
        "machine": machine_info(),
        "versions": versions(
            "intake-bluesky-tiled", "tiled", "bluesky-tiled-plugins", "h5py", "pyarrow", "httpx"
        ),
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = Path(args.json) if args.json else RESULTS_DIR / f"tiled-{stamp}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(
        "\ntiled: BlueskyTiledCatalog vs tiled's client on one tiled server over HTTP "
        f"({'quick' if args.quick else 'full'} workloads, "
        f"medians of {args.reps} interleaved calls)"
    )
    print(", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(markdown(rows))
    print(f"\nwritten {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
