"""Deterministic benchmark workloads, written in every format the drivers read.

Documents are composed with ``event_model.compose_run`` (no RunEngine), with
fixed seeds: uids, times and values are the same on every machine. The writers
reproduce the real serializers' output (see ``_check_writers.py``, which
compares them byte for byte with suitcase-jsonl and suitcase-msgpack in the
databroker 1.2.5 environment):

* JSONL like suitcase-jsonl: one ``<start uid>.jsonl`` per run, one
  ``json.dumps([name, doc])`` line per document, emitted as is (events and
  event pages, datums and datum pages);
* msgpack like suitcase-msgpack: one ``<start uid>.msgpack`` per run, every
  event a 1-row ``event_page``, every datum a 1-row ``datum_page``, numpy
  arrays as msgpack-numpy maps;
* Mongo, both layouts of suitcase-mongo, as plain documents per collection
  (``mongo/*.msgpack``); ``_common.load_mongo`` inserts them into mongomock,
  in this process and again in databroker's (mongomock does not cross
  processes);
* TIFF: a bucket of small single-page files and a long series.

Workloads are cached under ``benchmarks/.workloads/<version>-<size>/``; bump
:data:`VERSION` whenever what is written changes.

Run ``python benchmarks/workloads.py [--quick] [--force]`` to (re)generate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import NPY_ROOT_STORED, WORKLOADS_DIR  # noqa: E402
from _handlers import SPEC  # noqa: E402

#: Bump when the generated workloads change (it keys the cache).
VERSION = "4"

SIZES = {
    "full": {
        "scalar_events": 100_000,
        "page_rows": 1_000,
        "small_runs": 2_000,
        "small_events": 5,
        "image_frames": 200,
        "image_shape": (512, 512),
        "mongo_scalar_events": 10_000,
        "tiff_bucket_series": 100,
        "tiff_bucket_frames": 100,
        "tiff_bucket_shape": (32, 32),
        "tiff_series_frames": 500,
        "tiff_series_shape": (512, 512),
    },
    "quick": {
        "scalar_events": 5_000,
        "page_rows": 500,
        "small_runs": 200,
        "small_events": 5,
        "image_frames": 20,
        "image_shape": (256, 256),
        "mongo_scalar_events": 2_000,
        "tiff_bucket_series": 10,
        "tiff_bucket_frames": 50,
        "tiff_bucket_shape": (32, 32),
        "tiff_series_frames": 50,
        "tiff_series_shape": (256, 256),
    },
}

T0 = 1_700_000_000.0
SCALAR_FIELDS = {"motor": "<f8", "det": "<f8", "I0": "<f8", "count": "<i8"}
PLANS = ["count", "scan", "rel_scan", "grid_scan", "list_scan"]
OPERATORS = ["alice", "bob", "carol", "dave", "beth"]


class _Ids:
    """Deterministic uuid4-shaped strings."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def __call__(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


# --------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------


def _configuration(objects, t: float, extra: dict | None = None) -> dict:
    """Per-object configuration, as ophyd devices report it (empty for most)."""
    conf = {obj: {"data": {}, "timestamps": {}, "data_keys": {}} for obj in objects}
    for obj, values in (extra or {}).items():
        conf[obj] = {
            "data": dict(values),
            "timestamps": {k: t for k in values},
            "data_keys": {
                k: {"source": f"SIM:{k}", "dtype": "number", "shape": []} for k in values
            },
        }
    return conf


def _scalar_data_keys() -> dict:
    keys = {}
    for name, dt in SCALAR_FIELDS.items():
        keys[name] = {
            "source": f"SIM:{name}",
            "dtype": "integer" if dt.startswith("<i") else "number",
            "dtype_numpy": dt,
            "shape": [],
            "object_name": name,
        }
    return keys


def scalar_run(n_events: int, page_rows: int | None, seed: int = 1) -> Iterator[tuple]:
    """A one-stream run of ``n_events`` scalar events (4 fields).

    With ``page_rows`` the events are emitted as event pages of that many rows
    (a flyer); without, as single events (a step scan). The documents (uids,
    times, values) are the same either way.
    """
    import event_model

    ids = _Ids(seed)
    rng = np.random.default_rng(seed)
    run_uid = ids()
    bundle = event_model.compose_run(
        uid=run_uid,
        time=T0,
        metadata={
            "scan_id": 1,
            "plan_name": "fly_scan",
            "sample": "scalar",
            "purpose": "benchmark",
            "num_points": n_events,
            "detectors": ["det", "I0", "count"],
            "motors": ["motor"],
        },
    )
    yield "start", bundle.start_doc
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys=_scalar_data_keys(),
        object_keys={k: [k] for k in SCALAR_FIELDS},
        configuration=_configuration(SCALAR_FIELDS, T0, {"det": {"det_gain": 2.0}}),
        time=T0 + 0.5,
        uid=ids(),
    )
    yield "descriptor", desc.descriptor_doc
    times = (T0 + 1.0 + 0.001 * np.arange(n_events)).tolist()
    motor = np.linspace(-10.0, 10.0, n_events).tolist()
    det = rng.normal(100.0, 10.0, n_events).tolist()
    i0 = rng.normal(1.0e5, 100.0, n_events).tolist()
    count = rng.integers(0, 1_000_000, n_events).tolist()
    uids = [ids() for _ in range(n_events)]
    step = page_rows or n_events
    for lo in range(0, n_events, step):
        hi = min(lo + step, n_events)
        t = times[lo:hi]
        data = {"motor": motor[lo:hi], "det": det[lo:hi], "I0": i0[lo:hi], "count": count[lo:hi]}
        ts = {k: t for k in SCALAR_FIELDS}
        if page_rows:
            yield (
                "event_page",
                desc.compose_event_page(
                    data=data,
                    timestamps=ts,
                    seq_num=list(range(lo + 1, hi + 1)),
                    uid=uids[lo:hi],
                    time=t,
                    validate=False,
                ),
            )
        else:
            for j in range(hi - lo):
                yield (
                    "event",
                    desc.compose_event(
                        data={k: v[j] for k, v in data.items()},
                        timestamps={k: t[j] for k in SCALAR_FIELDS},
                        seq_num=lo + j + 1,
                        uid=uids[lo + j],
                        time=t[j],
                        validate=False,
                    ),
                )
    yield "stop", bundle.compose_stop(uid=ids(), time=times[-1] + 0.5)


def small_runs(n_runs: int, n_events: int, seed: int = 2) -> Iterator[list[tuple]]:
    """``n_runs`` small step scans with varied start metadata (for open/search)."""
    import event_model

    ids = _Ids(seed)
    rng = random.Random(seed)
    for i in range(n_runs):
        t = T0 + 3600.0 + 60.0 * i + rng.random()
        plan = rng.choice(PLANS)
        start_md = {
            "scan_id": i + 1,
            "plan_name": plan,
            "plan_type": "generator",
            "sample": f"sample_{rng.randrange(40):02d}",
            "operator": rng.choice(OPERATORS),
            "proposal": {"id": 300_000 + rng.randrange(25), "pi": rng.choice(OPERATORS)},
            "temperature": round(rng.uniform(4.0, 300.0), 2),
            "num_points": n_events,
            "detectors": ["det"],
            "motors": ["motor"],
            "purpose": "benchmark",
        }
        bundle = event_model.compose_run(uid=ids(), time=t, metadata=start_md)
        docs = [("start", bundle.start_doc)]
        keys = {
            name: {"source": f"SIM:{name}", "dtype": "number", "shape": [], "object_name": name}
            for name in ("det", "motor")
        }
        desc = bundle.compose_descriptor(
            name="primary",
            data_keys=keys,
            object_keys={"det": ["det"], "motor": ["motor"]},
            configuration=_configuration(keys, t),
            time=t + 0.01,
            uid=ids(),
        )
        docs.append(("descriptor", desc.descriptor_doc))
        for j in range(n_events):
            te = t + 0.1 * (j + 1)
            docs.append(
                (
                    "event",
                    desc.compose_event(
                        data={"det": rng.gauss(0.0, 1.0), "motor": float(j)},
                        timestamps={"det": te, "motor": te},
                        seq_num=j + 1,
                        uid=ids(),
                        time=te,
                        validate=False,
                    ),
                )
            )
        docs.append(("stop", bundle.compose_stop(uid=ids(), time=t + 0.1 * (n_events + 1))))
        yield docs


def frame(i: int, shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """Frame ``i`` of the image workloads (12-bit values in uint16)."""
    return np.random.default_rng([seed, i]).integers(0, 4096, shape, dtype=np.uint16)


def image_run(
    n_frames: int, shape: tuple[int, int], external: bool, seed: int = 3
) -> Iterator[tuple]:
    """A step scan of ``n_frames`` uint16 frames plus a scalar, one event each.

    Inline: the frames are numpy arrays in the events. External: they are
    ``npy/frames_<i>.npy`` files behind one resource (spec ``NPY_SEQ``, root
    ``NPY_ROOT_STORED``) and one datum per frame, emitted before its event.
    """
    import event_model

    ids = _Ids(seed + (100 if external else 0))
    run_uid = ids()
    t = T0 + 7200.0
    bundle = event_model.compose_run(
        uid=run_uid,
        time=t,
        metadata={
            "scan_id": 2,
            "plan_name": "count",
            "sample": "image_external" if external else "image_inline",
            "purpose": "benchmark",
            "num_points": n_frames,
            "detectors": ["img", "det"],
        },
    )
    yield "start", bundle.start_doc
    img_key = {
        "source": "SIM:img",
        "dtype": "array",
        "dtype_numpy": "<u2",
        "shape": list(shape),
        "dims": ["dim_y", "dim_x"],
        "object_name": "img",
    }
    if external:
        img_key["external"] = "FILESTORE:"
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "img": img_key,
            "det": {"source": "SIM:det", "dtype": "number", "shape": [], "object_name": "det"},
        },
        object_keys={"img": ["img"], "det": ["det"]},
        configuration=_configuration(["img", "det"], t, {"img": {"img_acquire_time": 0.1}}),
        time=t + 0.01,
        uid=ids(),
    )
    yield "descriptor", desc.descriptor_doc
    res = None
    if external:
        res = bundle.compose_resource(
            spec=SPEC,
            root=NPY_ROOT_STORED,
            resource_path="frames",
            resource_kwargs={},
            uid=ids(),
        )
        yield "resource", res.resource_doc
    for i in range(n_frames):
        te = t + 0.1 * (i + 1)
        if external:
            datum = res.compose_datum(datum_kwargs={"index": i})
            yield "datum", datum
            value = datum["datum_id"]
            filled = {"img": False}
        else:
            value = frame(i, shape, seed)
            filled = None
        yield (
            "event",
            desc.compose_event(
                data={"img": value, "det": float(i)},
                timestamps={"img": te, "det": te},
                seq_num=i + 1,
                filled=filled,
                uid=ids(),
                time=te,
                validate=False,
            ),
        )
    yield "stop", bundle.compose_stop(uid=ids(), time=t + 0.1 * (n_frames + 1))


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------


def _json_default(obj):
    # What event_model.NumpyEncoder (suitcase-jsonl's default) does.
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj)}")


def write_jsonl(docs: Iterable[tuple[str, dict]], directory: Path) -> Path:
    """Write one run as suitcase-jsonl does: ``<directory>/<start uid>.jsonl``."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = iter(docs)
    name, start = next(docs)
    assert name == "start"
    path = directory / f"{start['uid']}.jsonl"
    with open(path, "x") as f:
        f.write(json.dumps(("start", start), default=_json_default) + "\n")
        for name, doc in docs:
            f.write(json.dumps((name, doc), default=_json_default) + "\n")
    return path


def _pack_event_page(event: dict) -> dict:
    import event_model

    return event_model.pack_event_page(event)


def _pack_datum_page(datum: dict) -> dict:
    import event_model

    return event_model.pack_datum_page(datum)


def write_msgpack(docs: Iterable[tuple[str, dict]], directory: Path) -> Path:
    """Write one run as suitcase-msgpack does: ``<directory>/<start uid>.msgpack``.

    Events become 1-row event pages and datums 1-row datum pages (through
    event-model's packers, as suitcase's DocumentRouter does); arrays are
    msgpack-numpy maps.
    """
    import msgpack
    import msgpack_numpy

    directory.mkdir(parents=True, exist_ok=True)
    docs = iter(docs)
    name, start = next(docs)
    assert name == "start"
    path = directory / f"{start['uid']}.msgpack"

    def pack(obj):
        return msgpack.packb(obj, default=msgpack_numpy.encode, use_bin_type=True)

    with open(path, "xb") as f:
        f.write(pack(("start", start)))
        for name, doc in docs:
            if name == "event":
                name, doc = "event_page", _pack_event_page(doc)
            elif name == "datum":
                name, doc = "datum_page", _pack_datum_page(doc)
            elif name not in {"descriptor", "event_page", "resource", "datum_page", "stop"}:
                continue  # suitcase-msgpack drops what it has no method for
            f.write(pack((name, doc)))
    return path


def mongo_normalized(docs: Iterable[tuple[str, dict]], mds: dict, assets: dict) -> None:
    """Append one run's documents to collections laid out as suitcase.mongo_normalized does."""
    import event_model

    for name, doc in docs:
        if name == "start":
            mds.setdefault("run_start", []).append(doc)
        elif name == "stop":
            mds.setdefault("run_stop", []).append(doc)
        elif name == "descriptor":
            mds.setdefault("event_descriptor", []).append(doc)
        elif name == "event":
            mds.setdefault("event", []).append(doc)
        elif name == "event_page":
            mds.setdefault("event", []).extend(event_model.unpack_event_page(doc))
        elif name == "resource":
            assets.setdefault("resource", []).append(doc)
        elif name == "datum":
            assets.setdefault("datum", []).append(doc)
        elif name == "datum_page":
            assets.setdefault("datum", []).extend(event_model.unpack_datum_page(doc))


#: suitcase.mongo_embedded starts a new page once one holds this many BSON bytes.
EMBEDDED_PAGE_SIZE = 5_000_000


def mongo_embedded(docs: Iterable[tuple[str, dict]], db: dict) -> None:
    """Append one run to collections laid out as suitcase.mongo_embedded does.

    ``header``: one document per run (``start: [doc]``, ``descriptors``,
    ``resources``, counts, ``stop: [doc]``); ``event``: column pages per
    descriptor, a new page once one exceeds 5 MB of BSON, with ``size``,
    ``first_index``, ``last_index``; ``datum``: pages per resource, likewise.
    """
    import bson

    header: dict = {}
    pages: dict[str, list[dict]] = {}
    dpages: dict[str, list[dict]] = {}
    counts: dict[str, int] = {}

    def add(store, key_name, key, row_doc, arrays, frames):
        size = len(bson.encode(row_doc))
        plist = store.setdefault(key, [])
        if not plist or plist[-1]["size"] >= EMBEDDED_PAGE_SIZE:
            page = {key_name: key}
            for a in arrays:
                page[a] = []
            for fr in frames:
                if fr in row_doc:
                    page[fr] = {}
            page["size"] = 0
            idx = counts.get(key, 0)
            page["first_index"] = idx
            page["last_index"] = idx
            plist.append(page)
        page = plist[-1]
        for a in arrays:
            page[a].append(row_doc[a])
        for fr in frames:
            for k, v in row_doc.get(fr, {}).items():
                page.setdefault(fr, {}).setdefault(k, []).append(v)
        page["size"] += size
        page["last_index"] = counts.get(key, 0)
        counts[key] = counts.get(key, 0) + 1

    for name, doc in docs:
        if name == "start":
            header = {"run_id": doc["uid"], "start": [doc], "event_count": 0, "datum_count": 0}
        elif name == "descriptor":
            header.setdefault("descriptors", []).append(doc)
        elif name == "resource":
            header.setdefault("resources", []).append(doc)
        elif name == "event":
            ev = dict(doc)
            if not ev.get("filled"):
                ev.pop("filled", None)
            add(
                pages,
                "descriptor",
                doc["descriptor"],
                ev,
                ("uid", "time", "seq_num"),
                ("data", "timestamps", "filled"),
            )
        elif name == "datum":
            add(dpages, "resource", doc["resource"], doc, ("datum_id",), ("datum_kwargs",))
        elif name == "stop":
            header["stop"] = [doc]
    header["event_count"] = sum(counts[k] for k in pages)
    header["datum_count"] = sum(counts[k] for k in dpages)
    for k in list(pages) + list(dpages):
        header[f"count_{k}"] = counts[k]
    db.setdefault("header", []).append(header)
    for plist in pages.values():
        db.setdefault("event", []).extend(plist)
    for plist in dpages.values():
        db.setdefault("datum", []).extend(plist)


def write_tiffs(directory: Path, names: list[str], frames: Iterable[np.ndarray], t0: float):
    import tifffile

    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(zip(names, frames, strict=True)):
        path = directory / name
        tifffile.imwrite(path, data, software="intake-bluesky-benchmarks")
        os.utime(path, (t0 + i, t0 + i))


# --------------------------------------------------------------------------
# The whole set
# --------------------------------------------------------------------------


def workload_dir(size: str) -> Path:
    return WORKLOADS_DIR / f"v{VERSION}-{size}"


def ensure(size: str = "full", force: bool = False, log=print) -> tuple[Path, dict]:
    """Generate the workloads of ``size`` unless cached; return (dir, manifest)."""
    root = workload_dir(size)
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and not force:
        return root, json.loads(manifest_path.read_text())
    if root.exists():
        shutil.rmtree(root)
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t_start = time.perf_counter()
    log(f"generating {size} workloads in {root} (cached afterwards) ...")
    manifest = _generate(tmp, SIZES[size], log)
    manifest.update(version=VERSION, size=size, params=SIZES[size])
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    tmp.rename(root)
    log(f"generated in {time.perf_counter() - t_start:.0f} s")
    return root, manifest


def _generate(root: Path, p: dict, log) -> dict:
    import msgpack

    m: dict = {"runs": {}, "dirs": {}, "queries": {}}
    mongo_norm: dict = {"small_mds": {}, "small_assets": {}, "big_mds": {}, "big_assets": {}}
    mongo_emb: dict = {"small_embedded": {}, "big_embedded": {}}

    # Scalar run, as event pages and as single events (same documents).
    n = p["scalar_events"]
    log(f"  scalar run: {n} events, pages of {p['page_rows']} and single events")
    for variant, rows in (("scalar_pages", p["page_rows"]), ("scalar_events", None)):
        write_jsonl(scalar_run(n, rows), root / "jsonl" / variant)
        write_msgpack(scalar_run(n, rows), root / "msgpack" / variant)
        m["dirs"][variant] = variant
    docs = list(scalar_run(n, p["page_rows"]))
    m["runs"]["scalar"] = {
        "uid": docs[0][1]["uid"],
        "descriptor": docs[1][1]["uid"],
        "n_events": n,
        "fields": SCALAR_FIELDS,
        "nbytes": n * 8 * (len(SCALAR_FIELDS) + 1),
    }
    del docs

    # Scalar run for Mongo (mongomock is quadratic past ~10,000 documents).
    nm = p["mongo_scalar_events"]
    log(f"  mongo scalar run: {nm} events")
    docs = list(scalar_run(nm, None, seed=11))
    mongo_normalized(docs, mongo_norm["big_mds"], mongo_norm["big_assets"])
    mongo_embedded(docs, mongo_emb["big_embedded"])
    m["runs"]["scalar_mongo"] = {
        "uid": docs[0][1]["uid"],
        "descriptor": docs[1][1]["uid"],
        "n_events": nm,
        "fields": SCALAR_FIELDS,
        "nbytes": nm * 8 * (len(SCALAR_FIELDS) + 1),
    }
    del docs

    # Small runs for open/search/lookup.
    ns = p["small_runs"]
    log(f"  {ns} small runs")
    starts = []
    for docs in small_runs(ns, p["small_events"]):
        write_jsonl(docs, root / "jsonl" / "small")
        write_msgpack(docs, root / "msgpack" / "small")
        mongo_normalized(docs, mongo_norm["small_mds"], mongo_norm["small_assets"])
        mongo_embedded(docs, mongo_emb["small_embedded"])
        starts.append(docs[0][1])
    m["dirs"]["small"] = "small"
    by_time = sorted(starts, key=lambda s: s["time"])
    pick = by_time[(len(by_time) * 5) // 8]
    m["runs"]["small"] = {
        "n_runs": ns,
        "lookup_uid": pick["uid"],
        "lookup_scan_id": pick["scan_id"],
        "latest_uid": by_time[-1]["uid"],
        "first_uid": by_time[0]["uid"],
    }
    t_cut = by_time[(3 * ns) // 4]["time"]
    m["queries"] = {
        "search_eq": {"plan_name": "scan"},
        "search_complex": {
            "$or": [
                {"sample": {"$in": ["sample_03", "sample_17", "sample_29"]}},
                {"operator": {"$regex": "^b"}},
            ],
            "scan_id": {"$gte": ns // 4},
            "time": {"$lt": t_cut},
            "proposal.id": {"$ne": 300_007},
        },
    }

    # Image runs: inline and external.
    nf, shape = p["image_frames"], tuple(p["image_shape"])
    log(f"  image runs: {nf} frames {shape} uint16, inline and external")
    write_jsonl(image_run(nf, shape, external=False), root / "jsonl" / "image_inline")
    write_msgpack(image_run(nf, shape, external=False), root / "msgpack" / "image_inline")
    docs = list(image_run(nf, shape, external=True))
    write_jsonl(docs, root / "jsonl" / "image_external")
    write_msgpack(docs, root / "msgpack" / "image_external")
    mongo_normalized(docs, mongo_norm["big_mds"], mongo_norm["big_assets"])
    mongo_embedded(docs, mongo_emb["big_embedded"])
    npy = root / "npy"
    npy.mkdir()
    for i in range(nf):
        np.save(npy / f"frames_{i}.npy", frame(i, shape))
    m["dirs"]["image_inline"] = "image_inline"
    m["dirs"]["image_external"] = "image_external"
    inline_uid = next(image_run(1, shape, external=False))[1]["uid"]
    m["runs"]["image"] = {
        "inline_uid": inline_uid,
        "external_uid": docs[0][1]["uid"],
        "descriptor_external": docs[1][1]["uid"],
        "n_frames": nf,
        "shape": list(shape),
        "dtype": "<u2",
        "nbytes": nf * shape[0] * shape[1] * 2 + nf * 8 * 2,
    }
    del docs

    # Mongo collections, for mongomock in either process.
    (root / "mongo").mkdir()
    for fname, dbs in (("normalized.msgpack", mongo_norm), ("embedded.msgpack", mongo_emb)):
        with open(root / "mongo" / fname, "wb") as f:
            f.write(msgpack.packb(dbs, use_bin_type=True))

    # TIFF: a bucket of small files (series x frames) and one long series.
    ser, per = p["tiff_bucket_series"], p["tiff_bucket_frames"]
    bshape = tuple(p["tiff_bucket_shape"])
    log(f"  tiff bucket: {ser * per} files {bshape}; series: {p['tiff_series_frames']} frames")
    names = [f"sample{s:03d}_{i:05d}.tif" for s in range(ser) for i in range(per)]
    write_tiffs(
        root / "tiff" / "bucket",
        names,
        (frame(k, bshape, seed=5) for k in range(len(names))),
        T0,
    )
    nt, tshape = p["tiff_series_frames"], tuple(p["tiff_series_shape"])
    write_tiffs(
        root / "tiff" / "series",
        [f"frame_{i:05d}.tif" for i in range(nt)],
        (frame(i, tshape, seed=6) for i in range(nt)),
        T0 + 100_000,
    )
    m["tiff"] = {
        "bucket": "tiff/bucket",
        "bucket_files": ser * per,
        "bucket_series": ser,
        "series": "tiff/series",
        "series_frames": nt,
        "series_shape": list(tshape),
        "series_nbytes": nt * tshape[0] * tshape[1] * 2,
    }
    return m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small smoke-run set")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    root, manifest = ensure("quick" if args.quick else "full", force=args.force)
    print(root)


if __name__ == "__main__":
    main()
