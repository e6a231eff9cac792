"""A run file being written: incremental reading and following from another process."""

import os
import pickle
import subprocess
import sys
import textwrap

import event_model
from msgpack_testing import pack_record

from intake_bluesky.core.testing import example_runs, normalize_documents
from intake_bluesky.msgpack import BlueskyMsgpackCatalog, _format


def _scalar_run(n, stop=True):
    bundle = event_model.compose_run()
    desc = bundle.compose_descriptor(
        name="primary", data_keys={"det": {"source": "s", "dtype": "number", "shape": []}}
    )
    t0 = bundle.start_doc["time"]
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    docs += [
        ("event", desc.compose_event(data={"det": float(i)}, timestamps={"det": t0}, time=t0 + i))
        for i in range(n)
    ]
    if stop:
        docs.append(("stop", bundle.compose_stop()))
    return docs


def test_appended_records_are_parsed_alone(tmp_path, monkeypatch):
    docs = _scalar_run(500, stop=False)
    path = tmp_path / "run.msgpack"
    path.write_bytes(b"".join(pack_record(*d) for d in docs[:-5]))
    run = BlueskyMsgpackCatalog(str(tmp_path), index_path=False)[-1]
    assert run.primary.read()["det"].size == 495
    bases = []
    original = _format._read

    def spy(path_, file, base=0):
        bases.append((base, os.path.getsize(path_) - base))
        return original(path_, file, base)

    monkeypatch.setattr(_format, "_read", spy)
    new = b"".join(pack_record(*d) for d in docs[-5:])
    with open(path, "ab") as f:
        f.write(new[:-7])  # the last record is still being written
    assert run.primary.read()["det"].values.tolist() == [float(i) for i in range(499)]
    with open(path, "ab") as f:
        f.write(new[-7:])
    assert run.primary.read()["det"].values.tolist() == [float(i) for i in range(500)]
    size = os.path.getsize(path)
    # First look: from the old end; second: from the start of the partial record.
    assert bases[0] == (size - len(new), len(new) - 7)
    assert bases[1][0] > size - len(new) and bases[1][1] < len(new)
    # Rewritten from scratch (another run's events): read again from 0.
    bases.clear()
    other = _scalar_run(3)
    path.write_bytes(b"".join(pack_record(*d) for d in [docs[0], *other[1:]]))
    assert run.primary.read()["det"].values.tolist() == [0.0, 1.0, 2.0]
    assert bases[0][0] == 0


WRITER = textwrap.dedent(
    """
    import pickle, sys, time
    sys.path.insert(0, sys.argv[4])
    from msgpack_testing import pack_record
    path, delay = sys.argv[1], float(sys.argv[2])
    with open(sys.argv[3], "rb") as f:
        docs = pickle.load(f)
    with open(path, "ab") as f:
        for name, doc in docs:
            time.sleep(delay)
            record = pack_record(name, doc)
            f.write(record[: len(record) // 2]); f.flush()
            time.sleep(delay / 4)
            f.write(record[len(record) // 2 :]); f.flush()
    """
)


def test_follow_a_run_written_by_another_process(tmp_path):
    docs = example_runs(tmp_path / "ext")[0]  # two streams, external data
    directory = tmp_path / "runs"
    directory.mkdir()
    path = directory / f"{docs[0][1]['uid']}.msgpack"
    path.write_bytes(pack_record(*docs[0]))
    rest = tmp_path / "rest.pickle"
    rest.write_bytes(pickle.dumps(docs[1:]))
    run = BlueskyMsgpackCatalog(str(directory), index_path=False)[-1]
    here = os.path.dirname(__file__)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "0.05", str(rest), here])
    try:
        followed = list(run.follow(poll_interval=0.01, idle_timeout=30))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert followed[0][0] == "start" and followed[-1][0] == "stop"
    assert normalize_documents(followed) == normalize_documents(docs)
    seen = set()
    for name, doc in followed:
        if name == "descriptor":
            seen.add(doc["uid"])
        elif name in ("event", "event_page"):
            assert doc["descriptor"] in seen
