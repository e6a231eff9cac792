"""The core's conformance kit, over run files written like suitcase-msgpack."""

from __future__ import annotations

import os

import event_model
import pytest
from msgpack_testing import pack_record, write_run

from intake_bluesky.core.testing import ConformanceTests, RunStore
from intake_bluesky.msgpack import BlueskyMsgpackCatalog


class MsgpackStore(RunStore):
    """One ``<start uid>.msgpack`` file per run, as suitcase-msgpack names it.

    Every event is written as a 1-row event_page, every datum as a 1-row
    datum_page, numpy values with msgpack-numpy.
    """

    def __init__(self, directory):
        self.directory = directory

    def _path(self, uid: str) -> str:
        return os.path.join(self.directory, f"{uid}.msgpack")

    def write_run(self, documents):
        path = self._path(documents[0][1]["uid"])
        # Written aside and renamed: a reader never sees a half-replaced file.
        write_run(path + ".part", documents)
        os.replace(path + ".part", path)

    def append_documents(self, documents, new):
        # Appended records, as suitcase-msgpack writes a run in progress.
        with open(self._path(documents[0][1]["uid"]), "ab") as file:
            for name, doc in new:
                file.write(pack_record(name, doc))

    def as_stored(self, documents):
        # As suitcase-msgpack stores them: 1-row pages for events and datums.
        out = []
        for name, doc in documents:
            if name == "event":
                name, doc = "event_page", event_model.pack_event_page(doc)
            elif name == "datum":
                name, doc = "datum_page", event_model.pack_datum_page(doc)
            out.append((name, doc))
        return out

    def delete_run(self, uid):
        os.remove(self._path(uid))

    def catalog(self, **common):
        return BlueskyMsgpackCatalog(self.directory, **common)


class TestMsgpackConformance(ConformanceTests):
    @pytest.fixture
    def store(self, tmp_path):
        directory = tmp_path / "runs"
        directory.mkdir()
        return MsgpackStore(str(directory))
