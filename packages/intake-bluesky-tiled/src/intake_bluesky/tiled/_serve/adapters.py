"""tiled adapters over any intake-bluesky catalog (read-only).

The tree has the layout databroker 2 serves from MongoDB, which
bluesky-tiled-plugins' client classes read (``BlueskyRunV2Mongo``,
``BlueskyEventStreamV2Mongo``)::

    /                       CatalogOfBlueskyRuns 1   runs keyed by start uid
    /<uid>                  BlueskyRun 1             metadata: start, stop, summary
    /<uid>/<stream>         BlueskyEventStream 1     metadata: descriptors, stream_name
    /<uid>/<stream>/data              xarray_dataset  stream.to_dask(): one array per field
    /<uid>/<stream>/timestamps        xarray_dataset  stream.timestamps
    /<uid>/<stream>/config/<device>   xarray_dataset  stream.config[device]
    /<uid>/<stream>/config_timestamps/<device>

Arrays are the dask arrays of ``to_dask()``, served chunk by chunk as our
readers chunk them (stream data straight from the detector's HDF5 or TIFF
files); nothing is read until a client asks for a block. The run's document
stream is served by the ``/documents`` route (:mod:`.documents`).

Blocking work (searches, opening runs, reading chunks) runs in worker
threads, never on the server's event loop, so one slow request does not
stall the others. Opened runs are kept in a small cache shared by every
search of one tree: tiled walks the tree from its root on every request,
and a finished run does not change.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_registry, example_runs
>>> cat = BlueskyInMemoryCatalog(**example_registry("/tmp/intake-bluesky-doctest"))
>>> for docs in example_runs("/tmp/intake-bluesky-doctest"):
...     cat.ingest(docs)
>>> tree = CatalogAdapter(cat)
>>> len(tree), [s.name for s in tree.specs]
(5, ['CatalogOfBlueskyRuns'])
>>> run = tree[list(cat)[-1]]
>>> run.metadata()["start"]["plan_name"], list(run)
('fly', ['primary'])
>>> sorted(run["primary"])
['config', 'config_timestamps', 'data', 'timestamps']
>>> run["primary"]["data"]["x"].read().tolist()
[0.1, 0.2, 0.30000000000000004, 0.4]
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import dask
import dask.array
import numpy as np
import xarray as xr
from fastapi import HTTPException

from intake_bluesky.core import BlueskyCatalog, BlueskyEventStream, BlueskyRun
from tiled.adapters.array import ArrayAdapter
from tiled.adapters.xarray import DatasetAdapter
from tiled.ndslice import NDBlock, NDSlice
from tiled.queries import QueryValueError
from tiled.query_registration import QueryTranslationRegistry
from tiled.server.core import NoEntry
from tiled.structures.core import Spec, StructureFamily
from tiled.utils import UnsupportedQueryType

__all__ = [
    "CatalogAdapter",
    "LazyArrayAdapter",
    "RunAdapter",
    "StreamAdapter",
    "dataset_adapter",
    "run_summary",
]

CATALOG_SPEC = Spec("CatalogOfBlueskyRuns", version="1")
RUN_SPEC = Spec("BlueskyRun", version="1")
STREAM_SPEC = Spec("BlueskyEventStream", version="1")

#: The order runs are listed in: ours (start time, oldest first), under the
#: name of the metadata key tiled clients sort on.
DEFAULT_SORTING = [("start.time", 1)]
#: Sort keys that mean "our order" (tiled's "_" is "as given").
_NATURAL_KEYS = {"", "_", "time", "start.time"}


def _thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking catalog work off the event loop (an awaitable)."""
    return anyio.to_thread.run_sync(func, *args)


class _Container:
    """What tiled's server asks of a container, with its paging off the
    event loop. Subclasses give ``_keys_slice``/``_items_slice`` (positions
    in the node's order, ``reverse`` for tiled's reversed sorting) and
    ``__getitem__``."""

    structure_family = StructureFamily.container
    specs: list[Spec] = []
    _reverse = False

    def structure(self) -> None:
        # Containers describe themselves by count and contents, which the
        # server asks for separately.
        return None

    def metadata(self) -> dict:
        return {}

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys_slice(0, None))

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def keys(self) -> list[str]:
        return list(self)

    def _keys_slice(self, offset: int, limit: int | None) -> list[str]:
        return [key for key, _ in self._items_slice(offset, limit)]

    def _items_slice(self, offset: int, limit: int | None) -> list[tuple[str, Any]]:
        raise NotImplementedError

    # --- the async interface tiled's server prefers
    async def exact_len(self) -> int:
        return int(await _thread(self.__len__))

    async def lookup_adapter(self, segments: Sequence[str]) -> Any:
        def walk() -> Any:
            node: Any = self
            for segment in segments:
                try:
                    node = node[segment]
                except KeyError:
                    # What tiled's server answers with 404.
                    raise NoEntry(list(segments)) from None
            return node

        return await _thread(walk)

    async def cursor_for_offset(self, offset: int) -> None:
        # Offsets only: our stores page by skip/limit.
        return None

    async def keys_range(self, offset: int, limit: int) -> list[str]:
        return list(await _thread(self._keys_slice, offset, limit))

    async def items_range(self, offset: int, limit: int) -> list[tuple[str, Any]]:
        return list(await _thread(self._items_slice, offset, limit))

    async def keys_page(self, cursor: None, limit: int) -> tuple[list[str], None]:
        return await self.keys_range(0, limit), None

    async def items_page(self, cursor: None, limit: int) -> tuple[list[tuple[str, Any]], None]:
        return await self.items_range(0, limit), None


class _FixedContainer(_Container):
    """A container of a few named children, each built when first asked for."""

    def __init__(
        self,
        builders: Callable[[], Mapping[str, Callable[[], Any]]],
        *,
        metadata: Callable[[], dict] | dict | None = None,
        specs: list[Spec] | None = None,
        keep: bool = True,
    ):
        self._builders = builders
        self._builders_cache: Mapping[str, Callable[[], Any]] | None = None
        self._metadata = metadata
        self.specs = list(specs or [])
        self._keep = keep
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _children(self) -> Mapping[str, Callable[[], Any]]:
        if self._builders_cache is None:
            self._builders_cache = self._builders()
        return self._builders_cache

    def metadata(self) -> dict:
        if callable(self._metadata):
            self._metadata = self._metadata()
        return dict(self._metadata or {})

    def __len__(self) -> int:
        return len(self._children())

    def __getitem__(self, key: str) -> Any:
        builders = self._children()
        if key not in builders:
            raise KeyError(key)
        with self._lock:
            if key in self._built:
                return self._built[key]
        child = builders[key]()
        if self._keep:
            with self._lock:
                child = self._built.setdefault(key, child)
        return child

    def _items_slice(self, offset: int, limit: int | None) -> list[tuple[str, Any]]:
        keys = list(self._children())
        if self._reverse:
            keys.reverse()
        stop = None if limit is None else offset + limit
        return [(key, self[key]) for key in keys[offset:stop]]

    def _keys_slice(self, offset: int, limit: int | None) -> list[str]:
        keys = list(self._children())
        if self._reverse:
            keys.reverse()
        stop = None if limit is None else offset + limit
        return keys[offset:stop]

    @property
    def sorting(self) -> list[tuple[str, int]]:
        return [("_", -1 if self._reverse else 1)]

    def sort(self, sorting: Sequence[tuple[str, int]]) -> _FixedContainer:
        try:
            reverse = _natural_direction(sorting, "these entries") < 0
        except QueryValueError as err:
            raise _bad_request(err) from None
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._reverse = reverse
        return new

    def search(self, query: Any) -> _FixedContainer:
        raise QueryValueError(
            "Only the catalog of runs can be searched; runs and streams hold fixed entries."
        )


def _bad_request(err: Exception) -> HTTPException:
    # tiled's server answers a QueryValueError raised by a search with 400,
    # but not one raised by a sort.
    return HTTPException(status_code=400, detail=str(err))


def _natural_direction(sorting: Sequence[tuple[str, int]], what: str) -> int:
    """1 or -1 for a sorting that asks for the natural order (or its reverse)."""
    (key, direction), *rest = list(sorting) or [("_", 1)]
    if rest or key not in _NATURAL_KEYS:
        raise QueryValueError(f"{what} are kept in one order only; sort by '_' (or '-_').")
    return -1 if int(direction) < 0 else 1


# --------------------------------------------------------------------- arrays
#: The whole array (tiled's default slice).
_WHOLE = NDSlice(...)


class LazyArrayAdapter(ArrayAdapter):
    """An array adapter over a dask (or numpy) array, computing only the
    block asked for, in the calling thread (no nested dask thread pool per
    request)."""

    def _compute(self, array: Any) -> np.ndarray:
        if isinstance(array, dask.array.Array):
            return np.asarray(array.compute(scheduler="synchronous"))
        return np.asarray(array)

    def read(self, slice: NDSlice = _WHOLE) -> np.ndarray:
        array = self._array
        if slice:
            array = array[tuple(slice)]
        return self._compute(array)

    def read_block(self, block: NDBlock, slice: NDSlice = _WHOLE) -> np.ndarray:
        array = self._array[tuple(block.slice_from_chunks(self._structure.chunks))]
        if slice:
            array = array[tuple(slice)]
        return self._compute(array)


def _plain(value: Any) -> Any:
    """A JSON-able copy of an attribute value (numpy scalars and arrays)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def dataset_adapter(dataset: xr.Dataset) -> DatasetAdapter:
    """An ``xarray_dataset`` node over a (dask-backed) Dataset: one array per
    data variable, then one per coordinate, as tiled's xarray client reads.

    Unlike ``DatasetAdapter.from_dataset``, a dask variable keeps its chunks
    and is computed block by block in the requesting thread; a variable of
    Python objects (strings) is turned into a fixed-width string array, as
    tiled requires.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"x": ("time", np.arange(3.0))}, coords={"time": [1.0, 2.0, 3.0]})
    >>> node = dataset_adapter(ds.chunk({"time": 2}))
    >>> list(node), node["x"].structure().chunks
    (['x', 'time'], ((2, 1),))
    >>> node["x"].read_block(NDBlock((1,))).tolist()
    [2.0]
    """
    arrays: dict[str, LazyArrayAdapter] = {}
    for name in itertools.chain(dataset.data_vars, dataset.coords):
        variable = dataset[name].variable
        data = variable.data
        if data.dtype == object:
            # tiled serves fixed-width dtypes only; such columns are small
            # (strings of events), computed here once.
            data = np.asarray([str(v) for v in np.asarray(variable.values).ravel()]).reshape(
                variable.shape
            )
        spec = Spec("xarray_coord") if name in dataset.coords else Spec("xarray_data_var")
        arrays[str(name)] = LazyArrayAdapter.from_array(
            data,
            dims=tuple(str(d) for d in variable.dims),
            metadata={"attrs": _plain(dict(variable.attrs))},
            specs=[spec],
        )
    return DatasetAdapter(
        arrays,
        metadata={"attrs": _plain(dict(dataset.attrs))},
        specs=[Spec("xarray_dataset")],
    )


# -------------------------------------------------------------------- streams
def config_timestamps(stream: BlueskyEventStream, object_name: str) -> xr.Dataset:
    """One device's configuration timestamps, one row per descriptor (the
    ``config_timestamps`` part of databroker 2's layout)."""
    descriptors = stream.descriptors
    rows = [(d.get("configuration") or {}).get(object_name) or {} for d in descriptors]
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.get("timestamps") or {}))
    variables = {
        key: ("time", np.asarray([(r.get("timestamps") or {}).get(key, np.nan) for r in rows]))
        for key in keys
    }
    times = np.asarray([d.get("time", np.nan) for d in descriptors], dtype=float)
    ds = xr.Dataset(variables, coords={"time": ("time", times)})
    ds.attrs.update(stream_name=stream.name, object_name=object_name)
    return ds


class StreamAdapter(_FixedContainer):
    """One event stream: ``data``, ``timestamps``, ``config``,
    ``config_timestamps`` (spec ``BlueskyEventStream`` 1)."""

    def __init__(self, stream: BlueskyEventStream, name: str, *, keep: bool = True):
        self.stream = stream
        self.name = name
        super().__init__(
            self._parts,
            metadata=lambda: {"descriptors": list(stream.descriptors), "stream_name": name},
            specs=[STREAM_SPEC],
            keep=keep,
        )

    def _parts(self) -> dict[str, Callable[[], Any]]:
        stream = self.stream

        def device(part: str, obj: str) -> Callable[[], DatasetAdapter]:
            if part == "config":
                return lambda: dataset_adapter(stream.config[obj].read())
            return lambda: dataset_adapter(config_timestamps(stream, obj))

        def devices(part: str) -> Callable[[], _FixedContainer]:
            def builders() -> dict[str, Callable[[], Any]]:
                return {obj: device(part, obj) for obj in stream.config}

            return lambda: _FixedContainer(builders, keep=self._keep)

        return {
            "data": lambda: dataset_adapter(stream.to_dask()),
            "timestamps": lambda: dataset_adapter(stream.timestamps.to_dask()),
            "config": devices("config"),
            "config_timestamps": devices("config_timestamps"),
        }


# ----------------------------------------------------------------------- runs
def run_summary(start: Mapping[str, Any], stop: Mapping[str, Any] | None, streams: list[str]):
    """The ``summary`` of a run's metadata (what databroker 2 shows): uid,
    scan_id, plan_name, time and ISO datetime (UTC), duration (seconds, None
    while in progress), exit_status and stream names.

    Examples
    --------
    >>> summary = run_summary({"uid": "u", "time": 0.0}, {"time": 2.5}, ["primary"])
    >>> summary["duration"], summary["datetime"]
    (2.5, '1970-01-01T00:00:00+00:00')
    """
    begin = start.get("time")
    end = (stop or {}).get("time")
    return {
        "uid": start.get("uid"),
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "timestamp": begin,
        "datetime": (
            datetime.fromtimestamp(begin, UTC).isoformat()
            if isinstance(begin, int | float)
            else None
        ),
        "duration": (
            end - begin
            if isinstance(begin, int | float) and isinstance(end, int | float)
            else None
        ),
        "exit_status": (stop or {}).get("exit_status"),
        "stream_names": streams,
    }


class RunAdapter(_FixedContainer):
    """One run: its streams (spec ``BlueskyRun`` 1), metadata ``start``,
    ``stop`` and ``summary``; its documents through :meth:`documents`."""

    def __init__(self, run: BlueskyRun):
        self.run = run
        self.complete = run.metadata["stop"] is not None
        # A run in progress grows: its streams are built anew on each visit.
        super().__init__(self._streams, metadata=self._run_metadata, specs=[RUN_SPEC])
        self._keep = self.complete

    def _stream(self, name: str) -> Callable[[], StreamAdapter]:
        return lambda: StreamAdapter(self.run[name], name, keep=self._keep)

    def _streams(self) -> dict[str, Callable[[], Any]]:
        return {name: self._stream(name) for name in self.run}

    def _run_metadata(self) -> dict:
        start, stop = self.run.metadata["start"], self.run.metadata["stop"]
        return {"start": start, "stop": stop, "summary": run_summary(start, stop, list(self))}

    def documents(self, fill: bool = False) -> Iterator[tuple[str, dict]]:
        """The run's documents, ``canonical()`` order, in the form
        bluesky-tiled-plugins' ``documents()`` reads: a ``datum`` comes as a
        one-row ``datum_page`` (its client knows pages only); the rest as
        stored (filled with external data when ``fill``)."""
        import event_model

        for name, doc in self.run.canonical(fill="yes" if fill else "no"):
            if name == "datum":
                yield "datum_page", dict(event_model.pack_datum_page(cast(Any, doc)))
            else:
                yield name, doc


class _RunCache:
    """Opened runs by uid, the most recent ``size`` finished ones, each
    trusted for ``ttl`` seconds before the store is asked again whether it
    still holds the run (a deleted run disappears)."""

    def __init__(self, size: int = 64, ttl: float = 30.0):
        self.size, self.ttl = size, ttl
        self._runs: OrderedDict[str, tuple[float, RunAdapter]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uid: str) -> RunAdapter | None:
        with self._lock:
            hit = self._runs.get(uid)
            if hit is None:
                return None
            if time.monotonic() - hit[0] > self.ttl:
                del self._runs[uid]
                return None
            self._runs.move_to_end(uid)
            return hit[1]

    def put(self, uid: str, run: RunAdapter) -> None:
        if not run.complete:
            return
        with self._lock:
            self._runs[uid] = (time.monotonic(), run)
            self._runs.move_to_end(uid)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)


# -------------------------------------------------------------------- catalog
class CatalogAdapter(_Container):
    """An intake-bluesky catalog as tiled's root container of runs.

    Parameters
    ----------
    catalog : BlueskyCatalog
        Any intake-bluesky catalog (JSONL, msgpack, Mongo, TIFF, in-memory,
        tiled...). Only read.
    cache_size : int
        How many finished runs to keep opened between requests.
    cache_ttl : float
        Seconds an opened run is used before the store is asked again
        whether it still holds it.

    Notes
    -----
    Searches (tiled's and bluesky-tiled-plugins' queries, see
    :mod:`.search`) become searches of ``catalog``; sorting by ``start.<key>``
    is the store's sort; pages are the store's skip and limit.
    """

    specs = [CATALOG_SPEC]
    query_registry = QueryTranslationRegistry()
    register_query = query_registry.register

    def __init__(self, catalog: BlueskyCatalog, *, cache_size: int = 64, cache_ttl: float = 30.0):
        if not isinstance(catalog, BlueskyCatalog):
            raise TypeError(
                f"CatalogAdapter serves an intake-bluesky catalog, not {type(catalog).__name__}."
            )
        from .documents import router

        self.catalog = catalog
        self._root_query: dict = catalog.query
        self._sort: tuple[tuple[str, int], ...] | None = None
        self._reverse = False
        self._cache = _RunCache(cache_size, cache_ttl)
        self.include_routers = [router]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {type(self.catalog).__name__}>"

    # --- derived trees
    def _derived(self, **changes: Any) -> CatalogAdapter:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def with_query(self, query: Mapping[str, Any]) -> CatalogAdapter:
        """This tree narrowed by a Mongo query on start documents (raises
        ``QueryValueError`` for one the catalog refuses)."""
        try:
            narrowed = self.catalog.search(dict(query))
        except ValueError as err:
            raise QueryValueError(str(err)) from None
        return self._derived(catalog=narrowed)

    def search(self, query: Any) -> CatalogAdapter:
        try:
            return self.query_registry(query, self)
        except UnsupportedQueryType:
            # A 400 naming the query, not a server error.
            raise QueryValueError(
                f"{type(query).__name__} queries are not supported by a served intake-bluesky "
                "catalog."
            ) from None

    @property
    def sorting(self) -> list[tuple[str, int]]:
        if self._sort is None:
            return [("start.time", -1 if self._reverse else 1)]
        return [(f"start.{key}", direction) for key, direction in self._sort]

    def sort(self, sorting: Sequence[tuple[str, int]]) -> CatalogAdapter:
        items = [(str(k), int(d)) for k, d in sorting] or [("_", 1)]
        if len(items) == 1 and items[0][0] in _NATURAL_KEYS:
            return self._derived(_sort=None, _reverse=items[0][1] < 0)
        from .queries import start_key

        try:
            keys = tuple(
                (start_key(k), -1 if d < 0 else 1) for k, d in items if k not in ("", "_")
            )
        except QueryValueError as err:
            raise _bad_request(err) from None
        # Ties keep our order (start time).
        if not any(k == "time" for k, _ in keys):
            keys += (("time", 1),)
        return self._derived(_sort=keys, _reverse=False)

    # --- size and paging
    def __len__(self) -> int:
        return len(self.catalog)

    def _starts(self, offset: int, limit: int | None) -> list[Any]:
        """Start documents of the runs at these positions, in this tree's order."""
        driver, query = self.catalog.driver, self.catalog.query
        if self._sort is not None:
            return list(driver.search(query, sort=self._sort, skip=offset, limit=limit))
        if not self._reverse:
            return list(driver.search(query, skip=offset, limit=limit))
        # Newest first: the same runs as ours, read backwards (so that
        # tiled's c[-1] is our cat[-1], even among runs started at the same
        # time).
        total = len(self.catalog)
        end = max(total - offset, 0)
        begin = 0 if limit is None else max(end - limit, 0)
        if end <= begin:
            return []
        return list(driver.search(query, skip=begin, limit=end - begin))[::-1]

    def _keys_slice(self, offset: int, limit: int | None) -> list[str]:
        return [start["uid"] for start in self._starts(offset, limit)]

    def _items_slice(self, offset: int, limit: int | None) -> list[tuple[str, Any]]:
        out = []
        for start in self._starts(offset, limit):
            try:
                out.append((start["uid"], self._open(start["uid"], checked=True)))
            except KeyError:
                continue  # deleted between the listing and the opening
        return out

    # --- runs
    def _holds(self, uid: str) -> bool:
        query: dict = {"uid": uid}
        if self.catalog.query:
            query = {"$and": [self.catalog.query, query]}
        return any(True for _ in self.catalog.driver.search(query, limit=1))

    def _open(self, uid: str, *, checked: bool = False) -> RunAdapter:
        cached = self._cache.get(uid)
        if cached is not None and (checked or self.catalog.query == self._root_query):
            # A cached run was in the root catalog moments ago; a narrowed
            # tree asks whether it is among its results.
            return cached
        if not checked and not self._holds(uid):
            raise KeyError(uid)
        if cached is not None:
            return cached
        # The catalog's own opener applies its handler registry, root_map
        # and transforms, as cat[uid] does.
        adapter = RunAdapter(self.catalog._run(uid))
        self._cache.put(uid, adapter)
        return adapter

    def __getitem__(self, key: str) -> RunAdapter:
        if not isinstance(key, str) or not key:
            raise KeyError(key)
        return self._open(key)
