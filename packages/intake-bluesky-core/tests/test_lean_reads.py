"""A source with ``lean_event_pages`` (a database) is asked only for what a
read uses; its reads give what full pages give, and errors still name the
event by uid. A window of rows is checked to hold the events the row index
has there."""

import numpy as np
import pytest
from event_model import compose_run

from intake_bluesky.core import (
    BadDocumentError,
    BlueskyCatalog,
    DocumentRunSource,
    MemoryDriver,
    RunChangedError,
)
from intake_bluesky.core._model.pages import slice_page, slice_pages
from intake_bluesky.core.testing._examples_correctness import DAMAGED_UIDS, damaged_run

T0 = 1_700_000_000.0


class LeanSource(DocumentRunSource):
    """A run held in memory that also answers lean reads, and records them."""

    def __init__(self, docs):
        super().__init__(docs)
        self.lean_calls = []
        self.full_calls = []

    def lean_event_pages(self, descriptor_uid, fields, rows=None, part=None):
        self.lean_calls.append((list(fields), rows, part))
        pages = []
        for page in super().event_pages(descriptor_uid, fields, rows):
            lean = {"time": page["time"], "seq_num": page["seq_num"]}
            if part is not None:
                lean[part] = page[part]
            pages.append(lean)
        return pages

    def event_pages(self, descriptor_uid, fields=None, rows=None):
        self.full_calls.append((None if fields is None else list(fields), rows))
        return super().event_pages(descriptor_uid, fields, rows)


def _catalog(source):
    driver = MemoryDriver()
    driver._runs[source.uid] = source
    return BlueskyCatalog(driver)


def _run(n):
    bundle = compose_run(time=T0, metadata={"scan_id": 3})
    keys = {
        "x": {"source": "s", "dtype": "number", "shape": []},
        "i": {"source": "s", "dtype": "integer", "shape": []},
    }
    desc = bundle.compose_descriptor(name="primary", data_keys=keys, time=T0)
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for k in range(n):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"x": k / 4, "i": k * 3},
                    timestamps={"x": T0 + k, "i": T0 + k + 0.5},
                    seq_num=k + 1,
                    time=T0 + k,
                ),
            )
        )
    docs.append(("stop", bundle.compose_stop(time=T0 + n)))
    return docs


@pytest.mark.parametrize("face", ["read", "to_dask", "compute", "timestamps"])
def test_lean_reads_give_what_full_pages_give(face):
    docs = _run(50)
    uid = docs[0][1]["uid"]
    lean = LeanSource(docs)
    full = _catalog(DocumentRunSource(docs))[uid].primary
    stream = _catalog(lean)[uid].primary
    if face == "read":
        got, want = stream.read(), full.read()
    elif face == "to_dask":
        got, want = stream.to_dask(chunks={"x": 7}), full.to_dask(chunks={"x": 7})
    elif face == "compute":
        got, want = stream.to_dask().compute(), full.to_dask().compute()
    else:
        got, want = stream.timestamps.read(), full.timestamps.read()
    assert got.identical(want)
    np.testing.assert_array_equal(got["time"].values, T0 + np.arange(50))
    if face != "timestamps":
        np.testing.assert_array_equal(got["i"].values, np.arange(50) * 3)
        assert got["i"].dtype == np.int64
    assert lean.lean_calls, "the lean path was taken"
    for fields, _rows, part in lean.lean_calls:
        # The row index asks for no fields; a read for its own part only.
        assert part in (None, "timestamps" if face == "timestamps" else "data")
        assert (part is None) == (fields == [])


@pytest.mark.parametrize("face", ["read", "to_dask"])
def test_a_damaged_event_found_by_a_lean_read_is_named_by_uid(face):
    uid = DAMAGED_UIDS["time"]
    lean = LeanSource(damaged_run("time"))
    stream = _catalog(lean)[uid].primary
    with pytest.raises(BadDocumentError) as info:
        getattr(stream, face)()
    message = str(info.value)
    assert f"event '{uid}-e2' (seq_num 2)" in message
    assert "time 'yesterday'" in message
    assert lean.lean_calls
    # The uid was looked up for that one event (the second of the
    # descriptor's), not by reading the run again.
    assert lean.full_calls == [([], (1, 2))]


def test_an_event_whose_uid_is_not_found_is_named_by_seq_num():
    uid = DAMAGED_UIDS["time"]

    class Forgetful(LeanSource):
        def event_pages(self, descriptor_uid, fields=None, rows=None):
            raise ConnectionError("the server went away")

    stream = _catalog(Forgetful(damaged_run("time")))[uid].primary
    with pytest.raises(BadDocumentError) as info:
        stream.read()
    message = str(info.value)
    assert "the event with seq_num 2 of descriptor" in message
    assert "time 'yesterday'" in message and f"Run {uid!r}" in message


class Shifty(DocumentRunSource):
    """Gives a row window other events than the whole descriptor's read has
    there (as a store sorting equal times differently per query may), and,
    when told, loses its first event (as if events were inserted before)."""

    shift = 1
    lose_first = False

    def _packed_event_pages(self, descriptor_uid, fields=None, rows=None):
        # (The core reads a DocumentRunSource's pages through this method.)
        pages = list(super()._packed_event_pages(descriptor_uid, fields, None))
        if self.lose_first:
            pages = [slice_page(pages[0], 1, len(pages[0]["seq_num"])), *pages[1:]]
        if rows is None:
            return iter(pages)
        a, b = rows
        return iter(slice_pages(pages, (a + self.shift, b + self.shift)))


def test_a_window_read_finds_the_indexed_events_or_says_the_run_changed():
    docs = _run(50)
    uid = docs[0][1]["uid"]
    source = Shifty(docs)
    stream = _catalog(source)[uid].primary
    lazy = stream.to_dask(chunks={"x": 7, "i": 7})
    assert lazy["x"].data.numblocks == (8,)
    ds = lazy.compute()
    # Every chunk got the events the index has at its rows.
    np.testing.assert_array_equal(ds["x"].values, np.arange(50) / 4)
    np.testing.assert_array_equal(ds["i"].values, np.arange(50) * 3)
    np.testing.assert_array_equal(ds["seq_num"].values, np.arange(1, 51))
    source.lose_first = True
    with pytest.raises(
        RunChangedError, match=r"positions \d+-\d+ are no longer .* to_dask\(\) again"
    ):
        lazy.compute()


def test_lean_uids_are_looked_up_by_position_and_checked_by_seq_num():
    from intake_bluesky.core._model.documents import LeanUids

    docs = _run(10)
    events = [d for n, d in docs if n == "event"]
    source = LeanSource(docs)
    desc = docs[1][1]["uid"]
    uids = LeanUids(source, desc, 4, [5, 6, 7])
    assert uids[0] == events[4]["uid"] and uids[-1] == events[6]["uid"]
    with pytest.raises(IndexError):
        uids[3]
    source.full_calls.clear()
    assert list(uids) == [e["uid"] for e in events[4:7]]
    assert source.full_calls == [([], (4, 7))]  # one query for the page
    assert list(uids[1:]) == [e["uid"] for e in events[5:7]]
    # A position holding another event: found by seq_num among all events.
    assert LeanUids(source, desc, 0, [9])[0] == events[8]["uid"]
    assert LeanUids(source, desc, 0, [99])[0] is None
