"""The core's conformance kit, over JSONL files written as suitcase-jsonl does."""

import json
import os

import pytest
from event_model import NumpyEncoder

from intake_bluesky.core.testing import ConformanceTests, RunStore
from intake_bluesky.jsonl import BlueskyJSONLCatalog


class JSONLStore(RunStore):
    """One ``<start uid>.jsonl`` per run, one ``[name, doc]`` line per document."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, uid):
        return os.path.join(self.directory, f"{uid}.jsonl")

    def write_run(self, documents):
        uid = documents[0][1]["uid"]
        # numpy arrays become nested lists, as suitcase-jsonl's encoder does.
        text = "".join(json.dumps([name, doc], cls=NumpyEncoder) + "\n" for name, doc in documents)
        with open(self._path(uid), "w") as f:
            f.write(text)

    def append_documents(self, documents, new):
        # Appended lines, as suitcase-jsonl writes a run in progress.
        uid = documents[0][1]["uid"]
        with open(self._path(uid), "a") as f:
            for name, doc in new:
                f.write(json.dumps([name, doc], cls=NumpyEncoder) + "\n")

    def delete_run(self, uid):
        os.remove(self._path(uid))

    def catalog(self, **common):
        return BlueskyJSONLCatalog(self.directory, **common)


class TestJSONLConformance(ConformanceTests):
    @pytest.fixture
    def store(self, tmp_path):
        return JSONLStore(tmp_path / "runs")
