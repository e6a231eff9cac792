"""The benchmark suite itself, run the same way on both sides.

``run.py`` runs it over intake-bluesky's catalogs and ``_anchor.py`` over
databroker 1.2.5's, each in its own environment: both provide *backends*
(objects with ``name`` and ``catalog(workload)``), this module does the rest
with the public API the two share (``len(cat)``, ``cat.search(q)``,
``cat[key]``, ``run.metadata``, ``run.primary.read()``, ``.to_dask()``,
``run.canonical(fill=...)``) and the floors of ``_common``.

Everything is measured in-process (best of N) except a catalog's cold open
and peak memory, which are measured in fresh processes (``<script> --probe``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import _common as C

KIND_OF = {
    "jsonl": "file",
    "msgpack": "file",
    "mongo_normalized": "mongo",
    "mongo_embedded": "mongo",
    "tiff": "tiff",
}
BACKENDS = list(KIND_OF)

_LOOKUPS = [("lookup_uid", "small"), ("lookup_latest", "small"), ("lookup_scan_id", "small")]
_SEARCHES = [("search_eq", "small"), ("search_complex", "small")]

PLANS = {
    "file": [
        ("open_cold", "small"),
        ("open_warm", "small"),
        ("refresh", "small"),
        *_SEARCHES,
        *_LOOKUPS,
        ("read", "scalar_pages"),
        ("read", "scalar_events"),
        ("dask", "scalar_pages"),
        ("dask", "scalar_events"),
        ("canonical", "scalar_pages"),
        ("canonical", "scalar_events"),
        ("memory", "scalar_pages"),
        ("memory", "scalar_events"),
        ("read", "image_inline"),
        ("memory", "image_inline"),
        ("read", "image_external"),
        ("dask", "image_external"),
    ],
    # Searches, lookups and the scalar reads run on a real server
    # (bench_mongo.py, 100,000 events): on mongomock they measured mongomock.
    # What stays here is client-side work: peak memory of a read (decoded
    # documents to columns) and filling external frames through a handler.
    "mongo": [
        ("memory", "scalar_mongo"),
        ("read", "image_external"),
        ("dask", "image_external"),
    ],
    "tiff": [
        ("open_cold", "bucket"),
        ("open_cold", "bucket_series"),
        ("open_warm", "bucket"),
        ("refresh", "bucket"),
        ("read", "series"),
        ("dask", "series"),
        ("memory", "series"),
    ],
}

#: Image workloads' columns (the scalar ones come from the manifest).
IMAGE_FIELDS = {"img": "<u2", "det": "<f8"}


class Unsupported(Exception):
    """This side has no catalog for that backend or workload."""


def label(kind: str, workload: str, m: dict) -> str:
    p = m["params"]
    what = {
        "small": f"{p['small_runs']:,} runs",
        "scalar_pages": f"{p['scalar_events'] // 1000}k scalar, pages",
        "scalar_events": f"{p['scalar_events'] // 1000}k scalar, events",
        "scalar_mongo": f"{p['mongo_scalar_events'] // 1000}k scalar",
        "image_inline": f"{p['image_frames']} frames inline",
        "image_external": f"{p['image_frames']} frames external",
        "bucket": f"{m['tiff']['bucket_files']:,} TIFFs",
        "bucket_series": f"{m['tiff']['bucket_files']:,} TIFFs by series",
        "series": f"{m['tiff']['series_frames']}-TIFF series",
    }[workload]
    return {
        "open_cold": f"open {what}, cold",
        "open_warm": f"re-open {what}, warm",
        "open": f"open {what}",
        "refresh": f"len() again {what}",
        "search_eq": "search {plan_name}",
        "search_complex": "search $or/$in/$regex/range",
        "lookup_uid": "cat[uid]",
        "lookup_latest": "cat[-1]",
        "lookup_scan_id": "cat[scan_id]",
        "read": f"read() {what}",
        "dask": f"to_dask().compute() {what}",
        "canonical": f"canonical() {what}",
        "memory": f"peak mem/nbytes read() {what}",
    }[kind]


class Suite:
    """Runs the plan for some backends; yields one row (a dict) per benchmark.

    ``floors``: ``"all"`` measures every row's floor here, ``"mongo"`` only
    the Mongo rows' (their floor must be same-process), ``"none"`` none.
    ``combine_read_memory``: workloads whose ``read()`` time is taken from
    their memory probe (one call in a fresh process) instead of calling it
    again: for a side whose read() of 100,000 events takes minutes.
    ``skip``: ``{(backend, kind, workload) or (kind, workload): reason}``.
    """

    def __init__(
        self,
        root: Path,
        manifest: dict,
        backends: dict,
        script: str,
        *,
        reps: int = 3,
        budget: float = 20.0,
        floors: str = "all",
        combine_read_memory: tuple = (),
        skip: dict | None = None,
        probe_timeout: float = 1800.0,
        log=print,
    ):
        self.root = Path(root)
        self.m = manifest
        self.backends = backends
        self.script = script
        self.reps = reps
        self.budget = budget
        self.floors = floors
        self.combine = set(combine_read_memory)
        self.skip = skip or {}
        self.probe_timeout = probe_timeout
        self.log = log
        self._probe_cache: dict = {}

    # -- workload facts ----------------------------------------------------

    def dir(self, fmt: str, workload: str) -> Path:
        return self.root / fmt / self.m["dirs"][workload]

    def uid(self, workload: str) -> str | int:
        runs = self.m["runs"]
        return {
            "scalar_pages": runs["scalar"]["uid"],
            "scalar_events": runs["scalar"]["uid"],
            "scalar_mongo": runs["scalar_mongo"]["uid"],
            "image_inline": runs["image"]["inline_uid"],
            "image_external": runs["image"]["external_uid"],
            "series": -1,
        }[workload]

    def fields(self, workload: str) -> dict:
        if workload.startswith("scalar"):
            key = "scalar_mongo" if workload == "scalar_mongo" else "scalar"
            return self.m["runs"][key]["fields"]
        return IMAGE_FIELDS

    def lookup_key(self, kind: str):
        small = self.m["runs"]["small"]
        return {
            "lookup_uid": (small["lookup_uid"], small["lookup_uid"]),
            "lookup_latest": (-1, small["latest_uid"]),
            "lookup_scan_id": (small["lookup_scan_id"], small["lookup_uid"]),
        }[kind]

    def query(self, kind: str) -> dict:
        return self.m["queries"][kind]

    # -- running -----------------------------------------------------------

    def run(self, names):
        for name in names:
            backend = self.backends.get(name)
            for kind, workload in PLANS[KIND_OF[name]]:
                row = {
                    "backend": name,
                    "kind": kind,
                    "workload": workload,
                    "bench": f"{kind}:{workload}",
                    "label": label(kind, workload, self.m),
                    "unit": "x" if kind == "memory" else "s",
                    "value": None,
                    "floor": None,
                    "extra": {},
                    "error": None,
                    "skipped": None,
                }
                reason = self.skip.get((name, kind, workload)) or self.skip.get((kind, workload))
                if backend is None:
                    row["skipped"] = "backend not available"
                elif reason:
                    row["skipped"] = reason
                else:
                    self.log(f"  {name:17} {row['label']} ...")
                    try:
                        self._measure(backend, row)
                    except Unsupported as e:
                        row["skipped"] = str(e) or "not supported"
                    except Exception as e:  # a broken package must not stop the suite
                        row["error"] = f"{type(e).__name__}: {e}"[:500]
                        row["traceback"] = traceback.format_exc()[-3000:]
                    if row["value"] is not None and self._wants_floor(name):
                        try:
                            self._measure_floor(backend, row)
                        except Exception as e:
                            row["floor_error"] = f"{type(e).__name__}: {e}"[:500]
                row.pop("_ds", None)
                yield row

    def _wants_floor(self, name: str) -> bool:
        return self.floors == "all" or (self.floors == "mongo" and KIND_OF[name] == "mongo")

    def _timed(self, fn, row, budget=None, fresh=None):
        """Best of N; with ``fresh`` (a workload), every call is a first read of it."""
        touch = self._touch(fresh) if fresh else None
        try:
            best, calls, result = C.best_of(
                fn, self.reps, self.budget if budget is None else budget, setup=touch
            )
        finally:
            if touch is not None:
                touch.restore()
        row["value"] = best
        row["calls"] = calls
        return result

    def _touch(self, w: str):
        """A ``C.Touch`` of the run file of a file-backend workload (else None)."""
        if KIND_OF.get(self._current, "") != "file":
            return None
        return C.Touch([C.run_file(self.dir(self._current, w), self.uid(w), self._current)])

    def _measure(self, b, row):
        kind, w = row["kind"], row["workload"]
        self._current = b.name
        if kind == "open_cold":
            res = [
                self.probe({"what": "open", "backend": b.name, "workload": w})
                for _ in range(self.reps)
            ]
            row["value"] = min(r["seconds"] for r in res)
            row["calls"] = len(res)
            row["extra"]["runs"] = res[0]["n"]
        elif kind in ("open", "open_warm"):
            len(b.catalog(w))
            row["extra"]["runs"] = self._timed(lambda: len(b.catalog(w)), row)
        elif kind == "refresh":
            cat = b.catalog(w)
            len(cat)
            row["extra"]["runs"] = self._timed(lambda: len(cat), row)
        elif kind.startswith("search"):
            cat = b.catalog(w)
            len(cat)
            q = self.query(kind)
            found = self._timed(lambda: list(cat.search(q)), row)
            row["extra"]["found"] = len(found)
        elif kind.startswith("lookup"):
            cat = b.catalog(w)
            len(cat)
            key, expected = self.lookup_key(kind)
            got = self._timed(lambda: cat[key].metadata["start"]["uid"], row)
            if got != expected:
                raise AssertionError(f"cat[{key!r}] gave run {got}, expected {expected}")
        elif kind == "read":
            # Each call opens the catalog afresh: a catalog may cache runs and
            # their Datasets (databroker does), and a cached read is not a read.
            if w in self.combine:
                res = self.probe({"what": "memory", "backend": b.name, "workload": w})
                row["value"] = res["seconds"]
                row["calls"] = 1
                row["extra"].update(nbytes=res["nbytes"], timed="in a fresh process, once")
                return
            key = self.uid(w)
            ds = self._timed(lambda: b.catalog(w)[key].primary.read(), row, fresh=w)
            row["extra"].update(nbytes=int(ds.nbytes), shape=_shape(ds))
            row["_ds"] = ds
        elif kind == "dask":
            key = self.uid(w)
            ds = self._timed(lambda: b.catalog(w)[key].primary.to_dask().compute(), row, fresh=w)
            row["_ds"] = ds
            lazy = b.catalog(w)[key].primary.to_dask()
            graph = lazy.__dask_graph__()
            row["extra"].update(
                nbytes=int(ds.nbytes),
                tasks=len(graph) if graph is not None else 0,
                chunks=_chunks(lazy),
            )
        elif kind == "canonical":
            key = self.uid(w)

            def go():
                docs = events = 0
                for name, doc in b.catalog(w)[key].canonical(fill="no"):
                    docs += 1
                    if name == "event":
                        events += 1
                    elif name == "event_page":
                        events += len(doc["seq_num"])
                return docs, events

            docs, events = self._timed(go, row, fresh=w)
            row["extra"].update(
                docs=docs,
                events=events,
                docs_per_s=round(docs / row["value"]),
                events_per_s=round(events / row["value"]),
            )
        elif kind == "memory":
            res = self.probe({"what": "memory", "backend": b.name, "workload": w})
            row["value"] = res["peak"] / res["nbytes"]
            row["calls"] = 1
            row["extra"].update(
                peak_mib=round(res["peak"] / 2**20, 1),
                nbytes_mib=round(res["nbytes"] / 2**20, 1),
                seconds=round(res["seconds"], 3),
            )
        else:
            raise ValueError(kind)

    def _measure_floor(self, b, row):
        kind, w = row["kind"], row["workload"]
        if kind == "memory":
            res = self.probe({"what": "memory", "backend": b.name, "workload": w, "floor": True})
            row["floor"] = res["peak"] / res["nbytes"]
            row["floor_extra"] = {"peak_mib": round(res["peak"] / 2**20, 1)}
            return
        fn = C.without_gc(self.floor_fn(b, kind, w))
        best, calls, result = C.best_of(fn, self.reps, self.budget)
        row["floor"] = best
        row["floor_calls"] = calls
        if kind in ("read", "dask") and "_ds" in row:
            row["check"] = _same_values(row.pop("_ds"), result)
        if kind.startswith("search"):
            row["floor_extra"] = {"found": len(result)}
            if row["extra"].get("found") != len(result):
                row["check"] = f"MISMATCH: found {row['extra'].get('found')}, floor {len(result)}"
        if KIND_OF[b.name] == "tiff" and kind == "open_cold":
            # Reference: what parsing every file's TIFF header costs.
            d = self.root / self.m["tiff"]["bucket"]
            ref, _, _ = C.best_of(lambda: C.floor_tiff_headers(d), self.reps, self.budget)
            row["floor_extra"] = {"all_headers_s": ref}

    # -- floors ------------------------------------------------------------

    def floor_fn(self, b, kind: str, w: str):
        """A zero-argument callable computing the floor of one benchmark."""
        back = KIND_OF[b.name]
        if back == "file":
            fmt = b.name
            d = self.dir(fmt, "small")
            if kind in ("open_cold", "open_warm"):
                # Listing the directory is part of it: no reader knows the
                # run files without it.
                return lambda: C.FLOOR_HEADERS[fmt](
                    sorted(os.path.join(d, name) for name in os.listdir(d))
                )
            if kind == "refresh":
                return lambda: C.floor_stat(d)
            if kind.startswith("search"):
                starts = [C.floor_first_record(p, fmt) for p in sorted(d.iterdir())]
                q = self.query(kind)
                return lambda: C.floor_search(starts, q)
            if kind.startswith("lookup"):
                _, expected = self.lookup_key(kind)
                path = C.run_file(d, expected, fmt)
                return lambda: C.floor_first_record(path, fmt)
            path = C.run_file(self.dir(fmt, w), self.uid(w), fmt)
            if kind == "canonical":
                return lambda: C.floor_count_file(path, fmt)
            if w == "image_external":
                npy = self.root / "npy"
                return lambda: C.floor_external_file(path, fmt, npy, "<u2")
            fields = self.fields(w)
            return lambda: C.floor_columns_file(path, fmt, fields)
        if back == "mongo":
            layout = b.name.split("_", 1)[1]
            dbs = C.load_mongo(self.root)
            if layout == "normalized":
                small, big, assets = dbs["small_mds"], dbs["big_mds"], dbs["big_assets"]
            else:
                small = big = assets = None
                small, big = dbs["small_embedded"], dbs["big_embedded"]
                assets = big
            if kind == "open":
                return lambda: C.floor_mongo_count(small, layout)
            if kind.startswith("search"):
                q = self.query(kind)
                return lambda: C.floor_mongo_search(small, layout, q)
            if kind.startswith("lookup"):
                key, _ = self.lookup_key(kind)
                how = {"lookup_uid": "uid", "lookup_latest": "latest"}.get(kind, "scan_id")
                return lambda: C.floor_mongo_lookup(small, layout, how, key)
            if w == "image_external":
                desc = self.m["runs"]["image"]["descriptor_external"]
                npy = self.root / "npy"
                return lambda: C.floor_mongo_external(big, assets, layout, desc, npy, "<u2")
            if kind == "canonical":
                uid = self.uid(w)
                return lambda: C.floor_mongo_count_run(big, layout, uid)
            desc = self.m["runs"]["scalar_mongo"]["descriptor"]
            fields = self.fields(w)
            return lambda: C.floor_mongo_columns(big, layout, desc, fields)
        # tiff
        if kind in ("open_cold", "open_warm"):
            d = self.root / self.m["tiff"]["bucket"]
            return lambda: C.floor_tiff_open(d, by_series=w == "bucket_series")
        if kind == "refresh":
            d = self.root / self.m["tiff"]["bucket"]
            return lambda: C.floor_stat(d)
        d = self.root / self.m["tiff"]["series"]
        return lambda: C.floor_tiff_read(d)

    # -- fresh-process probes ---------------------------------------------

    def probe(self, spec: dict) -> dict:
        spec = {**spec, "root": str(self.root)}
        key = json.dumps(spec, sort_keys=True)
        if spec["what"] == "memory" and key in self._probe_cache:
            return self._probe_cache[key]
        proc = subprocess.run(
            [sys.executable, self.script, "--probe", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=self.probe_timeout,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"probe {spec['what']} failed (exit {proc.returncode}): "
                + (proc.stderr.strip().splitlines() or ["no output"])[-1]
            )
        result = json.loads(lines[-1])
        if spec["what"] == "memory":
            self._probe_cache[key] = result
        return result

    def probe_main(self, spec: dict) -> dict:
        """What a probe process does (``<script> --probe SPEC``)."""
        b = self.backends[spec["backend"]]
        w = spec["workload"]
        if spec["what"] == "open":
            import tempfile
            import time

            if KIND_OF[b.name] != "mongo":
                # Imports and first-use set-up, on an empty directory.
                with tempfile.TemporaryDirectory() as empty:
                    len(b.empty(empty))
            t0 = time.perf_counter()
            n = len(b.catalog(w))
            return {"seconds": time.perf_counter() - t0, "n": n}
        self._warm_up(b)
        if spec.get("floor"):
            fn = C.without_gc(self.floor_fn(b, "read", w))
        else:
            cat = b.catalog(w)
            len(cat)
            key = self.uid(w)

            def fn():
                return cat[key].primary.read()

        peak, seconds, result = C.peak_memory(fn)
        return {"peak": peak, "seconds": seconds, "nbytes": C.nbytes_of(result)}

    def _warm_up(self, b) -> None:
        """Read a tiny run first, so imports and first-call set-up are not measured."""
        try:
            w = "bucket_series" if KIND_OF[b.name] == "tiff" else "small"
            b.catalog(w)[-1].primary.read()
        except Exception:
            pass


def _same_values(ds, floor) -> str:
    """Whether a Dataset holds the floor's columns (a fast wrong answer is no answer)."""
    import numpy as np

    if not isinstance(floor, dict):  # frames
        name = next(k for k, v in ds.data_vars.items() if v.ndim == 3)
        floor = {name: floor}
    bad = []
    for k, v in floor.items():
        if k not in ds.variables:
            bad.append(f"{k} missing")
            continue
        got = ds[k].values
        if got.shape != v.shape or not np.array_equal(got, v):
            bad.append(f"{k} differs ({got.dtype}{list(got.shape)} vs {v.dtype}{list(v.shape)})")
        elif got.dtype != v.dtype:
            bad.append(f"{k} dtype {got.dtype}, expected {v.dtype}")
    return "ok" if not bad else "MISMATCH: " + "; ".join(bad)


def _shape(ds) -> dict:
    return {k: list(v.shape) for k, v in ds.data_vars.items()}


def _chunks(ds) -> dict:
    out = {}
    for k, v in ds.data_vars.items():
        chunks = getattr(v.data, "chunks", None)
        if chunks:
            out[k] = len(chunks[0])
    return out


def probe_entry(argv: list[str], make_backends) -> bool:
    """Handle ``--probe SPEC`` for a script; True if it did."""
    if len(argv) < 2 or argv[0] != "--probe":
        return False
    spec = json.loads(argv[1])
    root = Path(spec["root"])
    manifest = C.load_manifest(root)
    suite = Suite(root, manifest, make_backends(root, manifest), script="")
    print(json.dumps(suite.probe_main(spec)))
    return True
