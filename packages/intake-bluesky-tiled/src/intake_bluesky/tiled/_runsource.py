"""One run kept in tiled, read as documents (the core's RunSource).

Each read is a request to the server: the run's node (start and stop), its
streams' nodes (descriptors) and each stream's children (the event table,
internal arrays, external data keys with their files) in one listing of
the run's descendants (or, on servers without it, one listing of the
streams and one per stream). What a finished run holds never changes, so it
is fetched once; a run still being written is read again on each access.

External data is read one of two ways, chosen per run (``data_access``):

* ``"direct"``: the files the data sources register (``file://`` assets),
  after ``root_map``, opened by the installed stream readers
  (intake-bluesky-hdf5, -tiff): no server round trip;
* ``"http"``: the rows fetched through tiled's array endpoints;
* ``"auto"`` (default): direct when every registered file of the run exists
  on this machine, else http.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from intake_bluesky.core.driver import RunSourceBase

from ._connect import TiledRef
from ._layout import (
    INTERNAL_TABLE,
    EventUids,
    descriptors_of_stream,
    event_uid,
    plain,
    stream_resource_uid,
)
from ._reader import TiledArrayReader

if TYPE_CHECKING:
    from event_model.documents import (
        DatumPage,
        EventDescriptor,
        EventPage,
        Resource,
        RunStart,
        RunStop,
        StreamDatum,
        StreamResource,
    )

__all__ = ["DATA_ACCESS", "TiledRunSource"]

#: The ways external data can be read (see the module docstring).
DATA_ACCESS = ("auto", "direct", "http")


class _Stream:
    """What one stream node holds, fetched in one listing."""

    def __init__(self, run_uid: str, name: str, metadata: Mapping[str, Any]) -> None:
        self.name = name
        self.descriptors = descriptors_of_stream(run_uid, name, metadata)
        self.table: Any = None
        #: data key -> (array client, structure) of internal arrays
        self.internal_arrays: dict[str, Any] = {}
        #: data key -> (array client, data source) of external data keys
        self.external: dict[str, tuple[Any, Any]] = {}


class TiledRunSource(RunSourceBase):
    """One run in a tiled server, in TiledWriter's layout.

    Parameters
    ----------
    ref : TiledRef
        The container of runs.
    uid : str
        The run's start uid (its key in the container).
    metadata : dict, optional
        The run node's metadata (``start``, ``stop``), if already fetched.
    data_access : {"auto", "direct", "http"}
        How external data is read.
    root_map : dict, optional
        Old root -> new root for the registered files (``"auto"`` checks
        files after mapping).
    """

    def __init__(
        self,
        ref: TiledRef,
        uid: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        data_access: str = "auto",
        root_map: Mapping[str, str] | None = None,
    ) -> None:
        if data_access not in DATA_ACCESS:
            raise ValueError(f"data_access must be one of {DATA_ACCESS}, not {data_access!r}.")
        self.ref = ref
        self.uid = uid
        self.data_access = data_access
        self.root_map = dict(root_map or {})
        self._metadata = dict(metadata) if metadata is not None else None
        self._init_caches()

    def _init_caches(self) -> None:
        self._lock = threading.RLock()
        self._node: Any = None
        self._streams: dict[str, _Stream] | None = None
        self._tables: dict[str, Any] = {}
        self._access: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "uid": self.uid,
            "data_access": self.data_access,
            "root_map": self.root_map,
            "_metadata": self._metadata,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def __repr__(self) -> str:
        return f"TiledRunSource({self.ref.describe()!r}, uid={self.uid!r})"

    # --- nodes -------------------------------------------------------------
    def _run_node(self) -> Any:
        if self._node is None:
            self._node = self.ref.node()[self.uid]
        return self._node

    def _run_metadata(self) -> dict[str, Any]:
        finished = self._metadata is not None and self._metadata.get("stop") is not None
        if self._metadata is None or not finished:
            with self._present():
                return self._fetch_metadata()
        return self._metadata

    def _fetch_metadata(self) -> dict[str, Any]:
        node = self._run_node()
        if self._metadata is not None:
            node.refresh()  # a run being written: its stop may have come
        metadata: dict[str, Any] = plain(node.metadata)
        self._metadata = metadata
        return metadata

    def _finished(self) -> bool:
        return self._metadata is not None and self._metadata.get("stop") is not None

    @contextlib.contextmanager
    def _present(self) -> Iterator[None]:
        """A node of the run missing on the server (HTTP 404, or a key the
        client listed a moment before and then could not find) means the run
        was deleted or is being written again: a KeyError naming the run,
        never documents of two versions."""
        try:
            yield
        except Exception as err:
            response = getattr(err, "response", None)
            if not isinstance(err, KeyError) and getattr(response, "status_code", None) != 404:
                raise
            raise KeyError(
                f"Run {self.uid!r} is no longer in {self.ref.describe()} as it was read: it "
                "was deleted or is being written again. Open it again from the catalog."
            ) from None

    def _stream_map(self) -> dict[str, _Stream]:
        with self._lock, self._present():
            if self._streams is not None and self._finished():
                return self._streams
            self._run_metadata()
            run = self._run_node()
            tree = _deep_listing(run)
            if tree is None:
                tree = [(name, node, node.items()) for name, node in run.items()]
            streams: dict[str, _Stream] = {}
            for name, node, children in tree:
                if node.item["attributes"]["structure_family"] not in ("container", "composite"):
                    continue
                stream = _Stream(self.uid, name, node.metadata)
                for key, child in children:
                    family = child.item["attributes"]["structure_family"]
                    if key == INTERNAL_TABLE and family == "table":
                        stream.table = child
                    elif family == "array":
                        sources = child.data_sources() or []
                        if sources and getattr(sources[0], "management", None) == "external":
                            stream.external[key] = (child, sources[0])
                        else:
                            stream.internal_arrays[key] = child
                _mark_streamed(stream)
                streams[name] = stream
            self._streams = streams
            self._tables = {}
            return streams

    def _stream_of(self, descriptor_uid: str) -> tuple[_Stream, int]:
        for stream in self._stream_map().values():
            for i, descriptor in enumerate(stream.descriptors):
                if descriptor["uid"] == descriptor_uid:
                    return stream, i
        raise KeyError(f"Run {self.uid!r} has no descriptor {descriptor_uid!r}.")

    # --- documents ---------------------------------------------------------
    def start(self) -> RunStart:
        start: RunStart = self._run_metadata()["start"]
        return start

    def stop(self) -> RunStop | None:
        stop: RunStop | None = self._run_metadata().get("stop")
        return stop

    def descriptors(self) -> list[EventDescriptor]:
        out = [d for s in self._stream_map().values() for d in s.descriptors]
        out.sort(key=lambda d: d.get("time", 0))
        return out  # type: ignore[return-value]

    def _table(self, stream: _Stream) -> Any:
        """The stream's event table as a pandas DataFrame (cached)."""
        table = self._tables.get(stream.name)
        if table is None:
            if stream.table is None:
                return None
            with self._present():
                table = _read_busy_table(stream.table)
            if self._finished():
                self._tables[stream.name] = table
        return table

    def _rows_of(self, stream: _Stream, index: int, times: np.ndarray) -> tuple[int, int]:
        """The table rows of the stream's ``index``-th descriptor: events
        belong to the last descriptor older than them."""
        if len(stream.descriptors) == 1:
            return 0, len(times)
        bounds = [d.get("time", 0) for d in stream.descriptors[1:]]
        cuts = [0, *np.searchsorted(times, bounds, side="left").tolist(), len(times)]
        return int(cuts[index]), int(cuts[index + 1])

    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        stream, index = self._stream_of(descriptor_uid)
        descriptor = stream.descriptors[index]
        table = self._table(stream)
        if table is None or not len(table):
            return
        times = table["time"].to_numpy()
        first, last = self._rows_of(stream, index, times)
        if rows is not None:
            lo, hi = rows
            first, last = first + max(lo, 0), min(first + hi, last)
        if last <= first:
            return
        keys = [k for k, dk in descriptor["data_keys"].items() if "external" not in dk]
        if fields is not None:
            wanted = set(fields)
            keys = [k for k in keys if k in wanted]
        data: dict[str, Any] = {}
        timestamps: dict[str, Any] = {}
        for key in keys:
            if key in table.columns:
                data[key] = _column(table[key], first, last)
            elif key in stream.internal_arrays:
                data[key] = np.asarray(stream.internal_arrays[key].read(slice=np.s_[first:last]))
            else:
                continue
            ts = f"ts_{key}"
            timestamps[key] = (
                _column(table[ts], first, last) if ts in table.columns else times[first:last]
            )
        seq_num = table["seq_num"].to_numpy()[first:last]
        page = {
            "descriptor": descriptor_uid,
            # Rebuilt when asked for: readers of columns (fields given) never
            # ask; documents (canonical) get them as a list.
            "uid": (
                [event_uid(self.uid, stream.name, s) for s in seq_num.tolist()]
                if fields is None
                else EventUids(self.uid, stream.name, seq_num)
            ),
            "seq_num": seq_num,
            "time": times[first:last],
            "data": data,
            "timestamps": timestamps,
            "filled": {},
        }
        yield page  # type: ignore[misc]

    def event_count(self, descriptor_uid: str) -> int:
        stream, index = self._stream_of(descriptor_uid)
        table = self._table(stream)
        if table is None:
            return 0
        first, last = self._rows_of(stream, index, table["time"].to_numpy())
        return last - first

    def resources(self) -> list[Resource]:
        # TiledWriter turns resources into stream_resources before writing.
        return []

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        return iter(())

    def stream_resources(self) -> list[StreamResource]:
        out = []
        for stream in self._stream_map().values():
            for key, (_, source) in stream.external.items():
                out.append(self._stream_resource(stream, key, source))
        return out  # type: ignore[return-value]

    def _stream_resource(self, stream: _Stream, key: str, source: Any) -> dict[str, Any]:
        assets = list(source.assets or [])
        uri = assets[0].data_uri if assets else ""
        return {
            "uid": stream_resource_uid(self.uid, stream.name, key),
            "data_key": key,
            "mimetype": source.mimetype,
            "uri": uri,
            "parameters": dict(source.parameters or {}),
            "run_start": self.uid,
        }

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        out = []
        for stream in self._stream_map().values():
            first = stream.descriptors[0]["uid"]
            if descriptor_uid is not None and descriptor_uid != first:
                continue
            for key, (node, _) in stream.external.items():
                n = int(node.item["attributes"]["structure"]["shape"][0])
                sr_uid = stream_resource_uid(self.uid, stream.name, key)
                out.append(
                    {
                        "uid": f"{sr_uid}/0",
                        "stream_resource": sr_uid,
                        "descriptor": first,
                        "indices": {"start": 0, "stop": n},
                        "seq_nums": {"start": 1, "stop": n + 1},
                    }
                )
        return out  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """Shown in ``run.describe()['args']``: where the run is and how its
        external data is read."""
        return {"tiled": self.ref.describe(), "data_access": self.access()}

    # --- external data -----------------------------------------------------
    def access(self) -> str:
        """``"direct"`` or ``"http"``: how this run's external data is read."""
        if self._access is None:
            if self.data_access != "auto":
                self._access = self.data_access
            else:
                self._access = "direct" if self._files_reachable() else "http"
        return self._access

    def _files_reachable(self) -> bool:
        for stream in self._stream_map().values():
            for _, source in stream.external.values():
                assets = list(source.assets or [])
                if len(assets) != 1:
                    return False
                path = _local_path(assets[0].data_uri, self.root_map)
                if path is None or not os.path.exists(path):
                    return False
        return True

    def stream_reader(self, stream_resource: Mapping[str, Any], data_key: Any) -> Any:
        """The reader of one stream_resource when it is read through tiled;
        None to let the core open the file with the installed stream reader."""
        if self.access() == "direct":
            return None
        node, stream = self._external_node(stream_resource)
        return TiledArrayReader(
            self.ref,
            [self.uid, stream, stream_resource["data_key"]],
            node.item["attributes"]["structure"],
        )

    def stream_chunk_rows(self, stream_resource: Mapping[str, Any], data_key: Any) -> int | None:
        """Rows per server chunk when read through tiled (None: ask the reader)."""
        if self.access() == "direct":
            return None
        node, _ = self._external_node(stream_resource)
        return TiledArrayReader.rows_per_chunk(node.item["attributes"]["structure"])

    def _external_node(self, stream_resource: Mapping[str, Any]) -> tuple[Any, str]:
        for stream in self._stream_map().values():
            entry = stream.external.get(stream_resource["data_key"])
            if entry is not None and stream_resource["uid"] == stream_resource_uid(
                self.uid, stream.name, stream_resource["data_key"]
            ):
                return entry[0], stream.name
        raise KeyError(
            f"Run {self.uid!r}: no array node in tiled for stream_resource "
            f"{stream_resource.get('uid')!r} ({stream_resource.get('data_key')!r})."
        )


#: HTTP answers of a server that has the deep listing's route but cannot
#: answer it for this node (the caller then lists level by level).
_NO_DEEP_LISTING = (400, 404, 405, 422, 501)


def _deep_listing(run: Any) -> list[tuple[str, Any, list[tuple[str, Any]]]] | None:
    """The run's children and their children (a stream's event table and
    arrays, with their data sources), in one listing of the run's
    descendants two levels down, where the level-by-level listing asks once
    for the run and once per stream.

    Each level comes in the order the level-by-level listing gives it (the
    server orders both by node). None when the server has no such listing
    (tiled before ``search_deep``) or refuses it for this node.
    """
    try:
        from tiled.client.utils import MSGPACK_MIME_TYPE, client_for_item, handle_error

        url = run.item["links"]["search_deep"]
        base = [*run.item["attributes"]["ancestors"], run.item["id"]]
        context, clients = run.context, run.structure_clients
    except (AttributeError, ImportError, KeyError, TypeError):
        return None
    params: dict[str, Any] = {"max_depth": 2, "include_data_sources": True}
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    first = True
    while next_url:
        # The server's "next" links carry the page only: the parameters go
        # with every page, beside the link's own (httpx replaces a URL's
        # query with the params given).
        query = {**parse_qs(urlparse(next_url).query), **params}
        response = context.http_client.get(
            next_url, params=query, headers={"Accept": MSGPACK_MIME_TYPE}
        )
        if first and response.status_code in _NO_DEEP_LISTING:
            return None
        content = handle_error(response).json()
        items.extend(content["data"])
        next_url = (content.get("links") or {}).get("next")
        first = False
    children: dict[str, list[tuple[str, Any]]] = {}
    tree: list[tuple[str, Any, list[tuple[str, Any]]]] = []
    for item in items:
        path = [*item["attributes"]["ancestors"], item["id"]]
        if path[: len(base)] != base:
            return None
        relative = path[len(base) :]
        client = client_for_item(context, clients, item, include_data_sources=True)
        if len(relative) == 1:
            children[relative[0]] = []
            tree.append((relative[0], client, children[relative[0]]))
        elif len(relative) == 2 and relative[0] in children:
            children[relative[0]].append((relative[1], client))
        else:
            return None  # a level this listing does not expect: list level by level
    return tree


#: Attempts at reading a table the server's SQLite store has locked.
_BUSY_ATTEMPTS = 8


def _read_busy_table(table: Any) -> Any:
    """The table's rows; asked again while the server's SQLite table store is
    locked by a writer (a run being written while it is followed)."""
    import time

    for attempt in range(_BUSY_ATTEMPTS):
        try:
            return table.read()
        except Exception as err:
            response = getattr(err, "response", None)
            text = f"{err} {getattr(response, 'text', '')}"
            if "database is locked" not in text or attempt == _BUSY_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _mark_streamed(stream: _Stream) -> None:
    """Data keys tiled keeps as external arrays are stream data now.

    TiledWriter turns a resource's datums into a stream of the files they
    named (an array node per data key) but leaves the descriptor's
    ``external: 'FILESTORE:'``: the events it keeps hold no datum ids for it.
    """
    for descriptor in stream.descriptors:
        data_keys = descriptor["data_keys"]
        for key in stream.external:
            data_key = data_keys.get(key)
            if data_key is not None and not str(data_key.get("external", "")).startswith(
                "STREAM:"
            ):
                data_keys[key] = {**data_key, "external": "STREAM:"}


def _column(series: Any, first: int, last: int) -> Any:
    values = series.to_numpy()[first:last]
    if values.dtype == object:
        # Short arrays are kept in the table as lists: give rows as lists,
        # which the core stacks with the declared dtype.
        return [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
    return values


def _local_path(uri: str, root_map: Mapping[str, str]) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return None
    if parsed.netloc not in ("", "localhost"):
        return None
    path = unquote(parsed.path)
    for old, new in root_map.items():
        old = old.rstrip("/")
        if path == old or path.startswith(old + "/"):
            return new.rstrip("/") + path[len(old) :]
    return path
