"""The embedded layout (``suitcase.mongo_embedded``).

One database, collections:

* ``header``: one document per run, ``{"run_id": uid, "start": [start],
  "stop": [stop], "descriptors": [...], "resources": [...], ...}``; runs that
  carry stream resources keep them in ``"stream_resources": [...]`` (an
  extension: suitcase-mongo does not write them);
* ``event``: column pages per descriptor (``event_page`` documents plus
  ``first_index``/``last_index``, the 0-based rows they hold, inclusive);
* ``datum``: datum pages per resource, with ``first_index``/``last_index``;
* ``stream_datum``: one document per stream_datum (an extension, as above).

Queries and sorts address start documents, which live in ``header.start``:
:func:`prefix_query` rewrites them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from intake_bluesky.core.driver import DEFAULT_SORT, RunSourceBase

from ._common import (
    IN_BATCH,
    NO_ID,
    check_paging,
    check_query,
    chunks,
    event_projection,
    iterate,
)
from ._connect import DatabaseRef, translate_errors
from ._summaries import embedded_summaries

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

__all__ = ["EmbeddedDriver", "EmbeddedRunSource", "prefix_query", "prefix_sort"]

_LOGICAL = ("$and", "$or", "$nor")
# Bookkeeping stored beside the page columns; not part of the documents.
_PAGE_EXTRAS = ("_id", "size", "first_index", "last_index")
# The $let variable an $expr's field paths are rebased onto (a name users are
# unlikely to bind themselves).
_START_VAR = "bluesky_start_doc"


def prefix_query(query: Mapping[str, Any], prefix: str = "start.") -> dict:
    """Rewrite a query on start documents to address ``header.start``.

    Every field key gains ``prefix``, at the top level and inside
    ``$and``/``$or``/``$nor`` at any depth. Operator keys and values are left
    alone: a value's operators (``$gt``, ``$elemMatch``, ``$not``, ...) apply to
    the field as before. An ``$expr`` has its field paths (``"$scan_id"``)
    rebased onto the start document with ``$let``, because ``start`` is an
    array and ``"$start.scan_id"`` would be an array too. ``$text`` and
    ``$comment`` have no field paths and stay as they are.

    Parameters
    ----------
    query : mapping
        A validated query on start documents.
    prefix : str
        What to put before every field path.

    Returns
    -------
    dict
        The rewritten query.

    Examples
    --------
    >>> prefix_query({"scan_id": {"$gt": 1}, "$or": [{"plan_name": "scan"}, {"sample": "S1"}]})
    {'start.scan_id': {'$gt': 1}, '$or': [{'start.plan_name': 'scan'}, {'start.sample': 'S1'}]}
    """
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key in _LOGICAL:
            out[key] = [prefix_query(sub, prefix) for sub in value]
        elif key == "$expr":
            out[key] = _prefix_expr(value, prefix)
        elif key.startswith("$"):
            out[key] = value
        else:
            out[prefix + key] = value
    return out


def prefix_sort(sort: Sequence[tuple[str, int]], prefix: str = "start.") -> list[tuple[str, int]]:
    """Sort keys on start documents, addressed in ``header.start`` (``_id`` kept)."""
    return [(key if key == "_id" else prefix + key, direction) for key, direction in sort]


def _prefix_expr(expr: Any, prefix: str) -> dict:
    array = "$" + prefix.rstrip(".")
    return {
        "$let": {
            "vars": {_START_VAR: {"$arrayElemAt": [array, 0]}},
            "in": _rebase(expr),
        }
    }


def _rebase(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("$$"):
            # $$ROOT / $$CURRENT meant the start document; other variables
            # ($$NOW, user $let names) are not field paths.
            for root in ("$$ROOT", "$$CURRENT"):
                if value == root or value.startswith(root + "."):
                    return f"$${_START_VAR}" + value[len(root) :]
            return value
        if value.startswith("$") and len(value) > 1:
            return f"$${_START_VAR}.{value[1:]}"
        return value
    if isinstance(value, Mapping):
        if len(value) == 1 and "$literal" in value:
            return dict(value)
        return {k: _rebase(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebase(v) for v in value]
    return value


class EmbeddedDriver:
    """The :class:`~intake_bluesky.core.driver.Driver` of the embedded layout.

    Searches, counts, sorting and paging run on the server, against
    ``header`` with every start-document path prefixed by ``start.``.

    Parameters
    ----------
    datastore_db : str or Database
        A URI naming the database or a ``pymongo`` ``Database``.
    server_selection_timeout_ms : int, optional
        How long to wait for a server before failing (URIs; default 5000 ms
        unless the URI sets ``serverSelectionTimeoutMS``).

    Examples
    --------
    >>> import mongomock
    >>> EmbeddedDriver(mongomock.MongoClient()["datastore"]).count({"plan_name": "scan"})
    0
    """

    #: Tells the core catalog that queries run on a MongoDB server ($text, $expr).
    server_side_queries = True

    def __init__(self, datastore_db, *, server_selection_timeout_ms: int | None = None):
        if isinstance(datastore_db, DatabaseRef):
            self.db = datastore_db
        else:
            self.db = DatabaseRef(
                datastore_db,
                server_selection_timeout_ms=server_selection_timeout_ms,
                role="datastore_db",
            )

    def __repr__(self):
        return f"{type(self).__name__}({self.db.describe()})"

    def __getstate__(self):
        return {"db": self.db}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def search(
        self,
        query: Mapping[str, Any],
        *,
        sort=DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[RunStart]:
        query = prefix_query(check_query(query))
        sort, skip, limit = check_paging(sort, skip, limit)
        if limit == 0:
            return iter(())
        sort = prefix_sort(sort)
        collection = self.db["header"]

        def open_cursor():
            return collection.find(
                query, {"_id": False, "start": True}, sort=sort, skip=skip, limit=limit or 0
            )

        return iterate([self.db], open_cursor, _start_of)

    #: Start and stop documents of many runs in one query (a table of runs).
    summaries = embedded_summaries

    def uids(self, query: Mapping[str, Any], *, limit: int) -> list[str]:
        """The uids of the first ``limit`` runs matching ``query``, in the
        order of :meth:`search`: one query, only the uids sent back."""
        query = prefix_query(check_query(query))
        sort, _, _ = check_paging(DEFAULT_SORT, 0, limit)
        with translate_errors(self.db):
            cursor = self.db["header"].find(
                query, {"_id": False, "start.uid": True}, sort=prefix_sort(sort), limit=limit
            )
            return [doc["start"][0]["uid"] for doc in cursor]

    def count(self, query: Mapping[str, Any]) -> int:
        query = prefix_query(check_query(query))
        with translate_errors(self.db):
            collection = self.db["header"]
            if not query:
                # O(1) from collection metadata (one header per run).
                return collection.estimated_document_count()
            return collection.count_documents(query)

    def run(self, uid: str) -> EmbeddedRunSource:
        if not isinstance(uid, str):
            raise KeyError(uid)
        with translate_errors(self.db):
            header = self.db["header"].find_one({"start.uid": uid}, {"_id": False, "start": True})
        if header is None:
            raise KeyError(uid)
        return EmbeddedRunSource(self.db, uid, start=_start_of(header))


def _start_of(header: dict) -> RunStart:
    start: Any = header.get("start")
    return start[0] if isinstance(start, list) else start


class EmbeddedRunSource(RunSourceBase):
    """One run in the embedded layout; every read is a server query.

    Parameters
    ----------
    db : DatabaseRef
        The datastore database.
    uid : str
        The run's start uid.
    start : dict, optional
        The start document, if already fetched.
    """

    def __init__(self, db: DatabaseRef, uid: str, *, start: RunStart | None = None):
        self.db = db
        self.uid = uid
        self._start = start
        # A stop document and, once the run is over, its descriptors and
        # resources never change: cached then, re-read while the run is live.
        self._stop: RunStop | None = None
        self._final: dict | None = None

    def __repr__(self):
        return f"{type(self).__name__}({self.db.describe()}, uid={self.uid!r})"

    def __getstate__(self):
        return {"db": self.db, "uid": self.uid, "start": self._start}

    def __setstate__(self, state):
        self.__init__(state["db"], state["uid"], start=state["start"])

    def _errors(self):
        return translate_errors(self.db)

    def _header(self, *parts: str) -> dict:
        with self._errors():
            projection = {"_id": False, **{p: True for p in parts}}
            header = self.db["header"].find_one({"start.uid": self.uid}, projection)
        if header is None:
            raise KeyError(f"Run {self.uid!r} is no longer in {self.db.describe()}.")
        return header

    def _lists(self) -> dict:
        """The header's descriptors/resources/stream_resources (cached once stopped)."""
        if self._final is not None:
            return self._final
        finished = self._stop is not None
        header = self._header("descriptors", "resources", "stream_resources")
        lists = {
            k: list(header.get(k) or []) for k in ("descriptors", "resources", "stream_resources")
        }
        if finished:
            self._final = lists
        return lists

    # --- run-level documents ------------------------------------------------
    def start(self) -> RunStart:
        if self._start is None:
            self._start = _start_of(self._header("start"))
        return self._start

    def stop(self) -> RunStop | None:
        if self._stop is None:
            stops = self._header("stop").get("stop")
            if isinstance(stops, list):
                self._stop = stops[-1] if stops else None
            else:
                self._stop = stops
        return self._stop

    def descriptors(self) -> list[EventDescriptor]:
        return sorted(self._lists()["descriptors"], key=lambda d: d.get("time", 0))

    def resources(self) -> list[Resource]:
        return list(self._lists()["resources"])

    def stream_resources(self) -> list[StreamResource]:
        return list(self._lists()["stream_resources"])

    # --- events -------------------------------------------------------------
    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        query: dict[str, Any] = {"descriptor": descriptor_uid}
        lo: int | None
        hi: int | None
        if rows is not None:
            lo, hi = (max(int(r), 0) for r in rows)
            if hi <= lo:
                return iter(())
            # Only the pages overlapping the window travel.
            query["first_index"] = {"$lt": hi}
            query["last_index"] = {"$gte": lo}
        else:
            lo = hi = None
        projection = event_projection(fields, extra=("first_index", "last_index"))
        collection = self.db["event"]

        def open_cursor():
            return collection.find(query, projection, sort=[("first_index", 1)])

        return self._pages(iterate([self.db], open_cursor), lo, hi)

    @staticmethod
    def _pages(pages: Iterator[dict], lo: int | None, hi: int | None) -> Iterator[EventPage]:
        for stored in pages:
            first = stored.get("first_index", 0)
            page = _clean_event_page(stored)
            n = len(page["seq_num"])
            if lo is not None:
                a, b = max(lo - first, 0), min(hi - first, n)
                if a >= b:
                    continue
                if (a, b) != (0, n):
                    page = _slice_event_page(page, a, b)
            yield cast("EventPage", page)

    def event_count(self, descriptor_uid: str) -> int:
        with self._errors():
            last = self.db["event"].find_one(
                {"descriptor": descriptor_uid},
                {"_id": False, "last_index": True},
                sort=[("last_index", -1)],
            )
        return 0 if last is None else int(last["last_index"]) + 1

    # --- datums -------------------------------------------------------------
    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        if resource_uid is None:
            resource_uids = [r["uid"] for r in self.resources()]
            if not resource_uids:
                return iter(())
            query: dict[str, Any] = {"resource": {"$in": resource_uids}}
            sort = [("_id", 1)]
        else:
            query = {"resource": resource_uid}
            sort = [("first_index", 1), ("_id", 1)]
        collection = self.db["datum"]

        def open_cursor():
            return collection.find(query, NO_ID, sort=sort)

        return iterate([self.db], open_cursor, _clean_datum_page)

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        ids = list(dict.fromkeys(datum_ids))
        wanted = set(ids)
        found: dict[str, Datum] = {}
        with self._errors():
            for batch in chunks(ids, IN_BATCH):
                # An array field matches $in when any element does: the pages
                # holding these ids, fetched in one query per batch.
                for page in self.db["datum"].find({"datum_id": {"$in": list(batch)}}, NO_ID):
                    kwargs = page.get("datum_kwargs") or {}
                    for i, datum_id in enumerate(page["datum_id"]):
                        if datum_id in wanted and datum_id not in found:
                            found[datum_id] = {
                                "resource": page["resource"],
                                "datum_id": datum_id,
                                "datum_kwargs": {k: v[i] for k, v in kwargs.items()},
                            }
        return found

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        if descriptor_uid is None:
            query: dict[str, Any] = {"descriptor": {"$in": [d["uid"] for d in self.descriptors()]}}
        else:
            query = {"descriptor": descriptor_uid}
        with self._errors():
            return list(self.db["stream_datum"].find(query, NO_ID, sort=[("_id", 1)]))


def _clean_event_page(stored: dict) -> dict:
    page = {k: v for k, v in stored.items() if k not in _PAGE_EXTRAS}
    # Stored pages drop an empty 'filled' (suitcase-mongo builds pages from
    # events whose filled was {}); the protocol's pages always carry one.
    page.setdefault("data", {})
    page.setdefault("timestamps", {})
    page.setdefault("filled", {})
    return page


def _slice_event_page(page: dict, a: int, b: int) -> dict:
    out = dict(page)
    for key in ("time", "uid", "seq_num"):
        out[key] = page[key][a:b]
    for part in ("data", "timestamps", "filled"):
        out[part] = {k: v[a:b] for k, v in page.get(part, {}).items()}
    return out


def _clean_datum_page(stored: dict) -> dict:
    return {k: v for k, v in stored.items() if k not in _PAGE_EXTRAS}
