"""The core's conformance kit over runs written into a real tiled server by
bluesky-tiled-plugins' TiledWriter, read back by BlueskyTiledCatalog.

What TiledWriter does not keep is declared as the store's capabilities
(see RunStore), each with the reason shown on the tests it turns off.
"""

from __future__ import annotations

import copy

import pytest

from intake_bluesky.core.testing import ConformanceTests, RunStore, Unrepresentable
from intake_bluesky.tiled import BlueskyTiledCatalog


class TiledStore(RunStore):
    """A tiled container written by TiledWriter (one writer per run, kept
    while the run is in progress so that appended documents continue it)."""

    keeps_document_uids = False
    keeps_resources = False
    keeps_event_form = False
    integer_range = (-(2**63), 2**63 - 1)
    limits = {
        "keeps_document_uids": (
            "tiled keeps no event, stream_resource or stream_datum uids: they are "
            "rebuilt, stable, from the run, stream and row"
        ),
        "keeps_resources": (
            "TiledWriter turns resource/datum documents into stream_resource/"
            "stream_datum documents (and the events' datum ids into rows) before writing"
        ),
        "keeps_event_form": "tiled keeps a stream's events as rows of one table",
        "integer_range": "tiled's tables hold 64-bit signed integers",
    }

    def __init__(self, container):
        self.container = container
        self._writers = {}

    def _writer(self, uid):
        from bluesky_tiled_plugins import TiledWriter

        if uid not in self._writers:
            self._writers[uid] = TiledWriter(self.container, batch_size=1)
        return self._writers[uid]

    def write_run(self, documents):
        uid = documents[0][1]["uid"]
        if uid in self.container:
            self.delete_run(uid)
        self._feed(uid, documents)

    def append_documents(self, documents, new):
        uid = documents[0][1]["uid"]
        self._feed(uid, new)

    def _feed(self, uid, documents):
        for name, doc in documents:
            if name == "descriptor":
                keys = [doc.get("name", ""), *doc.get("data_keys", {})]
                if any("/" in key for key in keys):
                    # tiled addresses nodes by path: such a key can be
                    # written but never read back.
                    raise Unrepresentable(f"tiled node keys cannot hold '/': {keys}")
        writer = self._writer(uid)
        for name, doc in documents:
            try:
                writer(name, copy.deepcopy(doc))
            except Exception as err:
                reason = _unrepresentable(err)
                if reason is None:
                    raise
                self._writers.pop(uid, None)
                raise Unrepresentable(f"{name} document: {reason}") from err
            if name == "stop":
                self._writers.pop(uid, None)

    def as_kept(self, documents):
        """The documents as TiledWriter stores them: what its own normalizer
        (the first step of TiledWriter) makes of them (data keys completed
        with dtype_numpy and object_name)."""
        from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer

        kept = []
        normalizer = RunNormalizer()
        normalizer.subscribe(lambda name, doc: kept.append((name, doc)))
        for name, doc in documents:
            normalizer(name, copy.deepcopy(doc))
        for name, doc in kept:
            if name == "stop":
                # The writer's own bookkeeping, popped before it stores the stop.
                doc.pop("_run_normalizer_notes", None)
        return kept

    def delete_run(self, uid):
        self._writers.pop(uid, None)
        self.container.delete_contents([uid], recursive=True, external_only=False)

    def catalog(self, **common):
        return BlueskyTiledCatalog(self.container, **common)


def _unrepresentable(err):
    """Why TiledWriter or the server could not store a run, for the causes
    that are limits of tiled, not faults of this backend; None otherwise.

    A server in this process raises through the test client's task group:
    the cause may be inside an exception group.
    """
    if isinstance(err, BaseExceptionGroup):
        reasons = [_unrepresentable(inner) for inner in err.exceptions]
        return next((r for r in reasons if r), None)
    return _limit_of_tiled(err)


def _limit_of_tiled(err):
    import jsonschema
    import pyarrow

    text = str(err)
    if isinstance(err, ValueError) and text.startswith("Unsupported PyArrow type"):
        # tiled's SQL table storage (SQLite here) has no column type for
        # lists: an event field holding an array cannot go in a table.
        return f"tiled's SQL table storage has no column type for it ({text})"
    if "is not one that the Tiled server knows how to read" in text:
        return "the tiled server has no adapter for this file format (HTTP 415)"
    if isinstance(err, jsonschema.ValidationError):
        return f"TiledWriter refuses a document that is not valid event-model: {err.message}"
    if isinstance(err, pyarrow.ArrowInvalid | pyarrow.ArrowNotImplementedError):
        return f"a tiled table column holds one type: {text.splitlines()[0]}"
    if "legacy document is missing" in text:
        return f"TiledWriter needs a mimetype or a spec: {text}"
    return None


class TestTiledConformance(ConformanceTests):
    @pytest.fixture
    def store(self, tiled_container):
        return TiledStore(tiled_container)
