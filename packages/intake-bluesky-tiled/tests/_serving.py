"""Stores of every backend holding the same runs, and the checks that what
tiled's clients read from a served store is what the store reads itself.

Loaded by path from the serving tests (they are imported in importlib mode,
so this folder is not on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

HERE = Path(__file__).parent
OPHYD_ASYNC = HERE.parents[1] / "intake-bluesky-hdf5" / "tests" / "samples" / "ophyd_async"
#: Where the ophyd-async sample runs' documents say their files are.
OPHYD_ASYNC_ROOT = "/data/ophyd-async-samples/h5"
OPHYD_ASYNC_CASES = ["count_blob", "scan_two_blobs_point", "fly_cpe1", "fly_cpe3"]


def as_json(value: Any) -> Any:
    """A value as a JSON store gives it back (tuples become lists)."""
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


# ------------------------------------------------------------------- stores
def example_documents(directory: Path) -> tuple[list[list[tuple[str, Any]]], dict]:
    """The core kit's example runs (several streams, events and pages,
    external data through a handler, stream data, a run in progress) and the
    handler registry that reads their files."""
    from intake_bluesky.core.testing import example_registry, example_runs

    return example_runs(str(directory)), example_registry(str(directory))


def memory_store(runs, registry):
    from intake_bluesky.core import BlueskyInMemoryCatalog

    cat = BlueskyInMemoryCatalog(**registry)
    for docs in runs:
        for name, doc in docs:
            cat(name, as_json(doc))
    return cat


def file_store(kind: str, runs, registry, directory: Path):
    """The runs written as ``kind`` ('jsonl' or 'msgpack') run files, by this
    project's writers (as suitcase-jsonl / suitcase-msgpack write them)."""
    from intake_bluesky.core.export import export_runs

    source = memory_store(runs, registry)
    export_runs(list(source.values()), str(directory), format=kind)
    if kind == "jsonl":
        from intake_bluesky.jsonl import BlueskyJSONLCatalog

        return BlueskyJSONLCatalog(str(directory), **registry)
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    return BlueskyMsgpackCatalog(str(directory), **registry)


_COLLECTIONS = {
    "start": "run_start",
    "stop": "run_stop",
    "descriptor": "event_descriptor",
    "event": "event",
    "resource": "resource",
    "datum": "datum",
    "stream_resource": "stream_resource",
    "stream_datum": "stream_datum",
}


def _unpack(name: str, doc: dict) -> list[tuple[str, dict]]:
    import event_model

    if name == "event_page":
        return [("event", dict(e)) for e in event_model.unpack_event_page(doc)]
    if name == "datum_page":
        return [("datum", dict(d)) for d in event_model.unpack_datum_page(doc)]
    return [(name, doc)]


def mongo_store(database, runs, registry):
    """The runs in MongoDB as suitcase.mongo_normalized lays them out (one
    document per event and datum), plus stream documents."""
    from intake_bluesky.mongo import BlueskyMongoCatalog

    for docs in runs:
        for name, doc in docs:
            for single_name, single in _unpack(name, as_json(doc)):
                database[_COLLECTIONS[single_name]].insert_one(dict(single))
    return BlueskyMongoCatalog(database, **registry)


def tiff_store(directory: Path):
    """Two runs of TIFF files (a directory each; frames of known values and
    known modification times)."""
    import tifffile

    from intake_bluesky.tiff import BlueskyTiffCatalog

    t0 = 1_704_067_200
    for r, (name, shape, dtype) in enumerate([("a", (4, 5), "uint16"), ("b", (3, 2), "float32")]):
        folder = directory / name
        folder.mkdir(parents=True)
        for i in range(3):
            frame = (np.arange(np.prod(shape)).reshape(shape) + 100 * i + 1000 * r).astype(dtype)
            path = folder / f"img_{i:03d}.tif"
            tifffile.imwrite(path, frame)
            os.utime(path, (t0 + 100 * r + i, t0 + 100 * r + i))
    return BlueskyTiffCatalog([str(directory / "a"), str(directory / "b")])


def ophyd_async_documents(root: Path) -> dict[str, list[tuple[str, Any]]]:
    """The recorded ophyd-async runs (HDF5 step and fly scans, 3 frames per
    event), their files copied under ``root`` and the documents pointing
    there."""
    shutil.copytree(OPHYD_ASYNC / "h5", root)
    every = json.loads((OPHYD_ASYNC / "documents.json").read_text())
    out = {}
    for case in OPHYD_ASYNC_CASES:
        text = json.dumps(every[case]).replace(OPHYD_ASYNC_ROOT, str(root))
        out[case] = [(name, doc) for name, doc in json.loads(text)]
    return out


# ------------------------------------------------------------------- checks
def assert_same_dataset(theirs: xr.Dataset, ours: xr.Dataset) -> None:
    """Same variables in the same order, values, dims, coordinates, dtypes."""
    xr.testing.assert_equal(theirs, ours)
    assert list(theirs.data_vars) == list(ours.data_vars)
    assert sorted(theirs.coords) == sorted(ours.coords)
    for name, variable in ours.variables.items():
        if variable.dtype.kind == "U":
            # tiled's client fetches 1-D columns as one table, and strings
            # come out of it in pandas' string dtype: same characters.
            assert theirs[name].dtype.kind in "UOT", name
            assert [
                str(v) for v in theirs[name].values.ravel()
            ] == variable.values.ravel().tolist()
        else:
            assert theirs[name].dtype == variable.dtype, name
        assert theirs[name].dims == variable.dims, name


def config_timestamps(descriptors: list[dict], device: str) -> dict[str, list]:
    """Per configuration field of ``device``, its timestamps, one per descriptor."""
    out: dict[str, list] = {}
    for descriptor in descriptors:
        stamps = (descriptor.get("configuration") or {}).get(device, {}).get("timestamps", {})
        for key, value in stamps.items():
            out.setdefault(key, []).append(value)
    return out


def assert_served_run(client_run, run) -> None:
    """What bluesky-tiled-plugins' client reads of one run equals our own
    reading of it: metadata, streams, data (and its chunks), timestamps,
    configuration."""
    assert client_run.start == as_json(run.metadata["start"])
    assert client_run.stop == as_json(run.metadata["stop"])
    assert client_run.metadata["summary"]["stream_names"] == list(run)
    assert list(client_run) == list(run)
    for name in run:
        stream, served = run[name], client_run[name]
        assert served.metadata["stream_name"] == name
        assert served.descriptors == as_json(stream.descriptors)
        assert_same_dataset(served.read(), stream.read())
        lazy = stream.to_dask()
        for field in lazy.data_vars:
            assert served["data"][field].chunks == lazy[field].chunks, field
        assert_same_dataset(served["timestamps"].read(), stream.timestamps.read())
        devices = list(stream.config)
        assert list(served["config"]) == devices
        for device in devices:
            assert_same_dataset(served["config"][device].read(), stream.config[device].read())
            stamps = served["config_timestamps"][device].read()
            want = config_timestamps(stream.descriptors, device)
            assert list(stamps.data_vars) == list(want)
            for key, values in want.items():
                assert stamps[key].values.tolist() == values, (device, key)
