"""The main job, end to end: runs written as JSONL, found, read, streamed.

Writes a few simulated runs the way bluesky's JSONL serializer does (one
``<uid>.jsonl`` file per run, one ``[name, doc]`` line per document), opens
the folder with ``BlueskyJSONLCatalog``, searches it, reads a stream into
xarray and streams the canonical documents.

Usage: ``python examples/jsonl_tour.py [FOLDER]`` (a temporary folder by default).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import event_model
import numpy as np

from intake_bluesky.jsonl import BlueskyJSONLCatalog


def simulate_run(scan_id: int, sample: str, n: int, t0: float):
    """A 1-D scan of a Gaussian peak: a motor, a detector and a small image."""
    run = event_model.compose_run(
        time=t0, metadata={"scan_id": scan_id, "plan_name": "scan", "sample": sample}
    )
    yield "start", run.start_doc
    desc = run.compose_descriptor(
        name="primary",
        time=t0,
        data_keys={
            "motor": {"source": "sim", "dtype": "number", "shape": [], "dtype_numpy": "<f8"},
            "det": {
                "source": "sim",
                "dtype": "number",
                "shape": [],
                "dtype_numpy": "<f8",
                "units": "counts",
            },
            "img": {
                "source": "sim",
                "dtype": "array",
                "shape": [8, 8],
                "dtype_numpy": "<u2",
                "dims": ["y", "x"],
            },
        },
    )
    yield "descriptor", desc.descriptor_doc
    rng = np.random.default_rng(scan_id)
    for i, x in enumerate(np.linspace(-1, 1, n)):
        det = float(1000 * np.exp(-(x**2) / 0.1))
        img = rng.poisson(det / 100, size=(8, 8)).astype("<u2").tolist()
        yield (
            "event",
            desc.compose_event(
                data={"motor": float(x), "det": det, "img": img},
                timestamps={"motor": t0 + i, "det": t0 + i, "img": t0 + i},
                time=t0 + i,
            ),
        )
    yield "stop", run.compose_stop(time=t0 + n)


def write_jsonl(folder: Path, documents) -> Path:
    documents = list(documents)
    path = folder / f"{documents[0][1]['uid']}.jsonl"
    with path.open("w") as f:
        for name, doc in documents:
            f.write(json.dumps([name, doc]) + "\n")
    return path


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for scan_id, sample in enumerate(["Cu", "Fe", "Cu", "Ni"], start=1):
        write_jsonl(folder, simulate_run(scan_id, sample, n=11, t0=1.7e9 + 100 * scan_id))

    cat = BlueskyJSONLCatalog(str(folder))
    print(f"{len(cat)} runs in {folder}")
    copper = cat.search({"sample": "Cu"})
    scan_ids = [run.metadata["start"]["scan_id"] for run in copper.values()]
    print(f"{len(copper)} runs on copper: scan_ids {scan_ids}")

    run = copper[-1]
    print(run)
    ds = run.primary.read()
    print(ds)
    peak = float(ds["motor"][int(ds["det"].argmax(dim="time"))])
    print(f"peak at motor = {peak:+.2f}")

    counts = {}
    for name, _doc in run.canonical():
        counts[name] = counts.get(name, 0) + 1
    print("canonical documents:", counts)


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bluesky-jsonl-"))
    )
