"""The intake catalogs of the two layouts: the core catalog over a Mongo driver."""

from __future__ import annotations

import time
from typing import Any

from intake_bluesky.core import BlueskyCatalog, with_catalog_parameters

from ._connect import DatabaseRef, redact_uri
from ._embedded import EmbeddedDriver
from ._normalized import NormalizedDriver

__all__ = ["BlueskyMongoCatalog", "BlueskyMongoEmbeddedCatalog"]


#: Up to this many runs, ``len()`` of a searched catalog fetches their uids
#: instead of counting them (see :meth:`_MongoCatalogMixin.__len__`).
LISTING_MAX = 10_000
#: How long (s) a listing fetched by ``len()`` answers the next iteration.
LISTING_FRESH = 1.0


class _MongoCatalogMixin:
    """Pickling and display without database objects or passwords; one
    query for ``list(cat.search(q))``.

    intake pickles, copies (``search`` makes a copy) and displays a catalog
    from its constructor arguments: a ``Database`` cannot be pickled and a URI
    may hold a password. Pickles carry the driver's :class:`DatabaseRef`
    instead (reconnects where it lands); YAML and describe show redacted URIs.
    """

    #: Constructor parameters holding a database, in positional order.
    _db_params: tuple[str, ...] = ()
    # Set by the catalog class this is mixed into.
    _query: dict
    driver: Any

    def __len__(self) -> int:
        """The number of runs. Of a searched catalog: its uids are fetched
        (one query; a server counts by scanning the same documents anyway)
        and kept for the iteration that ``list(cat)`` makes right after
        asking ``len()``, so listing a search costs one query, not a count
        and then a find. The whole collection is counted from its metadata."""
        query = self._query
        if not query:
            return int(self.driver.count(query))
        uids = self.driver.uids(query, limit=LISTING_MAX + 1)
        if len(uids) > LISTING_MAX:
            return int(self.driver.count(query))  # too many to send: count on the server
        self._listing = (time.monotonic(), dict(query), uids)
        return len(uids)

    def __iter__(self):
        # A generator: list() gets the iterator first and asks len() next,
        # so the listing is looked for at the first item, after len().
        # Only the listing of this very query, fetched just now (a search
        # copies the catalog's attributes; new runs must show up later).
        listing = self.__dict__.pop("_listing", None)
        if listing is not None:
            fetched, query, uids = listing
            if query == self._query and time.monotonic() - fetched <= LISTING_FRESH:
                yield from uids
                return
        yield from super().__iter__()

    def _db_refs(self) -> dict[str, DatabaseRef]:
        raise NotImplementedError

    def __getstate__(self):
        state = super().__getstate__()
        refs = self._db_refs()
        args = list(state["args"])
        for i, param in enumerate(self._db_params[: len(args)]):
            args[i] = refs[param]
        kwargs = dict(state["kwargs"])
        for param in self._db_params[len(state["args"]) :]:
            if param in kwargs and kwargs[param] is not None:
                kwargs[param] = refs[param]
        # A searched catalog is a copy whose query was narrowed after
        # construction: carry the current one.
        if self._query:
            kwargs["query"] = dict(self._query)
        state["args"], state["kwargs"] = args, type(state["kwargs"])(kwargs)
        return state

    def _yaml(self):
        data = super()._yaml()
        for source in data.get("sources", {}).values():
            args = source.get("args", {})
            for param in self._db_params:
                if param in args and args[param] is not None:
                    args[param] = _shown(args[param])
        return data


def _shown(value) -> str:
    if isinstance(value, DatabaseRef):
        return value.describe()
    if isinstance(value, str):
        return redact_uri(value)
    try:
        return DatabaseRef(value).describe()
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"


@with_catalog_parameters
class BlueskyMongoCatalog(_MongoCatalogMixin, BlueskyCatalog):
    """A catalog of bluesky runs in MongoDB, normalized layout (suitcase-mongo).

    Parameters
    ----------
    metadatastore_db : str or pymongo.database.Database
        The database holding ``run_start``, ``run_stop``, ``event_descriptor``
        and ``event``: a URI that names it (``mongodb://host:27017/mds``) or a
        ``Database``. Prefer a URI when runs are read by dask.distributed
        workers in other processes: they reconnect with it.
    asset_registry_db : str or pymongo.database.Database, optional
        The database holding ``resource`` and ``datum`` (and
        ``stream_resource``/``stream_datum``); default: ``metadatastore_db``.
    server_selection_timeout_ms : int, optional
        How long to wait for a reachable server before failing with a clear
        error (default 5000 ms for URIs, unless the URI sets
        ``serverSelectionTimeoutMS``).
    {catalog_parameters}

    See Also
    --------
    intake_bluesky.core.BlueskyCatalog : search, lookup and the run model.
    create_indexes : the indexes that make these reads fast.

    Notes
    -----
    Searching, counting, sorting and paging run on the server; so do field
    selection (``include``/``exclude``) and row windows of ``to_dask()``
    chunks. Passwords in URIs never appear in reprs, YAML or errors.

    Examples
    --------
    >>> import mongomock
    >>> cat = BlueskyMongoCatalog(mongomock.MongoClient()["mds"])
    >>> len(cat)
    0
    """

    _db_params = ("metadatastore_db", "asset_registry_db")

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store`` is a MongoDB URI (``mongodb://``, ``mongodb+srv://``).

        This catalog recognises MongoDB URIs for both layouts: its
        :meth:`open_store` tells which one the database holds.
        """
        from ._layout import is_mongo_uri  # _layout builds these catalogs

        return is_mongo_uri(store)

    @classmethod
    def open_store(cls, store, *, layout=None, assets=None, **common):
        """The catalog of the database ``store``, a MongoDB URI, names: in
        ``layout`` (``"normalized"``, ``"embedded"``), or the layout the
        database holds runs in. ``assets``: the asset registry's URI
        (normalized layout). A :class:`BlueskyMongoEmbeddedCatalog` if the
        layout is embedded."""
        from ._layout import open_uri

        return open_uri(store, layout=layout, assets=assets, **common)

    def __init__(
        self,
        metadatastore_db,
        asset_registry_db=None,
        *,
        server_selection_timeout_ms: int | None = None,
        **common,
    ):
        driver = NormalizedDriver(
            metadatastore_db,
            asset_registry_db,
            server_selection_timeout_ms=server_selection_timeout_ms,
        )
        super().__init__(driver, **common)

    def _db_refs(self):
        return {"metadatastore_db": self.driver.mds, "asset_registry_db": self.driver.assets}


@with_catalog_parameters
class BlueskyMongoEmbeddedCatalog(_MongoCatalogMixin, BlueskyCatalog):
    """A catalog of bluesky runs in MongoDB, embedded layout (suitcase-mongo).

    Parameters
    ----------
    datastore_db : str or pymongo.database.Database
        The database holding ``header``, ``event`` and ``datum``: a URI that
        names it (``mongodb://host:27017/datastore``) or a ``Database``.
        Prefer a URI when runs are read by dask.distributed workers.
    server_selection_timeout_ms : int, optional
        How long to wait for a reachable server before failing with a clear
        error (default 5000 ms for URIs, unless the URI sets
        ``serverSelectionTimeoutMS``).
    {catalog_parameters}

    See Also
    --------
    intake_bluesky.core.BlueskyCatalog : search, lookup and the run model.
    create_embedded_indexes : the indexes that make these reads fast.

    Notes
    -----
    Queries address start documents as on every backend (``{"scan_id": 3}``);
    they are rewritten to the ``header.start`` array (``start.scan_id``) for
    every operator, including inside ``$and``/``$or``/``$nor``.

    Examples
    --------
    >>> import mongomock
    >>> cat = BlueskyMongoEmbeddedCatalog(mongomock.MongoClient()["datastore"])
    >>> len(cat.search({"plan_name": "scan"}))
    0
    """

    _db_params = ("datastore_db",)

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """False: :class:`BlueskyMongoCatalog` recognises MongoDB URIs and
        tells the layout; this catalog opens one when named."""
        return False

    @classmethod
    def open_store(cls, store, *, layout=None, assets=None, **common):
        """The catalog of the database ``store``, a MongoDB URI, names, read
        in the embedded layout."""
        from ._layout import open_uri

        if layout not in (None, "embedded"):
            raise ValueError(
                f"The embedded layout's catalog cannot read layout={layout!r} (--backend "
                f"mongo_embedded contradicts --layout {layout})."
            )
        return open_uri(store, layout="embedded", assets=assets, **common)

    def __init__(self, datastore_db, *, server_selection_timeout_ms: int | None = None, **common):
        driver = EmbeddedDriver(
            datastore_db, server_selection_timeout_ms=server_selection_timeout_ms
        )
        super().__init__(driver, **common)

    def _db_refs(self):
        return {"datastore_db": self.driver.db}
