"""The in-memory catalog as a document callback, and what core owns of bad input."""

import numpy as np
import pytest

from intake_bluesky.core import BadDocumentError, BlueskyInMemoryCatalog, DocumentRunSource
from intake_bluesky.core.testing import UIDS, example_registry, example_runs, normalize_documents


@pytest.fixture
def runs(tmp_path):
    return example_runs(tmp_path)


def test_run_visible_from_its_start_document(runs, tmp_path):
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    docs = runs[0]
    cat(*docs[0])
    assert list(cat) == [UIDS["scan"]]
    assert cat[-1].metadata["stop"] is None
    assert list(cat[-1]) == []
    for name, doc in docs[1:-1]:
        cat(name, doc)
    assert cat[-1].metadata["stop"] is None
    assert cat[-1].primary.read()["det"].values.tolist() == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
    cat(*docs[-1])
    assert cat[-1].metadata["stop"]["exit_status"] == "success"


def test_interleaved_runs_are_routed(runs):
    # Documents of two runs, interleaved, as from two RunEngines.
    cat = BlueskyInMemoryCatalog()
    a, b = runs[1], runs[2]
    for pair in zip(a, b):
        for name, doc in pair:
            cat(name, doc)
    assert list(cat) == [UIDS["count"], UIDS["failed"]]
    assert cat[UIDS["count"]].primary.read()["det"].size == 5
    assert cat[UIDS["failed"]].primary.read()["det"].size == 2


def test_event_with_unknown_descriptor_is_an_error(runs):
    cat = BlueskyInMemoryCatalog()
    start, _descriptor, page, _stop = runs[1]
    cat(*start)
    with pytest.raises(BadDocumentError, match=page[1]["descriptor"]):
        cat(*page)


def test_datum_with_unknown_resource_is_an_error(runs):
    cat = BlueskyInMemoryCatalog()
    cat(*runs[0][0])
    datum = next(doc for name, doc in runs[0] if name == "datum")
    with pytest.raises(BadDocumentError, match="resource"):
        cat("datum", datum)


def test_stored_run_with_missing_descriptor_names_run_and_descriptor(runs):
    docs = [(n, d) for n, d in runs[1] if n != "descriptor"]
    source = DocumentRunSource(docs)
    with pytest.raises(BadDocumentError) as info:
        source.descriptors()
    assert UIDS["count"] in str(info.value) and "descriptor" in str(info.value)


def test_upsert_is_lazy_and_delete(runs):
    calls = []

    def gen(docs, tag=None):
        calls.append(tag)
        yield from docs

    cat = BlueskyInMemoryCatalog()
    docs = runs[1]
    cat.upsert(docs[0][1], docs[-1][1], gen, (docs,), {"tag": "x"})
    assert list(cat) == [UIDS["count"]]
    assert cat[-1].metadata["stop"]["exit_status"] == "success"
    assert calls == []
    np.testing.assert_array_equal(cat[-1].primary.read()["det"].values, [201, 202, 203, 204, 205])
    assert calls == ["x"]
    assert len(cat.search({"plan_name": "count"})) == 1
    del cat[UIDS["count"][:8]]
    assert len(cat) == 0


def test_search_of_live_catalog_sees_new_runs(runs):
    cat = BlueskyInMemoryCatalog()
    counts = cat.search({"plan_name": "count"})
    assert len(counts) == 0
    for docs in runs:
        cat.ingest(docs)
    assert list(counts) == [UIDS["count"], UIDS["failed"]]
    assert counts[-1].metadata["start"]["uid"] == UIDS["failed"]


def test_getitem_rejects_other_types(runs):
    cat = BlueskyInMemoryCatalog()
    cat.ingest(runs[0])
    with pytest.raises(TypeError):
        cat[1.5]


def test_stored_datum_without_resource_is_named(runs, tmp_path):
    from intake_bluesky.core import FillError

    docs = [(n, d) for n, d in runs[0] if n != "resource"]
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    cat.upsert(docs[0][1], docs[-1][1], iter, (docs,))
    with pytest.raises(FillError, match="resource") as info:
        cat[-1].primary(include=["ext"]).read()
    assert UIDS["scan"] in str(info.value)


def test_event_referring_to_missing_datum_is_named(runs, tmp_path):
    from intake_bluesky.core import FillError

    docs = [(n, d) for n, d in runs[0] if n not in ("datum", "datum_page")]
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    cat.upsert(docs[0][1], docs[-1][1], iter, (docs,))
    with pytest.raises(FillError, match="datum") as info:
        list(cat[-1].canonical(fill="yes"))
    assert UIDS["scan"] in str(info.value)


def test_canonical_documents_are_schema_valid(runs, tmp_path):
    import event_model

    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in runs:
        cat.ingest(docs)
    for uid in cat:
        for fill in ("no", "yes"):
            for name, doc in cat[uid].canonical(fill=fill):
                if fill == "yes" and name in ("event", "event_page"):
                    continue  # filled data is numpy, by design
                event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)


def test_describe_and_repr_of_catalog_run_stream(runs):
    cat = BlueskyInMemoryCatalog()
    cat.ingest(runs[1])
    sub = cat.search({"plan_name": "count"})
    assert sub.describe()["args"] == {"query": {"plan_name": "count"}}
    assert sub.describe()["container"] == "catalog"
    assert "1 runs" in repr(sub) and "plan_name" in repr(sub)
    run = cat[-1]
    assert run.describe()["args"] == {"uid": UIDS["count"]}
    assert run.describe()["metadata"]["start"]["scan_id"] == 2
    stream = run.primary(include=["det"])
    assert stream.describe()["container"] == "xarray"
    assert stream.describe()["args"] == {"include": ["det"], "exclude": []}
    assert "'primary'" in repr(stream) and "['det']" in repr(stream)


def _count_run(n=4, drop=None, extra=None):
    import event_model

    run = event_model.compose_run(uid="odd-run", time=0.0, metadata={"scan_id": 9})
    desc = run.compose_descriptor(
        name="primary",
        time=0.0,
        data_keys={
            "det": {"source": "s", "dtype": "number", "shape": []},
            "temp": {"source": "s", "dtype": "number", "shape": []},
        },
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(1, n + 1):
        data = {"det": float(i), "temp": None if i % 2 else 20.0 + i}
        if i == drop:
            del data["det"]
        ts = {k: float(i) for k in data}
        event = desc.compose_event(data=data, timestamps=ts, time=float(i), validate=False)
        docs.append(("event", event))
    docs.append(("stop", run.compose_stop(time=10.0)))
    return docs


def test_event_missing_a_reading_is_named_and_kept():
    cat = BlueskyInMemoryCatalog()
    cat.ingest(_count_run(drop=3))
    run = cat[-1]
    assert list(run) == ["primary"] and hasattr(run, "primary")
    with pytest.raises(BadDocumentError, match=r"seq_num 3.*lacks the data of 'det'") as info:
        run.primary.read()
    assert "odd-run" in str(info.value)
    assert run.primary(exclude=["det"]).read()["temp"].size == 4
    # Stored documents come back unmodified: the short event keeps its keys.
    by_seq = {
        e["seq_num"]: e for e in normalize_documents(run.canonical(fill="no"))["events"].values()
    }
    assert set(by_seq[3]["data"]) == {"temp"} and set(by_seq[2]["data"]) == {"det", "temp"}


def test_null_numbers_become_nan():
    cat = BlueskyInMemoryCatalog()
    cat.ingest(_count_run())
    temp = cat[-1].primary.read()["temp"]
    assert temp.dtype == np.float64
    np.testing.assert_array_equal(temp.values, [np.nan, 22.0, np.nan, 24.0])


def test_unknown_document_names_are_warned_not_silently_dropped():
    cat = BlueskyInMemoryCatalog()
    docs = _count_run()
    cat.ingest(docs[:2])
    cat("bogus", {"x": 1})
    cat.ingest(docs[2:])
    with pytest.warns(UserWarning, match="'bogus' is not an event-model document"):
        cat[-1].primary.read()


def test_live_run_read_after_every_event_is_incremental():
    cat = BlueskyInMemoryCatalog()
    docs = _count_run(n=50)
    cat.ingest(docs[:2])
    run = cat[-1]
    for i, (name, doc) in enumerate(docs[2:-1], start=1):
        cat(name, doc)
        assert run.primary.read()["det"].size == i
    source = cat.driver.run("odd-run")
    # One organized view, updated in place, not rebuilt per event.
    assert source._org is not None and len(source._org.pages[docs[1][1]["uid"]]) == 50


def test_in_memory_catalog_pickles_and_copies_with_its_runs(runs):
    import copy
    import pickle

    cat = BlueskyInMemoryCatalog()
    for docs in runs[1:3]:
        cat.ingest(docs)
    sub = cat.search({"plan_name": "count"}).search({"scan_id": 2})
    for clone in (pickle.loads(pickle.dumps(cat)), copy.copy(cat), copy.deepcopy(cat)):
        assert list(clone) == [UIDS["count"], UIDS["failed"]]
    clone = pickle.loads(pickle.dumps(sub))
    assert clone.query == sub.query and len(clone) == 2
    assert type(clone).__module__ == "intake_bluesky.core"
    assert "intake_bluesky.core.BlueskyInMemoryCatalog" in cat.yaml()


def test_yaml_names_handlers_by_import_path(tmp_path):
    from intake_bluesky.core.testing import NumpySeqHandler

    cat = BlueskyInMemoryCatalog(handler_registry={"NPY_SEQ": NumpySeqHandler})
    text = cat.yaml()
    assert "intake_bluesky.core.testing._examples.NumpySeqHandler" in text
    assert "!!python" not in text


def test_root_map_keys_with_trailing_slash(runs, tmp_path):
    registry = example_registry(tmp_path)
    root = next(iter(registry["root_map"]))
    cat = BlueskyInMemoryCatalog(
        handler_registry=registry["handler_registry"], root_map={root + "/": str(tmp_path) + "/"}
    )
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    assert cat[UIDS["scan"]].primary.read()["ext"].shape == (6, 3, 2)


def test_helpful_errors_for_config_include_and_handlers(runs, tmp_path):
    from intake_bluesky.core import MissingHandlerError

    cat = BlueskyInMemoryCatalog()
    cat.ingest(runs[0])
    with pytest.raises(KeyError, match="has no configuration for 'nope'.*motor_x"):
        cat[-1].baseline.config["nope"]
    assert list(cat[-1].primary(include="det").read().data_vars) == ["det"]
    with pytest.raises(KeyError, match="no field"):
        cat[-1].primary(include=["nope"])
    bad = BlueskyInMemoryCatalog(handler_registry={"NPY_SEQ": "no_such_pkg.Handler"})
    bad.ingest(runs[0])
    with pytest.raises(MissingHandlerError, match="'NPY_SEQ'.*cannot be imported"):
        bad[-1].primary.read()
    with pytest.raises(IndexError, match=r"cat\[-3\] is out of range: the catalog holds 1 run "):
        cat[-3]
    assert "1 run>" in repr(cat) and "streams=" in repr(cat[-1])
    assert "canonical" in dir(cat[-1]) and "primary" in dir(cat[-1]) and "search" in dir(cat)


def test_single_events_are_packed_into_big_pages():
    # Decoded documents carry equal but distinct name strings, as from a file.
    docs = [("".join(["ev", "ent"]) if n == "event" else n, d) for n, d in _count_run(n=5000)]
    source = DocumentRunSource(docs, keep_documents=False)
    pages = list(source.event_pages(docs[1][1]["uid"]))
    assert [len(p["seq_num"]) for p in pages] == [4096, 904]
    assert isinstance(pages[0]["data"]["det"], np.ndarray)
    assert pages[0]["data"]["det"][:3].tolist() == [1.0, 2.0, 3.0]


def test_events_with_swapped_keys_are_not_packed_together():
    docs = _count_run(n=4)
    # Same number of keys, other names: must not be packed with the others.
    event = docs[4][1]
    docs[4] = ("event", {**event, "data": {"det": 3.0, "other": 1.0},
                         "timestamps": {"det": 3.0, "other": 3.0}})  # fmt: skip
    source = DocumentRunSource(docs, keep_documents=False)
    pages = list(source.event_pages(docs[1][1]["uid"]))
    assert [sorted(p["data"]) for p in pages] == [
        ["det", "temp"], ["det", "other"], ["det", "temp"]]  # fmt: skip
    assert [list(p["seq_num"]) for p in pages] == [[1, 2], [3], [4]]


def test_events_whose_keys_change_midway_keep_every_value_in_order():
    # Packing works on groups of a few hundred events: key changes fall
    # inside groups and between them, and no value is dropped or moved.
    docs = _count_run(n=1000)
    events = [d for n, d in docs if n == "event"]
    changed = {300: "extra", 600: "missing", 601: "missing", 700: "filled", 256: "extra"}
    for seq, how in changed.items():
        event = events[seq - 1]
        if how == "extra":
            event["data"]["extra"] = -1.0
            event["timestamps"]["extra"] = 0.0
        elif how == "missing":
            del event["data"]["temp"], event["timestamps"]["temp"]
        else:
            event["filled"] = {"det": True}
    source = DocumentRunSource(docs, keep_documents=False)
    pages = list(source.event_pages(docs[1][1]["uid"]))
    rows = [int(s) for p in pages for s in p["seq_num"]]
    assert rows == list(range(1, 1001))
    det = [float(v) for p in pages for v in p["data"]["det"]]
    assert det == [float(i) for i in range(1, 1001)]
    for p in pages:
        seqs = [int(s) for s in p["seq_num"]]
        keys = set(p["data"])
        assert keys == set(p["timestamps"])
        for s in seqs:
            expected = {"det", "temp"}
            if changed.get(s) == "extra":
                expected.add("extra")
            elif changed.get(s) == "missing":
                expected.discard("temp")
            assert keys == expected, s
        filled = p.get("filled", {})
        if 700 in seqs:
            assert list(filled["det"])[seqs.index(700)] is True
            assert sum(bool(v) for v in filled["det"]) == 1
    extra = [p["data"]["extra"] for p in pages if "extra" in p["data"]]
    assert [list(e) for e in extra] == [[-1.0], [-1.0]]


def test_interleaved_streams_are_packed_per_stream():
    import event_model

    bundle = event_model.compose_run(uid="two-streams", time=0.0)
    keys = {"v": {"source": "s", "dtype": "number", "shape": []}}
    a = bundle.compose_descriptor(name="primary", data_keys=keys, time=0.0)
    b = bundle.compose_descriptor(name="monitor", data_keys=keys, time=0.0)
    docs = [("start", bundle.start_doc), ("descriptor", a.descriptor_doc)]
    docs.append(("descriptor", b.descriptor_doc))
    for i in range(1, 601):
        d = a if i % 3 else b
        event = d.compose_event(data={"v": float(i)}, timestamps={"v": float(i)}, time=float(i))
        docs.append(("event", event))
    docs.append(("stop", bundle.compose_stop(time=700.0)))
    source = DocumentRunSource(docs, keep_documents=False)
    for desc, expected in ((a, [i for i in range(1, 601) if i % 3]), (b, list(range(3, 601, 3)))):
        pages = list(source.event_pages(desc.descriptor_doc["uid"]))
        assert [float(v) for p in pages for v in p["data"]["v"]] == [float(i) for i in expected]
        assert [int(s) for p in pages for s in p["seq_num"]] == list(range(1, len(expected) + 1))


def _plain_event(i, keys, filled=None):
    event = {
        "descriptor": "d",
        "uid": f"e{i}",
        "time": float(i),
        "seq_num": i,
        "data": {k: float(i) for k in keys},
        "timestamps": {k: float(i) for k in keys},
    }
    if filled is not None:
        event["filled"] = filled
    return ("event", event)


_PLAIN_HEAD = [
    ("start", {"uid": "s", "time": 0.0}),
    ("descriptor", {"uid": "d", "run_start": "s", "time": 0.0, "data_keys": {}, "name": "p"}),
]


@pytest.mark.parametrize(
    "events",
    [
        # Keys change exactly where a packing group starts, and stay changed.
        [_plain_event(i, ["a"]) for i in range(1, 257)]
        + [_plain_event(i, ["b"]) for i in range(257, 701)],
        # 'filled' in one event only: that group's layout differs from the next.
        [_plain_event(1, ["a"], {"a": False})] + [_plain_event(i, ["a"]) for i in range(2, 701)],
        # Changes at group starts, back and forth.
        [_plain_event(i, ["a"] if (i - 1) // 256 % 2 else ["a", "b"]) for i in range(1, 701)],
    ],
    ids=["keys-change-at-a-group-start", "filled-in-one-group", "back-and-forth"],
)
def test_packing_groups_of_other_layouts_keep_every_row(events):
    source = DocumentRunSource(_PLAIN_HEAD + events, keep_documents=False)
    pages = list(source.event_pages("d"))
    assert source.event_count("d") == 700
    assert [int(s) for p in pages for s in p["seq_num"]] == list(range(1, 701))
    for p in pages:
        for key, column in p["data"].items():
            assert [float(v) for v in column] == [float(s) for s in p["seq_num"]], key
    filled = [
        bool(v) for p in pages for v in p.get("filled", {}).get("a", [False] * len(p["seq_num"]))
    ]
    assert filled == [False] * 700


@pytest.mark.parametrize("which", [0, 1])
def test_small_pages_with_filled_in_one_only_keep_it(which):
    # Small pages are joined only with pages laid out alike, 'filled' included.
    pages = [
        {
            "descriptor": "d",
            "uid": [f"u{i}"],
            "time": [float(i)],
            "seq_num": [i],
            "data": {"a": [float(i)]},
            "timestamps": {"a": [0.0]},
        }  # fmt: skip
        for i in (1, 2, 3)
    ]
    pages[which]["filled"] = {"a": [True]}
    source = DocumentRunSource(_PLAIN_HEAD + [("event_page", p) for p in pages])
    out = list(source.event_pages("d"))
    assert [float(v) for p in out for v in p["data"]["a"]] == [1.0, 2.0, 3.0]
    filled = [
        bool(v) for p in out for v in p.get("filled", {}).get("a", [False] * len(p["seq_num"]))
    ]
    assert filled == [i == which for i in range(3)]
