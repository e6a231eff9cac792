"""MsgpackFormat: reading run files as suitcase-msgpack writes them."""

from __future__ import annotations

import doctest
import json
import os

import event_model
import msgpack
import msgpack_numpy
import numpy as np
import pytest
from msgpack_testing import (
    FLY,
    RUN0,
    RUN1,
    SAMPLES,
    STREAM_RUN,
    assert_same_run,
    pack_record,
    write_run,
)

import intake_bluesky.msgpack
from intake_bluesky.core import MergedPage
from intake_bluesky.core.testing import plain
from intake_bluesky.msgpack import MsgpackFormat, _format, decode_numpy

FMT = MsgpackFormat()


def read(path):
    """The documents of a file, float columns as lists (for comparisons)."""
    return [(name, _float_lists(doc)) for name, doc in FMT.read_documents(str(path))]


def _float_lists(doc, merged=False):
    """Merged pages hold float-only columns as float64 arrays: as lists here,
    in place (a MergedPage stays one). Pages kept as stored are left alone."""
    if not (merged or isinstance(doc, MergedPage)):
        return doc
    for key, value in doc.items():
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == np.float64:
            doc[key] = value.tolist()
        elif isinstance(value, dict):
            _float_lists(value, merged=True)
    return doc


def scalar_run(n=5, *, stop=True):
    """A run with a scalar stream (det, motor) of n events."""
    bundle = event_model.compose_run(metadata={"plan_name": "count", "scan_id": 7})
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "det": {"source": "sim", "dtype": "number", "shape": []},
            "motor": {"source": "sim", "dtype": "integer", "shape": []},
        },
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(n):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"det": i * 1.5, "motor": i},
                    timestamps={"det": 100.0 + i, "motor": 100.0 + i},
                    seq_num=i + 1,
                ),
            )
        )
    if stop:
        docs.append(("stop", bundle.compose_stop()))
    return docs


def array_run(arrays: dict[str, list[np.ndarray]]):
    """A run whose events carry the given arrays, one per event per key."""
    bundle = event_model.compose_run()
    first = {k: v[0] for k, v in arrays.items()}
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            k: {
                "source": "sim",
                "dtype": "array",
                "shape": list(a.shape),
                "dtype_numpy": a.dtype.str,
            }
            for k, a in first.items()
        },
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    n = len(next(iter(arrays.values())))
    for i in range(n):
        data = {k: v[i] for k, v in arrays.items()}
        docs.append(
            (
                "event",
                desc.compose_event(
                    data=data, timestamps=dict.fromkeys(data, 1.0 + i), seq_num=i + 1
                ),
            )
        )
    docs.append(("stop", bundle.compose_stop()))
    return docs


def pages(documents, name="event_page"):
    return [doc for n, doc in documents if n == name]


# --- the real sample files -------------------------------------------------


@pytest.mark.parametrize("uid, expected", [(RUN0, "run0"), (RUN1, "run1")])
def test_samples_read_back_as_emitted(uid, expected):
    documents = read(SAMPLES / "msgpack" / f"{uid}.msgpack")
    emitted = json.loads((SAMPLES / "docs" / f"{expected}_documents.json").read_text())
    assert_same_run(documents, emitted)
    assert documents[0][0] == "start" and documents[0][1]["uid"] == uid
    assert documents[-1][0] == "stop"


def test_sample_run0_arrays_keep_dtype_and_shape():
    documents = read(SAMPLES / "msgpack" / f"{RUN0}.msgpack")
    emitted = json.loads((SAMPLES / "docs" / "run0_documents.json").read_text())
    primary = next(d for n, d in documents if n == "descriptor" and d["name"] == "primary")
    (page,) = [p for p in pages(documents) if p["descriptor"] == primary["uid"]]
    # The three 1-row pages of primary are one page; the 4x5 frames one array.
    direct = page["data"]["direct_img"]
    assert isinstance(direct, np.ndarray)
    assert direct.dtype == np.dtype("<u2") and direct.shape == (3, 4, 5)
    expected = [
        d["data"]["direct_img"] for n, d in emitted if n == "event" and "direct_img" in d["data"]
    ]
    assert direct.tolist() == expected
    assert page["seq_num"] == [1, 2, 3]
    assert page["data"]["det"] == [0.6065306597126334, 1.0, 0.6065306597126334]
    assert page["data"]["img"] == [f"cdfdbf8a-121d-4c25-b69d-9e31bb598e84/{i}" for i in range(3)]
    assert page["filled"] == {"img": [False, False, False]}
    # Datums of the resource: one page, before the events that use them.
    names = [n for n, _ in documents]
    (datum_page,) = pages(documents, "datum_page")
    assert datum_page["datum_kwargs"] == {"index": [0, 1, 2]}
    assert names.index("resource") < names.index("datum_page") < names.index("event_page", 3)


def test_sample_fly_run():
    documents = read(SAMPLES / "msgpack_fly" / f"{FLY}.msgpack")
    assert [n for n, _ in documents] == ["start", "descriptor", "event_page", "stop"]
    (page,) = pages(documents)
    assert page["seq_num"] == list(range(1, 11))
    assert len(page["data"]["motor"]) == 10 and len(page["time"]) == 10
    assert documents[-1][1]["num_events"] == {"flyer2": 10}


def test_sample_stream_docs():
    documents = read(SAMPLES / "stream_docs" / "msgpack" / f"{STREAM_RUN}.msgpack")
    composed = json.loads((SAMPLES / "stream_docs" / "composed_documents.json").read_text())
    # suitcase-msgpack 0.3.0 wrote no stream_resource/stream_datum: the file
    # holds the others, exactly.
    kept = [(n, d) for n, d in composed if n not in ("stream_resource", "stream_datum")]
    assert_same_run(documents, kept)
    (page,) = pages(documents)
    assert page["data"] == {"x": [1.0, 2.0, 3.0]}


def test_sample_header():
    start, stop = FMT.read_header(str(SAMPLES / "msgpack" / f"{RUN0}.msgpack"))
    assert start["uid"] == RUN0 and start["plan_name"] == "scan"
    assert stop["run_start"] == RUN0 and stop["num_events"] == {"baseline": 2, "primary": 3}


# --- arrays ----------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["uint16", "float32", "int64", "bool", "complex128", ">i4", "uint8", "float64"]
)
def test_arrays_round_trip_with_dtype_and_shape(tmp_path, dtype):
    rng = np.random.default_rng(1)
    frames = [(rng.random((3, 4)) * 100).astype(dtype) for _ in range(3)]
    path = write_run(tmp_path / "run.msgpack", array_run({"frame": frames}))
    (page,) = pages(read(path))
    column = page["data"]["frame"]
    assert column.dtype == np.dtype(dtype)
    assert column.shape == (3, 3, 4)
    np.testing.assert_array_equal(column, np.stack(frames))


def test_single_event_array_is_a_view_of_the_bytes(tmp_path):
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    path = write_run(tmp_path / "run.msgpack", array_run({"frame": [frame]}))
    (page,) = pages(read(path))
    column = page["data"]["frame"]
    assert column.shape == (1, 3, 4) and column.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(column[0], frame)


def test_arrays_of_differing_shapes_stay_a_list(tmp_path):
    frames = [np.zeros((2, 2), "f4"), np.ones((3, 2), "f4")]
    path = write_run(tmp_path / "run.msgpack", array_run({"frame": frames}))
    (page,) = pages(read(path))
    column = page["data"]["frame"]
    assert isinstance(column, list) and [a.shape for a in column] == [(2, 2), (3, 2)]
    assert all(a.dtype == np.dtype("f4") for a in column)


def test_numpy_scalars_and_complex(tmp_path):
    bundle = event_model.compose_run(metadata={"gain": np.float32(2.5), "z": 1 + 2j})
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"n": {"source": "s", "dtype": "integer", "shape": []}}
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(3):
        docs.append(
            (
                "event",
                desc.compose_event(data={"n": np.int64(i)}, timestamps={"n": 0.0}, seq_num=i + 1),
            )
        )
    path = write_run(tmp_path / "run.msgpack", docs)
    documents = read(path)
    start = documents[0][1]
    assert start["gain"] == 2.5 and isinstance(start["gain"], np.float32)
    assert start["z"] == 1 + 2j
    (page,) = pages(documents)
    assert page["data"]["n"] == [0, 1, 2]
    assert all(isinstance(v, np.int64) for v in page["data"]["n"])


def test_structured_array(tmp_path):
    dtype = np.dtype([("x", "<f8"), ("y", "<i2", (2,))])
    value = np.zeros(3, dtype=dtype)
    value["x"] = [1, 2, 3]
    value["y"] = [[1, 2], [3, 4], [5, 6]]
    path = write_run(tmp_path / "run.msgpack", array_run({"s": [value, value]}))
    (page,) = pages(read(path))
    column = page["data"]["s"]
    assert column.dtype == dtype and column.shape == (2, 3)
    assert column["y"][1].tolist() == [[1, 2], [3, 4], [5, 6]]


def test_object_arrays_are_refused(tmp_path):
    # msgpack-numpy stores object arrays as pickles: never loaded.
    docs = scalar_run(1)
    page = {
        "descriptor": docs[1][1]["uid"],
        "uid": ["u"],
        "time": [1.0],
        "seq_num": [2],
        "data": {"det": [np.array([1, "a"], object)], "motor": [1]},
        "timestamps": {"det": [1.0], "motor": [1.0]},
        "filled": {},
    }
    path = write_run(tmp_path / "run.msgpack", [*docs[:-1], ("event_page", page)])
    with pytest.raises(ValueError, match="pickle") as info:
        read(path)
    assert str(path) in str(info.value)


def test_big_frame_2048x2048_float64(tmp_path):
    frames = [np.full((2048, 2048), float(i)) for i in range(2)]
    frames[1][7, 9] = -1.0
    path = write_run(tmp_path / "run.msgpack", array_run({"frame": frames}))
    (page,) = pages(read(path))
    column = page["data"]["frame"]
    assert column.shape == (2, 2048, 2048) and column.dtype == np.float64
    assert column[0].sum() == 0.0 and column[1, 7, 9] == -1.0 and column[1, 0, 0] == 1.0


@pytest.mark.slow
def test_record_bigger_than_msgpack_default_buffer(tmp_path):
    # 128 MiB in one record: beyond msgpack's 100 MiB default limit.
    frame = np.zeros((4096, 4096), "float64")
    frame[-1, -1] = 3.0
    path = write_run(tmp_path / "run.msgpack", array_run({"frame": [frame]}))
    (page,) = pages(read(path))
    assert page["data"]["frame"].shape == (1, 4096, 4096)
    assert page["data"]["frame"][0, -1, -1] == 3.0


# --- merging pages -----------------------------------------------------------


def test_one_row_pages_merge_into_columns(tmp_path):
    docs = scalar_run(5)
    path = write_run(tmp_path / "run.msgpack", docs)
    documents = read(path)
    assert [n for n, _ in documents] == ["start", "descriptor", "event_page", "stop"]
    (page,) = pages(documents)
    assert page["seq_num"] == [1, 2, 3, 4, 5]
    assert page["data"] == {"det": [0.0, 1.5, 3.0, 4.5, 6.0], "motor": [0, 1, 2, 3, 4]}
    assert page["timestamps"]["det"] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert page["uid"] == [d["uid"] for n, d in docs if n == "event"]
    assert page["time"] == [d["time"] for n, d in docs if n == "event"]
    assert_same_run(documents, docs)


def interleaved_run(n):
    """A run of n rows of two streams, "primary" (an external image, a datum
    before each event) and "monitor"; and the primary descriptor's uid."""
    bundle = event_model.compose_run()
    resource = bundle.compose_resource(
        spec="NPY_SEQ", root="/r", resource_path="p", resource_kwargs={}
    )
    a = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "img": {"source": "s", "dtype": "array", "shape": [2], "external": "FILESTORE:"}
        },
    )
    b = bundle.compose_descriptor(
        name="monitor", data_keys={"m": {"source": "s", "dtype": "number", "shape": []}}
    )
    docs = [
        ("start", bundle.start_doc),
        ("descriptor", a.descriptor_doc),
        ("descriptor", b.descriptor_doc),
        ("resource", resource.resource_doc),
    ]
    for i in range(n):
        datum = resource.compose_datum(datum_kwargs={"index": i})
        docs.append(("datum", datum))
        docs.append(
            (
                "event",
                a.compose_event(
                    data={"img": datum["datum_id"]},
                    timestamps={"img": i},
                    filled={"img": False},
                    seq_num=i + 1,
                ),
            )
        )
        docs.append(
            ("event", b.compose_event(data={"m": float(i)}, timestamps={"m": i}, seq_num=i + 1))
        )
    docs.append(("stop", bundle.compose_stop()))
    return docs, a.descriptor_doc["uid"]


def test_interleaved_streams_and_datums(tmp_path):
    docs, primary_uid = interleaved_run(4)
    path = write_run(tmp_path / "run.msgpack", docs)
    documents = read(path)
    assert [n for n, _ in documents] == [
        "start",
        "descriptor",
        "descriptor",
        "resource",
        "datum_page",
        "event_page",
        "event_page",
        "stop",
    ]
    assert_same_run(documents, docs)
    datum_page = documents[4][1]
    assert datum_page["datum_kwargs"] == {"index": [0, 1, 2, 3]}
    primary = next(p for p in pages(documents) if p["descriptor"] == primary_uid)
    assert primary["data"]["img"] == datum_page["datum_id"]
    assert primary["filled"] == {"img": [False] * 4}


def test_other_documents_end_a_merge(tmp_path):
    # A second resource in the middle (a detector rolling over to a new
    # file): its datums must not move before it.
    bundle = event_model.compose_run()
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "img": {"source": "s", "dtype": "array", "shape": [2], "external": "FILESTORE:"}
        },
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    seq = 0
    for _ in range(2):
        resource = bundle.compose_resource(
            spec="X", root="/", resource_path="f", resource_kwargs={}
        )
        docs.append(("resource", resource.resource_doc))
        for i in range(3):
            seq += 1
            datum = resource.compose_datum(datum_kwargs={"i": i})
            docs.append(("datum", datum))
            docs.append(
                (
                    "event",
                    desc.compose_event(
                        data={"img": datum["datum_id"]},
                        timestamps={"img": 0},
                        seq_num=seq,
                        filled={"img": False},
                    ),
                )
            )
    path = write_run(tmp_path / "run.msgpack", docs)
    documents = read(path)
    assert [n for n, _ in documents] == [
        "start",
        "descriptor",
        "resource",
        "datum_page",
        "event_page",
        "resource",
        "datum_page",
        "event_page",
    ]
    assert_same_run(documents, docs)
    assert [p["seq_num"] for p in pages(documents)] == [[1, 2, 3], [4, 5, 6]]


def test_pages_of_differing_layout_are_not_merged_together(tmp_path):
    desc_uid = "d1"
    docs = [
        ("start", {"uid": "s1", "time": 0.0}),
        (
            "descriptor",
            {
                "uid": desc_uid,
                "run_start": "s1",
                "time": 0.0,
                "name": "primary",
                "data_keys": {"a": {"source": "s", "dtype": "number", "shape": []}},
            },
        ),
    ]
    for i, keys in enumerate([("a",), ("a",), ("a", "b"), ("a", "b")]):
        docs.append(
            (
                "event_page",
                {
                    "descriptor": desc_uid,
                    "uid": [f"e{i}"],
                    "time": [float(i)],
                    "seq_num": [i + 1],
                    "data": {k: [i] for k in keys},
                    "timestamps": {k: [0.0] for k in keys},
                    "filled": {},
                },
            )
        )
    path = write_run(tmp_path / "run.msgpack", docs)
    got = pages(read(path))
    assert [p["seq_num"] for p in got] == [[1, 2], [3, 4]]
    assert got[1]["data"] == {"a": [2, 3], "b": [2, 3]}


def test_multi_row_pages_merge(tmp_path):
    bundle = event_model.compose_run()
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"x": {"source": "s", "dtype": "number", "shape": []}}
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    seq = 0
    for n in (3, 1, 2):
        events = []
        for _ in range(n):
            seq += 1
            events.append(
                desc.compose_event(data={"x": seq * 10.0}, timestamps={"x": 0.0}, seq_num=seq)
            )
        docs.append(("event_page", event_model.pack_event_page(*events)))
    path = write_run(tmp_path / "run.msgpack", docs)
    (page,) = pages(read(path))
    assert page["seq_num"] == [1, 2, 3, 4, 5, 6]
    assert page["data"]["x"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_misaligned_page_is_kept_as_stored(tmp_path):
    docs = [("start", {"uid": "s1", "time": 0.0})]
    good = {
        "descriptor": "d",
        "uid": ["u1"],
        "time": [1.0],
        "seq_num": [1],
        "data": {"x": [1.0]},
        "timestamps": {"x": [1.0]},
        "filled": {},
    }
    bad = {
        "descriptor": "d",
        "uid": ["u2"],
        "time": [2.0],
        "seq_num": [2],
        "data": {"x": [2.0, 3.0]},
        "timestamps": {"x": [2.0]},
        "filled": {},
    }
    docs += [("event_page", good), ("event_page", bad)]
    path = write_run(tmp_path / "run.msgpack", docs)
    assert pages(read(path)) == [good, bad]


# --- runs being written, corrupt files -------------------------------------


def test_truncated_last_record_is_a_run_in_progress(tmp_path):
    docs = scalar_run(4, stop=False)
    path = write_run(tmp_path / "run.msgpack", docs)
    whole = path.read_bytes()
    partial = pack_record(*scalar_run(1)[2])
    for cut in (1, 7, len(partial) - 1):
        path.write_bytes(whole + partial[:cut])
        documents = read(path)
        assert_same_run(documents, docs)
        start, stop = FMT.read_header(str(path))
        assert start["uid"] == docs[0][1]["uid"] and stop is None


def test_run_without_stop_has_no_stop(tmp_path):
    docs = scalar_run(3, stop=False)
    path = write_run(tmp_path / "run.msgpack", docs)
    assert FMT.read_header(str(path))[1] is None
    assert [n for n, _ in read(path)] == ["start", "descriptor", "event_page"]


def test_corrupt_record_in_the_middle_names_file_and_offset(tmp_path):
    docs = scalar_run(5)
    records = [pack_record(n, d) for n, d in docs]
    offset = sum(map(len, records[:3]))
    broken = bytearray(records[3])
    broken[0] = 0xC1  # "never used" in msgpack
    path = tmp_path / "run.msgpack"
    path.write_bytes(b"".join(records[:3]) + bytes(broken) + b"".join(records[4:]))
    with pytest.raises(ValueError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message and f"byte offset {offset}" in message
    assert "restore" in message or "truncate" in message


def test_record_that_is_not_a_pair_names_its_offset(tmp_path):
    docs = scalar_run(2)
    records = [pack_record(n, d) for n, d in docs]
    offset = sum(map(len, records[:2]))
    path = tmp_path / "run.msgpack"
    path.write_bytes(b"".join(records[:2]) + msgpack.packb(42) + b"".join(records[2:]))
    with pytest.raises(ValueError, match=f"byte offset {offset}.*not a \\[name, document\\]"):
        read(path)


def test_corrupt_length_in_the_middle_is_not_mistaken_for_truncation(tmp_path):
    docs = scalar_run(5)
    records = [pack_record(n, d) for n, d in docs]
    offset = sum(map(len, records[:3]))
    broken = bytearray(records[3])
    # fixarray(2) -> array32 of a huge length: msgpack waits for more bytes.
    broken[0:1] = b"\xdd\x7f\xff\xff\xff"
    path = tmp_path / "run.msgpack"
    path.write_bytes(b"".join(records[:3]) + bytes(broken) + b"".join(records[4:]))
    with pytest.raises(ValueError, match=f"byte offset {offset}.*record follows"):
        read(path)


def test_file_without_start_is_skipped_with_a_warning(tmp_path):
    docs = scalar_run(2)
    write_run(tmp_path / "nostart.msgpack", docs[1:])
    assert FMT.read_header(str(tmp_path / "nostart.msgpack")) == (None, None)
    (tmp_path / "garbage.msgpack").write_bytes(b"\xc1\xc1 not msgpack")
    assert FMT.read_header(str(tmp_path / "garbage.msgpack")) == (None, None)
    (tmp_path / "empty.msgpack").write_bytes(b"")
    assert FMT.read_header(str(tmp_path / "empty.msgpack")) == (None, None)


def test_header_finds_stop_without_decoding_big_payloads(tmp_path, monkeypatch):
    frames = [np.full((512, 512), i, "float64") for i in range(4)]  # 8 MiB
    docs = array_run({"frame": frames})
    path = write_run(tmp_path / "run.msgpack", docs)
    reads = []
    real_open = open

    class Spy:
        def __init__(self, file):
            self.file = file

        def read(self, n=-1):
            data = self.file.read(n)
            reads.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(_format, "open", lambda *a: Spy(real_open(*a)), raising=False)
    start, stop = FMT.read_header(str(path))
    assert start == docs[0][1] and stop == docs[-1][1]
    assert sum(reads) <= 2 * _format.TAIL_BYTES


def test_stop_in_a_large_tail_is_found(tmp_path):
    docs = scalar_run(2)
    stop = dict(docs[-1][1], reason="x" * (_format.TAIL_BYTES + 100))
    path = write_run(tmp_path / "run.msgpack", [*docs[:-1], ("stop", stop)])
    assert FMT.read_header(str(path))[1] == stop


def test_stop_bytes_inside_a_payload_are_not_a_stop(tmp_path):
    docs = scalar_run(2, stop=False)
    trap = msgpack.packb(["stop", {"run_start": docs[0][1]["uid"], "uid": "fake"}])
    # The last event carries the exact bytes of a stop record in a frame.
    frame = np.frombuffer(trap + b"\x00" * (-len(trap) % 8), dtype="u1")
    bundle_desc = docs[1][1]
    page = {
        "descriptor": bundle_desc["uid"],
        "uid": ["x"],
        "time": [1.0],
        "seq_num": [3],
        "data": {"blob": [frame]},
        "timestamps": {"blob": [1.0]},
        "filled": {},
    }
    path = write_run(tmp_path / "run.msgpack", docs)
    with open(path, "ab") as file:
        file.write(msgpack.packb(["event_page", page], default=msgpack_numpy.encode))
    assert FMT.read_header(str(path))[1] is None


def test_docstrings_run():
    for module in (intake_bluesky.msgpack, _format):
        assert doctest.testmod(module).failed == 0


def test_decode_numpy_leaves_plain_maps_alone():
    doc = {"a": 1}
    assert decode_numpy(doc) is doc
    scalar = decode_numpy({b"nd": False, b"type": "<i8", b"data": np.int64(5).tobytes()})
    assert scalar == 5 and isinstance(scalar, np.int64)


def test_format_is_picklable_and_comparable():
    import pickle

    assert pickle.loads(pickle.dumps(FMT)) == FMT


def test_page_with_whole_array_columns(tmp_path):
    # A writer may store a multi-row page's column as one array (5 rows, as
    # many as a msgpack-numpy map has keys: the map must not be taken for rows).
    docs = scalar_run(0, stop=False)
    desc_uid = docs[1][1]["uid"]
    seq = 0
    for rows in (5, 5):
        page = {
            "descriptor": desc_uid,
            "uid": [f"u{seq + i}" for i in range(rows)],
            "time": np.arange(seq, seq + rows, dtype="f8"),
            "seq_num": list(range(seq + 1, seq + rows + 1)),
            "data": {"det": np.arange(seq, seq + rows, dtype="f4"), "motor": [0] * rows},
            "timestamps": {"det": [0.0] * rows, "motor": [0.0] * rows},
            "filled": {},
        }
        docs.append(("event_page", page))
        seq += rows
    path = write_run(tmp_path / "run.msgpack", docs)
    got = pages(read(path))
    # Kept as stored (not merged), the arrays decoded with their dtype.
    assert [p["seq_num"] for p in got] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    for i, page in enumerate(got):
        assert isinstance(page["data"]["det"], np.ndarray)
        assert page["data"]["det"].dtype == np.float32
        assert page["data"]["det"].tolist() == [float(5 * i + j) for j in range(5)]
        assert page["time"].dtype == np.float64 and page["time"].tolist()[0] == 5.0 * i


def test_keys_that_look_like_code_merge_as_data(tmp_path):
    # Page layouts are compiled into a small function; keys from the file
    # must only ever be data.
    keys = ["x'] ; raise SystemExit #", 'y"\n    return True', "z\\", "with space"]
    docs = [("start", {"uid": "s1", "time": 0.0})]
    for i in range(3):
        page = {
            "descriptor": "d",
            "uid": [f"u{i}"],
            "time": [float(i)],
            "seq_num": [i + 1],
            "data": {k: [i * 10 + j] for j, k in enumerate(keys)},
            "timestamps": {k: [0.5] for k in keys},
            "filled": {},
        }
        docs.append(("event_page", page))
    path = write_run(tmp_path / "run.msgpack", docs)
    (page,) = pages(read(path))
    assert page["data"] == {k: [j, 10 + j, 20 + j] for j, k in enumerate(keys)}
    assert page["timestamps"] == {k: [0.5, 0.5, 0.5] for k in keys}


def test_long_stretches_are_handed_on_in_bounded_pieces(tmp_path, monkeypatch):
    # Every _STRETCH_ROWS rows the merged pages are handed on (bounded
    # memory); datums still precede the events that refer to them, and the
    # documents are the run's, in order.
    monkeypatch.setattr(_format, "_STRETCH_ROWS", 10)
    docs, primary_uid = interleaved_run(25)
    path = write_run(tmp_path / "run.msgpack", docs)

    batches = []
    reader = FMT.read_appended(str(path), None)
    while True:
        try:
            batches.append([(n, _float_lists(d)) for n, d in next(reader)])
        except StopIteration as done:
            end = done.value
            break
    assert len(batches) == 8  # 75 rows (25 datums, 50 events) in pieces of 10 or so
    assert end == (os.path.getsize(path),)
    documents = [d for batch in batches for d in batch]
    assert documents == read(path)
    assert_same_run(documents, docs)
    seen: set = set()
    for name, doc in documents:
        if name == "datum_page":
            seen.update(doc["datum_id"])
        elif name == "event_page" and doc["descriptor"] == primary_uid:
            assert set(doc["data"]["img"]) <= seen
    rows = [len(doc["seq_num"]) for name, doc in documents if name == "event_page"]
    assert max(rows) <= 10 and sum(rows) == 50


def test_reading_leaves_no_reference_cycles(tmp_path, monkeypatch):
    # Merged columns die with their stretch, not at the next full garbage
    # collection: with many stretches, cycles would hold every row read.
    # (Only the format's own objects are looked for among the garbage: other
    # threads of the test process, e.g. pymongo's monitors, make some too.)
    import gc
    import types

    monkeypatch.setattr(_format, "_STRETCH_ROWS", 10)
    path = write_run(tmp_path / "run.msgpack", scalar_run(100))
    was, debug = gc.isenabled(), gc.get_debug()
    gc.disable()
    try:
        gc.collect()
        documents = read(path)
        assert sum(len(d["seq_num"]) for n, d in documents if n == "event_page") == 100
        del documents
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection frees, to look at
        gc.collect()
        adders = [  # the generated add() functions (source compiled by exec)
            o
            for o in gc.garbage
            if isinstance(o, types.FunctionType)
            and o.__name__ == "add"
            and o.__code__.co_filename == "<string>"
        ]
        assert adders == []
    finally:
        gc.set_debug(debug)
        gc.garbage.clear()
        if was:
            gc.enable()


@pytest.mark.parametrize("layout", ["event", "event_page"])
def test_an_extension_value_is_named_with_its_document_and_field(tmp_path, layout):
    # msgpack ExtType: neither bluesky's serializers nor msgpack-numpy write
    # one; left alone it read as the 2-element list [code, data].
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    run = event_model.compose_run(uid="ext-run")
    desc = run.compose_descriptor(
        uid="ext-desc",
        name="primary",
        data_keys={"x": {"source": "s", "dtype": "number", "shape": []}},
    )
    events = [
        desc.compose_event(data={"x": 1.0}, timestamps={"x": 0.0}, seq_num=i, uid=f"ext-e{i}")
        for i in (1, 2)
    ]
    events[1]["data"]["x"] = msgpack.ExtType(5, b"abc")
    if layout == "event":
        docs = [("event", e) for e in events]
    else:
        docs = [("event_page", event_model.pack_event_page(e)) for e in events]
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc), *docs]
    with open(tmp_path / "ext-run.msgpack", "wb") as f:
        for name, doc in [*docs, ("stop", run.compose_stop())]:
            f.write(msgpack.packb([name, doc]))
    cat = BlueskyMsgpackCatalog(str(tmp_path))
    with pytest.raises(ValueError) as info:
        cat["ext-run"].primary.read()
    message = str(info.value)
    assert "ext-run.msgpack" in message
    assert "'ext-e2'" in message and "data.x holds a msgpack extension value" in message
    assert "ExtType code 5, 3 bytes" in message


def test_float_columns_of_merged_pages_are_float64_arrays(tmp_path):
    """Columns of floats only become arrays as they are merged (one look at
    their types); any other column stays as stored, for the core."""
    docs = scalar_run(5)
    path = write_run(tmp_path / "run.msgpack", docs)
    (page,) = pages(list(FMT.read_documents(str(path))))
    det = page["data"]["det"]
    assert isinstance(det, np.ndarray) and det.dtype == np.float64
    assert det.tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert page["data"]["motor"] == [0, 1, 2, 3, 4]  # ints: the core decides their dtype
    assert isinstance(page["time"], np.ndarray) and page["time"].dtype == np.float64
    assert page["seq_num"] == [1, 2, 3, 4, 5]


# --- big pages: columnar on their own, float columns from the bytes ---------


def big_page(desc_uid, first_seq, rows, **data):
    """An event page of ``rows`` rows: ``data`` columns (default: one float
    and one int column) with float timestamps."""
    data = data or {
        "det": [0.1 * (first_seq + i) for i in range(rows)],
        "count": [(first_seq + i) * 2**40 - 3 for i in range(rows)],
    }
    return {
        "descriptor": desc_uid,
        "uid": [f"e{first_seq + i}" for i in range(rows)],
        "time": [1000.0 + first_seq + i / 7 for i in range(rows)],
        "seq_num": list(range(first_seq, first_seq + rows)),
        "data": data,
        "timestamps": {k: [500.0 + first_seq + i / 3 for i in range(rows)] for k in data},
        "filled": {},
    }


def big_page_run(*pages_, other=None):
    """Start, descriptors "d" (and "m" for ``other``, 1-row pages of which
    come after each page), the pages, stop."""
    docs = [("start", {"uid": "s1", "time": 0.0})]
    for uid in ("d", "m"):
        docs.append(("descriptor", {"uid": uid, "run_start": "s1", "time": 0.0, "name": uid}))
    for i, page in enumerate(pages_):
        docs.append(("event_page", page))
        if other:
            docs.append(("event_page", big_page("m", i + 1, 1, m=[float(i)])))
    docs.append(("stop", {"uid": "t1", "run_start": "s1", "time": 1.0, "exit_status": "success"}))
    return docs


def assert_same_values(got: dict, stored: dict):
    """Every column of a page read equal to the stored one, value by value
    and of the same Python type (arrays through tolist(); floats bit for bit,
    NaN, -0.0 and subnormals included)."""
    assert got.keys() == stored.keys()
    for key, value in stored.items():
        if isinstance(value, dict):
            assert_same_values(got[key], value)
            continue
        column = got[key]
        if isinstance(column, np.ndarray):
            if column.dtype == np.float64:
                assert column.tobytes() == np.array(value, dtype=np.float64).tobytes(), key
            column = column.tolist()
        assert column == value or (np.isnan(value).any() and len(column) == len(value)), key
        assert [type(v) for v in column] == [type(v) for v in value], key


def test_big_pages_are_read_as_columns_from_their_bytes(tmp_path, monkeypatch):
    # Pages of hundreds of rows are not merged: their number columns become
    # arrays at once; after the first, float columns are read from the bytes.
    from_bytes = []
    real = _format._page_from_bytes
    monkeypatch.setattr(
        _format, "_page_from_bytes", lambda data: from_bytes.append(real(data)) or from_bytes[-1]
    )
    special = [float("nan"), float("inf"), -float("inf"), -0.0, 5e-324, 1.7976931348623157e308]
    pages_ = [big_page("d", 1 + 300 * i, 300) for i in range(3)]
    pages_[1]["data"]["det"][:6] = special
    docs = big_page_run(*pages_)
    path = write_run(tmp_path / "run.msgpack", docs)
    documents = list(FMT.read_documents(str(path)))
    got = pages(documents)
    assert len(got) == 3 and len(from_bytes) == 2 and all(from_bytes)
    for page, stored in zip(got, pages_, strict=True):
        assert page["data"]["det"].dtype == np.float64
        assert page["data"]["count"].dtype == np.int64
        assert page["time"].dtype == page["timestamps"]["count"].dtype == np.float64
        assert page["seq_num"].dtype == np.int64
        assert_same_values(page, stored)  # (NaN != NaN: not by assert_same_run)
    assert [n for n, _ in documents] == [n for n, _ in docs]


def test_big_pages_read_and_given_back_as_stored(tmp_path):
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    pages_ = [big_page("d", 1 + 400 * i, 400) for i in range(4)]
    docs = big_page_run(*pages_)
    docs[1][1]["data_keys"] = {
        "det": {"source": "s", "dtype": "number", "shape": []},
        "count": {"source": "s", "dtype": "integer", "shape": []},
    }
    docs[1][1]["name"] = "primary"
    write_run(tmp_path / "s1.msgpack", docs)
    run = BlueskyMsgpackCatalog(str(tmp_path), index_path=False)["s1"]
    ds = run.primary.read()
    assert ds["det"].dtype == np.float64 and ds["count"].dtype == np.int64
    assert ds["det"].values.tolist() == [v for p in pages_ for v in p["data"]["det"]]
    assert ds["count"].values.tolist() == [v for p in pages_ for v in p["data"]["count"]]
    assert ds["time"].values.tolist() == [v for p in pages_ for v in p["time"]]
    canonical = [d for n, d in run.canonical(fill="no") if n == "event_page"]
    assert len(canonical) == 4
    for page, stored in zip(canonical, pages_, strict=True):
        assert_same_values(plain(page), stored)


def test_big_pages_of_other_values_are_read_as_before(tmp_path):
    # After a big page, pages whose columns are not all floats or all ints
    # (or whose floats are float32 in the file) keep their values and types.
    n = 300
    pages_ = [
        big_page("d", 1, n),
        big_page("d", 1 + n, n, det=[1.0] * (n - 1) + [1]),  # an int among floats
        big_page("d", 1 + 2 * n, n, det=[True] * n),  # bools
        big_page("d", 1 + 3 * n, n, det=[2**63 + i for i in range(n)]),  # uint64
        big_page("d", 1 + 4 * n, n, det=[1] * (n - 1) + [2**63]),  # not one numpy dtype
        big_page("d", 1 + 5 * n, n, det=["a"] * n),  # strings
        big_page("d", 1 + 6 * n, n),
    ]
    docs = big_page_run(*pages_)
    path = write_run(tmp_path / "run.msgpack", docs)
    # A float32 column (msgpack's float 32): its values as msgpack reads them.
    single = big_page("d", 1 + 7 * n, n)
    with open(path, "rb") as f:
        records = f.read()
    stop = pack_record(*docs[-1])
    with open(path, "wb") as f:
        f.write(records[: -len(stop)])
        f.write(msgpack.packb(["event_page", single], use_single_float=True))
        f.write(stop)
    single = msgpack.unpackb(msgpack.packb(single, use_single_float=True))
    got = pages(FMT.read_documents(str(path)))
    stored = [*pages_, single]
    # (Pages that are not made columnar merge as before: compared row by row.)
    for part, key in [("time", None), ("seq_num", None), ("uid", None), ("data", "det")]:
        column = [
            v for page in got for v in _as_list(page[part] if key is None else page[part][key])
        ]
        expected = [v for page in stored for v in (page[part] if key is None else page[part][key])]
        assert column == expected and list(map(type, column)) == list(map(type, expected))
    by_first = {int(page["seq_num"][0]): page for page in got}
    assert by_first[1 + 3 * n]["data"]["det"].dtype == np.uint64
    assert by_first[1 + 6 * n]["data"]["det"].dtype == np.float64
    assert by_first[1 + 7 * n]["data"]["det"].dtype == np.float64
    assert_same_values(by_first[1 + 7 * n], single)


def _as_list(column):
    return column.tolist() if isinstance(column, np.ndarray) else column


def test_big_pages_across_many_reads(tmp_path, monkeypatch):
    # Records spanning many reads of the file: the same documents.
    docs = big_page_run(*[big_page("d", 1 + 300 * i, 300) for i in range(4)], other=True)
    path = write_run(tmp_path / "run.msgpack", docs)
    expected = [(n, plain(d)) for n, d in FMT.read_documents(str(path))]
    real = _format._unpacker
    monkeypatch.setattr(_format, "_unpacker", lambda file, read_size=997: real(file, read_size))
    documents = list(FMT.read_documents(str(path)))
    assert [(n, plain(d)) for n, d in documents] == expected
    assert_same_run(documents, docs)


def test_big_page_being_written_is_read_when_complete(tmp_path):
    pages_ = [big_page("d", 1 + 300 * i, 300) for i in range(3)]
    docs = big_page_run(*pages_)[:-1]  # no stop
    path = write_run(tmp_path / "run.msgpack", docs)
    data = path.read_bytes()
    cut = len(data) - 1000  # in the middle of the last page
    path.write_bytes(data[:cut])

    def appended(resume):
        reader = FMT.read_appended(str(path), resume)
        documents = []
        while True:
            try:
                documents.extend(next(reader))
            except StopIteration as done:
                return documents, done.value

    documents, resume = appended(None)
    assert [len(d["seq_num"]) for d in pages(documents)] == [300, 300]
    assert resume == (len(data) - len(pack_record("event_page", pages_[2])),)
    path.write_bytes(data)
    documents, resume = appended(resume)
    (last,) = pages(documents)
    assert_same_values(last, pages_[2])
    assert resume == (len(data),)


def test_an_extension_value_in_a_big_page_is_named(tmp_path):
    from intake_bluesky.msgpack import BlueskyMsgpackCatalog

    pages_ = [big_page("d", 1 + 300 * i, 300) for i in range(2)]
    pages_[1]["data"]["det"][5] = msgpack.ExtType(5, b"abc")
    docs = big_page_run(*pages_)
    docs[1][1]["name"] = "primary"
    docs[1][1]["data_keys"] = {
        k: {"source": "s", "dtype": "number", "shape": []} for k in ("det", "count")
    }
    with open(tmp_path / "s1.msgpack", "wb") as f:
        for name, doc in docs:
            f.write(msgpack.packb([name, doc]))
    with pytest.raises(ValueError) as info:
        BlueskyMsgpackCatalog(str(tmp_path), index_path=False)["s1"].primary.read()
    message = str(info.value)
    assert "s1.msgpack" in message and "'e306'" in message
    assert "data.det holds a msgpack extension value" in message


@pytest.mark.parametrize("bin_type", [True, False], ids=["str8", "raw16"])
def test_big_pages_uids_are_packed_from_their_bytes(tmp_path, bin_type):
    # Canonical UUIDs, written as msgpack >= 1.0 does (str 8) and as files
    # written without bin types do (raw 16), are packed straight from the
    # bytes; a page holding any other uid keeps its strings. Either way the
    # uids come back as stored.
    import uuid

    from intake_bluesky.core import UidColumn

    pages_ = [big_page("d", 1 + 300 * i, 300) for i in range(3)]
    for page in pages_:
        page["uid"] = [str(uuid.uuid4()) for _ in page["uid"]]
    pages_[2]["uid"][7] = pages_[2]["uid"][7].upper()
    docs = big_page_run(*pages_)
    path = tmp_path / "run.msgpack"
    with open(path, "wb") as file:
        for name, doc in docs:
            file.write(msgpack.packb([name, doc], use_bin_type=bin_type))
    # What the core reads (read_appended): the first big page is decoded by
    # msgpack (the core packs its uids), the next from the bytes.
    got = pages([doc for batch in FMT.read_appended(str(path), None) for doc in batch])
    assert [type(p["uid"]) for p in got] == [list, UidColumn, list]
    for page, stored in zip(got, pages_, strict=True):
        assert page["uid"] == stored["uid"]
        assert all(type(u) is str for u in page["uid"])
    # What anyone else reads (read_documents): lists of str.
    got = pages(list(FMT.read_documents(str(path))))
    assert [p["uid"] for p in got] == [p["uid"] for p in pages_]
    assert all(type(p["uid"]) is list for p in got)
