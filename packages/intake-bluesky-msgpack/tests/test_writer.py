"""MsgpackWriter, the ``msgpack`` run writer: suitcase-msgpack's layout, dtypes kept."""

import io

import msgpack
import msgpack_numpy
import numpy as np
import pytest

from intake_bluesky.core.export import get_writer
from intake_bluesky.msgpack import BlueskyMsgpackCatalog, MsgpackWriter


def _records(data: bytes):
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, object_hook=msgpack_numpy.decode)
    return list(unpacker)


def test_registered_as_the_msgpack_writer():
    assert isinstance(get_writer("msgpack"), MsgpackWriter)
    assert MsgpackWriter.suffix == ".msgpack"


def test_events_and_datums_become_one_row_pages():
    event = {
        "descriptor": "d",
        "uid": "e1",
        "time": 1.0,
        "seq_num": 1,
        "data": {"img": np.arange(4, dtype="<u2").reshape(2, 2), "x": 1.5},
        "timestamps": {"img": 1.0, "x": 1.0},
        "filled": {},
    }
    datum = {"resource": "r", "datum_id": "r/0", "datum_kwargs": {"index": 0}}
    out = io.BytesIO()
    MsgpackWriter().write([("event", event), ("datum", datum)], out)
    (n1, page), (n2, dpage) = _records(out.getvalue())
    assert (n1, n2) == ("event_page", "datum_page")
    assert page["uid"] == ["e1"] and page["seq_num"] == [1] and page["data"]["x"] == [1.5]
    (img,) = page["data"]["img"]
    assert img.dtype == np.dtype("<u2") and img.tolist() == [[0, 1], [2, 3]]
    assert dpage == {"resource": "r", "datum_id": ["r/0"], "datum_kwargs": {"index": [0]}}


def test_stacked_page_columns_are_stored_row_by_row():
    frames = np.arange(3 * 2 * 2, dtype=">i4").reshape(3, 2, 2)  # big-endian kept
    page = {
        "descriptor": "d",
        "uid": ["a", "b", "c"],
        "time": np.array([1.0, 2.0, 3.0]),
        "seq_num": np.array([1, 2, 3]),
        "data": {"img": frames},
        "timestamps": {"img": [1.0, 2.0, 3.0]},
        "filled": {},
    }
    out = io.BytesIO()
    MsgpackWriter().write([("event_page", page)], out)
    ((name, got),) = _records(out.getvalue())
    assert name == "event_page"
    assert got["time"] == [1.0, 2.0, 3.0] and got["seq_num"] == [1, 2, 3]
    rows = got["data"]["img"]
    assert len(rows) == 3 and all(r.dtype == np.dtype(">i4") for r in rows)
    np.testing.assert_array_equal(np.stack(rows), frames)


def test_unwritable_value_names_the_document():
    with pytest.raises(ValueError, match="start document 'abc'"):
        MsgpackWriter().write([("start", {"uid": "abc", "what": object()})], io.BytesIO())


def test_written_run_reads_back_with_dtypes(tmp_path):
    from intake_bluesky.core import BlueskyInMemoryCatalog
    from intake_bluesky.core.testing import example_runs, normalize_documents

    docs = example_runs(tmp_path / "ext")[0]
    cat = BlueskyInMemoryCatalog()
    cat.ingest(docs)
    run = cat[-1]
    with open(tmp_path / f"{run.uid}.msgpack", "wb") as f:
        MsgpackWriter().write(run.canonical(fill="no"), f)
    back = BlueskyMsgpackCatalog(str(tmp_path))[-1]
    assert normalize_documents(back.canonical(fill="no")) == normalize_documents(docs)
    want, got = run.primary(exclude=["ext"]).read(), back.primary(exclude=["ext"]).read()
    for key in want.data_vars:
        np.testing.assert_array_equal(got[key].values, want[key].values)
        assert got[key].dtype == want[key].dtype, key
