"""JSONLFormat against real suitcase-jsonl files and against damaged ones."""

import gc
import json
import math
import os
import pickle

import event_model
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_bluesky.core import FileDriver
from intake_bluesky.jsonl import JSONLFormat
from intake_bluesky.jsonl import _format as format_module

fmt = JSONLFormat()

RUN0_UID = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1_UID = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
FLY_UID = "42f7726d-25d1-4a57-88fb-fab48dea2de1"
STREAM_UID = "4de19bbf-4131-4734-9f10-a0fd5c996689"


def dump_line(name, doc):
    return json.dumps([name, doc]) + "\n"  # as suitcase-jsonl writes it


def read(path):
    return list(fmt.read_documents(str(path)))


# --- ground truth: files written by suitcase-jsonl ---------------------------


@pytest.mark.parametrize(
    ("uid", "emitted_file"),
    [(RUN0_UID, "docs/run0_documents.json"), (RUN1_UID, "docs/run1_documents.json")],
)
def test_sample_reads_back_exactly_what_was_emitted(samples, emitted, uid, emitted_file):
    docs = read(samples / "jsonl" / f"{uid}.jsonl")
    expected = emitted(emitted_file)
    assert docs == expected
    assert all(type(pair) is tuple for pair in docs)


def test_sample_with_pages_holds_the_same_documents_packed(samples, emitted):
    docs = read(samples / "jsonl_pages" / f"{RUN0_UID}.jsonl")
    expected = []
    for name, doc in emitted("docs/run0_documents.json"):
        if name == "event":
            expected.append(("event_page", dict(event_model.pack_event_page(doc))))
        elif name == "datum":
            expected.append(("datum_page", dict(event_model.pack_datum_page(doc))))
        else:
            expected.append((name, doc))
    assert [n for n, _ in docs] == [n for n, _ in expected]
    assert docs == expected
    first_primary = docs[6][1]
    assert first_primary["data"]["direct_img"] == [
        [[85, 63, 51, 26, 30], [4, 7, 1, 17, 81], [64, 91, 50, 60, 97], [72, 63, 54, 55, 93]]
    ]
    assert first_primary["data"]["img"] == [f"{docs[4][1]['uid']}/0"]


def test_sample_fly_scan_is_one_page_of_ten_rows(samples):
    docs = read(samples / "jsonl_fly" / f"{FLY_UID}.jsonl")
    assert [n for n, _ in docs] == ["start", "descriptor", "event_page", "stop"]
    start, descriptor, page, stop = (d for _, d in docs)
    assert start["uid"] == FLY_UID and start["plan_name"] == "fly"
    assert page["descriptor"] == descriptor["uid"]
    assert page["seq_num"] == list(range(1, 11))
    assert page["time"] == sorted(page["time"]) and len(set(page["time"])) == 10
    assert set(page["data"]) == set(descriptor["data_keys"])
    assert all(len(column) == 10 for column in page["data"].values())
    assert stop["run_start"] == FLY_UID
    assert stop["num_events"] == {descriptor["name"]: 10}


def test_sample_stream_documents_are_kept(samples, emitted):
    docs = read(samples / "stream_docs" / "jsonl" / f"{STREAM_UID}.jsonl")
    assert docs == emitted("stream_docs/composed_documents.json")
    names = [n for n, _ in docs]
    assert names == [
        "start",
        "descriptor",
        "stream_resource",
        "stream_datum",
        "event_page",
        "stop",
    ]
    stream_datum = docs[3][1]
    assert stream_datum["seq_nums"] == {"start": 1, "stop": 4}


@pytest.mark.parametrize(
    ("folder", "uid"),
    [("jsonl", RUN0_UID), ("jsonl", RUN1_UID), ("jsonl_pages", RUN0_UID), ("jsonl_fly", FLY_UID)],
)
def test_sample_header_is_first_and_last_document(samples, folder, uid):
    path = str(samples / folder / f"{uid}.jsonl")
    docs = read(path)
    start, stop = fmt.read_header(path)
    assert start == docs[0][1] and start["uid"] == uid
    assert stop == docs[-1][1] and stop["run_start"] == uid
    assert stop["exit_status"] == "success"


# --- non-finite floats --------------------------------------------------------


def test_bare_nan_and_infinities_are_read(tmp_path, make_run, write_jsonl):
    docs = make_run(values=[1.0, float("nan"), float("inf"), float("-inf"), 2.0])
    docs[0][1]["threshold"] = float("nan")  # in the start document too
    path = write_jsonl(tmp_path / "run.jsonl", docs)
    text = open(path).read()
    assert "NaN" in text and "-Infinity" in text  # really the bare tokens

    out = read(path)
    values = [d["data"]["det"] for n, d in out if n == "event"]
    assert values[0] == 1.0 and values[4] == 2.0
    assert math.isnan(values[1])
    assert values[2] == math.inf and values[3] == -math.inf
    assert [d["seq_num"] for n, d in out if n == "event"] == [1, 2, 3, 4, 5]
    start, stop = fmt.read_header(path)
    assert math.isnan(start["threshold"]) and stop == out[-1][1]


def test_nan_inside_page_arrays(tmp_path, make_run, write_jsonl):
    docs = make_run(values=[1.0, 2.0])
    events = [d for n, d in docs if n == "event"]
    page = dict(event_model.pack_event_page(*events))
    page["data"]["det"] = [[1.0, float("nan")], [float("-inf"), 4.0]]
    path = write_jsonl(tmp_path / "run.jsonl", [docs[0], docs[1], ("event_page", page), docs[-1]])
    name, got = read(path)[2]
    assert name == "event_page"
    column = got["data"]["det"]
    assert column[0][0] == 1.0 and math.isnan(column[0][1])
    assert column[1] == [-math.inf, 4.0]


def test_the_string_nan_stays_a_string(tmp_path, make_run, write_jsonl):
    docs = make_run(values=[1.0])
    docs[0][1]["sample"] = "NaN"
    docs[0][1]["note"] = "Infinity, -Infinity"
    path = write_jsonl(tmp_path / "run.jsonl", docs)
    start = read(path)[0][1]
    assert start["sample"] == "NaN" and start["note"] == "Infinity, -Infinity"


def test_numbers_keep_their_type(tmp_path, make_run, write_jsonl):
    docs = make_run(values=[1, 2])
    docs[0][1]["big"] = 2**63 - 1
    path = write_jsonl(tmp_path / "run.jsonl", docs)
    out = read(path)
    assert [type(d["data"]["det"]) for n, d in out if n == "event"] == [int, int]
    assert out[0][1]["big"] == 2**63 - 1


@pytest.mark.parametrize("big", [2**64, 2**64 + 1, -(2**63) - 1, 10**30, -(10**40)])
def test_integers_beyond_64_bits_are_exact(tmp_path, make_run, write_jsonl, big):
    # orjson alone reads these as floats (rounded); they must come back as the
    # exact Python ints suitcase-jsonl wrote, in events, pages and headers.
    docs = make_run(values=[1, big, 3])
    docs[0][1]["big"] = big
    docs[-1][1]["big"] = big
    events = [d for n, d in docs if n == "event"]
    page = dict(event_model.pack_event_page(*events))
    path = write_jsonl(tmp_path / "run.jsonl", [*docs[:-1], ("event_page", page), docs[-1]])
    out = read(path)
    values = [d["data"]["det"] for n, d in out if n == "event"]
    assert values == [1, big, 3] and type(values[1]) is int
    (got_page,) = [d for n, d in out if n == "event_page"]
    assert got_page["data"]["det"] == [1, big, 3]
    assert out[0][1]["big"] == big and type(out[0][1]["big"]) is int
    start, stop = fmt.read_header(path)
    assert start["big"] == big and stop["big"] == big
    assert type(start["big"]) is int and type(stop["big"]) is int


# --- blank lines, line endings -------------------------------------------------


def test_blank_lines_and_crlf_are_ignored(tmp_path, make_run):
    docs = make_run(3)
    path = tmp_path / "run.jsonl"
    body = "\n".join(json.dumps([n, d]) for n, d in docs).replace("\n", "\r\n")
    path.write_text("\n  \n" + body.replace("\r\n", "\r\n\r\n", 1) + "\r\n\n \t\n")
    assert read(path) == docs
    assert fmt.read_header(str(path)) == (docs[0][1], docs[-1][1])


def test_last_line_without_newline_is_read(tmp_path, make_run):
    docs = make_run(2)
    path = tmp_path / "run.jsonl"
    path.write_text("".join(dump_line(n, d) for n, d in docs).rstrip("\n"))
    assert read(path) == docs
    assert fmt.read_header(str(path))[1] == docs[-1][1]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert read(path) == []
    assert fmt.read_header(str(path)) == (None, None)


# --- a run being written --------------------------------------------------------


def _cut_inside_last_line(docs, cut):
    """The file's bytes, cut ``cut`` bytes into its last line (negative: from its end)."""
    text = "".join(dump_line(n, d) for n, d in docs).encode()
    last_start = text.rstrip(b"\n").rfind(b"\n") + 1
    end = last_start + cut if cut > 0 else len(text) + cut
    assert last_start < end < len(text) - 1
    return text[:end]


@pytest.mark.parametrize("cut", [1, 2, 9, 40, -3, -2])
def test_partial_last_line_is_a_run_in_progress(tmp_path, make_run, cut):
    docs = make_run(4, stop=False)
    path = tmp_path / "run.jsonl"
    path.write_bytes(_cut_inside_last_line(docs, cut))
    out = read(path)
    assert out == docs[:-1]
    assert [d["seq_num"] for n, d in out if n == "event"] == [1, 2, 3]
    assert fmt.read_header(str(path)) == (docs[0][1], None)


@pytest.mark.parametrize("cut", [1, 17, -3, -2])
def test_partial_stop_line_means_no_stop_yet(tmp_path, make_run, cut):
    docs = make_run(2)
    path = tmp_path / "run.jsonl"
    path.write_bytes(_cut_inside_last_line(docs, cut))
    assert read(path) == docs[:-1]
    assert fmt.read_header(str(path)) == (docs[0][1], None)


def test_growing_file_shows_new_events_and_stop(tmp_path, make_run, write_jsonl):
    docs = make_run(5)
    path = tmp_path / "run.jsonl"
    write_jsonl(path, docs[:4])
    with open(path, "a") as f:
        f.write(dump_line(*docs[4])[:25])  # half an event
    assert [d["seq_num"] for n, d in read(path) if n == "event"] == [1, 2]
    assert fmt.read_header(str(path))[1] is None
    with open(path, "a") as f:
        f.write(dump_line(*docs[4])[25:])
        for name, doc in docs[5:]:
            f.write(dump_line(name, doc))
    assert read(path) == docs
    assert fmt.read_header(str(path))[1] == docs[-1][1]


def test_only_a_partial_start_line(tmp_path, make_run):
    docs = make_run(1)
    path = tmp_path / "run.jsonl"
    path.write_text(dump_line(*docs[0])[:30])
    assert read(path) == []
    assert fmt.read_header(str(path)) == (None, None)


# --- corrupt files -----------------------------------------------------------------


def test_corrupt_middle_line_names_file_and_line(tmp_path, make_run):
    docs = make_run(4)
    lines = [dump_line(n, d) for n, d in docs]
    lines[3] = lines[3][:30] + "\n"  # line 4: an event cut short, then more lines
    path = tmp_path / "run.jsonl"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match="line 4") as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message and "Repair or delete" in message
    # The header is still found: only the first and last lines are read.
    assert fmt.read_header(str(path)) == (docs[0][1], docs[-1][1])


def test_corrupt_complete_last_line_is_an_error(tmp_path, make_run):
    # Ended by a newline, so not a line still being written.
    docs = make_run(2)
    path = tmp_path / "run.jsonl"
    path.write_text("".join(dump_line(n, d) for n, d in docs[:-1]) + '["stop", {"uid": x}]\n')
    with pytest.raises(ValueError, match=f"{path}, line {len(docs)}: not valid JSON"):
        read(path)
    assert fmt.read_header(str(path)) == (docs[0][1], None)


def test_invalid_utf8_in_a_middle_line(tmp_path, make_run):
    docs = make_run(2)
    data = "".join(dump_line(n, d) for n, d in docs).encode()
    lines = data.split(b"\n")
    lines[2] = lines[2][:20] + b"\xff\xfe" + lines[2][22:]
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r"line 3: not valid JSON"):
        read(path)


@pytest.mark.parametrize(
    "line",
    ['{"name": "event"}', '["event"]', '["event", {}, {}]', "[1, {}]", '["event", []]', "3"],
)
def test_line_that_is_not_name_and_document(tmp_path, make_run, line):
    docs = make_run(1)
    text = [dump_line(n, d) for n, d in docs]
    text.insert(2, line + "\n")
    path = tmp_path / "run.jsonl"
    path.write_text("".join(text))
    with pytest.raises(ValueError, match=r"line 3: expected \[name, document\]") as info:
        read(path)
    assert str(path) in str(info.value)


def test_corrupt_first_line_is_an_error_in_the_header(tmp_path, make_run):
    docs = make_run(1)
    path = tmp_path / "run.jsonl"
    path.write_text("\n" + '["start", {"uid": \n' + "".join(dump_line(n, d) for n, d in docs))
    with pytest.raises(ValueError, match=f"{path}, line 2: not valid JSON"):
        fmt.read_header(str(path))


def test_header_without_start_document(tmp_path, make_run, write_jsonl):
    docs = make_run(2)
    path = write_jsonl(tmp_path / "run.jsonl", docs[1:])
    assert fmt.read_header(path) == (None, None)
    other = tmp_path / "other.jsonl"
    other.write_text('{"level": "info", "msg": "not bluesky"}\n')
    assert fmt.read_header(str(other)) == (None, None)


# --- read_header reads only the ends ------------------------------------------------


class _CountingFile:
    def __init__(self, f, log):
        self._f, self._log = f, log

    def read(self, n=-1):
        data = self._f.read(n)
        self._log.append(len(data))
        return data

    def readline(self, n=-1):
        data = self._f.readline(n)
        self._log.append(len(data))
        return data

    def seek(self, *args):
        return self._f.seek(*args)

    def fileno(self):
        return self._f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def bytes_read(monkeypatch):
    log = []

    def counting_open(path, mode="r", *args, **kwargs):
        return _CountingFile(open(path, mode, *args, **kwargs), log)

    monkeypatch.setattr(format_module, "open", counting_open, raising=False)
    return log


@pytest.mark.parametrize("stop", [True, False])
def test_header_of_a_big_file_reads_only_its_ends(
    tmp_path, make_run, write_jsonl, stop, bytes_read
):
    docs = make_run(10_000, stop=stop)
    path = write_jsonl(tmp_path / "run.jsonl", docs)
    size = os.path.getsize(path)
    assert size > 2_000_000

    start, found_stop = fmt.read_header(path)
    assert start == docs[0][1]
    assert found_stop == (docs[-1][1] if stop else None)
    # A block from each end (the first holds the first line), and one byte
    # to learn that the file does not end in NUL bytes.
    assert len(dump_line(*docs[0])) < 8 * 1024
    assert sum(bytes_read) <= 2 * 8 * 1024 + 1
    assert sum(bytes_read) < size / 100


def test_header_finds_stop_after_a_huge_last_event(tmp_path, make_run, write_jsonl, bytes_read):
    docs = make_run(2)
    events = [d for n, d in docs if n == "event"]
    page = dict(event_model.pack_event_page(*events))
    page["data"]["det"] = [[0.5] * 300_000, [0.25] * 300_000]  # a ~3 MB line
    no_stop = docs[:2] + [("event_page", page)]
    path = write_jsonl(tmp_path / "run.jsonl", no_stop)
    assert fmt.read_header(path) == (docs[0][1], None)
    # The whole last line had to be read to learn it is not a stop: it was,
    # in a few reads (blocks double), and nothing before it was.
    assert len(bytes_read) < 20
    assert sum(bytes_read) < os.path.getsize(path) + 64 * 1024

    bytes_read.clear()
    write_jsonl(path, [docs[-1]], mode="a")
    assert fmt.read_header(path) == (docs[0][1], docs[-1][1])
    assert sum(bytes_read) < 30_000


# --- the format as a FileDriver sees it -----------------------------------------------


def test_file_without_start_is_skipped_with_a_warning(tmp_path, make_run, write_jsonl):
    good = make_run(1)
    write_jsonl(tmp_path / f"{good[0][1]['uid']}.jsonl", good)
    headless = write_jsonl(tmp_path / "headless.jsonl", make_run(2)[1:])
    driver = FileDriver(str(tmp_path), JSONLFormat())
    with pytest.warns(UserWarning, match="headless.jsonl") as record:
        assert driver.count({}) == 1
    assert headless in str(record[0].message)
    assert [s["uid"] for s in driver.search({})] == [good[0][1]["uid"]]


@pytest.mark.parametrize("careful", [False, True])
def test_two_start_documents_in_one_file_name_both_runs_and_lines(
    tmp_path, make_run, write_jsonl, careful
):
    first, second = make_run(2, stop=False), make_run(1, scan_id=2)
    if careful:  # lines the fast decoder refuses: read line by line
        first[2][1]["data"]["det"] = float("nan")
    path = write_jsonl(tmp_path / "two.jsonl", first + second)
    a, b = first[0][1]["uid"], second[0][1]["uid"]
    expected = (
        f"{path}, line 5: a second start document \\(run '{b}'\\); line 1 starts run "
        f"'{a}'. A JSONL file holds one run, so this file holds more than one"
    )
    with pytest.raises(ValueError, match=expected):
        read(path)
    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    cat = BlueskyJSONLCatalog(str(tmp_path), index_path=False)
    assert list(cat) == [a]  # listed by its first start (the header)
    with pytest.raises(ValueError, match=expected):
        cat[a].read()


def test_start_document_without_uid_is_skipped_with_a_warning(tmp_path, make_run, write_jsonl):
    good = make_run(1)
    write_jsonl(tmp_path / f"{good[0][1]['uid']}.jsonl", good)
    nameless = make_run(1)
    del nameless[0][1]["uid"]
    path = write_jsonl(tmp_path / "nameless.jsonl", nameless)
    driver = FileDriver(str(tmp_path), JSONLFormat(), index_path=False)
    with pytest.warns(UserWarning, match="start document has no 'uid'") as record:
        assert driver.count({}) == 1
    (message,) = [str(w.message) for w in record]
    assert message.startswith(f"Skipping {path}: its start document has no 'uid'")


def test_driver_notices_new_changed_and_deleted_files(tmp_path, make_run, write_jsonl):
    driver = FileDriver(str(tmp_path), JSONLFormat())
    assert driver.count({}) == 0

    first = make_run(2, start_time=1000.0, scan_id=1)
    second = make_run(3, start_time=2000.0, scan_id=2, stop=False)
    p1 = write_jsonl(tmp_path / f"{first[0][1]['uid']}.jsonl", first)
    assert [s["scan_id"] for s in driver.search({})] == [1]

    p2 = write_jsonl(tmp_path / f"{second[0][1]['uid']}.jsonl", second)
    (tmp_path / "notes.txt").write_text("not a run")
    assert driver.count({}) == 2
    assert [s["scan_id"] for s in driver.search({}, sort=[("time", -1)])] == [2, 1]
    uid2 = second[0][1]["uid"]
    assert driver.run(uid2).stop() is None

    # The run in progress ends: its file grows by the stop line.
    bundle_stop = {"uid": "s2", "time": 2100.0, "run_start": uid2, "exit_status": "success"}
    with open(p2, "a") as f:
        f.write(dump_line("stop", bundle_stop))
    assert driver.run(uid2).stop() == bundle_stop
    assert driver.count({"scan_id": 2}) == 1

    os.remove(p1)
    assert driver.count({}) == 1
    with pytest.raises(KeyError):
        driver.run(first[0][1]["uid"])


def test_format_is_picklable_and_comparable():
    clone = pickle.loads(pickle.dumps(fmt))
    assert clone == fmt and hash(clone) == hash(fmt)
    assert clone.suffixes == (".jsonl",)


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_state_is_restored(tmp_path, make_run, write_jsonl, enabled):
    def set_gc(on):
        if on:
            gc.enable()
        else:
            gc.disable()

    good = write_jsonl(tmp_path / "good.jsonl", make_run(3))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('["start", {"uid": "x"}]\n{oops\n["stop", {}]\n')
    was = gc.isenabled()
    try:
        set_gc(enabled)
        assert len(read(good)) == 6
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError, match="line 2"):
            read(bad)
        assert gc.isenabled() is enabled
    finally:
        set_gc(was)


# --- decoding in chunks: the fast path and the careful path agree ----------------


@pytest.fixture(params=[(97, 64), (1000, 300), (8192, 2048), (2**20, 64 * 1024)])
def small_blocks(request, monkeypatch):
    """Blocks read and chunks decoded this many bytes long: lines fall across
    every kind of boundary."""
    block, chunk = request.param
    monkeypatch.setattr(format_module, "_BLOCK", block)
    monkeypatch.setattr(format_module, "_CHUNK", chunk)


def _mixed_lines(make_run):
    """A run of 120 events as (name, doc) and as text: bare NaN in some
    lines, blank and CRLF lines between others, and one event page longer
    than any chunk."""
    values = [float("nan") if i % 37 == 5 else float(i) for i in range(120)]
    docs = make_run(values=values)
    events = [d for n, d in docs if n == "event"]
    page = dict(event_model.pack_event_page(*events[100:110]))
    page["data"]["det"] = [float(i) + 0.5 for i in range(10)]
    page["data"]["long"] = ["x" * 400] * 10  # a line longer than most chunks
    page["timestamps"]["long"] = page["time"]
    docs = docs[:102] + [("event_page", page)] + docs[112:]
    lines = [dump_line(n, d) for n, d in docs]
    for i in (7, 50, 51, 90):
        lines[i] = lines[i] + "\n \n"  # blank lines
    lines[60] = lines[60].replace("\n", "\r\n")
    return docs, "".join(lines)


def test_chunked_decoding_gives_every_document_in_order(tmp_path, make_run, small_blocks):
    docs, text = _mixed_lines(make_run)
    path = tmp_path / "run.jsonl"
    path.write_text(text)
    out = read(path)
    assert all(type(pair) is tuple for pair in out)
    # json.dumps spells NaN alike on both sides (NaN != NaN in ==).
    assert json.dumps(out) == json.dumps(docs)
    assert [type(d["data"]["det"]) for n, d in out if n == "event"] == [float] * 110


@pytest.mark.parametrize("lineno", [2, 40, 103, 123])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('["event", {"uid": ', "not valid JSON"),
        ('["event", {}]["event", {}]', "not valid JSON"),  # two documents on a line
        ('["event", {}], ["event", {}]', "not valid JSON"),
        ('["event", {}, {}]', r"expected \[name, document\]"),
        ("[1, {}]", r"expected \[name, document\]"),
    ],
)
def test_chunked_decoding_names_the_bad_line(
    tmp_path, make_run, small_blocks, lineno, bad, message
):
    docs = make_run(150)
    lines = [dump_line(n, d) for n, d in docs]
    lines[lineno - 1] = bad + "\n"
    path = tmp_path / "run.jsonl"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=f"{path}, line {lineno}: {message}"):
        read(path)


def test_chunked_decoding_of_a_growing_file(tmp_path, make_run, small_blocks):
    docs, text = _mixed_lines(make_run)
    path = tmp_path / "run.jsonl"
    got, resume = [], None
    data = text.encode()
    for end in range(0, len(data) + 1, 997):  # cut anywhere, lines included
        path.write_bytes(data[:end])
        reader = fmt.read_appended(str(path), resume)
        while True:
            try:
                got.extend(next(reader))
            except StopIteration as done:
                resume = done.value
                break
    path.write_bytes(data)
    reader = fmt.read_appended(str(path), resume)
    for batch in reader:
        got.extend(batch)
    assert json.dumps(got) == json.dumps(docs)


def _read_appended(path, resume):
    reader = fmt.read_appended(str(path), resume)
    got = []
    while True:
        try:
            got.extend(next(reader))
        except StopIteration as done:
            return got, done.value


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_ending_that_arrives_later_is_not_a_line(tmp_path, make_run, ending):
    # The last line is taken before its line ending is written; read again
    # while nothing changed, again with half a CRLF, then with the rest: the
    # ending is not counted as a (blank) line, so a later error names its
    # real line.
    docs = make_run(1, stop=False)
    lines = [json.dumps([n, d]).encode() for n, d in docs]
    path = tmp_path / "run.jsonl"
    path.write_bytes(lines[0])
    got, resume = _read_appended(path, None)
    assert got == docs[:1] and resume == (len(lines[0]), 1, True, (1, docs[0][1]["uid"]))
    assert _read_appended(path, resume) == ([], resume)  # unchanged
    if ending == b"\r\n":
        path.write_bytes(lines[0] + b"\r")
        assert _read_appended(path, resume) == ([], resume)
    path.write_bytes(lines[0] + ending + ending.join(lines[1:]) + ending + b"oops" + ending)
    with pytest.raises(ValueError, match=f"line {len(lines) + 1}: not valid JSON"):
        _read_appended(path, resume)


# --- the header of a small file: the usual layout read at once ----------------

_LINES = [
    dump_line("start", {"uid": "s", "time": 1.5, "n": 10**20}),
    dump_line("start", {"uid": "t"}),
    dump_line("descriptor", {"uid": "d"}),
    dump_line("event", {"uid": "e", "data": {"x": float("nan")}}),  # bare NaN
    dump_line("stop", {"uid": "p", "exit_status": "success"}),
    dump_line("stop", {"uid": "q", "num_events": {"primary": float("inf")}}),
    "\n",
    "   \n",
    "[1, 2]\n",
    '"stop"\n',
    '["stop", {"uid": "cut',  # being written, or corrupt when a newline follows
]


@given(
    lines=st.lists(st.sampled_from(_LINES), min_size=0, max_size=6),
    newline=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_a_small_header_read_at_once_is_the_one_the_full_rules_give(lines, newline):
    text = "".join(lines)
    if newline and not text.endswith("\n"):
        text += "\n"
    block = text.encode()
    split = block.split(b"\n")
    try:
        found, start = format_module._start_in(split, True, "f.jsonl")
        expected = (None, None) if start is None else (start, format_module._stop_in(split))
    except ValueError:
        expected = None  # corrupt: the full rules raise, naming the line
    if format_module._long_digits(block):
        return  # read by the full rules only (orjson would round the integer)
    at_once = format_module._first_and_last(block)
    if at_once is not None:
        assert at_once == expected


@given(lines=st.lists(st.sampled_from(_LINES[:6]), min_size=1, max_size=6))
@settings(max_examples=50, deadline=None)
def test_a_versioned_header_is_the_header_and_the_files_version(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("v") / "run.jsonl"
    path.write_text("".join(lines))
    version, start, stop = fmt.read_versioned_header(str(path))
    st_ = os.stat(path)
    assert version == ((st_.st_size, st_.st_mtime_ns, st_.st_ctime_ns, st_.st_ino),)
    assert (start, stop) == fmt.read_header(str(path))
    first = json.loads(lines[0])
    assert start == (first[1] if first[0] == "start" else None)
    if start is not None:
        last = json.loads(lines[-1])
        assert stop == (last[1] if last[0] == "stop" and len(lines) > 1 else None)
