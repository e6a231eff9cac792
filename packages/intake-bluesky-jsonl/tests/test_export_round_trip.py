"""An export reads back document for document: each document in its stored form."""

from __future__ import annotations

import json

from event_model import NumpyEncoder

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core.export import export_runs
from intake_bluesky.core.testing import example_registry, example_runs, mixed_forms_run, plain
from intake_bluesky.jsonl import BlueskyJSONLCatalog


def _canonical(cat, uid):
    return [(name, plain(doc)) for name, doc in cat[uid].canonical(fill="no")]


def _runs(external):
    return [mixed_forms_run(external), *example_runs(external)[1:]]


def test_jsonl_export_reads_back_document_for_document(tmp_path):
    external = tmp_path / "external"
    external.mkdir()
    runs = _runs(external)
    # The originals as suitcase-jsonl writes them: one line per document.
    originals = tmp_path / "originals"
    originals.mkdir()
    for docs in runs:
        with open(originals / f"{docs[0][1]['uid']}.jsonl", "w") as file:
            for name, doc in docs:
                file.write(json.dumps([name, doc], cls=NumpyEncoder) + "\n")
    source = BlueskyJSONLCatalog(str(originals), **example_registry(external))
    exported = tmp_path / "exported"
    export_runs(source, exported, format="jsonl")
    again = tmp_path / "again"
    back = BlueskyJSONLCatalog(str(exported), **example_registry(external))
    export_runs(back, again, format="jsonl")
    twice = BlueskyJSONLCatalog(str(again), **example_registry(external))
    for docs in runs:
        uid = docs[0][1]["uid"]
        written = [(name, plain(doc)) for name, doc in docs]
        assert _canonical(source, uid) == written
        assert _canonical(back, uid) == written
        assert _canonical(twice, uid) == written
    # The run mixing every form: as many documents, of the same kinds, each way.
    names = [name for name, _ in runs[0]]
    assert [name for name, _ in _canonical(back, runs[0][0][1]["uid"])] == names
    assert {"event", "event_page", "datum", "datum_page"} <= set(names)


def test_jsonl_export_of_an_in_memory_run_keeps_events_and_pages(tmp_path):
    external = tmp_path / "external"
    external.mkdir()
    docs = mixed_forms_run(external)
    cat = BlueskyInMemoryCatalog(**example_registry(external))
    for name, doc in docs:
        cat(name, doc)
    export_runs(cat, tmp_path / "out", format="jsonl")
    uid = docs[0][1]["uid"]
    lines = (tmp_path / "out" / f"{uid}.jsonl").read_text().splitlines()
    assert [json.loads(line)[0] for line in lines] == [name for name, _ in docs]
    back = BlueskyJSONLCatalog(str(tmp_path / "out"), **example_registry(external))
    assert _canonical(back, uid) == [(name, plain(doc)) for name, doc in docs]
