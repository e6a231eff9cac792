"""to_dask(): chunking, graph size, pickling, a real distributed cluster."""

import event_model
import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core._model import lazy as _lazy
from intake_bluesky.core.testing import UIDS, NumpySeqHandler, example_registry, example_runs


def big_run(n_events, page_size):
    run = event_model.compose_run(uid="big-run", time=0.0, metadata={"scan_id": 7})
    desc = run.compose_descriptor(
        name="primary",
        time=0.0,
        data_keys={
            "x": {"source": "s", "dtype": "number", "shape": [], "dtype_numpy": "<f8"},
            "frame": {"source": "s", "dtype": "array", "shape": [16, 16], "dtype_numpy": "<u2"},
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60000, size=(n_events, 16, 16), dtype="<u2")
    for lo in range(0, n_events, page_size):
        seq = list(range(lo + 1, min(n_events, lo + page_size) + 1))
        docs.append(
            (
                "event_page",
                desc.compose_event_page(
                    data={"x": [float(s) for s in seq], "frame": frames[lo : lo + len(seq)]},
                    timestamps={"x": [float(s) for s in seq], "frame": [float(s) for s in seq]},
                    seq_num=seq,
                    time=[float(s) for s in seq],
                    validate=False,
                ),
            )
        )
    docs.append(("stop", run.compose_stop(time=float(n_events + 1))))
    return docs, frames


def test_chunks_follow_bytes_not_events(monkeypatch):
    docs, frames = big_run(2000, 100)
    cat = BlueskyInMemoryCatalog()
    cat.ingest(docs)
    stream = cat[-1].primary
    # Default: 2000 small frames are one chunk, not 2000.
    lazy = stream.to_dask()
    assert lazy["frame"].data.numblocks == (1, 1, 1)
    assert lazy["x"].data.numblocks == (1,)
    # With 100 kB chunks: 512 B per frame -> 200 frames per chunk -> 10 chunks.
    monkeypatch.setattr(_lazy, "CHUNK_BYTES", 100 * 1024)
    lazy = stream.to_dask()
    assert lazy["frame"].data.chunks[0] == (200,) * 10
    assert lazy["x"].data.numblocks == (1,)
    graph = dict(lazy["frame"].data.__dask_graph__())
    assert len(graph) == 20  # one load + one getitem per chunk, whatever the events
    np.testing.assert_array_equal(lazy["frame"].values, frames)
    np.testing.assert_array_equal(lazy["x"].values, np.arange(1, 2001))


def test_to_dask_reads_nothing_external_until_compute(tmp_path):
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    before = NumpySeqHandler.calls
    lazy = cat[UIDS["scan"]].primary.to_dask()
    ts = cat[UIDS["scan"]].primary.timestamps.to_dask()
    assert NumpySeqHandler.calls == before
    assert ts["ext"].chunks is not None
    assert float(lazy["ext"].sum()) == pytest.approx(sum((s * 10.0 * 6 + 15) for s in range(1, 7)))
    assert NumpySeqHandler.calls == before + 6


def test_computes_on_a_distributed_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    lazy = cat[UIDS["scan"]].primary.to_dask()
    expected = cat[UIDS["scan"]].primary.read()
    # Worker processes: the graph (driver, handlers, filler) must pickle.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            result = client.compute(lazy).result()
    assert result.identical(expected)


def test_computing_a_scalar_loads_no_external_data(tmp_path):
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    lazy = cat[UIDS["scan"]].primary.to_dask()
    before = NumpySeqHandler.calls
    np.testing.assert_array_equal(lazy["det"].values, np.arange(1, 7) * 1.5)
    assert NumpySeqHandler.calls == before
    np.testing.assert_array_equal(lazy["ext"][0].values, [[10, 11], [12, 13], [14, 15]])


def test_to_dask_without_handler_fails_at_compute_not_before(tmp_path):
    from intake_bluesky.core import MissingHandlerError

    # A spec no installed package handles (ophyd registers NPY_SEQ).
    cat = BlueskyInMemoryCatalog(
        transforms={"resource": lambda doc: {**doc, "spec": "NPY_SEQ_UNHANDLED"}}
    )
    docs = example_runs(tmp_path)[0]
    for name, doc in docs:
        if name == "descriptor" and "ext" in doc["data_keys"]:
            doc = {**doc, "data_keys": {**doc["data_keys"]}}
            doc["data_keys"]["ext"] = {
                k: v for k, v in doc["data_keys"]["ext"].items() if k != "dtype_numpy"
            }
        cat(name, doc)
    lazy = cat[-1].primary.to_dask()  # dtype unknown, handler missing: no error yet
    assert lazy["ext"].dtype == np.float64 and lazy["ext"].shape == (6, 3, 2)
    np.testing.assert_array_equal(lazy["det"].values, np.arange(1, 7) * 1.5)
    with pytest.raises(MissingHandlerError, match="NPY_SEQ_UNHANDLED"):
        lazy["ext"].values
