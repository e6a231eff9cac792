"""JSONLWriter, the ``jsonl`` run writer: what it writes reads back exactly."""

import io
import json
import math

import numpy as np
import pytest

from intake_bluesky.core.export import get_writer
from intake_bluesky.jsonl import BlueskyJSONLCatalog, JSONLWriter


def _lines(data: bytes):
    return [json.loads(line) for line in data.decode().splitlines()]


def test_registered_as_the_jsonl_writer():
    assert isinstance(get_writer("jsonl"), JSONLWriter)
    assert JSONLWriter.suffix == ".jsonl"


def test_numpy_values_become_json_of_the_same_values():
    out = io.BytesIO()
    doc = {
        "u16": np.arange(6, dtype="<u2").reshape(2, 3),
        "big_endian": np.array([1.5, -2.25], dtype=">f8"),
        "f32": np.float32(0.5),
        "i64": np.int64(2**40),
        "flag": np.bool_(True),
        "strided": np.arange(10)[::3],
        "nested": {"tuple": (1, 2), "none": None},
    }
    JSONLWriter().write([("start", doc)], out)
    ((name, got),) = _lines(out.getvalue())
    assert name == "start"
    assert got == {
        "u16": [[0, 1, 2], [3, 4, 5]],
        "big_endian": [1.5, -2.25],
        "f32": 0.5,
        "i64": 2**40,
        "flag": True,
        "strided": [0, 3, 6, 9],
        "nested": {"tuple": [1, 2], "none": None},
    }


def test_nan_and_infinity_are_kept_as_suitcase_jsonl_writes_them():
    out = io.BytesIO()
    JSONLWriter().write(
        [("event", {"data": {"x": float("nan"), "arr": np.array([np.inf, -np.inf, np.nan])}})],
        out,
    )
    text = out.getvalue().decode()
    assert "NaN" in text and "Infinity" in text and "null" not in text
    ((_, doc),) = _lines(out.getvalue())
    assert math.isnan(doc["data"]["x"])
    assert doc["data"]["arr"][:2] == [math.inf, -math.inf] and math.isnan(doc["data"]["arr"][2])


def test_unwritable_value_names_the_document():
    with pytest.raises(ValueError, match="start document 'abc'"):
        JSONLWriter().write([("start", {"uid": "abc", "what": object()})], io.BytesIO())


def test_written_run_reads_back(tmp_path):
    from intake_bluesky.core import BlueskyInMemoryCatalog
    from intake_bluesky.core.testing import example_runs, normalize_documents

    docs = example_runs()[1]
    cat = BlueskyInMemoryCatalog()
    cat.ingest(docs)
    run = cat[-1]
    path = tmp_path / f"{run.uid}.jsonl"
    with open(path, "wb") as f:
        JSONLWriter().write(run.canonical(fill="no"), f)
    back = BlueskyJSONLCatalog(str(tmp_path))[-1]
    assert normalize_documents(back.canonical(fill="no")) == normalize_documents(docs)
    want, got = run.primary.read(), back.primary.read()
    for key in want.data_vars:
        np.testing.assert_array_equal(got[key].values, want[key].values)
        assert got[key].dtype == want[key].dtype
