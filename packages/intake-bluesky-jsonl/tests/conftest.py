import json
from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def emitted():
    """The (name, doc) pairs the RunEngine emitted, by sample name."""

    def load(name):
        with open(SAMPLES / name) as f:
            return [(n, d) for n, d in json.load(f)]

    return load


@pytest.fixture
def write_jsonl():
    """Write (name, doc) pairs to a file the way suitcase-jsonl does."""

    def write(path, documents, mode="w"):
        # As suitcase-jsonl writes a line: the stdlib encoder, which spells
        # non-finite floats as bare NaN / Infinity / -Infinity.
        with open(path, mode) as f:
            for name, doc in documents:
                f.write(json.dumps([name, doc]) + "\n")
        return str(path)

    return write


def compose(n_events=3, *, start_time=None, plan_name="count", scan_id=1, values=None, stop=True):
    """A small run with one scalar stream ``primary`` (field ``det``)."""
    from event_model import compose_run

    bundle = compose_run(time=start_time, metadata={"plan_name": plan_name, "scan_id": scan_id})
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"det": {"source": "sim", "dtype": "number", "shape": [], "dtype_numpy": "<f8"}},
    )
    if values is None:
        values = [float(i) for i in range(n_events)]
    t0 = bundle.start_doc["time"]
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, value in enumerate(values):
        docs.append(
            (
                "event",
                desc.compose_event(
                    data={"det": value}, timestamps={"det": t0 + i}, time=t0 + i + 0.5
                ),
            )
        )
    if stop:
        docs.append(("stop", bundle.compose_stop(time=t0 + len(values) + 1)))
    return docs


@pytest.fixture
def make_run():
    return compose
