"""Backend-neutral tests every backend runs against its own storage."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from .._model.filling import FillError, MissingExternalFileError, MissingHandlerError
from .._model.pages import unpack_event_page
from ._compare import RESOURCES, RunStore, _skip_without, normalize_documents, plain
from ._examples import (
    EXTERNAL_ROOT,
    T0,
    UIDS,
    NumpySeqHandler,
    example_registry,
    example_runs,
    mixed_forms_run,
)
from ._suite_correctness import CorrectnessTests
from ._suite_faces import FacesTests
from ._suite_follow import FollowTests
from ._suite_roundtrip import RoundTripTests
from ._suite_stream import StreamDataTests

__all__ = ["ConformanceTests", "RunStore", "normalize_documents", "plain"]


def _check_order(documents):
    """Assert the canonical ordering invariants; return the names."""
    names = [name for name, _ in documents]
    assert names[0] == "start"
    if "stop" in names:
        assert names[-1] == "stop" and names.count("stop") == 1
    external: dict[str, list[str]] = {}
    seen_datums: set[str] = set()
    seen_stream_resources: set[str] = set()
    last_time = -np.inf
    for name, doc in documents:
        if name == "descriptor":
            external[doc["uid"]] = [
                k
                for k, v in doc["data_keys"].items()
                if v.get("external") and not v["external"].startswith("STREAM")
            ]
        elif name in ("datum", "datum_page"):
            ids = doc["datum_id"]
            seen_datums.update([ids] if isinstance(ids, str) else ids)
        elif name == "stream_resource":
            seen_stream_resources.add(doc["uid"])
        elif name == "stream_datum":
            assert doc["stream_resource"] in seen_stream_resources
            assert doc["descriptor"] in external, "stream_datum before its descriptor"
        elif name in ("event", "event_page"):
            assert doc["descriptor"] in external, "event before its descriptor"
            events = [doc] if name == "event" else list(unpack_event_page(doc))
            for event in events:
                assert event["time"] >= last_time, "events out of time order"
                last_time = event["time"]
                for key in external[doc["descriptor"]]:
                    if not event.get("filled", {}).get(key):
                        datum_id = event["data"][key]
                        assert datum_id in seen_datums, f"datum {datum_id} after its event"
    return names


class ConformanceTests(CorrectnessTests, StreamDataTests, FacesTests, FollowTests, RoundTripTests):
    """Subclass with a ``store`` fixture returning a :class:`RunStore`.

    Topic mixins add their tests: :class:`CorrectnessTests`,
    :class:`StreamDataTests`, :class:`FacesTests`, :class:`FollowTests`.
    """

    # --- fixtures -----------------------------------------------------------
    @pytest.fixture
    def store(self):  # pragma: no cover - the backend provides it
        raise NotImplementedError("A ConformanceTests subclass must define a 'store' fixture.")

    @pytest.fixture
    def external_dir(self, tmp_path):
        path = tmp_path / "external"
        path.mkdir()
        return path

    @pytest.fixture
    def runs(self, external_dir):
        return example_runs(external_dir)

    @pytest.fixture
    def common(self, external_dir):
        return example_registry(external_dir)

    @pytest.fixture
    def cat(self, store, runs, common):
        for docs in runs:
            store.write_run(docs)
        return store.catalog(**common)

    # --- catalog of runs ----------------------------------------------------
    def test_len_iter_oldest_first(self, cat, runs):
        expected = [docs[0][1]["uid"] for docs in runs]
        assert len(cat) == 5
        assert list(cat) == expected

    def test_contains(self, cat):
        assert UIDS["scan"] in cat
        assert "not-a-uid" not in cat
        assert UIDS["scan"][:8] not in cat  # membership is by full uid

    def test_getitem_uid_and_partial_uid(self, cat):
        run = cat[UIDS["count"]]
        assert run.metadata["start"]["uid"] == UIDS["count"]
        assert cat["c0ffee"].metadata["start"]["uid"] == UIDS["failed"]
        assert cat["a1b2c3"].metadata["start"]["uid"] == UIDS["scan"]
        with pytest.raises(ValueError, match="ambiguous") as info:
            cat["a1b2"]
        assert UIDS["scan"] in str(info.value) and UIDS["count"] in str(info.value)
        with pytest.raises(KeyError):
            cat["ffffffff"]
        with pytest.raises(KeyError):
            cat["1b2c"]  # partial uids are anchored at the start

    def test_getitem_negative_index(self, cat):
        assert cat[-1].metadata["start"]["uid"] == UIDS["stream"]
        assert cat[-2].metadata["start"]["uid"] == UIDS["live"]
        assert cat[-5].metadata["start"]["uid"] == UIDS["scan"]
        assert cat["-1"].metadata["start"]["uid"] == UIDS["stream"]
        with pytest.raises(IndexError):
            cat[-6]

    def test_getitem_scan_id(self, cat):
        # scan_id 2 is used twice: the most recent run wins.
        assert cat[2].metadata["start"]["uid"] == UIDS["failed"]
        assert cat["2"].metadata["start"]["uid"] == UIDS["failed"]
        assert cat[1].metadata["start"]["uid"] == UIDS["scan"]
        with pytest.raises(KeyError):
            cat[99]

    def test_search(self, cat):
        def uids(c):
            return list(c)

        assert uids(cat.search({"plan_name": "count"})) == [UIDS["count"], UIDS["failed"]]
        assert uids(cat.search({"scan_id": {"$gt": 2}})) == [UIDS["live"], UIDS["stream"]]
        assert uids(cat.search({"scan_id": {"$in": [1, 4]}})) == [UIDS["scan"], UIDS["stream"]]
        assert uids(cat.search({"sample.name": "Fe"})) == [UIDS["count"], UIDS["failed"]]
        assert uids(cat.search({"sample.mass": {"$exists": True}})) == [UIDS["scan"]]
        assert uids(cat.search({"operator": {"$regex": "^al"}})) == [UIDS["scan"], UIDS["stream"]]
        assert uids(cat.search({"$or": [{"scan_id": 1}, {"plan_name": "fly"}]})) == [
            UIDS["scan"],
            UIDS["stream"],
        ]
        assert uids(cat.search({"time": {"$gte": T0 + 150, "$lt": T0 + 350}})) == [
            UIDS["failed"],
            UIDS["live"],
        ]
        assert uids(cat.search({"plan_name": "nothing"})) == []

    def test_search_nests_and_keeps_kind(self, cat):
        sub = cat.search({"operator": "bob"})
        assert type(sub) is type(cat)
        subsub = sub.search({"scan_id": 2}).search({"plan_name": "count"})
        assert list(subsub) == [UIDS["count"], UIDS["failed"]]
        assert subsub[-1].metadata["start"]["uid"] == UIDS["failed"]
        assert list(sub.search({"scan_id": 1})) == []
        assert list(cat.search({})) == list(cat)
        # Sugar applies within the subset.
        assert sub[-1].metadata["start"]["uid"] == UIDS["failed"]
        with pytest.raises(KeyError):
            sub[1]

    def test_search_bad_queries(self, cat):
        for bad in (
            {"$where": "this.scan_id > 1"},
            {"scan_id": {"$where": "1"}},
            {"$or": [{"$function": {}}]},
            {"$accumulator": {}},
        ):
            with pytest.raises(ValueError, match="refused"):
                cat.search(bad)
        for bad in (
            {"scan_id": {"$bogus": 1}},
            {"$and": "scan_id"},
            "plan_name=scan",
            {"scan_id": {"$in": 3}},
            {"sample": {"$regex": "("}},
        ):
            with pytest.raises(ValueError):
                cat.search(bad)

    def test_query_prefilter(self, store, runs, common):
        for docs in runs:
            store.write_run(docs)
        cat = store.catalog(query={"plan_name": "count"}, **common)
        assert list(cat) == [UIDS["count"], UIDS["failed"]]
        assert len(cat) == 2
        assert cat[-1].metadata["start"]["uid"] == UIDS["failed"]
        with pytest.raises(KeyError):
            cat[UIDS["scan"]]

    # --- runs ---------------------------------------------------------------
    def test_run_metadata(self, cat, runs):
        run = cat[UIDS["scan"]]
        assert run.metadata["start"] == plain(runs[0][0][1])
        assert run.metadata["stop"] == plain(runs[0][-1][1])
        assert run.metadata["stop"]["exit_status"] == "success"
        assert cat[UIDS["live"]].metadata["stop"] is None
        failed = cat[UIDS["failed"]].metadata["stop"]
        assert (failed["exit_status"], failed["reason"]) == ("fail", "detector timeout")

    def test_run_streams(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        run = cat[UIDS["scan"]]
        assert list(run) == ["baseline", "primary"]
        assert len(run) == 2 and "primary" in run and "dark" not in run
        assert run.primary.read().equals(run["primary"].read())
        with pytest.raises(KeyError, match="baseline"):
            run["dark"]
        with pytest.raises(AttributeError):
            run.dark

    def test_run_read_and_to_dask_say_pick_a_stream(self, cat):
        run = cat[UIDS["scan"]]
        for method in (run.read, run.to_dask):
            with pytest.raises(NotImplementedError, match="primary"):
                method()

    def test_run_repr(self, cat):
        text = repr(cat[UIDS["scan"]])
        for part in (UIDS["scan"], "scan_id=1", "'scan'", "primary", "baseline", "2023-11-1"):
            assert part in text

    # --- streams as xarray --------------------------------------------------
    def test_read_scalars_arrays_external(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        ds = cat[UIDS["scan"]].primary.read()
        seq = np.arange(1, 7)
        np.testing.assert_array_equal(ds["time"].values, T0 + seq)
        np.testing.assert_array_equal(ds["seq_num"].values, seq)
        assert ds["det"].dtype == np.float64
        np.testing.assert_array_equal(ds["det"].values, seq * 1.5)
        np.testing.assert_array_equal(ds["motor"].values, seq - 3.5)
        assert ds["det"].attrs["units"] == "counts"
        img = ds["img"]
        assert img.dims == ("time", "y", "x") and img.dtype == np.uint16
        expected = np.arange(20).reshape(4, 5)[None, :, :] + seq[:, None, None]
        np.testing.assert_array_equal(img.values, expected)
        ext = ds["ext"]
        assert ext.shape == (6, 3, 2) and ext.dtype == np.float64
        expected = seq[:, None, None] * 10.0 + np.arange(6).reshape(3, 2)
        np.testing.assert_array_equal(ext.values, expected)

    def test_read_dtypes_without_dtype_numpy(self, cat):
        ds = cat[UIDS["count"]].primary.read()
        assert ds["det"].dtype == np.float64
        np.testing.assert_array_equal(ds["det"].values, [201.0, 202.0, 203.0, 204.0, 205.0])
        assert ds["label"].dtype.kind in "UO"
        assert ds["label"].values.tolist() == ["p1", "p2", "p3", "p4", "p5"]
        base = cat[UIDS["scan"]].baseline.read()
        assert base["temp"].dtype == np.int64
        assert base["temp"].values.tolist() == [290, 291]
        np.testing.assert_array_equal(base["motor_x"].values, [0.5, 0.75])
        np.testing.assert_array_equal(base["time"].values, [T0 + 0.2, T0 + 7.0])

    def test_include_exclude(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        primary = cat[UIDS["scan"]].primary
        assert list(primary(include=["det", "img"]).read().data_vars) == ["det", "img"]
        assert list(primary(exclude=["ext", "img"]).read().data_vars) == ["det", "motor"]
        assert list(primary(include=["ext"]).to_dask().data_vars) == ["ext"]
        with pytest.raises(KeyError, match="nope"):
            primary(include=["nope"]).read()
        with pytest.raises(KeyError, match="no field.*'nope'.* to exclude"):
            primary(exclude=["nope"])

    def test_exclude_external_reads_no_external_data(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        before = NumpySeqHandler.calls
        cat[UIDS["scan"]].primary(exclude=["ext"]).read()
        assert NumpySeqHandler.calls == before

    def test_to_dask_is_lazy_and_equal(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        stream = cat[UIDS["scan"]].primary
        before = (NumpySeqHandler.instances, NumpySeqHandler.calls)
        lazy = stream.to_dask()
        assert (NumpySeqHandler.instances, NumpySeqHandler.calls) == before
        for name in ("det", "img", "ext"):
            assert lazy[name].chunks is not None
            # Chunks span many events, never one per event.
            assert lazy[name].data.numblocks[0] == 1
        computed = lazy.compute()
        assert NumpySeqHandler.calls == before[1] + 6
        eager = stream.read()
        assert computed.identical(eager)

    def test_to_dask_pickles(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        lazy = cat[UIDS["scan"]].primary.to_dask()
        clone = pickle.loads(pickle.dumps(lazy))
        np.testing.assert_array_equal(clone["ext"].values, lazy["ext"].values)

    def test_timestamps_and_config(self, store, cat):
        _skip_without(store, "keeps_resources", RESOURCES)
        run = cat[UIDS["scan"]]
        ts = run.primary.timestamps.read()
        np.testing.assert_allclose(ts["det"].values, T0 + np.arange(1, 7) - 0.01)
        np.testing.assert_allclose(ts["ext"].values, T0 + np.arange(1, 7) - 0.01)
        assert ts["img"].dims == ("time",)
        config = run.baseline.config
        assert list(config) == ["motor_x"]
        cfg = config["motor_x"].read()
        assert cfg["motor_x_velocity"].values.tolist() == [2.0]
        assert cfg["motor_x_mode"].values.tolist() == ["fast"]
        assert cfg["motor_x_velocity"].attrs["units"] == "mm/s"
        np.testing.assert_array_equal(cfg["time"].values, [T0 + 0.1])
        assert run.primary.config["det"].read()["det_exposure"].values.tolist() == [0.1]

    def test_stream_data(self, cat):
        ds = cat[UIDS["stream"]].primary.read()
        assert ds["frames"].dtype == np.int32 and ds["frames"].shape == (4, 2, 3)
        np.testing.assert_array_equal(ds["frames"].values, np.arange(24).reshape(4, 2, 3))
        np.testing.assert_allclose(ds["x"].values, [0.1, 0.2, 0.3, 0.4])
        lazy = cat[UIDS["stream"]].primary.to_dask()
        np.testing.assert_array_equal(lazy["frames"].values, ds["frames"].values)

    def test_in_progress_run_reads(self, cat):
        ds = cat[UIDS["live"]].primary.read()
        np.testing.assert_array_equal(ds["det"].values, [301.0, 302.0, 303.0])

    # --- canonical ----------------------------------------------------------
    @pytest.mark.parametrize("index", range(5))
    def test_canonical_fill_no_round_trips(self, store, cat, runs, index):
        if any(name == "resource" for name, _ in runs[index]):
            _skip_without(store, "keeps_resources", RESOURCES)
        uid = runs[index][0][1]["uid"]
        docs = list(cat[uid].canonical(fill="no"))
        _check_order(docs)
        uids = store.keeps_document_uids
        kept = store.as_kept(runs[index])
        assert normalize_documents(docs, uids=uids) == normalize_documents(kept, uids=uids)

    def test_canonical_fill_yes(self, store, cat, runs):
        _skip_without(store, "keeps_resources", RESOURCES)
        docs = list(cat[UIDS["scan"]].canonical(fill="yes"))
        _check_order(docs)
        assert normalize_documents(docs) == normalize_documents(cat[UIDS["scan"]].read_canonical())
        seen = 0
        for name, doc in docs:
            if name not in ("event", "event_page") or "ext" not in doc["data"]:
                continue
            events = [doc] if name == "event" else list(unpack_event_page(doc))
            for event in events:
                seq = event["seq_num"]
                expected = seq * 10.0 + np.arange(6).reshape(3, 2)
                np.testing.assert_array_equal(np.asarray(event["data"]["ext"]), expected)
                assert event["filled"]["ext"]
                seen += 1
        assert seen == 6
        # Everything else is as stored.
        filled = normalize_documents(docs)
        stored = normalize_documents(runs[0])
        for uid, event in filled["events"].items():
            event["data"].pop("ext", None)
            event["filled"] = {}
            stored["events"][uid]["data"].pop("ext", None)
        assert filled == stored

    def test_canonical_fill_no_yields_each_document_in_its_stored_form(
        self, store, runs, common, external_dir
    ):
        mixed = mixed_forms_run(external_dir)
        names = [name for name, _ in mixed]
        assert {"event", "event_page", "datum", "datum_page"} <= set(names)
        _skip_without(
            store, "keeps_event_form", "this store regroups events into pages of its own"
        )
        for docs in [mixed, *runs[1:]]:
            store.write_run(docs)
            expected = store.as_stored(docs)
            if expected is None:
                pytest.skip("this store regroups events into pages of its own")
            got = list(store.catalog(**common)[docs[0][1]["uid"]].canonical(fill="no"))
            _check_order(got)
            assert [name for name, _ in got] == [name for name, _ in expected]
            assert [(n, plain(d)) for n, d in got] == [(n, plain(d)) for n, d in expected]

    def test_canonical_fill_yes_leaves_stream_data_unfilled(self, store, cat, runs):
        # Stream data (stream_resource/stream_datum) is read with
        # stream.read(); canonical(fill='yes') gives its documents as stored.
        stored = {name: doc for name, doc in runs[4] if name.startswith("stream_")}
        docs = list(cat[UIDS["stream"]].canonical(fill="yes"))
        if store.keeps_document_uids:
            assert [n for n, _ in docs if n.startswith("stream_")] == [
                "stream_resource",
                "stream_datum",
                "stream_datum",
            ]
        uids = store.keeps_document_uids
        kept = store.as_kept(runs[4])
        assert normalize_documents(docs, uids=uids) == normalize_documents(kept, uids=uids)
        for name, doc in docs:
            if name == "event_page":
                assert "frames" not in doc["data"] and not any(doc["filled"].values())
        assert stored  # the run has stream data to leave alone
        frames = cat[UIDS["stream"]].primary.read()["frames"]
        np.testing.assert_array_equal(frames.values, np.arange(24).reshape(4, 2, 3))

    def test_canonical_time_order_across_streams(self, cat):
        docs = list(cat[UIDS["scan"]].canonical(fill="no"))
        streams = []
        descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
        for name, doc in docs:
            if name == "event":
                streams.append(descriptors[doc["descriptor"]])
            elif name == "event_page":
                streams.extend([descriptors[doc["descriptor"]]] * len(doc["seq_num"]))
        assert streams == ["baseline"] + ["primary"] * 6 + ["baseline"]

    # --- filling configuration and faults -----------------------------------
    def test_root_map_required_and_used(self, store, runs, external_dir):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        registry = example_registry(external_dir)["handler_registry"]
        cat = store.catalog(handler_registry=registry)  # no root_map
        with pytest.raises(FillError, match="root_map"):
            cat[UIDS["scan"]].primary.read()
        # Dotted names work as well as classes.
        dotted = {"NPY_SEQ": "intake_bluesky.core.testing.NumpySeqHandler"}
        cat = store.catalog(
            handler_registry=dotted,
            root_map={"/intake-bluesky-examples/external": str(external_dir)},
        )
        assert cat[UIDS["scan"]].primary(include=["ext"]).read()["ext"].shape == (6, 3, 2)

    def test_missing_external_file_is_file_not_found(self, store, runs, external_dir, tmp_path):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        moved = tmp_path / "moved"  # holds nothing: every external file is missing
        registry = example_registry(external_dir)["handler_registry"]
        cat = store.catalog(handler_registry=registry, root_map={EXTERNAL_ROOT: str(moved)})
        # A handler (resource/datum) and a stream reader (stream_resource) alike.
        for uid, field, tried in (
            (UIDS["scan"], "ext", str(moved)),
            (UIDS["stream"], "frames", str(moved / "stream_frames.npy")),
        ):
            with pytest.raises(FileNotFoundError) as info:
                cat[uid].primary(include=[field]).read()
            error = info.value
            assert isinstance(error, FillError) and isinstance(error, MissingExternalFileError)
            message = str(error)
            assert uid in message and tried in message and EXTERNAL_ROOT in message
            assert "root_map" in message

    def test_root_map_keyed_by_uri(self, store, runs, external_dir):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        registry = example_registry(external_dir)["handler_registry"]
        # The form the stream_resource documents show (file://host/path): any host.
        for key in (f"file://localhost{EXTERNAL_ROOT}", f"file://{EXTERNAL_ROOT}/"):
            cat = store.catalog(handler_registry=registry, root_map={key: str(external_dir)})
            ext = cat[UIDS["scan"]].primary(include=["ext"]).read()["ext"]
            expected = np.arange(1, 7)[:, None, None] * 10.0 + np.arange(6).reshape(3, 2)
            np.testing.assert_array_equal(ext.values, expected)
            frames = cat[UIDS["stream"]].primary.read()["frames"]
            np.testing.assert_array_equal(frames.values, np.arange(24).reshape(4, 2, 3))

    def test_root_map_key_matching_nothing_is_named(self, store, runs, external_dir):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        registry = example_registry(external_dir)["handler_registry"]
        root_map = {"/somewhere/else": str(external_dir), EXTERNAL_ROOT + "/sub": "/x"}
        cat = store.catalog(handler_registry=registry, root_map=root_map)
        for uid in (UIDS["scan"], UIDS["stream"]):
            with pytest.raises(FillError) as info:
                cat[uid].primary.read()
            message = str(info.value)
            assert "root_map keys ['/somewhere/else', " in message
            assert f"{EXTERNAL_ROOT}/sub']" in message
            assert f"they store ['{EXTERNAL_ROOT}" in message

    def test_missing_handler_names_spec(self, store, runs, external_dir):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        # A spec no installed package handles (ophyd registers NPY_SEQ in
        # the databroker.handlers entry point group).
        cat = store.catalog(
            root_map=example_registry(external_dir)["root_map"],
            transforms={"resource": lambda doc: {**doc, "spec": "NPY_SEQ_UNHANDLED"}},
        )
        with pytest.raises(MissingHandlerError, match="NPY_SEQ_UNHANDLED") as info:
            cat[UIDS["scan"]].primary.read()
        assert "handler_registry" in str(info.value)
        with pytest.raises(MissingHandlerError, match="application/x-npy"):
            cat[UIDS["stream"]].primary.read()
        # Fields without external data still read.
        assert cat[UIDS["scan"]].primary(exclude=["ext"]).read()["det"].size == 6

    def test_handler_that_raises_is_named(self, store, runs, common):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)

        class Broken:
            def __init__(self, path, **kwargs):
                pass

            def __call__(self, **kwargs):
                raise OSError("disk on fire")

        cat = store.catalog(**{**common, "handler_registry": {"NPY_SEQ": Broken}})
        with pytest.raises(FillError, match="disk on fire") as info:
            cat[UIDS["scan"]].primary.read()
        assert UIDS["scan"] in str(info.value)
        # Only a missing file is a FileNotFoundError.
        assert not isinstance(info.value, FileNotFoundError)

    def test_transforms(self, store, runs, common):
        for docs in runs:
            store.write_run(docs)

        def fix_start(doc):
            doc = copy.deepcopy(doc)
            doc["sample"]["name"] = doc["sample"]["name"].upper()
            return doc

        def fix_descriptor(doc):
            doc = copy.deepcopy(doc)
            if "det" in doc["data_keys"]:
                doc["data_keys"]["det"]["units"] = "cps"
            return doc

        cat = store.catalog(
            transforms={"start": fix_start, "descriptor": fix_descriptor}, **common
        )
        run = cat[UIDS["scan"]]
        assert run.metadata["start"]["sample"]["name"] == "CU"
        # (not reading 'ext': the transform is about descriptors, on any store)
        assert run.primary(exclude=["ext"]).read()["det"].attrs["units"] == "cps"
        names = {n: d for n, d in run.canonical(fill="no") if n in ("start",)}
        assert names["start"]["sample"]["name"] == "CU"
        with pytest.raises(ValueError, match="event"):
            store.catalog(transforms={"event": fix_start})

    # --- a changing store ---------------------------------------------------
    def test_new_and_deleted_runs_are_seen(self, store, runs, common):
        for docs in runs[:2]:
            store.write_run(docs)
        cat = store.catalog(**common)
        assert len(cat) == 2 and cat[-1].metadata["start"]["uid"] == UIDS["count"]
        store.write_run(runs[4])
        assert len(cat) == 3 and cat[-1].metadata["start"]["uid"] == UIDS["stream"]
        assert UIDS["stream"] in list(cat)
        store.delete_run(UIDS["count"])
        assert list(cat) == [UIDS["scan"], UIDS["stream"]]
        with pytest.raises(KeyError):
            cat[UIDS["count"]]

    def test_run_in_progress_completes(self, store, runs, common):
        docs = runs[1]
        store.write_run(docs[:-2])  # start and descriptor only
        cat = store.catalog(**common)
        run = cat[UIDS["count"]]
        assert run.metadata["stop"] is None
        assert run.primary.read()["det"].size == 0
        store.write_run(docs)
        assert cat[UIDS["count"]].metadata["stop"]["exit_status"] == "success"
        assert cat[UIDS["count"]].primary.read()["det"].size == 5
