"""Filling external data: resource/datum through handlers, stream_resource /
stream_datum through readers keyed by mimetype.

Handler protocol (the one databroker and area-detector-handlers use)::

    handler = HandlerClass(full_resource_path, **resource["resource_kwargs"])
    array = handler(**datum["datum_kwargs"])

Stream reader protocol (keyed by the stream_resource's ``mimetype``)::

    reader = ReaderClass(local_path, **stream_resource["parameters"])
    rows = reader(index_start, index_stop)   # leading dim: stop - start

Handlers are found in the ``handler_registry`` passed to a catalog first,
then in the ``databroker.handlers`` entry point group; stream readers in the
registry (keys containing ``/``) then in ``intake_bluesky.stream_readers``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from ._plugins import entry_point_objects
from ._progress import progress
from .driver import RunSource

__all__ = ["Filler", "HandlerRegistry", "MissingHandlerError", "FillError", "DataNotWrittenError"]

HANDLER_GROUP = "databroker.handlers"
READER_GROUP = "intake_bluesky.stream_readers"


class MissingHandlerError(KeyError):
    """No handler for a resource spec, or no reader for a mimetype."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0])


class FillError(RuntimeError):
    """External data could not be loaded; the message names run and document."""


class DataNotWrittenError(FillError):
    """Rows asked for are not on disk yet (a detector file still being written).

    Stream readers raise it, naming the file and dataset and how many rows
    are there, instead of returning zeros or fewer rows; it is worth
    retrying once the writer has flushed more.
    """


def _import(obj):
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

    def __init__(self, explicit: Mapping[str, Any] | None = None):
        self.explicit = dict(explicit or {})

    def __repr__(self):
        return f"HandlerRegistry({sorted(self.explicit)})"

    def resolve(self, key: str):
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
        if key in discovered:
            return discovered[key].load()
        what = "stream reader for mimetype" if is_mimetype else "handler for resource spec"
        raise MissingHandlerError(
            f"No {what} {key!r}. Pass one to the catalog, e.g. "
            f"handler_registry={{{key!r}: 'package.module.HandlerClass'}}, or install a package "
            f"that registers it in the {group!r} entry point group."
        )


def _map_root(path: str, root_map: Mapping[str, str]) -> str:
    # Longest matching prefix wins, so nested roots can be remapped separately.
    for old in sorted(root_map, key=len, reverse=True):
        bare = old.rstrip("/") or "/"
        if path == bare or path.startswith(bare.rstrip("/") + "/"):
            return root_map[old].rstrip("/") + path[len(bare.rstrip("/")) :]
    return path


def resource_path(resource: dict, root_map: Mapping[str, str]) -> str:
    """The local path of a resource, after ``root_map``."""
    root = resource.get("root") or ""
    path = resource["resource_path"]
    if root:
        root = _map_root(root, root_map)
        return os.path.join(root, path)
    return _map_root(path, root_map)


def stream_resource_path(stream_resource: dict, root_map: Mapping[str, str]) -> str:
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
    transform_resource : callable, optional
        Applied to every resource document before use.
    """

    def __init__(
        self, source: RunSource, registry: HandlerRegistry, root_map=None, transform_resource=None
    ):
        self.source = source
        self.registry = registry
        self.root_map = dict(root_map or {})
        self.transform_resource = transform_resource
        self._init_caches()

    def _init_caches(self):
        self._handlers: dict[str, Any] = {}
        self._resources: dict[str, dict] | None = None
        self._stream_resources: dict[str, dict] | None = None
        self._lock = threading.RLock()

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_handlers", "_resources", "_stream_resources", "_lock"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_caches()

    # --- resource / datum ---------------------------------------------------
    def _resource(self, uid: str) -> dict:
        if self._resources is None:
            docs = self.source.resources()
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

    def _handler(self, resource_uid: str):
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
        )

    def _open(self, uid: str, key: str, path: str, kwargs: dict, what: str):
        """The handler or reader of one (stream) resource, opened once."""
        # One per resource even under a threaded dask compute.
        with self._lock:
            opened = self._handlers.get(uid)
            if opened is not None:
                return opened
            cls = self.registry.resolve(key)
            try:
                opened = cls(path, **kwargs)
            except Exception as err:
                raise FillError(
                    f"Run {self.source.uid!r}: {cls.__name__}, the {what}, path {path!r}) "
                    f"failed to open: {err!r}. If the data moved, pass "
                    "root_map={old_root: new_root}."
                ) from err
            self._handlers[uid] = opened
            return opened

    def fill(self, datum_ids: Sequence[str], desc: str | None = None) -> list:
        """The loaded data of each datum id, in order (with a progress bar
        titled ``desc`` when given and someone watches)."""
        datum_ids = [str(d) for d in datum_ids]
        datums = self.source.datums(datum_ids)
        out = []
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
                if isinstance(err, FileNotFoundError):
                    hint = (
                        " The file is not where the resource says; if the data moved, "
                        "pass root_map={old_root: new_root}."
                    )
                raise FillError(
                    f"Run {self.source.uid!r}: handler {type(handler).__name__} failed to load "
                    f"datum {datum_id!r} (kwargs {datum.get('datum_kwargs')}): {err!r}.{hint}"
                ) from err
        return out

    def fill_column(self, datum_ids: Sequence[str], dtype=None, desc=None) -> np.ndarray:
        """Loaded datums stacked along a new first axis."""
        arrays = self.fill(datum_ids, desc)
        if not arrays:
            return np.empty((0,), dtype=dtype or float)
        return np.stack([np.asarray(a, dtype=dtype) for a in arrays])

    # --- stream_resource / stream_datum -------------------------------------
    def _stream_resource(self, uid: str) -> dict:
        if self._stream_resources is None:
            self._stream_resources = {d["uid"]: d for d in self.source.stream_resources()}
        try:
            return self._stream_resources[uid]
        except KeyError:
            raise FillError(
                f"Run {self.source.uid!r}: stream_datum refers to stream_resource {uid!r}, which "
                "is not in the run."
            ) from None

    def fill_stream(self, stream_datums: Sequence[dict]) -> np.ndarray:
        """The rows of consecutive stream_datums of one data key, stacked."""
        parts = []
        for sd in stream_datums:
            sr_uid = sd["stream_resource"]
            reader = self._handlers.get(sr_uid)
            if reader is None:
                sr = self._stream_resource(sr_uid)
                reader = self._open(
                    sr_uid,
                    sr["mimetype"],
                    stream_resource_path(sr, self.root_map),
                    sr.get("parameters", {}),
                    f"reader for stream_resource {sr_uid!r} (mimetype {sr['mimetype']!r}",
                )
            start, stop = sd["indices"]["start"], sd["indices"]["stop"]
            try:
                parts.append(np.asarray(reader(start, stop)))
            except Exception as err:
                raise FillError(
                    f"Run {self.source.uid!r}: reader {type(reader).__name__} failed on "
                    f"stream_datum {sd.get('uid')!r} rows {start}:{stop}: {err!r}"
                ) from err
        if not parts:
            return np.empty((0,))
        return np.concatenate(parts)
