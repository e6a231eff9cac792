"""Load test: many clients reading runs through tiled, from two servers.

The same runs are served two ways, one after the other, in the same run:

* **ours**: ``intake-bluesky serve`` of a JSONL folder (several uvicorn
  workers, an api key), the detector frames read from their HDF5 files by
  intake-bluesky-hdf5;
* **tiled**: tiled's own SQL catalog of the same documents written by
  bluesky-tiled-plugins' ``TiledWriter`` (SQLite catalog, event tables in an
  embedded SQLite storage, the HDF5 files registered in place), served by
  ``uvicorn --factory tiled.server.app:app_factory`` with the same number of
  workers and an api key.

Against each, ``--clients`` processes (16) use bluesky-tiled-plugins' client
(picked by the nodes' specs, as a user gets it) for ``--duration`` seconds
(60), each cycling through four operations:

* ``list``: the 20 newest runs with their metadata (``values()[-1:-21:-1]``);
* ``search``: ``Key("plan_name") == "scan"`` then ``Key("scan_id") >= n``:
  its length and first five uids, then ``client[scan_id]``;
* ``scalar``: ``client[uid]["primary"].read()`` of a scalar step scan;
* ``hdf5``: ``client[uid]["primary"].read()`` of a detector run (frames
  from an HDF5 file).

Reported per server: operations/s, HTTP requests/s, p50 and p99 latency of
each operation, errors (HTTP >= 400 or exceptions; must be 0) and requests
that got no answer and were retried by the client. Before the
load, one scalar and one HDF5 run read from both servers are checked equal.

Usage::

    python benchmarks/bench_serve.py [--duration 60] [--clients 16] [--workers 4]
        [--quick] [--only ours|tiled] [--json OUT]

``--quick`` makes small runs and a 10 s load (a smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

OPERATIONS = ("list", "search", "scalar", "hdf5")
#: The container of runs in tiled's SQL catalog.
TILED_CONTAINER = "raw"
SHAPE = (256, 256)


# ------------------------------------------------------------------ workload
def scalar_run(i: int, n_events: int) -> list:
    """A step scan: ``motor``, ``det``, ``det2`` in ``primary`` (events), a
    two-reading ``baseline``, configuration of ``det``."""
    import event_model

    t0 = 1_700_000_000.0 + 1000 * i
    run = event_model.compose_run(
        time=t0,
        metadata={
            "scan_id": i + 1,
            "plan_name": "scan" if i % 2 == 0 else "count",
            "sample": ["Cu", "Fe", "Ni", "Au"][i % 4],
            "operator": "bench",
        },
    )
    keys = {
        "motor": {"source": "sim", "dtype": "number", "shape": []},
        "det": {"source": "sim", "dtype": "number", "shape": [], "units": "counts"},
        "det2": {"source": "sim", "dtype": "integer", "shape": []},
    }
    config = {
        "det": {
            "data": {"det_gain": 2.0},
            "timestamps": {"det_gain": t0},
            "data_keys": {"det_gain": {"source": "sim", "dtype": "number", "shape": []}},
        }
    }
    primary = run.compose_descriptor(
        name="primary",
        data_keys=keys,
        configuration=config,
        object_keys={"motor": ["motor"], "det": ["det", "det2"]},
        time=t0 + 0.1,
    )
    base = run.compose_descriptor(
        name="baseline",
        data_keys={"temp": {"source": "sim", "dtype": "number", "shape": []}},
        object_keys={"temp": ["temp"]},
        time=t0 + 0.05,
    )
    docs = [("start", run.start_doc), ("descriptor", base.descriptor_doc)]
    docs.append(("descriptor", primary.descriptor_doc))
    docs.append(
        ("event", base.compose_event(data={"temp": 20.0}, timestamps={"temp": t0}, seq_num=1))
    )
    rng = np.random.default_rng(i)
    for n in range(n_events):
        t = t0 + 0.2 + 0.01 * n
        docs.append(
            (
                "event",
                primary.compose_event(
                    data={
                        "motor": n * 0.1,
                        "det": float(rng.normal(100, 10)),
                        "det2": int(rng.integers(0, 1000)),
                    },
                    timestamps={"motor": t, "det": t, "det2": t},
                    seq_num=n + 1,
                    time=t,
                ),
            )
        )
    t_end = t0 + 0.3 + 0.01 * n_events
    docs.append(
        (
            "event",
            base.compose_event(
                data={"temp": 20.5}, timestamps={"temp": t_end}, seq_num=2, time=t_end
            ),
        )
    )
    docs.append(("stop", run.compose_stop(time=t_end + 0.1)))
    return docs


def hdf5_run(i: int, n_frames: int, h5_dir: Path) -> list:
    """A detector run as ophyd-async writes it: no events, ``bdet`` frames
    and ``bdet-sum`` in one SWMR HDF5 file, two stream_datums per key."""
    import event_model
    import h5py

    path = h5_dir / f"det_{i:03d}.h5"
    rng = np.random.default_rng(1000 + i)
    frames = rng.integers(0, 4096, size=(n_frames, *SHAPE), dtype="<u2")
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(
            "/entry/data/data", data=frames, chunks=(1, *SHAPE), maxshape=(None, *SHAPE)
        )
        f.create_dataset("/entry/sum", data=frames.reshape(n_frames, -1).sum(axis=1).astype("<i8"))
    t0 = 1_700_500_000.0 + 1000 * i
    run = event_model.compose_run(
        time=t0, metadata={"scan_id": 1000 + i, "plan_name": "fly", "detectors": ["bdet"]}
    )
    desc = run.compose_descriptor(
        name="primary",
        time=t0 + 0.5,
        data_keys={
            "bdet": {
                "source": "bench",
                "shape": [1, *SHAPE],
                "dtype": "array",
                "dtype_numpy": "<u2",
                "external": "STREAM:",
            },
            "bdet-sum": {
                "source": "bench",
                "shape": [1],
                "dtype": "number",
                "dtype_numpy": "<i8",
                "external": "STREAM:",
            },
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    bundles = []
    for key, dataset, chunks in (
        ("bdet", "/entry/data/data", [1, *SHAPE]),
        ("bdet-sum", "/entry/sum", [n_frames]),
    ):
        bundle = run.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{path}",
            data_key=key,
            parameters={"dataset": dataset, "chunk_shape": chunks},
        )
        docs.append(("stream_resource", bundle.stream_resource_doc))
        bundles.append(bundle)
    half = n_frames // 2
    for start, stop in ((0, half), (half, n_frames)):
        for bundle in bundles:
            docs.append(
                (
                    "stream_datum",
                    bundle.compose_stream_datum(
                        indices={"start": start, "stop": stop},
                        seq_nums={"start": start + 1, "stop": stop + 1},
                        descriptor=desc.descriptor_doc,
                    ),
                )
            )
    docs.append(("stop", run.compose_stop(time=t0 + 10)))
    return docs


def make_workload(root: Path, quick: bool, log=print) -> dict:
    """The runs as a JSONL folder, and the same documents in a tiled SQL
    catalog written by TiledWriter."""
    n_scalar, n_events = (8, 50) if quick else (40, 200)
    n_hdf5, n_frames = (2, 10) if quick else (8, 40)
    h5_dir = root / "h5"
    h5_dir.mkdir(parents=True)
    runs = [scalar_run(i, n_events) for i in range(n_scalar)]
    runs += [hdf5_run(i, n_frames, h5_dir) for i in range(n_hdf5)]
    # A JSON store keeps tuples as lists: both servers get these documents.
    runs = [json.loads(json.dumps(docs)) for docs in runs]
    jsonl = root / "jsonl"
    jsonl.mkdir()
    for docs in runs:
        lines = "".join(json.dumps([name, doc]) + "\n" for name, doc in docs)
        (jsonl / f"{docs[0][1]['uid']}.jsonl").write_text(lines)
    log(f"writing {len(runs)} runs into tiled's SQL catalog with TiledWriter")
    t0 = time.perf_counter()
    write_tiled_catalog(root / "tiled", h5_dir, runs)
    return {
        "jsonl": str(jsonl),
        "tiled": str(root / "tiled"),
        "h5": str(h5_dir),
        "scalar": [docs[0][1]["uid"] for docs in runs[:n_scalar]],
        "hdf5": [docs[0][1]["uid"] for docs in runs[n_scalar:]],
        "scan_ids": [docs[0][1]["scan_id"] for docs in runs[:n_scalar]],
        "sizes": {"scalar": [n_scalar, n_events], "hdf5": [n_hdf5, n_frames]},
        "tiled_writer_seconds": time.perf_counter() - t0,
    }


def _tiled_args(directory: Path, h5_dir: Path) -> dict:
    return {
        "uri": f"sqlite:///{directory / 'catalog.db'}",
        # Arrays in files, event tables in an embedded SQLite database.
        "writable_storage": [str(directory / "data"), f"sqlite:///{directory / 'tables.db'}"],
        "readable_storage": [str(h5_dir)],
    }


def write_tiled_catalog(directory: Path, h5_dir: Path, runs: list) -> None:
    from bluesky_tiled_plugins import TiledWriter
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app
    from tiled.structures.core import Spec

    directory.mkdir()
    catalog = from_uri(**_tiled_args(directory, h5_dir), init_if_not_exists=True)
    with Context.from_app(build_app(catalog)) as context:
        # A container of runs as facilities configure it (the spec picks
        # bluesky-tiled-plugins' catalog client: c[-1], c[scan_id]).
        client = from_context(context).create_container(
            key=TILED_CONTAINER, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")]
        )
        for docs in runs:
            writer = TiledWriter(client)
            for name, doc in docs:
                writer(name, doc)


# ------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ours(workload: dict, workers: int, key: str, log_path: Path):
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        "from intake_bluesky.core._cli.main import console_main; console_main()",
        "serve",
        workload["jsonl"],
        "--port",
        str(port),
        "--api-key",
        key,
        "--workers",
        str(workers),
    ]
    return _start(command, dict(os.environ), port, log_path)


def start_tiled(workload: dict, workers: int, key: str, log_path: Path):
    import yaml

    port = _free_port()
    config = Path(workload["tiled"]) / "config.yml"
    args = _tiled_args(Path(workload["tiled"]), Path(workload["h5"]))
    config.write_text(
        yaml.safe_dump(
            {
                "authentication": {"single_user_api_key": key},
                "trees": [{"path": "/", "tree": "catalog", "args": args}],
            }
        )
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tiled.server.app:app_factory",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "TILED_CONFIG": str(config)}
    return _start(command, env, port, log_path, f"/api/v1/metadata/{TILED_CONTAINER}")


def _start(command: list, env: dict, port: int, log_path: Path, path: str = ""):
    import httpx

    log = open(log_path, "w")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url + path
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -------------------------------------------------------------------- clients
def client_for(url: str, key: str):
    """bluesky-tiled-plugins' client (by spec) of the runs at ``url``,
    counting HTTP responses."""
    from tiled.client import from_uri

    client = from_uri(url, api_key=key)
    counts = {"sent": 0, "requests": 0, "http_errors": 0}

    def sent(request):
        counts["sent"] += 1

    def count(response):
        counts["requests"] += 1
        if response.status_code >= 400:
            counts["http_errors"] += 1

    hooks = client.context.http_client.event_hooks
    hooks["request"].append(sent)
    hooks["response"].append(count)
    return client, counts


def operation(client, kind: str, workload: dict, rng: random.Random) -> None:
    from tiled.queries import Key

    if kind == "list":
        n = min(20, len(workload["scalar"]) + len(workload["hdf5"]))
        runs = client.values()[-1 : -n - 1 : -1]
        assert len(runs) == n and all("start" in r.metadata for r in runs)
    elif kind == "search":
        n = rng.choice(workload["scan_ids"])
        found = client.search(Key("plan_name") == "scan").search(Key("scan_id") >= n)
        assert len(found) >= 0
        list(found.keys()[:5])
        assert client[n].start["scan_id"] == n
    elif kind == "scalar":
        ds = client[rng.choice(workload["scalar"])]["primary"].read()
        assert ds["det"].size == workload["sizes"]["scalar"][1]
    else:
        ds = client[rng.choice(workload["hdf5"])]["primary"].read()
        assert ds["bdet"].shape[0] == workload["sizes"]["hdf5"][1]


#: Set in each client process: all clients start the timed load together.
_BARRIER = None


def _init_client(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def client_process(args) -> dict:
    """One client: warms up, waits for the others, then cycles through the
    operations for ``duration`` seconds; returns its latencies and errors."""
    url, key, workload, seed, duration = args
    client, counts = client_for(url, key)
    rng = random.Random(seed)
    for kind in OPERATIONS:  # warm up (imports, first connections): not timed
        operation(client, kind, workload, rng)
    warm = dict(counts)
    assert _BARRIER is not None
    _BARRIER.wait()
    began = time.time()
    latencies: dict[str, list[float]] = {kind: [] for kind in OPERATIONS}
    errors: list[str] = []
    i = seed
    while time.time() < began + duration:
        kind = OPERATIONS[i % len(OPERATIONS)]
        i += 1
        t0 = time.perf_counter()
        try:
            operation(client, kind, workload, rng)
        except Exception as err:  # counted, reported
            errors.append(f"{kind}: {err!r}"[:300])
            continue
        latencies[kind].append(time.perf_counter() - t0)
    return {
        "latencies": latencies,
        "errors": errors,
        "requests": counts["requests"] - warm["requests"],
        "http_errors": counts["http_errors"] - warm["http_errors"],
        # Requests sent that got no response (the client retried them).
        "unanswered": (counts["sent"] - counts["requests"]) - (warm["sent"] - warm["requests"]),
        "began": began,
        "ended": time.time(),
    }


def load(url: str, key: str, workload: dict, clients: int, duration: float) -> dict:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    jobs = [(url, key, workload, seed, duration) for seed in range(clients)]
    with context.Pool(clients, initializer=_init_client, initargs=(barrier,)) as pool:
        results = pool.map(client_process, jobs)
    # From the first client's start to the last one's end (an operation
    # running at the deadline finishes).
    elapsed = max(r["ended"] for r in results) - min(r["began"] for r in results)
    latencies = {k: [x for r in results for x in r["latencies"][k]] for k in OPERATIONS}
    every = [x for k in OPERATIONS for x in latencies[k]]
    errors = [e for r in results for e in r["errors"]]
    http_errors = sum(r["http_errors"] for r in results)
    requests = sum(r["requests"] for r in results)
    return {
        "operations": len(every),
        "ops_per_s": len(every) / elapsed,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "errors": len(errors) + http_errors,
        "unanswered": sum(r["unanswered"] for r in results),
        "error_samples": errors[:5],
        "p50": _quantile(every, 0.5),
        "p99": _quantile(every, 0.99),
        "by_operation": {
            k: {"n": len(v), "p50": _quantile(v, 0.5), "p99": _quantile(v, 0.99)}
            for k, v in latencies.items()
        },
        "elapsed": elapsed,
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def check_same(urls: dict, key: str, workload: dict) -> str:
    """One scalar and one HDF5 run read from each server: equal values."""
    reads = {}
    for name, url in urls.items():
        client, _ = client_for(url, key)
        reads[name] = [
            client[workload["scalar"][0]]["primary"].read(),
            client[workload["hdf5"][0]]["primary"].read(),
        ]
    if len(reads) < 2:
        return "one server only"
    (a, b) = reads.values()
    for ours, theirs in zip(a, b, strict=True):
        for field in ("det", "det2", "motor", "bdet", "bdet-sum"):
            if field in ours and not np.array_equal(
                np.asarray(ours[field]).ravel(), np.asarray(theirs[field]).ravel()
            ):
                return f"VALUES DIFFER ({field})"
    return "ok"


# ----------------------------------------------------------------------- main
def markdown(result: dict) -> str:
    lines = [
        "| server | workers | clients | ops/s | HTTP req/s | p50 | p99 | errors | retried |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["servers"].values():
        lines.append(
            f"| {row['label']} | {result['workers']} | {result['clients']} | "
            f"{row['ops_per_s']:.1f} | {row['requests_per_s']:.1f} | "
            f"{row['p50'] * 1000:.0f} ms | {row['p99'] * 1000:.0f} ms | {row['errors']} | "
            f"{row['unanswered']} |"
        )
    lines += ["", "| operation | " + " | ".join(result["servers"]) + " |"]
    lines.append("|---|" + "---|" * len(result["servers"]))
    for kind in OPERATIONS:
        cells = []
        for row in result["servers"].values():
            op = row["by_operation"][kind]
            cells.append(
                f"{op['n']} ops, p50 {op['p50'] * 1000:.0f} ms, p99 {op['p99'] * 1000:.0f} ms"
            )
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds of load (60)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="small runs, 10 s of load")
    parser.add_argument("--only", choices=["ours", "tiled"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 60.0)
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        workload = make_workload(root, args.quick)
        servers = {
            "ours": ("intake-bluesky serve (JSONL folder)", start_ours),
            "tiled": ("tiled SQL catalog (TiledWriter)", start_tiled),
        }
        if args.only:
            servers = {args.only: servers[args.only]}
        result: dict = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
            "duration": duration,
            "clients": args.clients,
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "workload": {k: workload[k] for k in ("sizes", "tiled_writer_seconds")},
            "servers": {},
        }
        started = {}
        try:
            for name, (_, start) in servers.items():
                started[name] = start(workload, args.workers, key, root / f"{name}.log")
            result["check"] = check_same({n: u for n, (_, u) in started.items()}, key, workload)
            print(f"values read from both servers: {result['check']}", flush=True)
            for name, (label, _) in servers.items():
                print(f"load on {label}: {args.clients} clients, {duration:.0f} s", flush=True)
                # Only the server under load runs (the other is paused).
                for other, (process, _) in started.items():
                    os.killpg(process.pid, signal.SIGCONT if other == name else signal.SIGSTOP)
                row = load(started[name][1], key, workload, args.clients, duration)
                row["label"] = label
                result["servers"][name] = row
        finally:
            for process, _ in started.values():
                os.killpg(process.pid, signal.SIGCONT)
                stop(process)
    print(markdown(result))
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.json or RESULTS_DIR / f"serve-{stamp}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"written to {out}")
    errors = sum(row["errors"] for row in result["servers"].values())
    return 1 if errors or result["check"].startswith("VALUES") else 0


if __name__ == "__main__":
    sys.exit(main())
