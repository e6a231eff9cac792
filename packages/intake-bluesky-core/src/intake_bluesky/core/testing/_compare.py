"""What the conformance kit needs without pytest: the store a backend's test
fixture provides and the comparison of document streams."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from .._model.pages import unpack_datum_page, unpack_event_page

__all__ = ["RunStore", "Unrepresentable", "normalize_documents", "plain"]


class Unrepresentable(Exception):
    """Raised by a :class:`RunStore`'s ``write_run``/``append_documents`` for
    a run its storage cannot hold (a server that refuses a file format it
    has no reader for, a writer that validates documents and refuses damaged
    ones). The test using that run is skipped with the message as reason.

    A store raises it only for causes it recognises, never for any error.
    """


class RunStore:
    """What a backend's test fixture provides: its storage, writable.

    Subclasses implement the three methods below in their format, and say
    what their format keeps with the capability attributes (class or
    instance attributes); the kit skips the tests a store cannot pass, with
    the reason in ``limits`` (or a default one).

    Attributes
    ----------
    integer_range : tuple of int
        ``(low, high)``: the integers the format holds. Default
        ``(-2**63, 2**64 - 1)``, numpy's int64 and uint64 (some formats hold
        int64 only).
    keeps_document_uids : bool
        Every document comes back with the uid it was written with. False
        when the storage keeps no uid for some documents (events,
        stream_datums) and rebuilds them: documents are then compared
        without those uids.
    keeps_resources : bool
        resource and datum documents are stored as they are. False when the
        storage turns them into something else (e.g. stream documents):
        the tests of handler-based external data are skipped.
    keeps_event_form : bool
        ``canonical(fill='no')`` gives every document back in the form it was
        stored in (an event stays an event, a page a page; see
        :meth:`as_stored`). False when the store regroups events into pages
        of its own (e.g. pages of a fixed size): only the unpacked events are
        compared.
    supports_concurrent_appends : bool
        ``append_documents`` may run in one thread while another follows the
        run (``follow()`` reads it).
    limits : dict of str to str
        Why a capability is off: attribute name -> reason, shown as the
        reason of the tests skipped for it.

    Examples
    --------
    >>> class NoUint64Store(RunStore):
    ...     integer_range = (-(2**63), 2**63 - 1)
    ...     limits = {"integer_range": "the format holds signed 64-bit integers only"}
    >>> NoUint64Store().keeps_event_form
    True
    """

    integer_range: tuple[int, int] = (-(2**63), 2**64 - 1)
    keeps_event_form: bool = True
    keeps_document_uids: bool = True
    keeps_resources: bool = True
    supports_concurrent_appends: bool = True
    limits: Mapping[str, str] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A run the store cannot hold skips the test that wrote it.
        for name in ("write_run", "append_documents"):
            if name in cls.__dict__:
                setattr(cls, name, _skipping_unrepresentable(cls.__dict__[name]))

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

    def as_kept(self, documents: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        """``documents`` as the storage keeps their contents: what
        ``canonical(fill='no')`` of the stored run must equal (packing
        aside). By default the documents themselves; a storage whose writer
        completes or converts documents on the way in (e.g. adds data keys'
        ``dtype_numpy``) gives the documents that writer stores.
        """
        return list(documents)

    def as_stored(self, documents: list[tuple[str, dict]]) -> list[tuple[str, dict]] | None:
        """``documents`` in the forms this store keeps them in: what
        ``canonical(fill='no')`` of the stored run must give back, document
        for document.

        By default every document keeps its form (an event stays an event, a
        page a page). A store that converts overrides this (e.g. every event
        stored as a 1-row event_page). None when the store regroups rows into
        pages of its own (``keeps_event_form`` False, or an override giving
        None): the forms are then not compared.
        """
        return list(documents) if self.keeps_event_form else None


#: Why a test is off on a store that does not keep resource/datum documents.
RESOURCES = "this store does not keep resource/datum documents (handler-based external data)"


def _skipping_unrepresentable(method: Any) -> Any:
    import functools

    @functools.wraps(method)
    def write(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Unrepresentable as err:
            import pytest

            pytest.skip(f"{type(self).__name__} cannot hold this run: {err}")

    return write


def _skip_without(store: RunStore, capability: str, reason: str) -> None:
    """Skip the running test unless ``store`` has ``capability``.

    The skip's reason is the store's own (its ``limits``), else ``reason``.
    """
    if not getattr(store, capability, True):
        import pytest

        limits = getattr(store, "limits", {})
        pytest.skip(f"{capability} is off: {limits.get(capability, reason)}")


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


def normalize_documents(documents, *, uids: bool = True) -> dict:
    """A run's documents with event/event_page and datum/datum_page packing
    undone, numpy converted to plain Python: compare two of these for equality.

    With ``uids=False`` (a store that keeps no event or stream document
    uids), events are keyed by descriptor and seq_num without their uid,
    and stream_resource/stream_datum documents are left out (their rows are
    compared through ``read()``).
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
    if not uids:
        out["events"] = {
            (e["descriptor"], e["seq_num"]): {k: v for k, v in e.items() if k != "uid"}
            for e in out["events"].values()
        }
        out["stream_resources"] = out["stream_datums"] = None
    return out
