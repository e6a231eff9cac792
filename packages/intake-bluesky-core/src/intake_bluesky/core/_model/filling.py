"""Filling external data: resource/datum through handlers, stream_resource /
stream_datum through readers keyed by mimetype.

Handler protocol (the one databroker and area-detector-handlers use)::

    handler = HandlerClass(full_resource_path, **resource["resource_kwargs"])
    array = handler(**datum["datum_kwargs"])

Stream reader protocol (keyed by the stream_resource's ``mimetype``)::

    reader = ReaderClass(local_path, data_key=data_key, **stream_resource["parameters"])
    rows = reader(index_start, index_stop)   # shape (stop - start, *data_key["shape"])

* ``local_path``: the stream_resource ``uri`` (``file://host/abs/path``) as a
  local path, after ``root_map`` (a file, or a directory for file series);
* ``data_key``: the descriptor's data key of the stream_resource's
  ``data_key`` (``shape``, ``dtype_numpy``, ...), passed only to readers whose
  ``__init__`` names a ``data_key`` parameter; older readers are called
  ``ReaderClass(local_path, **parameters)`` and their result is reshaped to
  ``(n, *shape)`` when it holds exactly that many values (else an error);
* ``index_start``/``index_stop``: a stream_datum's ``indices``, in rows
  (one row = one ``seq_num``), not in frames of the file;
* rows not yet on disk: raise :class:`DataNotWrittenError`;
* optional ``reader.close()``, called when the run's filler is closed;
* optional classmethod ``ReaderClass.chunk_rows(data_key, parameters)``
  (opens nothing): rows per storage chunk; ``to_dask()`` chunks are whole
  multiples of it;
* optional ``reader.read_into(index_start, index_stop, out)``: the same rows
  written into ``out`` (a C-contiguous array of shape ``(stop - start,
  *shape)`` in the data key's dtype), returning True, or False when it
  cannot (then ``reader(start, stop)`` is called). ``to_dask()`` reads a
  whole stream's chunks into one buffer this way, so computing it costs no
  copy to join them.

Older stream_resources (event-model < 1.20) carry ``spec``/``root``/
``resource_path``/``resource_kwargs`` instead of ``mimetype``/``uri``/
``parameters``; they are looked up by ``spec`` the same way.

Handlers are found in the ``handler_registry`` passed to a catalog first,
then in the ``databroker.handlers`` entry point group; stream readers in the
registry (keys containing ``/``) then in ``intake_bluesky.stream_readers``.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from .._progress import progress
from .._registry import HANDLER_GROUP, READER_GROUP, entry_point_objects
from ..driver import RunSource
from ..errors import DataNotWrittenError, FillError, MissingExternalFileError, MissingHandlerError
from ..readers import entry_point_name
from .casting import lossless_cast

__all__ = [
    "Filler",
    "HandlerRegistry",
    "MissingHandlerError",
    "FillError",
    "MissingExternalFileError",
    "DataNotWrittenError",
]

# A user's document transform: the stored document in, the one to use out.
Transform = Callable[[Any], Mapping[str, Any]]


def _import(obj: Any) -> Any:
    if isinstance(obj, str):
        module, _, name = obj.replace(":", ".").rpartition(".")
        if not module:
            raise ValueError(f"Handler {obj!r} is not a dotted name like 'package.module.Class'.")
        return getattr(importlib.import_module(module), name)
    return obj


class HandlerRegistry:
    """Resolve resource specs and mimetypes to handler classes.

    An explicitly passed handler wins over one discovered from entry points.
    Picklable: classes travel by reference.

    Examples
    --------
    >>> reg = HandlerRegistry({"NPY_SEQ": "intake_bluesky.core.testing.NumpySeqHandler"})
    >>> reg.resolve("NPY_SEQ").__name__
    'NumpySeqHandler'
    """

    def __init__(self, explicit: Mapping[str, Any] | None = None) -> None:
        self.explicit = dict(explicit or {})

    def __repr__(self) -> str:
        return f"HandlerRegistry({sorted(self.explicit)})"

    def resolve(self, key: str) -> Any:
        """The handler or stream reader class registered for ``key``."""
        is_mimetype = "/" in key
        if key in self.explicit:
            try:
                return _import(self.explicit[key])
            except (ImportError, AttributeError, ValueError) as err:
                raise MissingHandlerError(
                    f"The handler given for {key!r}, {self.explicit[key]!r}, cannot be "
                    f"imported: {err}. Give a class or a dotted name 'package.module.Class'."
                ) from err
        group = READER_GROUP if is_mimetype else HANDLER_GROUP
        discovered = entry_point_objects(group)
        # Entry point names cannot hold '=' (importlib.metadata splits there):
        # 'multipart/related;type=image/tiff' registers as '...type%3Dimage/tiff'.
        for name in dict.fromkeys((key, entry_point_name(key))):
            if name in discovered:
                return discovered[name].load()
        what = "stream reader for mimetype" if is_mimetype else "handler for resource spec"
        raise MissingHandlerError(
            f"No {what} {key!r}. Pass one to the catalog, e.g. "
            f"handler_registry={{{key!r}: 'package.module.HandlerClass'}}, or install a package "
            f"that registers it in the {group!r} entry point group."
        )


def _as_path(root: str) -> str:
    """A ``root_map`` key or value as the path it names.

    The documents show stream data locations as URIs
    (``file://localhost/old/dir``); such a key means the folder ``/old/dir``,
    whatever the host, since locations are compared after the URI is made a
    path.
    """
    root = os.fspath(root)
    if root.startswith("file:"):
        parsed = urlparse(root)
        return unquote(parsed.path) or "/"
    return root


def _matches(path: str, old: str) -> bool:
    bare = old.rstrip("/")
    return path == (bare or "/") or path.startswith(bare + "/")


def _map_root(path: str, root_map: Mapping[str, str]) -> str:
    # Longest matching prefix wins, so nested roots can be remapped separately.
    roots = {_as_path(old): _as_path(new) for old, new in root_map.items()}
    for old in sorted(roots, key=len, reverse=True):
        if _matches(path, old):
            return roots[old].rstrip("/") + path[len(old.rstrip("/")) :]
    return path


def _unmapped_hint(root_map: Mapping[str, str], stored: Sequence[str]) -> str:
    """Name the ``root_map`` keys that match none of a run's stored locations."""
    unmatched = [old for old in root_map if not any(_matches(p, _as_path(old)) for p in stored)]
    if not unmatched:
        return ""
    return (
        f" root_map keys {unmatched} match no location this run's documents store; "
        f"they store {sorted(set(stored))} (a key must be one of these or a folder above it)."
    )


def resource_path(resource: Mapping[str, Any], root_map: Mapping[str, str]) -> str:
    """The local path of a resource, after ``root_map``."""
    root = resource.get("root") or ""
    path = resource["resource_path"]
    if root:
        root = _map_root(root, root_map)
        return os.path.join(root, path)
    return _map_root(path, root_map)


def stream_resource_path(stream_resource: Mapping[str, Any], root_map: Mapping[str, str]) -> str:
    uri = stream_resource.get("uri") or stream_resource.get("resource_path", "")
    parsed = urlparse(uri)
    path = unquote(parsed.path) if parsed.scheme in ("file", "") else uri
    if parsed.scheme == "" and stream_resource.get("root"):
        path = os.path.join(stream_resource["root"], path)
    return _map_root(path, root_map)


class Filler:
    """Loads external data of one run, caching one handler per resource.

    Parameters
    ----------
    source : RunSource
        Where the run's resources and datums are read from.
    registry : HandlerRegistry
    root_map : mapping, optional
        Old root -> new root, for data moved since it was written.
    transform_resource, transform_stream_resource : callable, optional
        Applied to every resource / stream_resource document before use.
    """

    def __init__(
        self,
        source: RunSource,
        registry: HandlerRegistry,
        root_map: Mapping[str, str] | None = None,
        transform_resource: Transform | None = None,
        transform_stream_resource: Transform | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.root_map = dict(root_map or {})
        self.transform_resource = transform_resource
        self.transform_stream_resource = transform_stream_resource
        self._init_caches()

    def _init_caches(self) -> None:
        # Opened handlers and readers: objects of the user's classes.
        self._handlers: dict[str, Any] = {}
        self._resources: dict[str, Mapping[str, Any]] | None = None
        self._stream_resources: dict[str, Mapping[str, Any]] | None = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_handlers", "_resources", "_stream_resources", "_lock"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_caches()

    # --- resource / datum ---------------------------------------------------
    def _resource(self, uid: str) -> Mapping[str, Any]:
        if self._resources is None:
            docs: Sequence[Mapping[str, Any]] = self.source.resources()
            if self.transform_resource is not None:
                docs = [self.transform_resource(d) for d in docs]
            self._resources = {d["uid"]: d for d in docs}
        try:
            return self._resources[uid]
        except KeyError:
            raise FillError(
                f"Run {self.source.uid!r}: datum refers to resource {uid!r}, which is not in "
                "the run. The run's storage is incomplete."
            ) from None

    def _handler(self, resource_uid: str) -> Any:
        handler = self._handlers.get(resource_uid)
        if handler is not None:
            return handler
        resource = self._resource(resource_uid)
        return self._open(
            resource_uid,
            resource["spec"],
            resource_path(resource, self.root_map),
            resource.get("resource_kwargs", {}),
            f"handler for resource {resource_uid!r} (spec {resource['spec']!r}",
            _stored_location(resource),
        )

    def _open(
        self, uid: str, key: str, path: str, kwargs: Mapping[str, Any], what: str, stored: str
    ) -> Any:
        """The handler or reader of one (stream) resource, opened once.

        ``stored`` says where the documents put the data (before root_map),
        so that an error lets the user write the root_map.
        """
        # One per resource even under a threaded dask compute.
        with self._lock:
            opened = self._handlers.get(uid)
            if opened is not None:
                return opened
            cls = self.registry.resolve(key)
            try:
                opened = cls(path, **kwargs)
            except Exception as err:
                raise _error_for(err)(
                    f"Run {self.source.uid!r}: {cls.__name__}, the {what}) failed to open "
                    f"{path!r}: {err!r}. {stored}{_ROOT_MAP_HINT}{self._unmapped()}"
                ) from err
            self._handlers[uid] = opened
            return opened

    def fill(self, datum_ids: Sequence[str], desc: str | None = None) -> list[Any]:
        """The loaded data of each datum id, in order (with a progress bar
        titled ``desc`` when given and someone watches)."""
        datum_ids = [str(d) for d in datum_ids]
        datums = self.source.datums(datum_ids)
        out: list[Any] = []
        steps = datum_ids if desc is None else progress(datum_ids, desc=desc, unit="frame")
        for datum_id in steps:
            datum = datums.get(datum_id)
            if datum is None:
                raise FillError(
                    f"Run {self.source.uid!r}: an event refers to datum {datum_id!r}, which is "
                    "not in the run's datums. The run's storage is incomplete."
                )
            handler = self._handler(datum["resource"])
            try:
                out.append(handler(**datum.get("datum_kwargs", {})))
            except Exception as err:
                hint = ""
                if isinstance(err, OSError):
                    resource = self._resource(datum["resource"])
                    hint = (
                        f" Path tried: {resource_path(resource, self.root_map)!r}. "
                        f"{_stored_location(resource)}{_ROOT_MAP_HINT}{self._unmapped()}"
                    )
                raise _error_for(err)(
                    f"Run {self.source.uid!r}: handler {type(handler).__name__} failed to load "
                    f"datum {datum_id!r} (kwargs {datum.get('datum_kwargs')}): {err!r}.{hint}"
                ) from err
        return out

    def fill_column(
        self,
        datum_ids: Sequence[str],
        dtype: np.dtype | None = None,
        *,
        field: str = "?",
        declared: str = "",
        desc: str | None = None,
    ) -> np.ndarray:
        """Loaded datums stacked along a new first axis.

        Cast to ``dtype`` only where no value changes (see :mod:`._casting`);
        ``desc`` labels a progress bar (None: none).
        """
        arrays = self.fill(datum_ids, desc)
        if not arrays:
            return np.empty((0,), dtype=dtype or float)
        stacked = np.stack([np.asarray(a) for a in arrays])
        column: np.ndarray = lossless_cast(
            stacked, dtype, run=self.source.uid, field=field, what=declared
        )
        return column

    # --- stream_resource / stream_datum -------------------------------------
    def _all_stream_resources(self) -> list[Mapping[str, Any]]:
        return list(self._stream_resources_by_uid().values())

    def _stream_resources_by_uid(self) -> dict[str, Mapping[str, Any]]:
        if self._stream_resources is None:
            docs: Sequence[Mapping[str, Any]] = self.source.stream_resources()
            if self.transform_stream_resource is not None:
                docs = [self.transform_stream_resource(d) for d in docs]
            self._stream_resources = {d["uid"]: d for d in docs}
        return self._stream_resources

    def stream_resource(self, uid: str) -> Mapping[str, Any]:
        """The stream_resource document ``uid`` of this run (transformed)."""
        try:
            return self._stream_resources_by_uid()[uid]
        except KeyError:
            raise FillError(
                f"Run {self.source.uid!r}: stream_datum refers to stream_resource {uid!r}, which "
                "is not in the run. The run's storage is incomplete."
            ) from None

    def _reader_key(self, sr: Mapping[str, Any]) -> str:
        key: str | None = sr.get("mimetype") or sr.get("spec")
        if not key:
            raise FillError(
                f"Run {self.source.uid!r}: stream_resource {sr.get('uid')!r} (data key "
                f"{sr.get('data_key')!r}) has neither 'mimetype' nor 'spec', so no reader can "
                "be chosen for it. Give it one with transforms={'stream_resource': func} (func "
                "returns the document with 'mimetype' set), or write the run again with "
                "event-model >= 1.20, which writes 'mimetype'."
            )
        return key

    def stream_chunk_rows(self, key: str, data_key: Mapping[str, Any]) -> int | None:
        """Rows per storage chunk of a stream field, from its reader class
        (no file opened); None when the reader does not say."""
        for sr in self._all_stream_resources():
            if sr.get("data_key") != key:
                continue
            own = getattr(self.source, "stream_chunk_rows", None)
            if own is not None:
                rows = own(sr, data_key)
                if rows:
                    return int(rows)
            try:
                cls = self.registry.resolve(self._reader_key(sr))
            except (FillError, KeyError):
                return None  # the error comes at compute, where data is read
            chunk_rows = getattr(cls, "chunk_rows", None)
            if chunk_rows is None:
                return None
            rows = chunk_rows(data_key, _parameters(sr))
            return int(rows) if rows else None
        return None

    def _reader(self, sr_uid: str, data_key: Mapping[str, Any]) -> Any:
        reader = self._handlers.get(sr_uid)
        if reader is not None:
            return reader
        sr = self.stream_resource(sr_uid)
        own = self._source_reader(sr, data_key)
        if own is not None:
            with self._lock:
                return self._handlers.setdefault(sr_uid, own)
        key = self._reader_key(sr)
        cls = self.registry.resolve(key)
        kwargs = dict(_parameters(sr))
        if _takes_data_key(cls):
            kwargs["data_key"] = data_key
        return self._open(
            sr_uid,
            key,
            stream_resource_path(sr, self.root_map),
            kwargs,
            f"reader for stream_resource {sr_uid!r} (data key {sr.get('data_key')!r}, "
            f"mimetype {key!r}",
            _stored_location(sr),
        )

    def _source_reader(self, sr: Mapping[str, Any], data_key: Mapping[str, Any]) -> Any:
        # A store that serves the arrays itself (a remote server whose files
        # this machine cannot reach) gives its own reader; None: the reader
        # registered for the mimetype opens the file.
        own = getattr(self.source, "stream_reader", None)
        return None if own is None else own(sr, data_key)

    def fill_stream(
        self,
        stream_datums: Sequence[Mapping[str, Any]],
        data_key: Mapping[str, Any],
        *,
        field: str = "?",
        out: np.ndarray | None = None,
        check: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> np.ndarray:
        """The rows of consecutive stream_datums of one data key, stacked:
        shape ``(rows, *data_key['shape'])``, dtype ``dtype_numpy`` (lossless).

        With ``out`` (shape ``(rows, *shape)``) the rows are written into it
        and it is returned: readers with ``read_into`` read straight into it;
        the rows other readers return go through ``check(rows, first_row)``,
        which gives them in ``out``'s dtype or raises.
        """
        shape = tuple(int(s) for s in data_key.get("shape") or ())
        dtype_numpy = data_key.get("dtype_numpy") or None
        dtype = np.dtype(dtype_numpy) if dtype_numpy else None
        parts: list[np.ndarray] = []
        at = 0  # rows of ``out`` written so far
        for sd in _coalesced(stream_datums):
            reader = self._reader(sd["stream_resource"], data_key)
            start, stop = sd["indices"]["start"], sd["indices"]["stop"]
            try:
                if out is not None:
                    target = out[at : at + (stop - start)]
                    read_into = getattr(reader, "read_into", None)
                    if read_into is not None and read_into(start, stop, target):
                        at += stop - start
                        continue
                rows = np.asarray(reader(start, stop))
            except FillError:
                raise
            except Exception as err:
                hint = ""
                if isinstance(err, OSError):
                    sr = self.stream_resource(sd["stream_resource"])
                    hint = (
                        f" Path tried: {stream_resource_path(sr, self.root_map)!r}. "
                        f"{_stored_location(sr)}{_ROOT_MAP_HINT}{self._unmapped()}"
                    )
                raise _error_for(err)(
                    f"Run {self.source.uid!r}: reader {type(reader).__name__} failed on "
                    f"stream_datum {sd.get('uid')!r} ({field!r}, rows {start}:{stop}): "
                    f"{err!r}.{hint}"
                ) from err
            rows = self._as_rows(rows, stop - start, shape, sd, field)
            if out is not None:
                out[at : at + (stop - start)] = rows if check is None else check(rows, at)
                at += stop - start
                continue
            parts.append(rows)
        if out is not None:
            return out
        if not parts:
            return np.empty((0, *shape), dtype=dtype or float)
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        what = f"dtype_numpy {dtype_numpy!r}"
        column: np.ndarray = lossless_cast(
            data, dtype, run=self.source.uid, field=field, what=what
        )
        return column

    def _as_rows(
        self,
        rows: np.ndarray,
        n: int,
        shape: tuple[int, ...],
        sd: Mapping[str, Any],
        field: str,
    ) -> np.ndarray:
        if rows.shape == (n, *shape):
            return rows
        if shape and rows.size == n * math.prod(shape):
            # A reader of the first protocol, unaware of the row shape.
            return rows.reshape((n, *shape))
        raise FillError(
            f"Run {self.source.uid!r}: the reader of {field!r} returned shape {rows.shape} for "
            f"stream_datum {sd.get('uid')!r} (rows {sd['indices']['start']}:"
            f"{sd['indices']['stop']}), where the descriptor declares rows of shape "
            f"{list(shape)}, i.e. {(n, *shape)}. The reader or the descriptor is wrong."
        )

    def _unmapped(self) -> str:
        """When loading failed: the ``root_map`` keys that match nothing the
        run's documents store, and what they do store (a key written for
        another run, or in another form, is the usual reason)."""
        if not self.root_map:
            return ""
        try:
            stored = [_stored_root(r) for r in self.source.resources()]
            stored += [_stored_root(sr) for sr in self._all_stream_resources()]
        except Exception:  # the hint must never hide the error it explains
            return ""
        return _unmapped_hint(self.root_map, [p for p in stored if p])

    def close(self) -> None:
        """Close every handler and reader that has a ``close()``."""
        with self._lock:
            opened, self._handlers = self._handlers, {}
        for obj in opened.values():
            close = getattr(obj, "close", None)
            if callable(close):
                close()


def _coalesced(stream_datums: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Adjoining stream_datums of one stream_resource as one range: one
    reader call (one read of the file) instead of one per stream_datum, and
    no copy to join the parts. The uid of a merged range names its first and
    last stream_datum, for error messages."""
    out: list[Mapping[str, Any]] = []
    for sd in stream_datums:
        last = out[-1] if out else None
        if (
            last is not None
            and last["stream_resource"] == sd["stream_resource"]
            and last["indices"]["stop"] == sd["indices"]["start"]
        ):
            first_uid = str(last.get("uid")).split(" .. ")[0]
            out[-1] = {
                **last,
                "uid": f"{first_uid} .. {sd.get('uid')}",
                "indices": {"start": last["indices"]["start"], "stop": sd["indices"]["stop"]},
            }
        else:
            out.append(sd)
    return out


_ROOT_MAP_HINT = " If the data moved, pass root_map={stored_root: local_root} to the catalog."


def _stored_location(doc: Mapping[str, Any]) -> str:
    """Where a (stream_)resource says its data is, as stored."""
    if "uri" in doc:
        return f"The stream_resource stores uri {doc['uri']!r}."
    root = doc.get("root")
    path = doc.get("resource_path")
    if root:
        return f"The resource stores root {root!r} and resource_path {path!r}."
    return f"The resource stores resource_path {path!r} (no root)."


def _stored_root(doc: Mapping[str, Any]) -> str:
    """The location a (stream_)resource stores, as the path root_map applies to."""
    if doc.get("uri"):
        return stream_resource_path(doc, {})
    return doc.get("root") or doc.get("resource_path") or ""


def _error_for(err: BaseException | None) -> type[FillError]:
    """The class of the error to raise for a failure to load external data:
    a missing file stays a FileNotFoundError (as a MissingExternalFileError),
    however the handler or reader reported it."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, FileNotFoundError) or (
            isinstance(err, OSError) and err.errno == errno.ENOENT
        ):
            return MissingExternalFileError
        seen.add(id(err))
        err = err.__cause__
    return FillError


def _parameters(sr: Mapping[str, Any]) -> Mapping[str, Any]:
    parameters: Mapping[str, Any] = sr.get("parameters", sr.get("resource_kwargs")) or {}
    return parameters


def _takes_data_key(cls: Any) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return "data_key" in params
