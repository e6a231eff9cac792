"""What the conformance kit needs without pytest: the store a backend's test
fixture provides and the comparison of document streams."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._model.pages import unpack_datum_page, unpack_event_page

__all__ = ["RunStore", "normalize_documents", "plain"]


class RunStore:
    """What a backend's test fixture provides: its storage, writable.

    Subclasses implement the three methods below in their format.
    """

    def write_run(self, documents: list[tuple[str, dict]]) -> None:
        """Store a run, or replace a stored run with this (longer) list."""
        raise NotImplementedError

    def delete_run(self, uid: str) -> None:
        """Remove a stored run."""
        raise NotImplementedError

    def catalog(self, **common):
        """Open a new catalog over the store with these keyword arguments."""
        raise NotImplementedError

    def append_documents(self, documents: list, new: list) -> None:
        """Add ``new`` documents to a stored run holding ``documents`` (a run
        being written). By default the run is written again, longer."""
        self.write_run(list(documents) + list(new))

    def as_stored(self, documents: list[tuple[str, dict]]) -> list[tuple[str, dict]] | None:
        """``documents`` in the forms this store keeps them in: what
        ``canonical(fill='no')`` of the stored run must give back, document
        for document.

        By default every document keeps its form (an event stays an event, a
        page a page). A store that converts overrides this (e.g. every event
        stored as a 1-row event_page), or returns None when it regroups rows
        into pages of its own (the forms are then not compared).
        """
        return list(documents)


def plain(value):
    """numpy arrays and scalars -> lists and Python scalars, recursively."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def normalize_documents(documents) -> dict:
    """A run's documents with event/event_page and datum/datum_page packing
    undone, numpy converted to plain Python: compare two of these for equality.
    """
    out: dict[str, Any] = {
        "start": None,
        "stop": None,
        "descriptors": {},
        "events": {},
        "resources": {},
        "datums": {},
        "stream_resources": {},
        "stream_datums": {},
    }
    for name, doc in documents:
        doc = plain(doc)
        if name in ("start", "stop"):
            out[name] = doc
        elif name == "descriptor":
            out["descriptors"][doc["uid"]] = doc
        elif name == "event":
            out["events"][doc["uid"]] = doc
        elif name == "event_page":
            for event in unpack_event_page(doc):
                out["events"][event["uid"]] = event
        elif name == "resource":
            out["resources"][doc["uid"]] = doc
        elif name == "datum":
            out["datums"][doc["datum_id"]] = doc
        elif name == "datum_page":
            for datum in unpack_datum_page(doc):
                out["datums"][datum["datum_id"]] = datum
        elif name == "stream_resource":
            out["stream_resources"][doc["uid"]] = doc
        elif name == "stream_datum":
            out["stream_datums"][doc["uid"]] = doc
    for event in out["events"].values():
        # Storage may drop an empty 'filled' or store False for unfilled keys.
        event["filled"] = {k: v for k, v in event.get("filled", {}).items() if v}
    return out
