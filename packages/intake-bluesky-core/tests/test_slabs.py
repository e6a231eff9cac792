"""A parse's merged columns in memory mappings of their own, freed whole."""

import gc
import mmap
import os
import weakref
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intake_bluesky.core import DocumentRunSource
from intake_bluesky.core._model import slabs as slabs_module
from intake_bluesky.core._model.canonical import canonical
from intake_bluesky.core._model.documents import _PAGE_ROWS
from intake_bluesky.core._model.pages import merge_event_pages
from intake_bluesky.core._model.slabs import _FIRST, _SMALL, ColumnSlabs


def _mapping(array):
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_arrays_of_a_column_share_mappings_that_grow():
    slabs = ColumnSlabs()
    f8 = np.dtype("float64")
    # A column's first bytes are numpy's own (holes that small in the heap
    # cost less than a mapping).
    assert slabs.empty("x", (_SMALL // 8,), f8) is None
    assert slabs.empty("y", (_SMALL // 8,), f8) is None
    a = slabs.empty("x", (3,), f8)
    b = slabs.empty("x", (2, 2), np.dtype("int32"))
    c = slabs.empty("y", (3,), f8)
    assert _mapping(a) is _mapping(b) and _mapping(a) is not _mapping(c)
    assert isinstance(_mapping(a), mmap.mmap) and len(_mapping(a)) == _FIRST
    assert b.shape == (2, 2) and b.dtype == np.int32 and b.flags.c_contiguous
    # Each array starts on a 64-byte boundary, apart from the others.
    assert (a.ctypes.data % 64, b.ctypes.data - a.ctypes.data) == (0, 64)
    a[:] = [1.5, 2.5, 3.5]
    b[:] = [[1, 2], [3, 4]]
    c[:] = 7.0
    assert a.tolist() == [1.5, 2.5, 3.5] and b.tolist() == [[1, 2], [3, 4]]
    assert c.tolist() == [7.0] * 3
    # A column that outgrows its mapping goes on in one twice as big; an
    # array bigger than that has one of its own size.
    d = slabs.empty("x", (_FIRST // 8,), f8)
    assert _mapping(d) is not _mapping(a) and len(_mapping(d)) == 2 * _FIRST
    e = slabs.empty("x", (10 * _FIRST // 8,), f8)
    assert len(_mapping(e)) == 10 * _FIRST
    # Nothing to hold, or Python objects: numpy's.
    assert slabs.empty("x", (0,), f8) is None
    assert slabs.empty("x", (2,), np.dtype(object)) is None


def test_a_mapping_is_unmapped_with_its_last_array():
    slabs = ColumnSlabs()
    slabs.empty("x", (_SMALL,), np.dtype("uint8"))
    a = slabs.empty("x", (4,), np.dtype("float64"))
    b = slabs.empty("x", (4,), np.dtype("float64"))
    gone = weakref.ref(_mapping(a))
    slabs.release()
    del a
    gc.collect()
    assert gone() is not None  # b still views it
    del b
    assert gone() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_process_writing_an_array_leaves_ours_alone():
    slabs = ColumnSlabs()
    slabs.empty("x", (_SMALL,), np.dtype("uint8"))
    a = slabs.empty("x", (4,), np.dtype("float64"))
    a[:] = [1.0, 2.0, 3.0, 4.0]
    pid = os.fork()
    if pid == 0:  # the child
        a[:] = -1.0
        os._exit(0 if a.tolist() == [-1.0] * 4 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert a.tolist() == [1.0, 2.0, 3.0, 4.0]


_columns = st.sampled_from(
    ["int64", "int32", "uint64", "float64", "float32", "bool", "<U3"]
).flatmap(
    lambda dtype: st.lists(
        hnp.arrays(
            dtype,
            st.tuples(st.integers(0, 40), st.sampled_from([(), (2,), (2, 3)])).map(
                lambda t: (t[0], *t[1])
            ),
        ),
        min_size=2,
        max_size=5,
    )
)


@settings(max_examples=150, deadline=None)
@given(_columns)
def test_pages_merged_into_mappings_are_what_numpy_joins(pieces):
    # Same values, dtype and shape as np.concatenate (or as the lists the
    # core makes of columns that cannot be joined), however the pages vary.
    pages = [
        {
            "descriptor": "d",
            "uid": [f"e{i}"] * len(p),
            "time": np.zeros(len(p)),
            "seq_num": np.arange(len(p)),
            "data": {"x": p},
            "timestamps": {"x": np.zeros(len(p))},
            "filled": {},
        }
        for i, p in enumerate(pieces)
    ]
    plain = merge_event_pages(pages)["data"]["x"]
    slabs = ColumnSlabs()
    with mock.patch.object(slabs_module, "_SMALL", 0):  # every column mapped
        merged = merge_event_pages(pages, slabs.empty)["data"]["x"]
    if isinstance(plain, list):
        assert isinstance(merged, list)
        np.testing.assert_equal(merged, plain)  # NaN equal to NaN
        return
    assert merged.dtype == plain.dtype and merged.shape == plain.shape
    np.testing.assert_array_equal(merged, plain)
    if merged.nbytes:
        assert isinstance(_mapping(merged), mmap.mmap)


def _run(n):
    start = {"uid": "r", "time": 0.0}
    desc = {
        "uid": "desc",
        "run_start": "r",
        "name": "primary",
        "time": 0.0,
        "data_keys": {k: {"dtype": "number", "shape": [], "source": "s"} for k in ("x", "count")},
    }
    events = [
        (
            "event",
            {
                "uid": f"e{i}",
                "descriptor": "desc",
                "time": 10.0 + i,
                "seq_num": i + 1,
                "data": {"x": i * 0.25, "count": i},
                "timestamps": {"x": 10.0 + i, "count": 10.5 + i},
                "filled": {},
            },
        )
        for i in range(n)
    ]
    stop = {"uid": "s", "run_start": "r", "time": 1e6, "exit_status": "success"}
    return [("start", start), ("descriptor", desc), *events, ("stop", stop)]


def test_a_column_a_read_drops_gives_its_memory_back():
    # Why the mappings: an eager read drops each column of the parse once its
    # Dataset has its own; the column's memory must then leave the process,
    # or the process holds the run twice at the end of the read.
    full = 2 * _SMALL // (8 * _PAGE_ROWS)  # pages: each column past its first _SMALL bytes
    n = full * _PAGE_ROWS + 17
    src = DocumentRunSource(_run(n), keep_documents=False)
    src._hand_over = True  # as a FileRunSource sets it
    pages = src._take_event_pages("desc")
    assert [len(p["seq_num"]) for p in pages] == [_PAGE_ROWS] * full + [17]
    x = np.concatenate([p["data"]["x"] for p in pages])
    assert x.tolist() == [i * 0.25 for i in range(n)]
    assert np.concatenate([p["data"]["count"] for p in pages]).tolist() == list(range(n))
    assert np.concatenate([p["timestamps"]["count"] for p in pages]).tolist() == [
        10.5 + i for i in range(n)
    ]
    mappings = {id(_mapping(p["data"]["x"])): _mapping(p["data"]["x"]) for p in pages}
    mapped = [m for m in mappings.values() if isinstance(m, mmap.mmap)]
    assert mapped  # the merged pages' columns
    others = {id(_mapping(p["data"]["count"])) for p in pages}
    assert not others & {id(m) for m in mapped}  # no mapping shared with another column
    refs = [weakref.ref(m) for m in mapped]
    del mappings, mapped
    for page in pages:
        del page["data"]["x"]
    assert all(r() is None for r in refs)


def test_big_stored_pages_are_moved_into_mappings_and_kept_runs_are_not():
    n = _SMALL // 8 + 5  # each column past the first _SMALL bytes
    events = [doc for name, doc in _run(n) if name == "event"]
    page = {
        "descriptor": "desc",
        "uid": [e["uid"] for e in events],
        "time": [e["time"] for e in events],
        "seq_num": [e["seq_num"] for e in events],
        "data": {k: [e["data"][k] for e in events] for k in ("x", "count")},
        "timestamps": {k: [e["timestamps"][k] for e in events] for k in ("x", "count")},
        "filled": {},
    }
    docs = [d for d in _run(0) if d[0] != "stop"] + [("event_page", page), _run(0)[-1]]
    src = DocumentRunSource(docs, keep_documents=False)
    (got,) = src._packed_event_pages("desc")
    assert isinstance(_mapping(got["data"]["x"]), mmap.mmap)
    assert got["data"]["x"].tolist() == page["data"]["x"]
    assert got["data"]["count"].dtype == np.int64
    assert got["data"]["count"].tolist() == page["data"]["count"]
    assert got["seq_num"].tolist() == page["seq_num"]
    # A run that keeps its documents keeps its pages for good: nothing to
    # give back, so plain numpy arrays.
    kept = DocumentRunSource(docs)
    (got,) = kept._packed_event_pages("desc")
    assert not isinstance(_mapping(got["data"]["x"]), mmap.mmap)
    assert got["data"]["x"].tolist() == page["data"]["x"]


def test_a_single_page_moves_only_columns_small_enough_to_fragment_the_heap():
    from intake_bluesky.core._model.pages import _MOVED_BYTES

    n = _MOVED_BYTES // 8 + 1
    page = {
        "descriptor": "d",
        "uid": ["e"] * n,
        "time": np.arange(n, dtype="float64"),
        "seq_num": np.arange(n),
        "data": {
            "big": np.ones(n),  # over 1 MiB: a copy would only cost time
            "mid": np.full(n, 2.5, dtype="float32"),  # moved
            "flag": np.ones(n, dtype="int8"),  # its column's first bytes: numpy's
        },
        "timestamps": {},
    }
    slabs = ColumnSlabs()
    slabs.empty(("d", "data", "mid"), (_SMALL,), np.dtype("uint8"))
    moved = merge_event_pages([page], slabs.empty)
    assert moved["data"]["big"] is page["data"]["big"]
    assert moved["data"]["flag"] is page["data"]["flag"]
    assert isinstance(_mapping(moved["data"]["mid"]), mmap.mmap)
    assert moved["data"]["mid"].dtype == np.float32 and (moved["data"]["mid"] == 2.5).all()
    # The page's keys as they were: none added ('filled'), none lost.
    assert moved.keys() == page.keys()
    assert merge_event_pages([page]) is page  # no empty(): the page as it is


def test_documents_added_while_a_run_is_written_use_numpy_memory():
    # A run being written is read again and again and never hands its pages
    # over: no mappings for what each update appends.
    docs = _run(2 * _SMALL // 8)
    src = DocumentRunSource(docs[:2], keep_documents=False)
    src.extend(docs[2:])
    pages = list(src._packed_event_pages("desc"))
    assert not any(isinstance(_mapping(p["data"]["x"]), mmap.mmap) for p in pages)
    assert [x for p in pages for x in p["data"]["x"].tolist()] == [
        e["data"]["x"] for name, e in docs if name == "event"
    ]


def test_pages_stored_without_filled_are_given_back_without_it():
    rows = 300
    desc_docs = [d for d in _run(0) if d[0] != "stop"]
    stop = _run(0)[-1]

    def page(lo, filled):
        out = {
            "descriptor": "desc",
            "uid": [f"e{i}" for i in range(lo, lo + rows)],
            "time": [float(i) for i in range(lo, lo + rows)],
            "seq_num": list(range(lo + 1, lo + rows + 1)),
            "data": {"x": [i * 0.5 for i in range(lo, lo + rows)], "count": list(range(rows))},
            "timestamps": {"x": [1.0] * rows, "count": [2.0] * rows},
        }
        if filled:
            out["filled"] = {}
        return out

    # Two pages without, one with, two without (merged where alike).
    stored = [page(0, False), page(rows, False), page(2 * rows, True), page(3 * rows, False)]
    stored.append(page(4 * rows, False))
    docs = [*desc_docs, *(("event_page", p) for p in stored), stop]
    for keep in (False, True):
        src = DocumentRunSource(docs, keep_documents=keep)
        back = [
            doc for name, doc in canonical(src, fill=False, filler=None) if name == "event_page"
        ]
        assert ["filled" in p for p in back] == [False, False, True, False, False]
        assert [p["seq_num"] for p in back] == [p["seq_num"] for p in stored]
        assert [list(p["data"]["x"]) for p in back] == [p["data"]["x"] for p in stored]
        # So do the pages of event_pages(), with or without a choice of fields.
        for fields in (None, ["x"]):
            pages = list(src.event_pages("desc", fields))
            assert ["filled" in p for p in pages] == [False, True, False]
