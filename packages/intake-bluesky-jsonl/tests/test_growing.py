"""A run file being written: incremental reading and following from another process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from intake_bluesky.jsonl import BlueskyJSONLCatalog, _format


def _line(name, doc):
    return json.dumps([name, doc]) + "\n"


@pytest.fixture
def parsed_bytes(monkeypatch):
    """Lengths of the byte strings the format decodes, call by call."""
    sizes = []
    original = _format._batches

    def spy(data, path, *args):
        sizes.append(len(data))
        return (yield from original(data, path, *args))

    monkeypatch.setattr(_format, "_batches", spy)
    return sizes


def test_appended_lines_are_parsed_alone(tmp_path, parsed_bytes, make_run):
    docs = make_run(1000, stop=False)
    path = tmp_path / f"{docs[0][1]['uid']}.jsonl"
    path.write_text("".join(_line(*d) for d in docs[:-10]))
    run = BlueskyJSONLCatalog(str(tmp_path), index_path=False)[-1]
    assert run.primary.read()["det"].size == 990
    parsed_bytes.clear()
    with open(path, "a") as f:
        f.write(_line(*docs[-10]))
    det = run.primary.read()["det"].values
    assert parsed_bytes == [len(_line(*docs[-10]))]  # only the new line
    assert det.tolist() == [float(i) for i in range(991)]
    # A partial last line is left for later, then completed.
    rest = "".join(_line(*d) for d in docs[-9:])
    with open(path, "a") as f:
        f.write(rest[:-30])
    assert run.primary.read()["det"].size == 999
    with open(path, "a") as f:
        f.write(rest[-30:])
    assert run.primary.read()["det"].values.tolist() == [float(i) for i in range(1000)]
    assert sum(parsed_bytes) < 2 * len(rest)
    # The stop, too.
    bundle_stop = {
        "uid": "stop-1",
        "run_start": docs[0][1]["uid"],
        "time": 1e10,
        "exit_status": "success",
        "num_events": {"primary": 1000},
    }
    with open(path, "a") as f:
        f.write(_line("stop", bundle_stop))
    assert run.metadata["stop"]["exit_status"] == "success"


def test_a_last_line_without_newline_is_taken_once(tmp_path, make_run):
    docs = make_run(3)
    path = tmp_path / "run.jsonl"
    text = "".join(_line(*d) for d in docs[:-1])
    path.write_text(text.rstrip("\n"))  # the last event has no newline yet
    run = BlueskyJSONLCatalog(str(path), index_path=False)[-1]
    assert run.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    with open(path, "a") as f:
        f.write("\n" + _line(*docs[-1]))
    assert run.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    assert run.metadata["stop"] is not None
    # Line numbers stay right after that: a corrupt line is named by its number.
    with open(path, "a") as f:
        f.write("not json\n" + _line(*docs[-1]))
    with pytest.raises(ValueError, match=r"line 7\b"):
        run.primary.read()


def test_a_truncated_or_rewritten_file_is_read_again_from_the_start(
    tmp_path, parsed_bytes, make_run
):
    docs = make_run(50, stop=False)
    path = tmp_path / "run.jsonl"
    path.write_text("".join(_line(*d) for d in docs))
    run = BlueskyJSONLCatalog(str(path), index_path=False)[-1]
    assert run.primary.read()["det"].size == 50
    # Rewritten shorter (same run, fewer events).
    path.write_text("".join(_line(*d) for d in docs[:12]))
    assert run.primary.read()["det"].values.tolist() == [float(i) for i in range(10)]
    # Rewritten longer with other values: the old prefix no longer matches.
    other = make_run(50, stop=False, values=[float(-i) for i in range(50)])
    other[0] = docs[0]
    other[1] = docs[1]
    for i in range(2, len(other)):
        other[i][1]["descriptor"] = docs[1][1]["uid"]
    parsed_bytes.clear()
    path.write_text("".join(_line(*d) for d in other) + _line(*other[-1]))
    values = run.primary.read()["det"].values.tolist()
    assert values[:50] == [float(-i) for i in range(50)]
    assert parsed_bytes[0] == os.path.getsize(path)  # the whole file, from the start


@pytest.mark.parametrize("left", ["", '["sta'])
def test_a_file_caught_while_written_again_says_the_run_changed(tmp_path, make_run, left):
    # Truncated to nothing, or to a start line not written yet: the run
    # object names the file and says the run changed, not "no start document".
    from intake_bluesky.core.errors import RunChangedError

    docs = make_run(5, stop=False)
    path = tmp_path / "run.jsonl"
    path.write_text("".join(_line(*d) for d in docs))
    run = BlueskyJSONLCatalog(str(path), index_path=False)[-1]
    assert run.primary.read()["det"].size == 5
    path.write_text(left)
    with pytest.raises(RunChangedError, match="no longer begin with its start document") as err:
        run.primary.read()
    assert str(path) in str(err.value)


WRITER = textwrap.dedent(
    """
    import json, sys, time
    path, delay = sys.argv[1], float(sys.argv[2])
    docs = json.load(open(sys.argv[3]))
    with open(path, "a") as f:
        for name, doc in docs:
            time.sleep(delay)
            line = json.dumps([name, doc]) + "\\n"
            # Written in two pieces: the reader may see a partial line.
            f.write(line[: len(line) // 2]); f.flush()
            time.sleep(delay / 4)
            f.write(line[len(line) // 2 :]); f.flush()
    """
)


def test_follow_a_run_written_by_another_process(tmp_path):
    from event_model import NumpyEncoder

    from intake_bluesky.core.testing import example_runs, normalize_documents

    docs = example_runs(tmp_path / "ext")[0]  # two streams, external data
    path = tmp_path / "runs" / f"{docs[0][1]['uid']}.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(["start", docs[0][1]]) + "\n")
    rest = tmp_path / "rest.json"
    rest.write_text(json.dumps(docs[1:], cls=NumpyEncoder))
    run = BlueskyJSONLCatalog(str(path.parent), index_path=False)[-1]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0.05", str(rest)])
    try:
        followed = list(run.follow(poll_interval=0.01, idle_timeout=30))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert [n for n, _ in followed][0] == "start" and followed[-1][0] == "stop"
    assert normalize_documents(followed) == normalize_documents(
        json.loads(json.dumps(docs, cls=NumpyEncoder))
    )
    # In order: each descriptor before its events, events in time order per look.
    seen = set()
    for name, doc in followed:
        if name == "descriptor":
            seen.add(doc["uid"])
        elif name in ("event", "event_page"):
            assert doc["descriptor"] in seen


@pytest.mark.parametrize("block", [1, 7, 100, 4096])
def test_reading_in_blocks_of_any_size(tmp_path, monkeypatch, make_run, block):
    monkeypatch.setattr(_format, "_BLOCK", block)
    docs = make_run(20, stop=False)
    text = "".join(_line(*d) for d in docs)
    text = text.replace('"det": 3.0', '"det": NaN')  # a line for the stdlib parser
    path = tmp_path / "run.jsonl"
    path.write_text(text + "\n" + _line(*docs[2])[:25])  # a blank line, a partial one
    got = list(_format.JSONLFormat().read_documents(str(path)))
    assert [n for n, _ in got] == [n for n, _ in docs]
    assert got[5][1]["data"]["det"] != got[5][1]["data"]["det"]  # NaN
    assert got[-1][1] == docs[-1][1]
    # Resumable from where the complete lines end.
    gen = _format.JSONLFormat().read_appended(str(path), None)
    batches = []
    try:
        while True:
            batches.append(next(gen))
    except StopIteration as stop:
        resume = stop.value
    assert sum(map(len, batches)) == len(docs)
    assert resume == (len(text) + 1, len(docs) + 1, False, (1, docs[0][1]["uid"]))
    # A corrupt line is named by its number whatever the blocks.
    path.write_text(text + "oops\n" + _line(*docs[2]))
    with pytest.raises(ValueError, match=rf"line {len(docs) + 1}\b"):
        list(_format.JSONLFormat().read_documents(str(path)))


def test_a_file_rewritten_in_place_with_the_same_size_is_read_again(tmp_path):
    # Same inode, same size, same first and last lines: only a value in the
    # middle changed (an edit in place). It must not be taken as "nothing
    # appended".
    import os

    import event_model

    from intake_bluesky.jsonl import BlueskyJSONLCatalog

    run = event_model.compose_run(uid="rewritten-run", time=1.0)
    desc = run.compose_descriptor(
        name="primary", data_keys={"det": {"source": "s", "dtype": "number", "shape": []}}
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(20):
        docs.append(
            (
                "event",
                desc.compose_event(data={"det": 1.5}, timestamps={"det": 1.0}, seq_num=i + 1),
            )
        )
    docs.append(("stop", run.compose_stop()))
    path = tmp_path / "rewritten-run.jsonl"
    path.write_text("".join(json.dumps([n, d]) + "\n" for n, d in docs))
    cat = BlueskyJSONLCatalog(str(tmp_path), index_path=False)
    assert cat[-1].primary.read()["det"].values.tolist() == [1.5] * 20
    lines = path.read_text().splitlines(keepends=True)
    lines[12] = lines[12].replace('"det": 1.5', '"det": 9.5')
    stat = os.stat(path)
    with open(path, "r+") as f:
        f.write("".join(lines))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert os.stat(path).st_size == stat.st_size
    values = cat[-1].primary.read()["det"].values.tolist()
    assert values[10] == 9.5 and values.count(1.5) == 19


# --- NUL bytes, as a crash can leave at a file's end ---------------------------

_NULS = 64 * 2**20


def _with_nul_run(path, before: bytes, n: int, after: bytes = b""):
    """``before``, ``n`` NUL bytes (a sparse stretch: no disk used), ``after``."""
    with open(path, "wb") as f:
        f.write(before)
        f.truncate(len(before) + n)
        f.seek(len(before) + n)
        f.write(after)
    return str(path)


def _peak(work):
    import tracemalloc

    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_nul_filled_tail_is_skipped_in_bounded_memory_and_named(tmp_path, make_run):
    docs = make_run(3, stop=False)
    text = "".join(_line(*d) for d in docs).encode()
    path = _with_nul_run(tmp_path / f"{docs[0][1]['uid']}.jsonl", text, _NULS)
    expected = (
        f"{path}: {_NULS} NUL bytes from byte offset {len(text)} were skipped. A crash can "
        f"leave a file's end filled with NUL bytes where nothing was written: the documents "
        f"before them are read. Truncate the file at byte offset {len(text)} to remove them."
    )
    fmt = _format.JSONLFormat()
    with pytest.warns(UserWarning) as record:
        got, peak = _peak(lambda: list(fmt.read_documents(path)))
    assert [str(w.message) for w in record] == [expected]
    assert got == docs
    assert peak < 8 * 2**20  # a few blocks of 1 MiB, never the 64 MiB of NULs
    with pytest.warns(UserWarning) as record:
        header, peak = _peak(lambda: fmt.read_header(path))
    assert [str(w.message) for w in record] == [expected]
    assert header == (docs[0][1], None) and peak < 8 * 2**20
    # Read incrementally: the next read starts after the NULs.
    gen = fmt.read_appended(path, None)
    with pytest.warns(UserWarning, match="NUL bytes from byte offset"):
        batches = list(_drain(gen))
    assert sum(batches[:-1], []) == docs and batches[-1][0] == len(text) + _NULS
    # Through a catalog: the run is listed (in progress) and read.
    with pytest.warns(UserWarning, match="NUL bytes"):
        run = BlueskyJSONLCatalog(str(tmp_path), index_path=False)[docs[0][1]["uid"]]
        assert run.metadata["stop"] is None
        assert run.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]


def _drain(gen):
    """The batches of a read_appended generator, then what it returned."""
    try:
        while True:
            yield next(gen)
    except StopIteration as stop:
        yield stop.value


def test_nul_bytes_end_the_line_before_them_and_what_follows_is_read(tmp_path, make_run):
    docs = make_run(3)
    lines = [_line(*d).encode() for d in docs]
    partial = lines[3][:20]  # an event line cut by the crash
    before = b"".join(lines[:3]) + partial
    path = _with_nul_run(tmp_path / "run.jsonl", before, 2**20 + 5, b"".join(lines[3:]))
    fmt = _format.JSONLFormat()
    with pytest.warns(UserWarning) as record:
        got = list(fmt.read_documents(path))
    (message,) = [str(w.message) for w in record]
    assert message.startswith(
        f"{path}: {2**20 + 5} NUL bytes from byte offset {len(before)} were skipped, and the "
        f"incomplete line before them (from byte offset {len(before) - 20}) with them; the "
        "documents before and after them are read"
    )
    assert got == docs
    assert fmt.read_header(path) == (docs[0][1], docs[-1][1])


def test_a_file_of_nul_bytes_only_holds_no_run(tmp_path):
    path = _with_nul_run(tmp_path / "zeros.jsonl", b"", _NULS)
    fmt = _format.JSONLFormat()
    with pytest.warns(UserWarning, match=f"{_NULS} NUL bytes from byte offset 0"):
        (got, peak) = _peak(lambda: list(fmt.read_documents(path)))
    assert got == [] and peak < 8 * 2**20
    with pytest.warns(UserWarning, match="NUL bytes from byte offset 0"):
        assert fmt.read_header(path) == (None, None)
