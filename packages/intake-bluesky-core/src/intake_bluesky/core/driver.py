"""The driver protocol: what a storage backend implements.

A backend answers two kinds of questions and nothing else; everything about
bluesky semantics (ordering, filling, xarray assembly, getitem sugar, nested
search) lives once in the core model.

* A :class:`Driver` finds runs: ``search(query, sort=..., skip=..., limit=...)``
  yields start documents, ``count(query)`` counts them, ``run(uid)`` opens one.
  A database backend pushes all of that to the server. A file backend gets it
  for free from :class:`~intake_bluesky.core.FileDriver`, which keeps a shared
  in-memory index of start/stop documents refreshed by file size and mtime.
* A :class:`RunSource` reads one run: start, stop, descriptors, event pages per
  descriptor (optionally only some fields and some rows), resources, datums,
  stream resources, stream datums, and the raw documents in stored order.
  :class:`RunSourceBase` derives most methods from a few; a file backend that
  can list a run's documents gets a complete one from
  :class:`~intake_bluesky.core.DocumentRunSource`.
* Optionally, a run source says in which *form* each event and datum is
  stored, so that ``canonical(fill='no')`` gives every document back as it
  was written (an event stays an event, a page a page):
  ``stored_event_pages(descriptor_uid, rows=None)`` and
  ``stored_datum_pages(resource_uid=None)`` yield ``(form, page)``, where
  form ``'event'`` (``'datum'``) means each row of ``page`` was stored as a
  single document and ``'event_page'`` (``'datum_page'``) that ``page`` is
  one stored page. :class:`RunSourceBase` derives them from
  ``stored_event_form``/``stored_datum_form`` (a store that keeps every
  event as its own document, as Mongo's normalized layout does, sets
  ``'event'``/``'datum'``); :class:`~intake_bluesky.core.DocumentRunSource`
  records the form of every document it reads.

* Optionally, a run source that serves stream data itself (a remote server
  whose files this machine may not reach) has
  ``stream_reader(stream_resource, data_key)``, returning a reader object
  (``reader(start, stop)`` -> rows) or None to let the reader registered for
  the mimetype open the file, and ``stream_chunk_rows(stream_resource,
  data_key)`` (rows per chunk of its own, or None). ``describe()`` returns a
  dict shown in ``run.describe()['args']`` (e.g. how the run's data is read).

* Optionally, a run source whose every read is a query (a database: each
  column sent costs) has ``lean_event_pages(descriptor_uid, fields,
  rows=None, part=None)``: a list of the pages of those rows with only
  ``time``, ``seq_num`` and ``part`` (``'data'`` or ``'timestamps'``; None:
  neither) of ``fields``, same rows and order as :meth:`RunSource.event_pages`.
  The core uses it where it takes every page of a descriptor at once (the row
  index, a read, a dask chunk), so the source may fetch in any order and
  sort itself. When such a read finds a damaged event, the core looks its
  uid up with ``event_pages(descriptor_uid, [], rows=(i, i + 1))`` to name
  it in the error.

How to write a backend, in a dozen lines (a file format)::

    from intake_bluesky.core import BlueskyCatalog, FileDriver, FileFormat

    class MyFormat(FileFormat):
        suffixes = (".myfmt",)

        def read_documents(self, path):   # every (name, doc), stored order;
            ...                           # tolerate a truncated last record

    class MyCatalog(BlueskyCatalog):
        def __init__(self, paths, **common):
            super().__init__(FileDriver(paths, MyFormat()), **common)

then subclass :class:`intake_bluesky.core.testing.ConformanceTests` with a
fixture that writes the example runs in that format, and register ``MyCatalog``
in the ``intake.drivers`` and ``intake_bluesky.backends`` entry point groups.
A database backend implements :class:`Driver` and :class:`RunSource` directly.

Queries reaching a driver have been validated (see
:func:`intake_bluesky.core.validate_query`): operators are known, server-side
JavaScript is refused. Sorting is a list of ``(key, direction)`` pairs on start
document keys, as in pymongo.

Example
-------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.driver import Driver
>>> isinstance(BlueskyInMemoryCatalog().driver, Driver)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    # Only for the type checker: event_model's package import costs a few
    # hundred milliseconds, which ``import intake_bluesky.core`` must not pay.
    from event_model.documents import (
        Datum,
        DatumPage,
        EventDescriptor,
        EventPage,
        Resource,
        RunStart,
        RunStop,
        StreamDatum,
        StreamResource,
    )

__all__ = ["Driver", "RunSource", "RunSourceBase", "Sort", "SummaryDriver", "summaries"]

#: ``[(key, direction), ...]`` with direction ``1`` (ascending) or ``-1``.
Sort = Sequence[tuple[str, int]]

#: Runs are listed oldest first unless a caller asks otherwise.
DEFAULT_SORT: Sort = (("time", 1),)


@runtime_checkable
class Driver(Protocol):
    """Finds runs in one store. Must be picklable (dask graphs carry it)."""

    def search(
        self,
        query: Mapping[str, Any],
        *,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[RunStart]:
        """Yield the start documents matching ``query``, sorted, paged."""

    def count(self, query: Mapping[str, Any]) -> int:
        """Number of runs whose start document matches ``query``."""

    def run(self, uid: str) -> RunSource:
        """The run with this full uid; ``KeyError`` if there is none."""


@runtime_checkable
class SummaryDriver(Protocol):
    """Optional: a :class:`Driver` that lists runs' start *and* stop documents
    in one pass, keeping only some of their keys (a table of runs).

    A database backend implements it to push projection, sort and limit to
    the server (one query for the starts, one for their stops) instead of
    one ``run(uid).stop()`` lookup per run; :func:`summaries` falls back to
    that when a driver does not have the method.
    """

    def summaries(
        self,
        query: Mapping[str, Any],
        *,
        start_fields: Sequence[str] | None = None,
        stop_fields: Sequence[str] | None = None,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[tuple[RunStart, RunStop | None]]:
        """Yield ``(start, stop)`` of the runs matching ``query``, sorted, paged.

        ``start_fields``/``stop_fields`` are dotted paths the caller needs
        (``None``: the whole document); a driver may return more keys than
        asked for, never fewer of those that exist. ``stop`` is ``None``
        while a run is in progress. Same order, skip and limit as
        :meth:`Driver.search`.
        """


def summaries(
    driver: Driver,
    query: Mapping[str, Any],
    *,
    start_fields: Sequence[str] | None = None,
    stop_fields: Sequence[str] | None = None,
    sort: Sort = DEFAULT_SORT,
    skip: int = 0,
    limit: int | None = None,
) -> Iterator[tuple[RunStart, RunStop | None]]:
    """``(start, stop)`` pairs of the matching runs, from any driver.

    Uses the driver's own ``summaries`` (see :class:`SummaryDriver`) when it
    has one; otherwise :meth:`Driver.search` and each run's ``stop()``, which
    file and memory drivers answer from what they already hold.

    Examples
    --------
    >>> from intake_bluesky.core import BlueskyInMemoryCatalog
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> cat.ingest(example_runs()[1])
    >>> [(start["scan_id"], stop["exit_status"]) for start, stop in summaries(cat.driver, {})]
    [(2, 'success')]
    """
    own = getattr(driver, "summaries", None)
    if callable(own):
        pairs: Iterator[tuple[RunStart, RunStop | None]] = own(
            query,
            start_fields=start_fields,
            stop_fields=stop_fields,
            sort=sort,
            skip=skip,
            limit=limit,
        )
        return pairs
    return _generic_summaries(driver, query, sort=sort, skip=skip, limit=limit)


def _generic_summaries(
    driver: Driver, query: Mapping[str, Any], *, sort: Sort, skip: int, limit: int | None
) -> Iterator[tuple[RunStart, RunStop | None]]:
    for start in driver.search(query, sort=sort, skip=skip, limit=limit):
        try:
            stop = driver.run(start["uid"]).stop()
        except KeyError:
            continue  # deleted between the search and the lookup
        yield start, stop


@runtime_checkable
class RunSource(Protocol):
    """Reads one run. Must be picklable (dask graphs carry it).

    Documents come back as stored; the core applies transforms and filling.
    """

    uid: str

    def start(self) -> RunStart:
        """The start document."""

    def stop(self) -> RunStop | None:
        """The stop document, ``None`` while the run is in progress.

        Called again on every access, so a live run's stop shows up.
        """

    def descriptors(self) -> list[EventDescriptor]:
        """Every event descriptor of the run, oldest first."""

    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        """Event pages of one descriptor, in seq_num order.

        ``fields`` limits ``data``/``timestamps``/``filled`` to those keys
        (``[]``: none, only time/seq_num/uid); ``rows=(start, stop)`` limits
        to that slice of the descriptor's events (0-based, stop exclusive).
        Columns may be lists or numpy arrays.
        """

    def event_count(self, descriptor_uid: str) -> int:
        """Number of events of one descriptor."""

    def resources(self) -> list[Resource]:
        """Every resource document of the run, stored order."""

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        """Datum pages (of one resource, or all), stored order."""

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        """``datum_id -> datum document`` for those ids (missing ids absent)."""

    def stream_resources(self) -> list[StreamResource]:
        """Every stream_resource document of the run."""

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        """stream_datum documents (of one descriptor, or all), stored order."""

    def documents(self) -> Iterator[tuple[str, Any]]:
        """Every stored ``(name, doc)`` pair in stored order."""
        # ``doc`` is typed Any: its type follows from ``name``, which a union
        # of event_model's document types could not express.


class RunSourceBase(ABC):
    """Defaults for a :class:`RunSource`, derived from fewer primitives.

    A subclass must implement the abstract primitives ``start``, ``stop``,
    ``descriptors``, ``event_pages``, ``resources``, ``datum_pages``,
    ``stream_resources``, ``stream_datums`` (a class missing one cannot be
    instantiated). ``event_count``, ``datums``, ``documents`` and the stored
    forms are derived here; a database backend overrides them with cheaper
    queries.
    """

    uid: str

    #: How the store keeps events: ``'event_page'`` (pages as
    #: :meth:`event_pages` yields them) or ``'event'`` (one document per event).
    stored_event_form = "event_page"
    #: How the store keeps datums: ``'datum_page'`` or ``'datum'``.
    stored_datum_form = "datum_page"

    @abstractmethod
    def start(self) -> RunStart:
        """The start document."""

    @abstractmethod
    def stop(self) -> RunStop | None:
        """The stop document, ``None`` while the run is in progress."""

    @abstractmethod
    def descriptors(self) -> list[EventDescriptor]:
        """Every event descriptor of the run, oldest first."""

    @abstractmethod
    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        """Event pages of one descriptor, in seq_num order (see :class:`RunSource`)."""

    @abstractmethod
    def resources(self) -> list[Resource]:
        """Every resource document of the run, stored order."""

    @abstractmethod
    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        """Datum pages (of one resource, or all), stored order."""

    @abstractmethod
    def stream_resources(self) -> list[StreamResource]:
        """Every stream_resource document of the run."""

    @abstractmethod
    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        """stream_datum documents (of one descriptor, or all), stored order."""

    def event_count(self, descriptor_uid: str) -> int:
        return sum(len(page["seq_num"]) for page in self.event_pages(descriptor_uid, fields=[]))

    def stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        """``(form, page)`` of one descriptor's events in their stored form.

        ``form`` is ``'event'`` when each row of ``page`` is stored as a single
        event document, ``'event_page'`` when ``page`` is one stored event_page
        (or the part of one inside ``rows``). Same rows and order as
        :meth:`event_pages`.
        """
        form = self.stored_event_form
        for page in self.event_pages(descriptor_uid, rows=rows):
            yield form, page

    def stored_datum_pages(
        self, resource_uid: str | None = None
    ) -> Iterator[tuple[str, DatumPage]]:
        """``(form, page)`` of the datums in their stored form: ``'datum'``
        (each row a single datum document) or ``'datum_page'``."""
        form = self.stored_datum_form
        for page in self.datum_pages(resource_uid):
            yield form, page

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        from ._model.pages import unpack_datum_page

        wanted = set(datum_ids)
        found: dict[str, Datum] = {}
        for page in self.datum_pages():
            for datum in unpack_datum_page(page):
                if datum["datum_id"] in wanted:
                    found[datum["datum_id"]] = datum
        return found

    def documents(self) -> Iterator[tuple[str, Any]]:
        # Not the emission order, but a valid one: the canonical generator in
        # core re-orders anyway; a file backend overrides this with its own.
        yield "start", self.start()
        for stream_resource in self.stream_resources():
            yield "stream_resource", stream_resource
        for resource in self.resources():
            yield "resource", resource
        for datum_page in self.datum_pages():
            yield "datum_page", datum_page
        for descriptor in self.descriptors():
            yield "descriptor", descriptor
            for stream_datum in self.stream_datums(descriptor["uid"]):
                yield "stream_datum", stream_datum
            for event_page in self.event_pages(descriptor["uid"]):
                yield "event_page", event_page
        stop = self.stop()
        if stop is not None:
            yield "stop", stop
