"""NeXus export benchmark: an HDF5 fly scan exported with ``--format nexus``.

Workload: a fly scan with no events, only ``stream_datum`` documents (10 of
them), over one detector file written like an ophyd-async areaDetector (SWMR,
``libver='latest'``, ``/entry/data/data`` of 1,000 512x512 uint16 frames in
chunks of one frame, ``/entry/sum`` int64; ``--quick``: 100 frames). Frames
are photon counts (Poisson, mean 2), so that they compress as detector
frames do. Two files of the same frames:

* ``bslz4``: compressed with bitshuffle + LZ4 (hdf5plugin), as Eiger/Odin
  and areaDetector write them; the NeXus file keeps the source's filter;
* ``plain``: uncompressed; the NeXus file gets the writer's default
  (gzip level 1 + shuffle, readable by every HDF5 reader).

Rows, interleaved repeat by repeat (the machine is shared: load hits every
candidate alike):

* ours: :func:`intake_bluesky.core.export.export_runs` of the run (a fresh
  in-memory catalog over its documents) to ``format="nexus"``;
* floor: h5py copying the same frames (and sums) into a new file with the
  same chunks and the same filters as the NeXus file gets, block by block
  (decoded and encoded again), synced to disk as the export does (DESIGN
  target: ours <= 1.5x floor);
* raw floor (``bslz4`` only): h5py copying the stored chunks as they are
  (``read_direct_chunk`` / ``write_direct_chunk``), which is what the writer
  does with chunks of a compressed detector file: the fair floor for it;
* ``--link-external`` (frames as virtual datasets, not copied), for scale.

Usage::

    python benchmarks/bench_nexus.py [--quick] [--reps N]

``run.py`` runs it after the export rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
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
#: Where the documents say the files are; ``root_map`` maps it to the workload.
STORED_ROOT = "/bench-data/nexus"
#: Frames per collect (and per stream_datum), as a flyer reports them.
BATCH = 100


def _filters(kind: str) -> dict:
    import hdf5plugin

    return dict(hdf5plugin.Bitshuffle(cname="lz4")) if kind == "bslz4" else {}


def ensure_workload(quick: bool, log=print) -> tuple[Path, dict]:
    """The two detector files and the fly scans' documents (cached)."""
    import event_model
    import h5py

    n_frames = 100 if quick else 1000
    root = C.WORKLOADS_DIR / f"nexus-v{VERSION}-{'quick' if quick else 'full'}"
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        return root, json.loads(manifest_path.read_text())
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "h5").mkdir(parents=True)
    log(f"writing the NeXus workload ({n_frames} frames, twice) in {root}")
    rng = np.random.default_rng(23)
    runs = {}
    for kind in ("bslz4", "plain"):
        path = tmp / "h5" / f"fly-{kind}.h5"
        rng = np.random.default_rng(23)  # the same frames in both files
        with h5py.File(path, "w", libver="latest") as f:
            data = f.create_dataset(
                FRAMES,
                shape=(0, *SHAPE),
                maxshape=(None, *SHAPE),
                chunks=(1, *SHAPE),
                dtype="<u2",
                **_filters(kind),
            )
            total = f.create_dataset(
                SUMS, shape=(0,), maxshape=(None,), chunks=(1024,), dtype="<i8"
            )
            f.swmr_mode = True
            for start in range(0, n_frames, BATCH):
                frames = rng.poisson(2.0, size=(BATCH, *SHAPE)).astype("<u2")
                data.resize(start + BATCH, axis=0)
                data[start:] = frames
                total.resize(start + BATCH, axis=0)
                total[start:] = frames.reshape(BATCH, -1).sum(axis=1)
                data.flush()
                total.flush()
        runs[kind] = _documents(event_model, f"bench-nexus-{kind}", path.name, n_frames)
    (tmp / "documents.json").write_text(json.dumps(runs))
    manifest = {
        "version": VERSION,
        "frames": n_frames,
        "nbytes": n_frames * int(np.prod(SHAPE)) * 2,
        "files": {kind: str(root / "h5" / f"fly-{kind}.h5") for kind in runs},
        "uids": {kind: docs[0][1]["uid"] for kind, docs in runs.items()},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root, manifest


def _documents(event_model, uid: str, file_name: str, n_frames: int) -> list:
    run = event_model.compose_run(
        uid=uid, time=1_700_000_000.0, metadata={"scan_id": 1, "plan_name": "fly"}
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
        hints={"bdet": {"fields": ["bdet"]}},
    )
    docs.append(("descriptor", desc.descriptor_doc))
    bundles = []
    for key, dataset, chunk_shape in (("bdet", FRAMES, [1, *SHAPE]), ("bdet-sum", SUMS, [1024])):
        bundle = run.compose_stream_resource(
            mimetype="application/x-hdf5",
            uri=f"file://localhost{STORED_ROOT}/{file_name}",
            data_key=key,
            parameters={"dataset": dataset, "chunk_shape": chunk_shape},
        )
        docs.append(("stream_resource", bundle.stream_resource_doc))
        bundles.append(bundle)
    for start in range(0, n_frames, BATCH):
        for bundle in bundles:
            docs.append(
                (
                    "stream_datum",
                    bundle.compose_stream_datum(
                        indices={"start": start, "stop": start + BATCH},
                        seq_nums={"start": start + 1, "stop": start + BATCH + 1},
                        descriptor=desc.descriptor_doc,
                    ),
                )
            )
    docs.append(("stop", run.compose_stop(time=1_700_000_100.0)))
    return docs


def _catalog(root: Path, kind: str):
    from intake_bluesky.core import BlueskyInMemoryCatalog

    cat = BlueskyInMemoryCatalog(root_map={STORED_ROOT: str(root / "h5")})
    for name, doc in json.loads((root / "documents.json").read_text())[kind]:
        cat(name, doc)
    return cat


def floor(source: str, out: str, kind: str) -> None:
    """h5py copying the frames and sums into a new file: the same chunks and
    filters as the NeXus file's, block by block, synced to disk."""
    import h5py
    import hdf5plugin  # noqa: F401  (the bitshuffle filter)

    with h5py.File(source, "r", swmr=True, libver="latest") as src, h5py.File(out, "x") as dst:
        frames, sums = src[FRAMES], src[SUMS]
        n = frames.shape[0]
        # What the writer gives the copy: the source's filter, else gzip 1 + shuffle.
        filters = (
            {"dcpl": _copied_dcpl(frames)}
            if kind == "bslz4"
            else {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        )
        copy = dst.create_dataset(
            "frames", shape=(n, 1, *SHAPE), dtype=frames.dtype, chunks=(1, 1, *SHAPE), **filters
        )
        for start in range(0, n, BATCH):
            block = frames[start : start + BATCH]
            copy[start : start + len(block)] = block[:, None]
        dst.create_dataset("sums", data=sums[()][:, None])
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def floor_raw(source: str, out: str) -> None:
    """h5py copying the stored chunks as they are (no decompression), synced."""
    import h5py
    import hdf5plugin  # noqa: F401  (the bitshuffle filter)

    with h5py.File(source, "r", swmr=True, libver="latest") as src, h5py.File(out, "x") as dst:
        frames, sums = src[FRAMES], src[SUMS]
        n = frames.shape[0]
        copy = dst.create_dataset(
            "frames",
            shape=(n, 1, *SHAPE),
            dtype=frames.dtype,
            chunks=(1, 1, *SHAPE),
            dcpl=_copied_dcpl(frames),
        )
        for i in range(n):
            mask, raw = frames.id.read_direct_chunk((i, 0, 0))
            copy.id.write_direct_chunk((i, 0, 0, 0), raw, mask)
        dst.create_dataset("sums", data=sums[()][:, None])
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copied_dcpl(dset):
    import h5py

    src = dset.id.get_create_plist()
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    for i in range(src.get_nfilters()):
        code, flags, values, _ = src.get_filter(i)
        if code == 32008 and len(values) >= 5:  # bitshuffle prepends 3 values again
            values = values[3:]
        plist.set_filter(code, flags, tuple(values))
    return plist


def _check(path: str, manifest: dict, kind: str) -> bool:
    """The NeXus file holds the source's frames, with the NeXus file's filter."""
    import h5py
    import hdf5plugin  # noqa: F401  (the bitshuffle filter)

    with (
        h5py.File(path, "r") as f,
        h5py.File(manifest["files"][kind], "r", swmr=True, libver="latest") as src,
    ):
        data = f[f.attrs["default"]]["primary"]["bdet"]
        want = list(src[FRAMES]._filters) if kind == "bslz4" else ["shuffle", "gzip"]
        same = list(data._filters) == want
        for start in range(0, manifest["frames"], BATCH):
            block = src[FRAMES][start : start + BATCH]
            same = same and np.array_equal(data[start : start + len(block)][:, 0], block)
        return bool(same)


def measure(root: Path, manifest: dict, reps: int, log=print) -> list[dict]:
    from intake_bluesky.core.export import export_runs

    rows = []
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for kind in ("bslz4", "plain"):
            source = manifest["files"][kind]
            fns = {
                "floor": lambda d, kind=kind, source=source: floor(
                    source, os.path.join(d, "copy.h5"), kind
                ),
                "ours": lambda d, kind=kind: export_runs(_catalog(root, kind), d, format="nexus"),
                "link": lambda d, kind=kind: export_runs(
                    _catalog(root, kind), d, format="nexus", link_external=True
                ),
            }
            if kind == "bslz4":
                fns["raw"] = lambda d, source=source: floor_raw(source, os.path.join(d, "raw.h5"))
            times: dict[str, list[float]] = {name: [] for name in fns}
            check = None
            # One untimed call each: imports and the page cache, not the export.
            for name, fn in fns.items():
                out = os.path.join(tmp, f"{name}-warm")
                os.makedirs(out)
                fn(out)
                shutil.rmtree(out)
            for round_ in range(max(1, reps)):
                for name, fn in fns.items():
                    out = os.path.join(tmp, f"{name}-{round_}")
                    os.makedirs(out)
                    gc.collect()
                    t0 = time.perf_counter()
                    result = fn(out)
                    times[name].append(time.perf_counter() - t0)
                    if round_ == 0 and name == "ours":
                        check = _check(result[0], manifest, kind)
                    shutil.rmtree(out)
            ratios = [o / f for o, f in zip(times["ours"], times["floor"], strict=True)]
            row = {
                "kind": kind,
                "times": times,
                "ours": min(times["ours"]),
                "floor": min(times["floor"]),
                "link": min(times["link"]),
                "ratio_best": min(times["ours"]) / min(times["floor"]),
                "ratio_median": statistics.median(ratios),
                "ratios": ratios,
                "check": "ok" if check else "VALUES DIFFER",
            }
            if "raw" in times:
                raw_ratios = [o / f for o, f in zip(times["ours"], times["raw"], strict=True)]
                row.update(
                    raw=min(times["raw"]),
                    raw_best=min(times["ours"]) / min(times["raw"]),
                    raw_median=statistics.median(raw_ratios),
                    raw_ratios=raw_ratios,
                )
            rows.append(row)
            log(
                f"  {kind}: ours {row['ours']:.2f} s, floor {row['floor']:.2f} s, "
                f"{row['ratio_best']:.2f}x (per repeat: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + ")"
                + (
                    f", raw floor {row['raw']:.2f} s, {row['raw_best']:.2f}x (per repeat: "
                    + ", ".join(f"{r:.2f}" for r in row["raw_ratios"])
                    + ")"
                    if "raw" in row
                    else ""
                )
                + f", link {row['link']:.3f} s"
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 frames instead of 1,000")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repeats (default 3)")
    args = parser.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    root, manifest = ensure_workload(args.quick, log)
    log(
        f"NeXus export rows ({manifest['frames']} frames of {SHAPE[0]}x{SHAPE[1]} uint16, "
        f"{manifest['nbytes'] / 2**20:.0f} MiB, {args.reps} interleaved repeats):"
    )
    rows = measure(root, manifest, args.reps, log)
    print(
        f"\nNeXus export: HDF5 fly scan ({manifest['frames']} frames 512x512 uint16) -> .nxs "
        "(floor: h5py copying the same frames with the same chunks and filter, decoded and "
        "encoded again; raw: h5py copying the stored chunks as they are; both synced); best "
        "of each, and the median of the per-repeat ratios"
    )
    head = f"{'source -> NeXus':<26}{'ours':>8}{'floor':>8}{'best':>7}{'median':>8}"
    print(f"{head}{'raw':>8}{'best':>7}{'median':>8}{'link':>8}  check")
    labels = {"bslz4": "bitshuffle/LZ4 (kept)", "plain": "uncompressed -> gzip 1"}
    for r in rows:
        raw = (
            f"{r['raw']:>7.2f}s{r['raw_best']:>6.2f}x{r['raw_median']:>7.2f}x"
            if "raw" in r
            else f"{'-':>8}{'-':>7}{'-':>8}"
        )
        print(
            f"{labels[r['kind']]:<26}{r['ours']:>7.2f}s{r['floor']:>7.2f}s"
            f"{r['ratio_best']:>6.2f}x{r['ratio_median']:>7.2f}x{raw}{r['link']:>7.3f}s"
            f"  {r['check']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
