"""An export reads back document for document: each document in its stored form
(suitcase-msgpack's: events and datums as 1-row pages)."""

from __future__ import annotations

import event_model
from msgpack_testing import write_run

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.export import export_runs
from intake_bluesky.core.testing import example_registry, example_runs, mixed_forms_run, plain
from intake_bluesky.msgpack import BlueskyMsgpackCatalog


def _canonical(cat, uid):
    return [(name, plain(doc)) for name, doc in cat[uid].canonical(fill="no")]


def _as_msgpack_stores(docs):
    out = []
    for name, doc in docs:
        if name == "event":
            name, doc = "event_page", event_model.pack_event_page(doc)
        elif name == "datum":
            name, doc = "datum_page", event_model.pack_datum_page(doc)
        out.append((name, plain(doc)))
    return out


def test_msgpack_export_reads_back_document_for_document(tmp_path):
    external = tmp_path / "external"
    external.mkdir()
    runs = [mixed_forms_run(external), *example_runs(external)[1:]]
    originals = tmp_path / "originals"
    originals.mkdir()
    for docs in runs:
        write_run(originals / f"{docs[0][1]['uid']}.msgpack", docs)
    source = BlueskyMsgpackCatalog(str(originals), **example_registry(external))
    export_runs(source, tmp_path / "exported", format="msgpack")
    back = BlueskyMsgpackCatalog(str(tmp_path / "exported"), **example_registry(external))
    export_runs(back, tmp_path / "again", format="msgpack")
    twice = BlueskyMsgpackCatalog(str(tmp_path / "again"), **example_registry(external))
    for docs in runs:
        uid = docs[0][1]["uid"]
        stored = _as_msgpack_stores(docs)
        assert _canonical(source, uid) == stored
        assert _canonical(back, uid) == stored
        assert _canonical(twice, uid) == stored


def test_msgpack_export_of_an_in_memory_run(tmp_path):
    # Mixed events and pages exported to msgpack come back as suitcase-msgpack
    # stores them: one document for each written, events as 1-row pages.
    external = tmp_path / "external"
    external.mkdir()
    docs = mixed_forms_run(external)
    cat = BlueskyInMemoryCatalog(**example_registry(external))
    for name, doc in docs:
        cat(name, doc)
    export_runs(cat, tmp_path / "out", format="msgpack")
    back = BlueskyMsgpackCatalog(str(tmp_path / "out"), **example_registry(external))
    got = _canonical(back, docs[0][1]["uid"])
    assert len(got) == len(docs)
    assert got == _as_msgpack_stores(docs)
