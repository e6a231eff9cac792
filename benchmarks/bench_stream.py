"""Stream data benchmarks: an HDF5 fly scan as ophyd-async writes it.

Workload: a fly scan with no events, only ``stream_datum`` documents (10 of
them), over one HDF5 file written like an ophyd-async areaDetector: SWMR,
``libver='latest'``, ``/entry/data/data`` of 1,000 512x512 uint16 frames in
chunks of one frame, ``/entry/sum`` int64 in chunks of 1024 (``--quick``: 100
frames). Rows:

* ``read()`` of the stream (both keys) vs the floor, ``h5py`` opening the file
  and reading both datasets whole (DESIGN §6 target: 1.1x);
* ``to_dask().compute()`` vs the same floor, with the number of dask tasks;
* one frame of the lazy stream (fresh catalog, ``to_dask()['bdet'][i:i+1]``,
  compute) vs h5py opening the file and reading that frame;
* the peer: tiled with bluesky-tiled-plugins (``TiledWriter`` into an
  in-process tiled app over an embedded SQLite catalog) reading the same fly
  scan, run in its own environment (``--tiled-python``, built by
  ``nox -s bench`` like databroker's) through ``_tiled_peer.py``; and, when it
  runs, the 100,000-event scalar run of the other benchmarks against the
  orjson floor.

Usage::

    python benchmarks/bench_stream.py [--quick] [--reps N] [--tiled-python PATH]

``run.py`` runs it after its own rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

VERSION = 1
FRAMES = "/entry/data/data"
SUMS = "/entry/sum"
SHAPE = (512, 512)
#: Where the documents say the file is; ``root_map`` maps it to the workload.
STORED_ROOT = "/bench-data/h5"


def ensure_workload(quick: bool, log=print) -> tuple[Path, dict]:
    """The fly scan's file and documents (cached under ``.workloads/``)."""
    import event_model
    import h5py

    n_frames = 100 if quick else 1000
    root = C.WORKLOADS_DIR / f"stream-v{VERSION}-{'quick' if quick else 'full'}"
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        return root, json.loads(manifest_path.read_text())
    log(f"writing the stream workload ({n_frames} frames) in {root}")
    (root / "h5").mkdir(parents=True, exist_ok=True)
    path = root / "h5" / "fly.h5"
    rng = np.random.default_rng(11)
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            FRAMES, shape=(0, *SHAPE), maxshape=(None, *SHAPE), chunks=(1, *SHAPE), dtype="<u2"
        )
        total = f.create_dataset(SUMS, shape=(0,), maxshape=(None,), chunks=(1024,), dtype="<i8")
        f.swmr_mode = True
        batch = 100  # frames flushed per collect, as a flyer reports them
        for start in range(0, n_frames, batch):
            frames = rng.integers(0, 4096, size=(batch, *SHAPE), dtype="<u2")
            data.resize(start + batch, axis=0)
            data[start:] = frames
            total.resize(start + batch, axis=0)
            total[start:] = frames.reshape(batch, -1).sum(axis=1)
            data.flush()
            total.flush()
    run = event_model.compose_run(
        uid="bench-stream-fly", time=1_700_000_000.0, metadata={"scan_id": 1, "plan_name": "fly"}
    )
    docs = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="primary",
        time=1_700_000_000.5,
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
    docs.append(("descriptor", desc.descriptor_doc))
    bundles = []
    for key, dataset, chunk_shape in (("bdet", FRAMES, [1, *SHAPE]), ("bdet-sum", SUMS, [1024])):
        bundle = run.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{STORED_ROOT}/fly.h5",
            data_key=key,
            parameters={"dataset": dataset, "chunk_shape": chunk_shape},
        )
        docs.append(("stream_resource", bundle.stream_resource_doc))
        bundles.append(bundle)
    for start in range(0, n_frames, 100):
        for bundle in bundles:
            docs.append(
                (
                    "stream_datum",
                    bundle.compose_stream_datum(
                        indices={"start": start, "stop": start + 100},
                        seq_nums={"start": start + 1, "stop": start + 101},
                        descriptor=desc.descriptor_doc,
                    ),
                )
            )
    docs.append(("stop", run.compose_stop(time=1_700_000_100.0)))
    (root / "documents.json").write_text(json.dumps(docs))
    # The scalar run of the main workloads (same generator), for the peer's row.
    import workloads

    n_events = 5_000 if quick else 100_000
    scalar = workloads.write_jsonl(workloads.scalar_run(n_events, 1_000), root / "scalar")
    manifest = {
        "version": VERSION,
        "frames": n_frames,
        "uid": run.start_doc["uid"],
        "file": str(path),
        "nbytes": n_frames * int(np.prod(SHAPE)) * 2,
        "scalar": str(scalar),
        "scalar_events": n_events,
    }
    manifest_path.write_text(json.dumps(manifest))
    return root, manifest


def _floor(path: str):
    """h5py at its fastest: both datasets whole, straight into new arrays."""
    import h5py

    with h5py.File(path, "r", swmr=True, libver="latest") as f:
        out = []
        for name in (FRAMES, SUMS):
            dset = f[name]
            array = np.empty(dset.shape, dset.dtype)
            dset.read_direct(array)
            out.append(array)
        return tuple(out)


def _floor_frame(path: str, row: int):
    """h5py reading one frame: open the file, read it."""
    import h5py

    with h5py.File(path, "r", swmr=True, libver="latest") as f:
        return f[FRAMES][row : row + 1]


def _catalog(root: Path):
    from intake_bluesky.core import BlueskyInMemoryCatalog

    cat = BlueskyInMemoryCatalog(root_map={STORED_ROOT: str(root / "h5")})
    for name, doc in json.loads((root / "documents.json").read_text()):
        cat(name, doc)
    return cat


def _interleaved(fns: dict, checks: dict, reps: int) -> dict:
    """Median time of each callable, the calls interleaved round by round, so
    that load from other processes on a shared machine hits floor and reader
    alike (a median, not a best: a quiet moment that favours one side does
    not make the figure). Results are checked (``checks[name](result)``) on
    the first round and dropped at once: no 500 MiB result outlives its call."""
    import gc
    import statistics

    times: dict = {name: [] for name in fns}
    ok = dict.fromkeys(fns, True)
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


def ours(root: Path, manifest: dict, reps: int, log=print) -> list[dict]:
    import dask

    frames, sums = _floor(manifest["file"])  # also warms the page cache

    def read():
        # A fresh catalog each time: the file is opened again, nothing cached.
        return _catalog(root)[manifest["uid"]].primary.read()

    def compute():
        with dask.config.set(scheduler="threads"):
            return _catalog(root)[manifest["uid"]].primary.to_dask().compute()

    row = manifest["frames"] // 2  # the row the slice row reads: the middle one

    def one_frame():
        # What a user slicing a lazy stream pays: a fresh catalog, the graph,
        # and the frame read (dask pushes the slice into the reader).
        lazy = _catalog(root)[manifest["uid"]].primary.to_dask()
        with dask.config.set(scheduler="threads"):
            return lazy["bdet"][row : row + 1].compute()

    def check_frame(da_):
        return _same(da_.values, frames[row : row + 1])

    def check(ds):
        return (
            _same(ds["bdet"].values, frames)
            and _same(ds["bdet-sum"].values, sums)
            and bool(np.isnan(ds["time"].values).all())
        )

    lazy = _catalog(root)[manifest["uid"]].primary.to_dask()
    tasks = {k: len(v.data.__dask_graph__()) for k, v in lazy.data_vars.items()}
    chunks = {k: list(v.data.chunks[0])[:4] for k, v in lazy.data_vars.items()}
    del lazy
    timed = _interleaved(
        {
            "floor": lambda: _floor(manifest["file"]),
            "read": read,
            "compute": compute,
            "frame floor": lambda: _floor_frame(manifest["file"], row),
            "frame": one_frame,
        },
        {"read": check, "compute": check, "frame": check_frame},
        reps,
    )
    floor = timed["floor"][0]
    rows = []
    for name, label, extra in (
        ("read", "read()", {}),
        ("compute", "to_dask().compute()", {"tasks": tasks, "time_chunks": chunks}),
    ):
        t, ok = timed[name]
        rows.append(_row(label, t, floor, reps, ok, extra))
    t, ok = timed["frame"]
    frame_floor = timed["frame floor"][0]
    rows.append(
        _row(
            f"to_dask()['bdet'][{row}:{row + 1}].compute()",
            t,
            frame_floor,
            reps,
            ok,
            {"floor": "h5py: open the file, read that frame"},
        )
    )
    for r in rows:
        log(f"  {r['label']}: {r['value']:.4f} s, floor {r['floor']:.4f} s, {r['to_floor']:.2f}x")
    return rows


def ours_scalar(manifest: dict, reps: int, notes: list, log=print) -> list[dict]:
    """intake-bluesky's JSONL backend on the scalar run, against the same floor as the peer."""
    from _tiled_peer import scalar_floor

    try:
        from intake_bluesky.jsonl import BlueskyJSONLCatalog
    except ImportError as err:
        notes.append(f"scalar row skipped: intake_bluesky.jsonl does not import ({err})")
        return []
    path = Path(manifest["scalar"])
    floor, _, truth = C.best_of(lambda: scalar_floor(path), reps)
    touch = C.Touch([path])  # every timed call a first read (nothing cached by mtime)

    def read():
        return BlueskyJSONLCatalog(str(path.parent))[-1].primary.read()

    try:
        t, calls, ds = C.best_of(read, reps, setup=touch)
    finally:
        touch.restore()
    ok = all(np.array_equal(ds[k].values, v) for k, v in truth.items())
    row = _row(
        f"JSONL scalar run read() ({manifest['scalar_events']} events)",
        t,
        floor,
        calls,
        ok,
        {"floor": "orjson"},
    )
    log(f"  {row['label']}: {t:.3f} s, floor {floor:.3f} s, {row['to_floor']:.2f}x")
    return [row]


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    return got.size == want.size and np.array_equal(got.reshape(want.shape), want)


def _row(label, value, floor, calls, ok, extra):
    return {
        "label": label,
        "value": value,
        "floor": floor,
        "to_floor": value / floor,
        "calls": calls,
        "check": "ok" if ok else "VALUES DIFFER",
        "extra": extra,
    }


def peer(
    tiled_python: str | None,
    root: Path,
    manifest: dict,
    reps: int,
    quick: bool,
    notes: list,
    log=print,
) -> dict:
    """The tiled + bluesky-tiled-plugins figures, from its own environment."""
    if not tiled_python:
        notes.append("tiled rows skipped: no --tiled-python given")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [
            tiled_python,
            str(HERE / "_tiled_peer.py"),
            "--workload",
            str(root),
            "--out",
            str(out),
            "--reps",
            str(reps),
        ]
        cmd += ["--scalar", manifest["scalar"]]
        log("tiled side: " + " ".join(cmd))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=3600)
        log(f"tiled side took {time.perf_counter() - t0:.0f} s")
        if proc.returncode != 0 or not out.exists():
            notes.append(f"tiled side exited with {proc.returncode}; see its output above")
            return json.loads(out.read_text()) if out.exists() else {}
        return json.loads(out.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 frames instead of 1,000")
    parser.add_argument("--reps", type=int, default=3, help="median of N (default 3)")
    parser.add_argument(
        "--tiled-python",
        help="python of an environment with tiled and "
        "bluesky-tiled-plugins (nox -s bench builds one)",
    )
    args = parser.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    root, manifest = ensure_workload(args.quick, log)
    notes: list[str] = []
    log(
        f"stream rows ({manifest['frames']} frames of {SHAPE[0]}x{SHAPE[1]} uint16, "
        f"{manifest['nbytes'] / 2**20:.0f} MiB, median of {args.reps}):"
    )
    rows = ours(root, manifest, args.reps, log)
    rows += ours_scalar(manifest, args.reps, notes, log)
    tiled = peer(args.tiled_python, root, manifest, args.reps, args.quick, notes, log)
    notes += ["tiled: " + n for n in tiled.get("notes", [])]
    peer_rows = tiled.get("rows", [])
    print(
        f"\nstream data: HDF5 fly scan ({manifest['frames']} frames 512x512 uint16, no events; "
        f"floor: h5py reading both datasets) and the {manifest['scalar_events']}-event scalar "
        "run (floor: orjson + columns); /floor = time / its floor, measured in the same process"
    )
    if tiled.get("versions"):
        print("peer: " + ", ".join(f"{k} {v}" for k, v in tiled["versions"].items()))
    print(f"{'reader':<52}{'time':>9}{'floor':>9}{'/floor':>8}  notes")
    for who, group in (("intake-bluesky", rows), ("tiled", peer_rows)):
        for r in group:
            bits = [] if r["check"] == "ok" else [r["check"]]
            extra = r.get("extra", {})
            if "tasks" in extra:
                bits.append(f"dask tasks {extra['tasks']}, first chunks {extra['time_chunks']}")
            if r.get("note"):
                bits.append(r["note"])
            print(
                f"{who + ' ' + r['label']:<52}{r['value']:>8.3f}s{r['floor']:>8.3f}s"
                f"{r['value'] / r['floor']:>7.2f}x  " + "; ".join(bits)
            )
    for n in notes:
        print("note: " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
