"""A finished run's event pages handed over to an eager read, not held twice."""

import pytest

from intake_bluesky.core import DocumentRunSource
from intake_bluesky.core._model.documents import PagesTakenError


def test_pages_handed_to_a_read_are_not_given_out_again():
    start = {"uid": "r", "time": 0.0}
    desc = {
        "uid": "desc",
        "run_start": "r",
        "name": "primary",
        "time": 0.0,
        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}},
    }
    page = {
        "descriptor": "desc",
        "uid": ["e1", "e2"],
        "time": [1.0, 2.0],
        "seq_num": [1, 2],
        "data": {"x": [0.5, 1.5]},
        "timestamps": {"x": [1.0, 2.0]},
        "filled": {},
    }
    stop = {"uid": "s", "run_start": "r", "time": 3.0, "exit_status": "success"}
    docs = [("start", start), ("descriptor", desc), ("event_page", page)]
    # A run still being written keeps its pages: the next read parses only
    # what is appended.
    assert DocumentRunSource(docs, keep_documents=False)._take_event_pages("desc") is None
    # So does a run that keeps its documents (nothing would be freed).
    assert DocumentRunSource([*docs, ("stop", stop)])._take_event_pages("desc") is None
    # So does one that no FileRunSource made: nothing could read them again.
    src = DocumentRunSource([*docs, ("stop", stop)], keep_documents=False)
    assert src._take_event_pages("desc") is None
    src._hand_over = True  # as a FileRunSource sets it
    (taken,) = src._take_event_pages("desc")
    assert src._take_event_pages("desc") is None  # not twice
    assert taken["data"]["x"].tolist() == [0.5, 1.5] and taken["uid"] == ["e1", "e2"]
    assert src.event_count("desc") == 2
    with pytest.raises(PagesTakenError, match="'desc'"):
        list(src.event_pages("desc"))
    with pytest.raises(PagesTakenError, match="'desc'"):
        list(src.stored_event_pages("desc"))
