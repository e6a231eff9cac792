"""The conformance kit on the in-memory driver."""

import pytest

from intake_bluesky.core import BlueskyCatalog, BlueskyInMemoryCatalog
from intake_bluesky.core.testing import ConformanceTests, RunStore


class MemoryStore(RunStore):
    def __init__(self):
        self.live = BlueskyInMemoryCatalog()

    def write_run(self, documents):
        uid = documents[0][1]["uid"]
        if uid in self.live:
            del self.live[uid]
        # Fed one document at a time, as from RE.subscribe(catalog).
        for name, doc in documents:
            self.live(name, doc)

    def delete_run(self, uid):
        del self.live[uid]

    def append_documents(self, documents, new):
        for name, doc in new:
            self.live(name, doc)

    def catalog(self, **common):
        return BlueskyCatalog(self.live.driver, **common)


class TestInMemoryConformance(ConformanceTests):
    @pytest.fixture
    def store(self):
        return MemoryStore()
