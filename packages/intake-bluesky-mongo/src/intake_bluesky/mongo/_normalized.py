"""The normalized layout (``suitcase.mongo_normalized``).

Metadatastore database: ``run_start``, ``run_stop``, ``event_descriptor``,
``event`` (one document per event). Asset registry database (the same
database unless given): ``resource``, ``datum`` (one document per datum), and
``stream_resource``, ``stream_datum`` (one document each; suitcase-mongo does
not write these, but runs that carry them can be stored there and are read
back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any, TypeVar

from intake_bluesky.core import BadDocumentError
from intake_bluesky.core.driver import DEFAULT_SORT, RunSourceBase

from ._common import (
    EVENT_PAGE_SIZE,
    IN_BATCH,
    NO_ID,
    check_paging,
    check_query,
    chunks,
    event_projection,
    iterate,
    lean_projection,
    pack_datum_docs,
    pack_event_docs,
    pack_lean_events,
)
from ._connect import DatabaseRef, translate_errors
from ._summaries import normalized_summaries

if TYPE_CHECKING:
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

__all__ = ["NormalizedDriver", "NormalizedRunSource"]

_P = TypeVar("_P")


class NormalizedDriver:
    """The :class:`~intake_bluesky.core.driver.Driver` of the normalized layout.

    Searches, counts, sorting and paging run on the server, against
    ``run_start``.

    Parameters
    ----------
    metadatastore_db : str or Database
        A URI naming the database or a ``pymongo`` ``Database``.
    asset_registry_db : str or Database, optional
        Where ``resource``/``datum`` live; default: ``metadatastore_db``.
    server_selection_timeout_ms : int, optional
        How long to wait for a server before failing (URIs; default 5000 ms
        unless the URI sets ``serverSelectionTimeoutMS``).
    event_page_size : int
        Events per event page assembled from single event documents.

    Examples
    --------
    >>> import mongomock
    >>> driver = NormalizedDriver(mongomock.MongoClient()["mds"])
    >>> driver.count({})
    0
    """

    #: Tells the core catalog that queries run on a MongoDB server ($text, $expr).
    server_side_queries = True

    def __init__(
        self,
        metadatastore_db,
        asset_registry_db=None,
        *,
        server_selection_timeout_ms: int | None = None,
        event_page_size: int = EVENT_PAGE_SIZE,
    ):
        self.mds = _ref(metadatastore_db, server_selection_timeout_ms, "metadatastore_db")
        if asset_registry_db is None:
            self.assets = self.mds
        else:
            self.assets = _ref(asset_registry_db, server_selection_timeout_ms, "asset_registry_db")
        self.event_page_size = int(event_page_size)

    def __repr__(self):
        where = self.mds.describe()
        if self.assets is not self.mds:
            where += f", assets={self.assets.describe()}"
        return f"{type(self).__name__}({where})"

    def __getstate__(self):
        return {"mds": self.mds, "assets": self.assets, "event_page_size": self.event_page_size}

    def __setstate__(self, state):
        self.__dict__.update(state)

    # --- the protocol -------------------------------------------------------
    def search(
        self,
        query: Mapping[str, Any],
        *,
        sort=DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[RunStart]:
        query = check_query(query)
        sort, skip, limit = check_paging(sort, skip, limit)
        if limit == 0:
            return iter(())
        collection = self.mds["run_start"]

        def open_cursor():
            # limit=0 is "no limit" to pymongo.
            return collection.find(query, NO_ID, sort=sort, skip=skip, limit=limit or 0)

        return iterate([self.mds], open_cursor)

    #: Start and stop documents of many runs in two queries (a table of runs).
    summaries = normalized_summaries

    def uids(self, query: Mapping[str, Any], *, limit: int) -> list[str]:
        """The uids of the first ``limit`` runs matching ``query``, in the
        order of :meth:`search`: one query, only the uids sent back."""
        query = check_query(query)
        sort, _, _ = check_paging(DEFAULT_SORT, 0, limit)
        with translate_errors(self.mds):
            cursor = self.mds["run_start"].find(
                query, {"_id": False, "uid": True}, sort=sort, limit=limit
            )
            return [doc["uid"] for doc in cursor]

    def count(self, query: Mapping[str, Any]) -> int:
        query = check_query(query)
        with translate_errors(self.mds):
            collection = self.mds["run_start"]
            if not query:
                # O(1) from collection metadata: len(catalog) on a facility
                # database must not scan millions of documents.
                return collection.estimated_document_count()
            return collection.count_documents(query)

    def run(self, uid: str) -> NormalizedRunSource:
        if not isinstance(uid, str):
            raise KeyError(uid)
        with translate_errors(self.mds):
            start = self.mds["run_start"].find_one({"uid": uid}, NO_ID)
        if start is None:
            raise KeyError(uid)
        return NormalizedRunSource(
            self.mds, self.assets, uid, start=start, event_page_size=self.event_page_size
        )


class NormalizedRunSource(RunSourceBase):
    """One run in the normalized layout; every read is a server query.

    Parameters
    ----------
    mds, assets : DatabaseRef
        The metadatastore and asset registry databases.
    uid : str
        The run's start uid.
    start : dict, optional
        The start document, if already fetched.
    event_page_size : int
        Events per event page.
    """

    # suitcase.mongo_normalized stores one document per event and per datum
    # (pages unpacked): canonical() gives them back as events and datums.
    stored_event_form = "event"
    stored_datum_form = "datum"

    def __init__(
        self,
        mds: DatabaseRef,
        assets: DatabaseRef,
        uid: str,
        *,
        start: RunStart | None = None,
        event_page_size: int = EVENT_PAGE_SIZE,
    ):
        self.mds = mds
        self.assets = assets
        self.uid = uid
        self.event_page_size = event_page_size
        self._start = start
        # A stop document and, once the run is over, its descriptors never
        # change: cached then, re-read while the run is live.
        self._stop: RunStop | None = None
        self._descriptors: list[EventDescriptor] | None = None
        # Descriptors whose events the server's natural order does not give
        # in time order (see lean_event_pages).
        self._unordered: set[str] = set()

    def __repr__(self):
        return f"{type(self).__name__}({self.mds.describe()}, uid={self.uid!r})"

    def __getstate__(self):
        return {
            "mds": self.mds,
            "assets": self.assets,
            "uid": self.uid,
            "start": self._start,
            "event_page_size": self.event_page_size,
        }

    def __setstate__(self, state):
        self.__init__(
            state["mds"],
            state["assets"],
            state["uid"],
            start=state["start"],
            event_page_size=state["event_page_size"],
        )

    def _errors(self):
        return translate_errors(self.mds, self.assets)

    # --- run-level documents ------------------------------------------------
    def start(self) -> RunStart:
        if self._start is None:
            with self._errors():
                start = self.mds["run_start"].find_one({"uid": self.uid}, NO_ID)
            if start is None:
                raise KeyError(f"Run {self.uid!r} is no longer in {self.mds.describe()}.")
            self._start = start
        return self._start

    def stop(self) -> RunStop | None:
        if self._stop is None:
            with self._errors():
                self._stop = self.mds["run_stop"].find_one({"run_start": self.uid}, NO_ID)
        return self._stop

    def descriptors(self) -> list[EventDescriptor]:
        if self._descriptors is not None:
            return list(self._descriptors)
        finished = self._stop is not None
        with self._errors():
            cursor = self.mds["event_descriptor"].find(
                {"run_start": self.uid}, NO_ID, sort=[("time", 1), ("_id", 1)]
            )
            descriptors = list(cursor)
        if finished:
            self._descriptors = descriptors
        return list(descriptors)

    # --- events -------------------------------------------------------------
    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        fields = None if fields is None else list(fields)
        projection = event_projection(fields)
        if fields is not None:
            # Every event of the query has this descriptor: not sent per event.
            del projection["descriptor"]
        events = self._events(descriptor_uid, projection, rows)
        return self._pages(
            events, lambda batch: pack_event_docs(batch, fields, descriptor_uid, self.uid)
        )

    def lean_event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str],
        rows: tuple[int, int] | None = None,
        part: str | None = None,
    ) -> list[dict[str, Any]]:
        """Pages of only ``time``, ``seq_num`` and ``part`` of ``fields``, for a
        read that takes them all (see the driver protocol): what the read does
        not use is not sent.

        A whole descriptor is asked for in the server's natural order, which
        needs no sort on the server: when that is time order (events are
        inserted as they are taken), those are the pages; otherwise (events
        inserted out of time order) the sorted query is sent after all, and
        is sent first for that descriptor from then on.
        """
        projection = lean_projection(fields, part)

        def pack(batch):
            return pack_lean_events(batch, fields, part, descriptor_uid, self.uid)

        try:
            pages = None
            if rows is None and descriptor_uid not in self._unordered:
                natural = self._events(descriptor_uid, projection, None, sort=False)
                try:
                    pages = list(self._pages(_in_time_order(natural), pack))
                except _NotInTimeOrder:
                    self._unordered.add(descriptor_uid)
            if pages is None:
                pages = list(self._pages(self._events(descriptor_uid, projection, rows), pack))
        except BadDocumentError:
            # A damaged event: the full pages' error names it by uid (the
            # lean ones have none). Only on this error path are they read,
            # without the data.
            for _ in self.event_pages(descriptor_uid, [], rows):
                pass
            raise
        if rows is None:
            # Pages are in seq_num order within each (see _in_seq_order);
            # events with equal times across two pages may still be out of
            # it. A whole descriptor is put in seq_num order throughout, so
            # that the row index built from it is.
            pages = _in_seq_order_across(pages, self.event_page_size, part)
        return pages

    def _events(
        self,
        descriptor_uid: str,
        projection: dict[str, Any],
        rows: tuple[int, int] | None,
        sort: bool = True,
    ) -> Iterator[dict]:
        skip, limit = 0, 0
        if rows is not None:
            start, stop = (max(int(r), 0) for r in rows)
            if stop <= start:
                return iter(())
            skip, limit = start, stop - start
        collection = self.mds["event"]

        def open_cursor():
            # Sorted by time alone, which suitcase-mongo's (descriptor, time)
            # index serves without a blocking sort (a tiebreaker key would
            # defeat it); allow_disk_use so that a big run without that index
            # still sorts instead of failing on the server's sort memory limit.
            return collection.find(
                {"descriptor": descriptor_uid},
                projection,
                sort=[("time", 1)] if sort else None,
                skip=skip,
                limit=limit,
                batch_size=self.event_page_size,
                allow_disk_use=sort,
            )

        return iterate([self.mds], open_cursor)

    def _pages(self, events: Iterator[dict], pack: Callable[[list[dict]], _P]) -> Iterator[_P]:
        batch: list[dict] = []
        for event in events:
            batch.append(event)
            if len(batch) >= self.event_page_size:
                yield pack(_in_seq_order(batch))
                batch = []
        if batch:
            yield pack(_in_seq_order(batch))

    def event_count(self, descriptor_uid: str) -> int:
        with self._errors():
            return self.mds["event"].count_documents({"descriptor": descriptor_uid})

    # --- assets -------------------------------------------------------------
    def resources(self) -> list[Resource]:
        with self._errors():
            return list(
                self.assets["resource"].find({"run_start": self.uid}, NO_ID, sort=[("_id", 1)])
            )

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        query: dict[str, Any]
        if resource_uid is None:
            resource_uids = [r["uid"] for r in self.resources()]
            if not resource_uids:
                return iter(())
            query = {"resource": {"$in": resource_uids}}
        else:
            query = {"resource": resource_uid}
        collection = self.assets["datum"]

        def open_cursor():
            return collection.find(query, NO_ID, sort=[("_id", 1)])

        return self._datum_pages(iterate([self.assets], open_cursor))

    def _datum_pages(self, datums: Iterator[dict]) -> Iterator[DatumPage]:
        # Consecutive datums of one resource become one page (stored order).
        for _, group in groupby(datums, key=lambda d: d["resource"]):
            for part in chunks(list(group), self.event_page_size):
                yield pack_datum_docs(part)

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        ids = list(dict.fromkeys(datum_ids))
        found: dict[str, Datum] = {}
        with self._errors():
            for batch in chunks(ids, IN_BATCH):
                for doc in self.assets["datum"].find({"datum_id": {"$in": list(batch)}}, NO_ID):
                    found[doc["datum_id"]] = doc
        return found

    def stream_resources(self) -> list[StreamResource]:
        # stream_resource.run_start is optional in event-model: also find the
        # ones this run's stream_datums point at.
        with self._errors():
            referenced = self.assets["stream_datum"].distinct(
                "stream_resource", {"descriptor": {"$in": self._descriptor_uids()}}
            )
            query = {"$or": [{"run_start": self.uid}, {"uid": {"$in": list(referenced)}}]}
            return list(self.assets["stream_resource"].find(query, NO_ID, sort=[("_id", 1)]))

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        query: dict[str, Any]
        if descriptor_uid is None:
            query = {"descriptor": {"$in": self._descriptor_uids()}}
        else:
            query = {"descriptor": descriptor_uid}
        with self._errors():
            return list(self.assets["stream_datum"].find(query, NO_ID, sort=[("_id", 1)]))

    def _descriptor_uids(self) -> list[str]:
        return [d["uid"] for d in self.descriptors()]


def _ref(target, timeout, role) -> DatabaseRef:
    if isinstance(target, DatabaseRef):
        return target
    return DatabaseRef(target, server_selection_timeout_ms=timeout, role=role)


class _NotInTimeOrder(Exception):
    pass


def _in_time_order(events: Iterator[dict]) -> Iterator[dict]:
    """``events``, or :class:`_NotInTimeOrder` at the first one out of time
    order (the cursor is closed then)."""
    last: Any = -math.inf
    try:
        for event in events:
            time = event.get("time")
            # A time that does not compare (missing, not a number) also sends
            # the read to the sorted query, where the error is reported.
            try:
                in_order = last <= time
            except TypeError:
                in_order = False
            if not in_order:
                raise _NotInTimeOrder
            last = time
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _in_seq_order(events: list[dict]) -> list[dict]:
    # Sorted by time on the server; events with equal or out-of-order times
    # (a clock step) are put back in seq_num order within the batch.
    seq = [e.get("seq_num", 0) for e in events]
    try:
        if all(a <= b for a, b in zip(seq, seq[1:])):
            return events
        return sorted(events, key=lambda e: e.get("seq_num", 0))
    except TypeError:
        return events  # a seq_num that is not a number: the packer names it


def _in_seq_order_across(pages: list[dict], size: int, part: str | None) -> list[dict]:
    """Lean pages (each in seq_num order) with their rows in seq_num order
    throughout, in pages of ``size`` rows."""
    seq = [s for page in pages for s in page["seq_num"]]
    try:
        if all(a < b for a, b in zip(seq, seq[1:])):
            return pages
        order = sorted(range(len(seq)), key=seq.__getitem__)
    except TypeError:
        return pages  # not numbers: the core names the event
    if part is not None and any(page[part].keys() != pages[0][part].keys() for page in pages):
        return pages  # a field missing from a page: the core names it
    time = [t for page in pages for t in page["time"]]
    columns: dict[str, list] = {}
    if part is not None:
        for key in pages[0][part]:
            columns[key] = [v for page in pages for v in page[part][key]]
    out = []
    for lo in range(0, len(order), size):
        rows = order[lo : lo + size]
        page: dict[str, Any] = {
            "time": [time[i] for i in rows],
            "seq_num": [seq[i] for i in rows],
        }
        if part is not None:
            page[part] = {key: [col[i] for i in rows] for key, col in columns.items()}
        out.append(page)
    return out
