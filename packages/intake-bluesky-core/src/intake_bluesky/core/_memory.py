"""The in-memory driver: runs held in memory, fed document by document.

``BlueskyInMemoryCatalog`` is a document callback, so ``RE.subscribe(cat)``
(or replaying any ``(name, doc)`` sequence into it) builds a live,
searchable catalog.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ._faces.catalog import BlueskyCatalog, _call_hint, _init_parameters
from ._faces.docstrings import with_catalog_parameters
from ._model.documents import BadDocumentError, DelegatingRunSource, DocumentRunSource
from ._model.pages import first_of
from ._query.starts import search_starts
from .driver import DEFAULT_SORT, RunSourceBase

__all__ = ["MemoryDriver", "BlueskyInMemoryCatalog"]


class _LazyRunSource(DelegatingRunSource):
    """A run whose documents come from a generator function on first use."""

    def __init__(self, start, stop, gen_func, gen_args, gen_kwargs):
        self.uid = start["uid"]
        self._start, self._stop = start, stop
        self._gen = (gen_func, tuple(gen_args), dict(gen_kwargs))
        self._source: DocumentRunSource | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"start": self._start, "stop": self._stop, "gen": self._gen}

    def __setstate__(self, state):
        func, args, kwargs = state["gen"]
        self.__init__(state["start"], state["stop"], func, args, kwargs)

    @property
    def _current(self) -> DocumentRunSource:
        with self._lock:
            if self._source is None:
                func, args, kwargs = self._gen
                self._source = DocumentRunSource(func(*args, **kwargs), uid=self.uid)
            return self._source

    def start(self):
        return self._start

    def stop(self):
        return self._stop


class MemoryDriver:
    """A :class:`~intake_bluesky.core.driver.Driver` over runs held in memory."""

    def __init__(self):
        self._runs: dict[str, RunSourceBase] = {}
        # Routing of documents that do not name their run directly.
        self._descriptor_run: dict[str, str] = {}
        self._resource_run: dict[str, str] = {}
        self._stream_resource_run: dict[str, str] = {}
        self._last_started: str | None = None
        self._lock = threading.RLock()

    def __repr__(self):
        return f"MemoryDriver({len(self._runs)} runs)"

    def __getstate__(self):
        return {"_runs": self._runs}

    def __setstate__(self, state):
        self.__init__()
        self._runs = state["_runs"]

    # --- the protocol -------------------------------------------------------
    def search(self, query, *, sort=DEFAULT_SORT, skip=0, limit=None):
        with self._lock:
            starts = [run.start() for run in self._runs.values()]
        return search_starts(starts, query, sort=sort, skip=skip, limit=limit)

    def count(self, query) -> int:
        if not query:
            return len(self._runs)
        return sum(1 for _ in self.search(query))

    def run(self, uid: str):
        return self._runs[uid]

    # --- feeding ------------------------------------------------------------
    def add(self, name: str, doc: dict) -> None:
        with self._lock:
            if name == "start":
                self._runs[doc["uid"]] = DocumentRunSource([(name, doc)])
                self._last_started = doc["uid"]
                return
            uid = self._route(name, doc)
            run = self._runs.get(uid)
            if not isinstance(run, DocumentRunSource):
                raise BadDocumentError(
                    f"{name} document for run {uid!r}, which was added whole with upsert() "
                    "or deleted; documents can only be fed to runs that began with a start "
                    "document fed to this catalog."
                )
            if name == "descriptor":
                self._descriptor_run[doc["uid"]] = uid
            elif name == "resource":
                self._resource_run[doc["uid"]] = uid
            elif name == "stream_resource":
                self._stream_resource_run[doc["uid"]] = uid
            run.append(name, doc)

    def _route(self, name: str, doc: dict) -> str:
        if name in ("stop", "descriptor", "resource", "stream_resource") and doc.get("run_start"):
            return doc["run_start"]
        if name in ("event", "event_page", "stream_datum") and "descriptor" in doc:
            found = self._descriptor_run.get(doc["descriptor"])
            if found is None:
                raise BadDocumentError(
                    f"{name} {first_of(doc.get('uid'))!r} refers to descriptor "
                    f"{doc['descriptor']!r}, which this catalog never received. Feed the "
                    "descriptor before its events."
                )
            return found
        if name in ("datum", "datum_page"):
            found = self._resource_run.get(doc["resource"])
            if found is None:
                raise BadDocumentError(
                    f"{name} {first_of(doc.get('datum_id'))!r} refers to resource "
                    f"{doc['resource']!r}, which this catalog never received. Feed the "
                    "resource before its datums."
                )
            return found
        if name == "stream_datum":
            found = self._stream_resource_run.get(doc["stream_resource"])
            if found is not None:
                return found
        # Documents that may omit run_start (resource, stream_resource) belong
        # to the run in progress, as the RunEngine emits one run at a time.
        if self._last_started is None:
            raise BadDocumentError(f"{name} document received before any start document.")
        return self._last_started

    def upsert(self, start, stop, gen_func, gen_args=(), gen_kwargs=None) -> None:
        with self._lock:
            self._runs[start["uid"]] = _LazyRunSource(
                start, stop, gen_func, gen_args, gen_kwargs or {}
            )

    def remove(self, uid: str) -> None:
        with self._lock:
            del self._runs[uid]


@with_catalog_parameters
class BlueskyInMemoryCatalog(BlueskyCatalog):
    """A catalog of runs held in memory, fed document by document.

    It is a document callback: ``cat(name, doc)`` ingests one document, so
    ``RE.subscribe(cat)`` gives a live catalog whose runs are visible from
    their start document on.

    Parameters
    ----------
    {catalog_parameters}

    Examples
    --------
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> for name, doc in example_runs()[0]:
    ...     cat(name, doc)
    >>> len(cat), list(cat[-1])
    (1, ['baseline', 'primary'])
    """

    driver: MemoryDriver

    def __init__(self, **common):
        super().__init__(MemoryDriver(), **common)

    def __reduce__(self):
        # The runs live in the driver, not in the constructor arguments that
        # intake pickles by default: carry the driver along.
        return (_restore, (self.driver, dict(self._captured_init_kwargs)))

    def __call__(self, *args, **kwargs) -> None:
        """Ingest one document: ``cat(name, doc)`` (the RunEngine callback signature)."""
        if len(args) != 2 or kwargs:
            known = _init_parameters(type(self))
            unknown = {k: v for k, v in kwargs.items() if k not in known}
            raise TypeError(
                _call_hint(type(self).__name__, args, unknown or kwargs)
                + " (An in-memory catalog is called as cat(name, doc) to ingest a document.)"
            )
        self.driver.add(*args)

    def ingest(self, documents: Iterable[tuple[str, dict]]) -> None:
        """Ingest a sequence of ``(name, doc)`` pairs."""
        for name, doc in documents:
            self.driver.add(name, doc)

    def upsert(
        self, start: dict, stop: dict | None, gen_func: Callable, gen_args=(), gen_kwargs=None
    ) -> None:
        """Add (or replace) a whole run lazily.

        ``gen_func(*gen_args, **gen_kwargs)`` yields the run's ``(name, doc)``
        pairs; it is called on first access to the run's contents.
        """
        self.driver.upsert(start, stop, gen_func, gen_args, gen_kwargs)

    def __delitem__(self, uid: str) -> None:
        self.driver.remove(self._lookup.start_for_uid(uid)["uid"])


def _restore(driver: MemoryDriver, kwargs: dict) -> BlueskyInMemoryCatalog:
    cat = BlueskyInMemoryCatalog(**kwargs)
    cat.driver = driver
    return cat
