"""Conformance tests for stream data (stream_resource / stream_datum), as
ophyd-async detectors write it: a mixin of :class:`ConformanceTests`."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from .._model.casting import DtypeMismatchWarning
from .._model.filling import FillError, MissingHandlerError
from ._examples import EXTERNAL_ROOT
from ._examples_streams import (
    FRAME,
    NPZ_MIMETYPE,
    STREAM_UIDS,
    NpzFramesReader,
    frames,
    stream_registry,
    stream_runs,
)

__all__ = ["StreamDataTests"]


def _load(directory, name: str, dataset: str = "data") -> np.ndarray:
    with np.load(os.path.join(directory, name)) as npz:
        return npz[dataset]


class StreamDataTests:
    """Stream data read back exactly, eagerly and lazily, on every backend."""

    @pytest.fixture
    def stream_dir(self, tmp_path):
        path = tmp_path / "stream-external"
        path.mkdir()
        return path

    @pytest.fixture
    def stream_docs(self, stream_dir):
        return stream_runs(stream_dir)

    @pytest.fixture
    def stream_cat(self, store, stream_docs, stream_dir):
        for docs in stream_docs:
            store.write_run(docs)
        return store.catalog(**stream_registry(stream_dir))

    def test_step_scan_two_detectors_and_inline_fields(self, stream_cat, stream_dir):
        ds = stream_cat[STREAM_UIDS["step"]].primary.read()
        assert sorted(ds.data_vars) == ["bdet", "bdet-sum", "bdet2", "bdet2-sum", "pdet", "x"]
        assert ds["seq_num"].values.tolist() == [1, 2, 3, 4]
        assert ds["bdet"].shape == (4, 1, *FRAME) and ds["bdet"].dtype == np.dtype("<u2")
        np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(4, 1))
        np.testing.assert_array_equal(ds["bdet2"].values[:, 0], frames(4, 2))
        # Two keys in one file: the sum dataset beside the frames.
        sums = _load(stream_dir, "step_bdet.npz", "sum")
        assert ds["bdet-sum"].shape == (4, 1) and ds["bdet-sum"].dtype == np.int64
        np.testing.assert_array_equal(ds["bdet-sum"].values[:, 0], sums)
        assert ds["pdet"].values.tolist() == [100, 101, 102, 103]
        assert ds["pdet"].dtype == np.int64
        np.testing.assert_allclose(ds["x"].values, [-1.0, 0.0, 1.0, 2.0])
        assert not np.isnan(ds["time"].values).any()

    def test_fly_scan_without_events_has_its_rows(self, stream_cat):
        stream = stream_cat[STREAM_UIDS["fly"]].primary
        for ds in (stream.read(), stream.to_dask()):
            assert ds["seq_num"].values.tolist() == [1, 2, 3, 4, 5, 6, 7]
            assert np.isnan(ds["time"].values).all()
            assert ds["bdet"].shape == (7, 1, *FRAME)
            np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(7, 3))

    def test_k_frames_per_row(self, stream_cat, stream_dir):
        ds = stream_cat[STREAM_UIDS["multi"]].primary.read()
        assert ds["bdet"].shape == (4, 3, *FRAME)
        np.testing.assert_array_equal(ds["bdet"].values.reshape(12, *FRAME), frames(12, 4))
        sums = _load(stream_dir, "multi.npz", "sum")
        np.testing.assert_array_equal(ds["bdet-sum"].values, sums.reshape(4, 3))

    def test_second_stream_resource_appends(self, stream_cat):
        ds = stream_cat[STREAM_UIDS["rollover"]].primary.read()
        assert ds["seq_num"].values.tolist() == [1, 2, 3, 4, 5, 6]
        np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(6, 5))

    @pytest.mark.parametrize("name", sorted(STREAM_UIDS))
    def test_to_dask_equals_read_and_opens_nothing_before_compute(self, stream_cat, name):
        stream = stream_cat[STREAM_UIDS[name]].primary
        eager = stream.read()
        before = NpzFramesReader.instances
        lazy = stream.to_dask()
        assert NpzFramesReader.instances == before
        assert lazy["bdet"].dtype == eager["bdet"].dtype
        np.testing.assert_array_equal(lazy["bdet"].values, eager["bdet"].values)
        np.testing.assert_array_equal(lazy["bdet-sum"].values, eager["bdet-sum"].values)

    def test_to_dask_chunks(self, stream_cat):
        stream = stream_cat[STREAM_UIDS["rollover"]].primary
        assert stream.to_dask()["bdet"].data.chunks[0] == (6,)
        assert stream.to_dask(chunks=4)["bdet"].data.chunks[0] == (4, 2)
        by_field = stream.to_dask(chunks={"bdet": 2, None: 5})
        assert by_field["bdet"].data.chunks[0] == (2, 2, 2)
        assert by_field["bdet-sum"].data.chunks[0] == (5, 1)
        # A size: 100 bytes hold 2 rows of 40 bytes.
        sized = stream.to_dask(chunks="100B")
        assert sized["bdet"].data.chunks[0] == (2, 2, 2)
        np.testing.assert_array_equal(sized["bdet"].values[:, 0], frames(6, 5))

    def test_timestamps_of_a_stream_with_stream_data(self, stream_cat):
        ts = stream_cat[STREAM_UIDS["step"]].primary.timestamps.read()
        assert sorted(ts.data_vars) == ["pdet", "x"]
        assert ts["seq_num"].values.tolist() == [1, 2, 3, 4]

    def test_canonical_fill_no_keeps_every_stream_document(self, stream_cat, stream_docs):
        for docs in stream_docs:
            uid = docs[0][1]["uid"]
            out = list(stream_cat[uid].canonical(fill="no"))
            names = [n for n, _ in out]
            want = [n for n, _ in docs]
            assert names.count("stream_resource") == want.count("stream_resource")
            assert names.count("stream_datum") == want.count("stream_datum")
            sr_uids = {d["uid"] for n, d in docs if n == "stream_resource"}
            assert {d["uid"] for n, d in out if n == "stream_resource"} == sr_uids
            seen_sr, seen_desc = set(), set()
            for name, doc in out:
                if name == "descriptor":
                    seen_desc.add(doc["uid"])
                elif name == "stream_resource":
                    seen_sr.add(doc["uid"])
                elif name == "stream_datum":
                    assert doc["stream_resource"] in seen_sr
                    assert doc["descriptor"] in seen_desc

    def test_missing_stream_documents_are_an_error(self, store, stream_docs, stream_dir):
        # What suitcase-msgpack 0.3 leaves of a run: no stream documents.
        for docs in stream_docs[:2]:
            store.write_run(
                [(n, d) for n, d in docs if n not in ("stream_resource", "stream_datum")]
            )
        cat = store.catalog(**stream_registry(stream_dir))
        with pytest.raises(FillError, match="stream_datum"):
            cat[STREAM_UIDS["step"]].primary.read()
        with pytest.raises(FillError, match="dropped"):
            cat[STREAM_UIDS["fly"]].primary.read()
        # The inline fields stay readable.
        ds = cat[STREAM_UIDS["step"]].primary(include=["pdet"]).read()
        assert ds["pdet"].values.tolist() == [100, 101, 102, 103]

    def test_stream_resource_without_mimetype(self, store, stream_docs, stream_dir):
        docs = [
            (n, {k: v for k, v in d.items() if k != "mimetype"} if n == "stream_resource" else d)
            for n, d in stream_docs[1]
        ]
        store.write_run(docs)
        cat = store.catalog(**stream_registry(stream_dir))
        with pytest.raises(FillError, match="neither 'mimetype' nor 'spec'"):
            cat[STREAM_UIDS["fly"]].primary.read()
        # The fix the error suggests: a stream_resource transform.
        fixed = store.catalog(
            **stream_registry(stream_dir),
            transforms={"stream_resource": lambda d: {**d, "mimetype": NPZ_MIMETYPE}},
        )
        ds = fixed[STREAM_UIDS["fly"]].primary.read()
        np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(7, 3))
        patched = [
            d for n, d in fixed[STREAM_UIDS["fly"]].canonical(fill="no") if n == "stream_resource"
        ]
        assert patched and all(d["mimetype"] == NPZ_MIMETYPE for d in patched)

    def test_missing_reader_names_mimetype(self, store, stream_docs, stream_dir):
        store.write_run(stream_docs[1])
        cat = store.catalog(root_map={EXTERNAL_ROOT: str(stream_dir)})
        with pytest.raises(MissingHandlerError, match="application/x-intake-bluesky-npz"):
            cat[STREAM_UIDS["fly"]].primary.read()

    def test_missing_file_names_path_tried_and_stored_uri(self, store, stream_docs, tmp_path):
        store.write_run(stream_docs[1])
        elsewhere = tmp_path / "moved"
        cat = store.catalog(**stream_registry(elsewhere))
        with pytest.raises(FillError) as info:
            cat[STREAM_UIDS["fly"]].primary.read()
        message = str(info.value)
        assert str(elsewhere / "fly.npz") in message  # the path tried, after root_map
        assert f"file://localhost{EXTERNAL_ROOT}/fly.npz" in message  # the stored uri
        assert "root_map" in message

    def test_rows_not_written_yet(self, store, stream_docs, stream_dir):
        store.write_run(stream_docs[1])
        # The detector has flushed 5 of the 7 frames so far.
        path = os.path.join(stream_dir, "fly.npz")
        data, sums = _load(stream_dir, "fly.npz"), _load(stream_dir, "fly.npz", "sum")
        np.savez(path, data=data[:5], sum=sums[:5])
        cat = store.catalog(**stream_registry(stream_dir))
        with pytest.raises(FillError, match="written so far"):
            cat[STREAM_UIDS["fly"]].primary.read()

    def test_stream_values_that_do_not_fit_dtype_numpy_are_kept(
        self, store, stream_docs, stream_dir
    ):
        # The file holds int64 sums larger than the declared uint8 would hold.
        docs = []
        for n, d in stream_docs[1]:
            if n == "descriptor":
                d = {**d, "data_keys": {**d["data_keys"]}}
                d["data_keys"]["bdet-sum"] = {**d["data_keys"]["bdet-sum"], "dtype_numpy": "|u1"}
            docs.append((n, d))
        store.write_run(docs)
        cat = store.catalog(**stream_registry(stream_dir))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = cat[STREAM_UIDS["fly"]].primary.read()
        sums = _load(stream_dir, "fly.npz", "sum")
        assert ds["bdet-sum"].dtype == np.int64
        np.testing.assert_array_equal(ds["bdet-sum"].values[:, 0], sums)
        mismatch = [w for w in caught if issubclass(w.category, DtypeMismatchWarning)]
        assert mismatch and "bdet-sum" in str(mismatch[0].message)

    def test_live_step_scan_waits_for_the_event_of_its_last_row(
        self, store, stream_docs, stream_dir
    ):
        # Cut as the file looks between the last stream_datums and their event.
        docs = stream_docs[0]
        cut = max(i for i, (n, _) in enumerate(docs) if n == "event")
        store.write_run(docs[:cut])
        stream = store.catalog(**stream_registry(stream_dir))[STREAM_UIDS["step"]].primary
        for ds in (stream.read(), stream.to_dask().compute()):
            assert ds["seq_num"].values.tolist() == [1, 2, 3]
            assert ds["pdet"].dtype == np.int64 and ds["pdet"].values.tolist() == [100, 101, 102]
            np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(4, 1)[:3])

    def test_rows_without_events_keep_every_value(self, store, stream_docs, stream_dir):
        # A finished run whose event for seq_num 2 is missing: that row has
        # stream data only; inline fields are missing there, never changed.
        docs = [(n, d) for n, d in stream_docs[0] if not (n == "event" and d["seq_num"] == 2)]
        store.write_run(docs)
        stream = store.catalog(**stream_registry(stream_dir))[STREAM_UIDS["step"]].primary
        eager = stream.read()
        lazy = stream.to_dask()
        assert lazy["pdet"].dtype == eager["pdet"].dtype == np.float64
        for ds in (eager, lazy.compute()):
            assert ds["seq_num"].values.tolist() == [1, 2, 3, 4]
            np.testing.assert_array_equal(ds["pdet"].values, [100, np.nan, 102, 103])
            assert (
                np.isnan(ds["time"].values[1]) and not np.isnan(ds["time"].values[[0, 2, 3]]).any()
            )
            np.testing.assert_array_equal(ds["bdet"].values[:, 0], frames(4, 1))

    def test_stream_datum_without_seq_nums_is_named(self, store, stream_docs, stream_dir):
        docs = []
        for n, d in stream_docs[1]:
            if n == "stream_datum":
                d = {k: v for k, v in d.items() if k != "seq_nums"}
                d.update(block_idx=0, event_count=1, event_offset=0)
            docs.append((n, d))
        store.write_run(docs)
        cat = store.catalog(**stream_registry(stream_dir))
        with pytest.raises(ValueError, match="has no seq_nums.*event-model older than 1.20"):
            cat[STREAM_UIDS["fly"]].primary.read()
