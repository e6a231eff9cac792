"""Finding runs in a tiled container (the core's Driver).

Searches are translated to tiled queries the server answers (see
:mod:`intake_bluesky.tiled._query`); what is not translated exactly is
decided by the core's evaluator on the server's candidates, so an answer is
never different from the in-memory catalog's. Sorting, skipping, limiting
and counting run on the server when the translation is exact.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from intake_bluesky.core import compile_query
from intake_bluesky.core.driver import DEFAULT_SORT, Sort

from ._connect import TiledRef
from ._layout import plain
from ._query import SCALAR_KEYS, translate
from ._runsource import TiledRunSource

if TYPE_CHECKING:
    from event_model.documents import RunStart, RunStop

__all__ = ["TiledDriver"]

#: Run nodes a listing fetched, kept for opening those runs right after
#: (``cat[-1]`` is a search and an open): how many, and for how long.
HANDOFF_SIZE, HANDOFF_SECONDS = 1024, 10.0
#: A page size every tiled server grants.
_SMALL_PAGE = 100
#: Listings of at most this many runs (lookups: ``cat[-1]``, ``cat[scan_id]``)
#: fetch whole nodes to hand over; longer ones fetch metadata only.
HANDOFF_LISTING = 8


class TiledDriver:
    """The :class:`~intake_bluesky.core.driver.Driver` of a tiled container of runs.

    Parameters
    ----------
    ref : TiledRef
        The container of runs.
    data_access : {"auto", "direct", "http"}
        How external data is read (see :class:`TiledRunSource`).
    root_map : dict, optional
        Old root -> new root for the registered files.
    scalar_keys : iterable of str, optional
        More start document keys (dotted) whose values are never arrays, so
        the server may filter on them.
    """

    def __init__(
        self,
        ref: TiledRef,
        *,
        data_access: str = "auto",
        root_map: Mapping[str, str] | None = None,
        scalar_keys: Any = (),
    ) -> None:
        self.ref = ref
        self.data_access = data_access
        self.root_map = dict(root_map or {})
        self.scalar_keys = SCALAR_KEYS | frozenset(scalar_keys or ())
        self._handoff: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._handoff_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_handoff"], state["_handoff_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._handoff = OrderedDict()
        self._handoff_lock = threading.Lock()

    def _hand_over(self, uid: str, node: Any) -> None:
        # A listing already holds each run's node (metadata, data sources):
        # opening one of its runs next needs no request of its own. A run
        # still being written refreshes its node when read, so a node a few
        # seconds old is never a stale answer.
        with self._handoff_lock:
            self._handoff[uid] = (time.monotonic(), node)
            self._handoff.move_to_end(uid)
            while len(self._handoff) > HANDOFF_SIZE:
                self._handoff.popitem(last=False)

    def _take_over(self, uid: str) -> Any:
        with self._handoff_lock:
            fetched, node = self._handoff.pop(uid, (0.0, None))
        if node is None or time.monotonic() - fetched >= HANDOFF_SECONDS:
            return None
        return node.new_variation(include_data_sources=True)

    def __repr__(self) -> str:
        return f"TiledDriver({self.ref.describe()!r})"

    # --- listing -----------------------------------------------------------
    def _node(self, queries: list[Any], sort: Sort) -> Any:
        # A new variation each time: tiled's client caches a container's
        # length, and a catalog must see runs added since. Listings leave out
        # data sources (a run container has none, and the server looks them
        # up item by item); the runs' own nodes ask for them again.
        node = self.ref.node().new_variation(include_data_sources=False)
        for query in queries:
            node = node.search(query)
        sorting = [("start." + key, int(direction)) for key, direction in sort]
        return node.sort(*sorting) if sorting else node

    def _starts(
        self, node: Any, skip: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        stop = None if limit is None else skip + limit
        if limit is None or limit > HANDOFF_LISTING:
            listing = _metadata_listing(node, skip, stop)
            if listing is not None:
                for metadata in listing:
                    start = metadata.get("start")
                    if isinstance(start, Mapping):
                        yield {"metadata": metadata, "start": start}
                return
        for key, run in node.items()[skip:stop]:
            metadata = plain(run.metadata)
            start = metadata.get("start")
            if isinstance(start, Mapping):
                self._hand_over(key, run)
                yield {"metadata": metadata, "start": start}

    def _search(
        self, query: Mapping[str, Any], sort: Sort, skip: int, limit: int | None
    ) -> Iterator[dict[str, Any]]:
        queries, exact = translate(query, self.scalar_keys)
        node = self._node(queries, sort)
        if exact:
            yield from self._starts(node, skip, limit)
            return
        match = compile_query(query)
        stop = None if limit is None else skip + limit
        matched = (entry for entry in self._starts(node) if match(entry["start"]))
        yield from islice(matched, skip, stop)

    # --- the protocol --------------------------------------------------------
    def search(
        self,
        query: Mapping[str, Any],
        *,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[RunStart]:
        if limit == 0:
            return iter(())
        return (entry["start"] for entry in self._search(query, sort, skip, limit))

    def summaries(
        self,
        query: Mapping[str, Any],
        *,
        start_fields: Any = None,
        stop_fields: Any = None,
        sort: Sort = DEFAULT_SORT,
        skip: int = 0,
        limit: int | None = None,
    ) -> Iterator[tuple[RunStart, RunStop | None]]:
        """Start and stop documents in the same listing (tiled keeps both in
        the run's metadata)."""
        if limit == 0:
            return iter(())
        return (
            (entry["start"], entry["metadata"].get("stop"))
            for entry in self._search(query, sort, skip, limit)
        )

    def count(self, query: Mapping[str, Any]) -> int:
        queries, exact = translate(query, self.scalar_keys)
        if exact:
            return len(self._node(queries, ()))
        match = compile_query(query)
        return sum(1 for entry in self._starts(self._node(queries, ())) if match(entry["start"]))

    def run(self, uid: str) -> TiledRunSource:
        if not isinstance(uid, str):
            raise KeyError(uid)
        node = self._take_over(uid)
        if node is None:
            try:
                node = self.ref.node()[uid]
            except KeyError:
                raise KeyError(uid) from None
        metadata = plain(node.metadata)
        if not isinstance(metadata.get("start"), Mapping):
            raise KeyError(uid)
        source = TiledRunSource(
            self.ref,
            uid,
            metadata=metadata,
            data_access=self.data_access,
            root_map=self.root_map,
        )
        source._node = node
        return source


def _metadata_listing(node: Any, skip: int, stop: int | None) -> Iterator[dict[str, Any]] | None:
    """The metadata of the runs a searched, sorted container lists, in its
    order, asking the server for nothing else (the whole entries make it
    look up each run's structure: ~3x the time of the request).

    Built from the client's own search parameters; None where this tiled
    client does not have them (the caller then lists whole nodes).
    """
    try:
        from tiled.client.utils import MSGPACK_MIME_TYPE, handle_error

        url = node.item["links"]["search"]
        params = {**node._queries_as_params, **node._sorting_params, "fields": "metadata"}
        http = node.context.http_client
    except (AttributeError, ImportError, KeyError, TypeError):
        return None

    def pages() -> Iterator[dict[str, Any]]:
        # Paged by offset here: with fields=metadata the server does not
        # count the search, and its "next" links end early.
        wanted = None if stop is None else stop - skip
        offset, given = skip, 0
        headers = {"Accept": MSGPACK_MIME_TYPE}
        while True:
            page_params: dict[str, Any] = {**params, "page[offset]": offset}
            if wanted is not None and wanted - given < _SMALL_PAGE:
                # Else the server's own page size (it caps what may be asked).
                page_params["page[limit]"] = wanted - given
            response = http.get(url, params=page_params, headers=headers)
            content = handle_error(response).json()
            data = content["data"]
            for item in data:
                yield plain(item["attributes"].get("metadata") or {})
                given += 1
                if wanted is not None and given >= wanted:
                    return
            offset += len(data)
            if not data or len(data) < _page_size(content, page_params):
                return

    return pages()


def _page_size(content: Mapping[str, Any], params: Mapping[str, Any]) -> int:
    """How many entries the server put in a full page (from the page's own
    link), so that a shorter page is known to be the last."""
    link = (content.get("links") or {}).get("self") or ""
    given = parse_qs(urlsplit(link).query).get("page[limit]")
    limit: Any = given[0] if given else params.get("page[limit]")
    try:
        return int(limit)
    except (TypeError, ValueError):
        return 1  # unknown: only an empty page ends the listing
