"""The databroker 1.2.5 side of the benchmarks (run with that environment's Python).

``run.py`` starts it as::

    <anchor python> benchmarks/_anchor.py --workloads DIR --out FILE [--only ...]

It runs the same suite (``_suite.py``) over databroker 1.2.5's intake
catalogs on the same workload files and writes one JSON line per row to FILE
as it goes (a timeout leaves the rows done so far). Mongo: mongomock data do
not cross processes, so this process loads the same generated documents into
its own mongomock and measures its own floor (plain ``find``) for those rows.

databroker's ``read()`` of the 100,000-event scalar runs takes minutes, so it
is called once, in the fresh process that also measures its peak memory; its
``to_dask()`` is the same code path (``read()`` is ``to_dask().load()``) and
is not run on them again.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import _suite  # noqa: E402
from _handlers import SPEC, NpySeqHandler  # noqa: E402

EXT = {"jsonl": "jsonl", "msgpack": "msgpack"}

SKIP = {
    ("dask", "scalar_pages"): "= read() (to_dask().load()); minutes per call",
    ("dask", "scalar_events"): "= read() (to_dask().load()); minutes per call",
}
SLOW_READS = ("scalar_pages", "scalar_events")


class Backend:
    """databroker 1.2.5's catalog of one backend over the workloads."""

    def __init__(self, name: str, root: Path, manifest: dict):
        self.name = name
        self.root = root
        self.m = manifest
        self.common = {
            "handler_registry": {SPEC: NpySeqHandler},
            "root_map": {C.NPY_ROOT_STORED: str(root / "npy")},
        }

    def empty(self, directory: str):
        """A catalog over an empty directory (to warm imports up)."""
        return self._file_class()(f"{directory}/*.{EXT[self.name]}")

    def _file_class(self):
        if self.name == "jsonl":
            from databroker._drivers.jsonl import BlueskyJSONLCatalog

            return BlueskyJSONLCatalog
        from databroker._drivers.msgpack import BlueskyMsgpackCatalog

        return BlueskyMsgpackCatalog

    def catalog(self, workload: str):
        if self.name in EXT:
            # databroker's file catalogs take glob patterns, not directories.
            d = self.root / self.name / self.m["dirs"][workload]
            return self._file_class()(f"{d}/*.{EXT[self.name]}", **self.common)
        if self.name == "mongo_normalized":
            from databroker._drivers.mongo_normalized import BlueskyMongoCatalog

            dbs = C.load_mongo(self.root)
            which = "small" if workload == "small" else "big"
            return BlueskyMongoCatalog(dbs[f"{which}_mds"], dbs[f"{which}_assets"], **self.common)
        elif self.name == "mongo_embedded":
            from databroker._drivers.mongo_embedded import BlueskyMongoCatalog

            dbs = C.load_mongo(self.root)
            which = "small" if workload == "small" else "big"
            return BlueskyMongoCatalog(dbs[f"{which}_embedded"], **self.common)
        raise _suite.Unsupported("databroker 1.2.5 has no TIFF-bucket catalog")


def make_backends(root: Path, manifest: dict) -> dict:
    return {n: Backend(n, root, manifest) for n in _suite.BACKENDS if n != "tiff"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.simplefilter("ignore")  # databroker 1.2.5 on today's libraries warns a lot
    if _suite.probe_entry(argv, make_backends):
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", nargs="+", default=_suite.BACKENDS)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)

    root = Path(args.workloads)
    manifest = C.load_manifest(root)
    suite = _suite.Suite(
        root,
        manifest,
        make_backends(root, manifest),
        str(Path(__file__).resolve()),
        reps=args.reps,
        budget=10.0,
        floors="mongo",
        combine_read_memory=SLOW_READS,
        skip=SKIP,
        log=lambda s: print("  db " + s.strip(), file=sys.stderr, flush=True),
    )
    header = {
        "machine": C.machine_info(),
        "versions": C.versions(
            "databroker",
            "intake",
            "xarray",
            "dask",
            "numpy",
            "pandas",
            "msgpack",
            "mongomock",
            "event-model",
        ),
    }
    with open(args.out, "w") as out:
        out.write(json.dumps({"header": header}) + "\n")
        out.flush()
        for row in suite.run(args.only):
            out.write(json.dumps(row, default=str) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
