"""Helpers shared by the msgpack tests: a writer that behaves like
suitcase-msgpack, and a comparison of document streams modulo packing."""

from __future__ import annotations

import pathlib

import event_model
import msgpack
import msgpack_numpy

from intake_bluesky.core.testing import plain

#: Copies of the shared sample files (see data/README.md).
SAMPLES = pathlib.Path(__file__).parent / "data"
RUN0 = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1 = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
FLY = "42f7726d-25d1-4a57-88fb-fab48dea2de1"
STREAM_RUN = "4de19bbf-4131-4734-9f10-a0fd5c996689"


def pack_record(name: str, doc: dict) -> bytes:
    """One record exactly as suitcase-msgpack writes it.

    Events become 1-row event pages, datums 1-row datum pages, numpy values
    msgpack-numpy maps (binary as msgpack bin, strings as str).
    """
    if name == "event":
        name, doc = "event_page", event_model.pack_event_page(doc)
    elif name == "datum":
        name, doc = "datum_page", event_model.pack_datum_page(doc)
    return msgpack.packb([name, doc], default=msgpack_numpy.encode, use_bin_type=True)


def write_run(path, documents) -> pathlib.Path:
    path = pathlib.Path(path)
    with open(path, "wb") as file:
        for name, doc in documents:
            file.write(pack_record(name, doc))
    return path


def unpacked(documents):
    """Pages expanded to single events/datums, values made plain."""
    out = []
    for name, doc in documents:
        doc = plain(doc)
        if name == "event_page":
            out.extend(("event", e) for e in event_model.unpack_event_page(doc))
        elif name == "datum_page":
            out.extend(("datum", d) for d in event_model.unpack_datum_page(doc))
        else:
            out.append((name, doc))
    return out


def assert_same_run(actual, expected):
    """Equal modulo event<->event_page and datum<->datum_page packing.

    The documents other than events and datums come in the same order;
    events of each descriptor and datums of each resource in the same order;
    every datum comes before the events that refer to it.
    """
    actual, expected = unpacked(actual), unpacked(expected)

    def others(docs):
        return [(n, d) for n, d in docs if n not in ("event", "datum")]

    def by(docs, name, key):
        groups: dict = {}
        for n, d in docs:
            if n == name:
                groups.setdefault(d[key], []).append(d)
        return groups

    assert others(actual) == others(expected)
    assert by(actual, "event", "descriptor") == by(expected, "event", "descriptor")
    assert by(actual, "datum", "resource") == by(expected, "datum", "resource")
    datum_ids = {d["datum_id"] for n, d in actual if n == "datum"}
    seen = set()
    for name, doc in actual:
        if name == "datum":
            seen.add(doc["datum_id"])
        elif name == "event":
            for value in doc["data"].values():
                if isinstance(value, str) and value in datum_ids:
                    assert value in seen, f"datum {value} comes after its event"
