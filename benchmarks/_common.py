"""Shared by both benchmark environments (this project's and databroker 1.2.5's).

Only needs the standard library, numpy, orjson, msgpack, msgpack-numpy,
mongomock, mongoquery and tifffile, all of which the anchor pins hold too:
timing, machine information, loading the Mongo workloads into mongomock, and
the floors (what any reader must pay for the same result).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKLOADS_DIR = HERE / ".workloads"
#: The ``root`` the external image run's resource document says; ``root_map``
#: maps it to the workload's ``npy/`` folder (as a facility would).
NPY_ROOT_STORED = "/bench-data/npy"

#: Big enough for a 2048x2048 float64 frame in one msgpack record.
MSGPACK_MAX_BUFFER = 2**31 - 1


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def best_of(fn, reps: int = 3, budget: float = 20.0, setup=None):
    """Best wall time of up to ``reps`` calls of ``fn``; returns (seconds, calls, result).

    Stops repeating once the calls so far took ``budget`` seconds (a slow
    candidate is measured once). ``setup()`` runs untimed before each call;
    garbage is collected before each call, not during it.
    """
    best = float("inf")
    spent = 0.0
    result = None
    calls = 0
    for _ in range(max(1, reps)):
        result = None
        if setup is not None:
            setup()
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        calls += 1
        best = min(best, dt)
        spent += dt
        if spent >= budget:
            break
    return best, calls, result


def _status_kib(*keys: str) -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in keys:
                out[key] = int(line.split()[1]) * 1024
    return out


class Touch:
    """Give files a new mtime before each timed call, and the old one back after.

    A reader may keep what it parsed (the intake-bluesky file drivers keep
    the parse state of a few recent runs per process), and a cached read is
    not a read: this makes every timed call a first read. A new mtime does
    that for readers keyed by size and mtime; intake-bluesky re-checks the
    bytes and would parse only what was appended, so its in-process parse
    cache is cleared as well.
    """

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]
        self.orig = {p: os.stat(p).st_mtime_ns for p in self.paths}
        self.n = 0

    def __call__(self):
        self.n += 1
        for p, ns in self.orig.items():
            os.utime(p, ns=(ns + self.n * 1000, ns + self.n * 1000))
        # A new mtime alone is no longer a first read: the file drivers keep
        # the parse state of recent runs and, finding the same bytes before
        # the end, parse only what was appended (nothing). Forget it.
        files = sys.modules.get("intake_bluesky.core._files.runsource")
        if files is not None:
            files._SOURCES.clear()

    def restore(self):
        for p, ns in self.orig.items():
            os.utime(p, ns=(ns, ns))


def without_gc(fn):
    """``fn`` run with the cyclic garbage collector paused (floors do this: any
    reader can, decoding builds no reference cycles, and the JSONL driver does)."""

    def call():
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if enabled:
                gc.enable()

    return call


def _malloc_trim() -> None:
    """Give freed heap memory back to the system (glibc), so RSS before a call
    is what is live, not what the allocator kept from earlier work."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn):
    """(peak RSS growth in bytes, seconds, result) of one call of ``fn``.

    Meant for a fresh process. Linux: the kernel's high-water mark (VmHWM) is
    reset just before the call (``/proc/self/clear_refs``), so the figure is
    the highest resident set size during the call minus the one before it
    (taken after a garbage collection and ``malloc_trim``): every allocation
    counts (Python objects, numpy buffers, C libraries), and nothing slows the
    call down. Elsewhere: ``ru_maxrss`` growth (coarser).
    """
    gc.collect()
    _malloc_trim()
    try:
        before = _status_kib("VmRSS")["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        exact = True
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        exact = False
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    if exact:
        peak = _status_kib("VmHWM")["VmHWM"]
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(0, peak - before), dt, result


def nbytes_of(result) -> int:
    """Bytes of a Dataset, an array, or a dict of arrays."""
    if isinstance(result, dict):
        return int(sum(np.asarray(v).nbytes for v in result.values()))
    return int(result.nbytes)


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    return info


def versions(*names: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def load_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


# --------------------------------------------------------------------------
# Mongo workloads into mongomock
# --------------------------------------------------------------------------

_MONGO: dict = {}


def load_mongo(root: Path) -> dict:
    """mongomock databases holding the workloads, by name (built once per process).

    ``small_mds``/``small_assets``/``small_embedded``: the small runs;
    ``big_mds``/``big_assets``/``big_embedded``: the scalar and image runs.
    No indexes are created: mongomock has none to use (it scans), and its
    unique-index checks would only slow the inserts.
    """
    key = str(root)
    if key not in _MONGO:
        import mongomock
        import msgpack

        client = mongomock.MongoClient()
        for fname in ("normalized.msgpack", "embedded.msgpack"):
            with open(root / "mongo" / fname, "rb") as f:
                dbs = msgpack.unpackb(f.read(), raw=False)
            for db_name, collections in dbs.items():
                for coll, docs in collections.items():
                    if docs:
                        client[db_name][coll].insert_many(docs)
        _MONGO[key] = {name: client[name] for name in client.list_database_names()}
        for name in ("small_assets", "big_assets", "small_mds", "big_mds"):
            _MONGO[key].setdefault(name, client[name])
    return _MONGO[key]


def prefix_query(query, prefix: str = "start."):
    """A start-document query for the embedded layout's ``header`` collection."""
    if isinstance(query, dict):
        out = {}
        for k, v in query.items():
            if k in ("$and", "$or", "$nor"):
                out[k] = [prefix_query(q, prefix) for q in v]
            elif k.startswith("$"):
                out[k] = v
            else:
                out[prefix + k] = v
        return out
    return query


# --------------------------------------------------------------------------
# Floors: the least any reader pays for the same result
# --------------------------------------------------------------------------


def _orjson_records(path):
    import orjson

    with open(path, "rb") as f:
        for line in f:
            yield orjson.loads(line)


def _msgpack_records(path):
    import msgpack
    import msgpack_numpy

    with open(path, "rb") as f:
        yield from msgpack.Unpacker(
            f, object_hook=msgpack_numpy.decode, raw=False, max_buffer_size=MSGPACK_MAX_BUFFER
        )


RECORDS = {"jsonl": _orjson_records, "msgpack": _msgpack_records}


def run_file(directory: Path, uid: str, fmt: str) -> Path:
    return Path(directory) / f"{uid}.{fmt}"


def floor_headers_jsonl(files) -> int:
    """Open every run file, decode its first and its last line (start, stop)."""
    import orjson

    n = 0
    for path in files:
        with open(path, "rb") as f:
            first = orjson.loads(f.readline())
            f.seek(0, os.SEEK_END)
            end = f.tell()
            back = min(end, 4096)
            f.seek(end - back)
            tail = f.read(back).rstrip(b"\n")
            last = orjson.loads(tail[tail.rfind(b"\n") + 1 :])
        n += first[0] == "start" and last[0] == "stop"
    return n


def floor_headers_msgpack(files) -> int:
    """Decode every run file's first record, skip (undecoded) to the last, decode it."""
    import msgpack

    n = 0
    for path in files:
        with open(path, "rb") as f:
            unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=MSGPACK_MAX_BUFFER)
            first = unpacker.unpack()
            offset = unpacker.tell()
            last_offset = offset
            while True:
                try:
                    unpacker.skip()
                except msgpack.OutOfData:
                    break
                last_offset, offset = offset, unpacker.tell()
            f.seek(last_offset)
            last = msgpack.Unpacker(f, raw=False, max_buffer_size=MSGPACK_MAX_BUFFER).unpack()
        n += first[0] == "start" and last[0] == "stop"
    return n


FLOOR_HEADERS = {"jsonl": floor_headers_jsonl, "msgpack": floor_headers_msgpack}


def floor_stat(directory) -> int:
    """List a directory and stat every file (what noticing changed files costs)."""
    n = 0
    with os.scandir(directory) as it:
        for entry in it:
            entry.stat()
            n += 1
    return n


def floor_first_record(path, fmt: str) -> dict:
    """Decode the first record of one run file (its start document)."""
    return next(RECORDS[fmt](path))[1]


def floor_search(starts: list[dict], query: dict) -> list[str]:
    """The query evaluated by mongoquery over start documents already in memory."""
    import mongoquery

    q = mongoquery.Query(query)
    return [s["uid"] for s in starts if q.match(s)]


def _build(cols: dict, times: list, fields: dict) -> dict:
    out = {k: np.array(v, dtype=fields[k]) for k, v in cols.items()}
    out["time"] = np.array(times, dtype="<f8")
    return out


def floor_columns_file(path, fmt: str, fields: dict) -> dict:
    """Decode every record of a run file and build one numpy column per field + time."""
    cols = {k: [] for k in fields}
    times: list = []
    for name, doc in RECORDS[fmt](path):
        if name == "event_page":
            data = doc["data"]
            for k, col in cols.items():
                col.extend(data[k])
            times.extend(doc["time"])
        elif name == "event":
            data = doc["data"]
            for k, col in cols.items():
                col.append(data[k])
            times.append(doc["time"])
    return _build(cols, times, fields)


def floor_count_file(path, fmt: str) -> tuple[int, int]:
    """Decode every record of a run file; (documents, events)."""
    docs = events = 0
    for name, doc in RECORDS[fmt](path):
        docs += 1
        if name == "event_page":
            events += len(doc["seq_num"])
        elif name == "event":
            events += 1
    return docs, events


def _load_frames(datums: list[dict], resource: dict, npy_dir: Path, dtype) -> np.ndarray:
    base = Path(npy_dir) / resource["resource_path"]
    return np.array(
        [np.load(f"{base}_{d['datum_kwargs']['index']}.npy") for d in datums], dtype=dtype
    )


def floor_external_file(path, fmt: str, npy_dir: Path, dtype: str) -> np.ndarray:
    """Decode a run file, then load its frames (one ``np.load`` each) into one array."""
    datums: dict = {}
    resource = None
    order: list = []
    for name, doc in RECORDS[fmt](path):
        if name == "resource":
            resource = doc
        elif name == "datum":
            datums[doc["datum_id"]] = doc
        elif name == "datum_page":
            for i, did in enumerate(doc["datum_id"]):
                datums[did] = {"datum_kwargs": {k: v[i] for k, v in doc["datum_kwargs"].items()}}
        elif name == "event":
            order.append(doc["data"]["img"])
        elif name == "event_page":
            order.extend(doc["data"]["img"])
    return _load_frames([datums[d] for d in order], resource, npy_dir, dtype)


# Mongo floors ------------------------------------------------------------


def floor_mongo_count(db, layout: str) -> int:
    coll = db["run_start"] if layout == "normalized" else db["header"]
    return coll.count_documents({})


def floor_mongo_search(db, layout: str, query: dict) -> list[str]:
    if layout == "normalized":
        return [d["uid"] for d in db["run_start"].find(query, {"_id": False})]
    return [d["start"][0]["uid"] for d in db["header"].find(prefix_query(query), {"_id": False})]


def floor_mongo_lookup(db, layout: str, how: str, key=None) -> dict:
    """One start document: by uid, most recent (``-1``), or most recent with a scan_id."""
    if layout == "normalized":
        coll, p = db["run_start"], ""
    else:
        coll, p = db["header"], "start."
    if how == "uid":
        doc = coll.find_one({p + "uid": key}, {"_id": False})
    elif how == "latest":
        doc = next(coll.find({}, {"_id": False}).sort(p + "time", -1).limit(1))
    else:
        doc = next(coll.find({p + "scan_id": key}, {"_id": False}).sort(p + "time", -1).limit(1))
    return doc if layout == "normalized" else doc["start"][0]


def floor_mongo_columns(db, layout: str, descriptor: str, fields: dict) -> dict:
    """A plain ``find`` of the stream's events (pages), sorted, + numpy columns."""
    cols = {k: [] for k in fields}
    times: list = []
    if layout == "normalized":
        for doc in db["event"].find(
            {"descriptor": descriptor}, {"_id": False}, sort=[("time", 1)]
        ):
            data = doc["data"]
            for k, col in cols.items():
                col.append(data[k])
            times.append(doc["time"])
    else:
        for doc in db["event"].find(
            {"descriptor": descriptor}, {"_id": False}, sort=[("first_index", 1)]
        ):
            data = doc["data"]
            for k, col in cols.items():
                col.extend(data[k])
            times.extend(doc["time"])
    return _build(cols, times, fields)


def floor_mongo_count_run(mds, layout: str, uid: str) -> tuple[int, int]:
    """Fetch every document of one run with plain finds; (documents, events)."""
    docs = events = 0
    if layout == "normalized":
        docs += mds["run_start"].find_one({"uid": uid}, {"_id": False}) is not None
        descs = list(mds["event_descriptor"].find({"run_start": uid}, {"_id": False}))
        docs += len(descs)
        for d in descs:
            query = {"descriptor": d["uid"]}
            for _ in mds["event"].find(query, {"_id": False}, sort=[("time", 1)]):
                docs += 1
                events += 1
        docs += mds["run_stop"].find_one({"run_start": uid}, {"_id": False}) is not None
    else:
        header = mds["header"].find_one({"run_id": uid}, {"_id": False})
        docs += 1 + len(header.get("descriptors", [])) + len(header.get("stop", []))
        for d in header.get("descriptors", []):
            for page in mds["event"].find(
                {"descriptor": d["uid"]}, {"_id": False}, sort=[("first_index", 1)]
            ):
                docs += 1
                events += len(page["seq_num"])
    return docs, events


def floor_mongo_external(mds, assets, layout: str, descriptor: str, npy_dir, dtype) -> np.ndarray:
    """Find the events' datum ids, the datums and the resource, then load the frames."""
    if layout == "normalized":
        order = [
            doc["data"]["img"]
            for doc in mds["event"].find(
                {"descriptor": descriptor}, {"_id": False}, sort=[("time", 1)]
            )
        ]
        datums = {
            d["datum_id"]: d
            for d in assets["datum"].find({"datum_id": {"$in": order}}, {"_id": False})
        }
        resource = assets["resource"].find_one({"uid": datums[order[0]]["resource"]})
    else:
        order = []
        for page in mds["event"].find(
            {"descriptor": descriptor}, {"_id": False}, sort=[("first_index", 1)]
        ):
            order.extend(page["data"]["img"])
        resource_uid = order[0].split("/")[0]
        datums = {}
        for page in mds["datum"].find({"resource": resource_uid}, {"_id": False}):
            for i, did in enumerate(page["datum_id"]):
                kw = {k: v[i] for k, v in page["datum_kwargs"].items()}
                datums[did] = {"datum_kwargs": kw}
        header = mds["header"].find_one({"resources.uid": resource_uid}, {"_id": False})
        resource = next(r for r in header["resources"] if r["uid"] == resource_uid)
    return _load_frames([datums[d] for d in order], resource, npy_dir, dtype)


# TIFF floors -------------------------------------------------------------


def floor_tiff_open(directory, by_series: bool = False) -> int:
    """List and stat every file, and read the TIFF header (tags, shape) of the
    first file of each run: the directory's, or each series' (``<stem>_<n>``)."""
    import re

    import tifffile

    names = sorted(e.name for e in os.scandir(directory) if e.name.endswith((".tif", ".tiff")))
    firsts = {}
    for name in names:
        os.stat(os.path.join(directory, name))
        stem = re.sub(r"_?\d+\.tiff?$", "", name) if by_series else ""
        firsts.setdefault(stem, name)
    for name in firsts.values():
        with tifffile.TiffFile(os.path.join(directory, name)) as tif:
            page = tif.pages[0]
            _ = page.shape, page.dtype, {t.name: t.value for t in page.tags}
    return len(firsts)


def floor_tiff_headers(directory) -> int:
    """Reference: parse every file's TIFF header (what reading all shapes costs)."""
    import tifffile

    n = 0
    for e in sorted(os.scandir(directory), key=lambda e: e.name):
        with tifffile.TiffFile(e.path) as tif:
            n += len(tif.pages[0].shape)
    return n


def floor_tiff_read(directory) -> np.ndarray:
    """``tifffile.imread`` of the sorted list of files (one stacked array)."""
    import tifffile

    files = sorted(os.path.join(directory, n) for n in os.listdir(directory))
    return tifffile.imread(files)
