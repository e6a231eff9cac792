"""UidColumn: event uids packed to 16 bytes, given back exactly as stored."""

import pickle
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_bluesky.core import DocumentRunSource
from intake_bluesky.core._model.canonical import canonical
from intake_bluesky.core._model.documents import _PAGE_ROWS, packed_event_pages
from intake_bluesky.core._model.pages import merge_event_pages, plain_page, slice_page
from intake_bluesky.core._model.uids import UidColumn

uuid_text = st.uuids().map(str)
#: Strings near the canonical form: any of them may be packed only if it is
#: one, and must then come back unchanged.
near = st.one_of(
    uuid_text,
    uuid_text.map(str.upper),
    uuid_text.map(lambda u: u[:-1]),
    uuid_text.map(lambda u: u + "0"),
    uuid_text.map(lambda u: u.replace("-", "")),
    uuid_text.map(lambda u: u[:8] + "_" + u[9:]),
    uuid_text.map(lambda u: u[:5] + "g" + u[6:]),
    uuid_text.map(lambda u: u[:3] + "é" + u[4:]),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(near, min_size=1, max_size=8))
def test_packed_only_what_comes_back_unchanged(uids):
    packed = UidColumn.pack(uids)
    assert (packed is not None) == all(map(_canonical, uids))
    if packed is not None:
        assert packed.tolist() == uids
        assert list(packed) == uids
        assert [packed[i] for i in range(len(uids))] == uids
        assert packed[-1] == uids[-1]
        assert packed == uids and packed.nbytes == 16 * len(uids)


def _canonical(text):
    try:
        return text == str(uuid.UUID(text))
    except ValueError:
        return False


@settings(max_examples=100, deadline=None)
@given(st.lists(uuid_text, min_size=1, max_size=20), st.integers(-25, 25), st.integers(-25, 25))
def test_slices_and_joins_are_the_lists(uids, a, b):
    packed = UidColumn.pack(uids)
    assert isinstance(packed[a:b], UidColumn)
    assert packed[a:b].tolist() == uids[a:b]
    assert UidColumn.concat([packed[:a], packed[a:]]).tolist() == uids
    assert pickle.loads(pickle.dumps(packed)) == packed


def test_indexed_and_compared_as_a_list():
    uids = [str(uuid.uuid4()) for _ in range(3)]
    packed = UidColumn.pack(uids)
    assert packed[np.int64(1)] == uids[1] and packed[True] == uids[True]
    for index in ([0, 1], np.array([0, 1]), 1.0):
        with pytest.raises(TypeError):
            packed[index]
    assert packed == uids and packed != tuple(uids) and packed != uids[:2]
    with pytest.raises(TypeError):
        hash(packed)


def test_declines_what_is_not_text():
    assert UidColumn.pack([1, 2]) is None
    assert UidColumn.pack([]) is None
    assert UidColumn.pack([str(uuid.uuid4()), None]) is None
    # A short uid beside a long one: 72 characters in all, cut at the wrong place.
    u = str(uuid.uuid4())
    assert UidColumn.pack([u[:-1], u + "a"]) is None
    with pytest.raises(IndexError):
        UidColumn.pack([u])[1]


def test_pages_leave_the_core_as_lists_of_the_stored_strings():
    uids = [str(uuid.uuid4()) for _ in range(5)]
    page = {
        "descriptor": "d",
        "uid": UidColumn.pack(uids),
        "time": np.arange(5.0),
        "seq_num": np.arange(1, 6),
        "data": {"x": np.arange(5.0)},
        "timestamps": {"x": np.arange(5.0)},
        "filled": {},
    }
    plain = plain_page(page)
    assert type(plain["uid"]) is list and plain["uid"] == uids
    assert slice_page(page, 1, 3)["uid"].tolist() == uids[1:3]
    merged = merge_event_pages([slice_page(page, 0, 2), slice_page(page, 2, 5)])
    assert isinstance(merged["uid"], UidColumn) and merged["uid"].tolist() == uids
    # A page of other uids merged with a packed one: the stored strings.
    other = {**slice_page(page, 0, 1), "uid": ["not-a-uuid"]}
    assert merge_event_pages([other, slice_page(page, 1, 5)])["uid"] == ["not-a-uuid", *uids[1:]]


def test_a_run_keeps_its_event_uids_packed_and_gives_them_back():
    start = {"uid": str(uuid.uuid4()), "time": 0.0}
    desc = {
        "uid": "desc",
        "run_start": start["uid"],
        "name": "primary",
        "time": 0.0,
        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}},
    }
    # A page of bluesky's uids, then one of another form (kept as a list).
    uids = [str(uuid.uuid4()) for _ in range(_PAGE_ROWS)] + ["LEGACY-uid"]
    events = [
        {
            "uid": u,
            "descriptor": "desc",
            "time": float(i),
            "seq_num": i + 1,
            "data": {"x": i * 0.5},
            "timestamps": {"x": float(i)},
            "filled": {},
        }
        for i, u in enumerate(uids)
    ]
    docs = [("start", start), ("descriptor", desc), *(("event", e) for e in events)]
    src = DocumentRunSource(docs, keep_documents=False)
    # Kept packed (the core reads them so) ...
    packed = list(packed_event_pages(src, "desc"))
    assert isinstance(packed[0]["uid"], UidColumn) and packed[-1]["uid"] == ["LEGACY-uid"]
    # ... and given out as lists of str, by every method of the protocol.
    for pages in (
        list(src.event_pages("desc")),
        list(src.event_pages("desc", ["x"], (10, 4100))),
        [page for _, page in src.stored_event_pages("desc")],
    ):
        assert all(type(p["uid"]) is list for p in pages)
    assert [u for p in src.event_pages("desc") for u in p["uid"]] == uids
    assert [u for _, p in src.stored_event_pages("desc") for u in p["uid"]] == uids
    # A run that keeps its documents (the in-memory catalog) packs nothing.
    kept = DocumentRunSource(docs)
    assert all(type(p["uid"]) is list for p in packed_event_pages(kept, "desc"))
    back = [doc for name, doc in canonical(src, fill=False, filler=None) if name == "event"]
    assert back == events
    assert all(type(doc["uid"]) is str for doc in back)
