"""The run and stream model: bluesky semantics over a RunSource, intake-free.

The intake faces (:mod:`._faces`) delegate everything here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..driver import RunSource
from .assembly import build_dataset
from .canonical import canonical
from .filling import Filler, HandlerRegistry
from .rows import data_kind

__all__ = ["ReadOptions", "RunModel", "StreamModel"]

TRANSFORM_NAMES = ("start", "stop", "descriptor", "resource", "stream_resource")


class ReadOptions:
    """How a catalog's runs are read: the handler registry and root_map that
    fill external data, and the transforms of documents. A catalog hands its
    one instance to each of its runs."""

    def __init__(
        self,
        handler_registry: Any = None,
        root_map: Mapping[str, str] | None = None,
        transforms: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.registry = (
            handler_registry
            if isinstance(handler_registry, HandlerRegistry)
            else HandlerRegistry(handler_registry)
        )
        self.root_map = dict(root_map or {})
        funcs = dict(transforms or {})
        unknown = set(funcs) - set(TRANSFORM_NAMES)
        if unknown:
            raise ValueError(
                f"transforms has unknown document names {sorted(unknown)}; "
                f"it accepts {list(TRANSFORM_NAMES)}."
            )
        for name, func in funcs.items():
            if not callable(func):
                raise TypeError(f"transforms[{name!r}] must be callable, not {func!r}.")
        self.transforms: dict[str, Callable[..., Any]] = funcs

    def transform(self, name: str, doc: Any) -> Any:
        func = self.transforms.get(name)
        return doc if func is None or doc is None else func(doc)


class RunModel:
    """One run: metadata, streams, canonical documents.

    Examples
    --------
    >>> from intake_bluesky.core import DocumentRunSource
    >>> from intake_bluesky.core.testing import example_runs
    >>> run = RunModel(DocumentRunSource(example_runs()[0]))
    >>> run.stream_names()
    ['baseline', 'primary']
    """

    def __init__(self, source: RunSource, settings: ReadOptions | None = None) -> None:
        self.source = source
        self.settings = settings or ReadOptions()
        self.filler = Filler(
            source,
            self.settings.registry,
            self.settings.root_map,
            self.settings.transforms.get("resource"),
            self.settings.transforms.get("stream_resource"),
        )

    @property
    def uid(self) -> str:
        return self.source.uid

    def start(self) -> dict[str, Any]:
        start: dict[str, Any] = self.settings.transform("start", self.source.start())
        return start

    def stop(self) -> dict[str, Any] | None:
        stop: dict[str, Any] | None = self.settings.transform("stop", self.source.stop())
        return stop

    def descriptors(self) -> list[dict[str, Any]]:
        return [self.settings.transform("descriptor", d) for d in self.source.descriptors()]

    def stream_names(self) -> list[str]:
        return sorted({d.get("name", "primary") for d in self.descriptors()})

    def stream(self, name: str) -> StreamModel:
        if name not in self.stream_names():
            raise KeyError(
                f"Run {self.uid!r} has no stream {name!r}; its streams are {self.stream_names()}."
            )
        return StreamModel(self, name)

    def default_stream(self) -> str:
        """The stream a reader most likely means: ``primary``, else the first."""
        names = self.stream_names()
        return "primary" if "primary" in names or not names else names[0]

    def canonical(self, fill: str = "yes") -> Iterator[tuple[str, Any]]:
        if fill not in ("yes", "no"):
            raise ValueError(f"fill must be 'yes' or 'no', not {fill!r}.")
        return canonical(
            self.source,
            fill=fill == "yes",
            filler=self.filler,
            transforms=self.settings.transforms,
        )


class StreamModel:
    """One event stream of a run: its descriptors, selected fields, datasets."""

    def __init__(
        self,
        run: RunModel,
        name: str,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> None:
        self.run = run
        self.name = name
        self.include = None if include is None else list(include)
        self.exclude = list(exclude or [])

    def descriptors(self) -> list[dict[str, Any]]:
        return [d for d in self.run.descriptors() if d.get("name", "primary") == self.name]

    def all_fields(self) -> list[str]:
        fields: dict[str, None] = {}
        for d in self.descriptors():
            fields.update(dict.fromkeys(d.get("data_keys", {})))
        return list(fields)

    def fields(self) -> list[str]:
        known = self.all_fields()
        if self.include is not None:
            unknown = [f for f in self.include if f not in known]
            if unknown:
                raise KeyError(
                    f"Stream {self.name!r} of run {self.run.uid!r} has no field(s) {unknown}; "
                    f"its fields are {known}."
                )
            known = [f for f in known if f in self.include]
        unknown = [f for f in self.exclude if f not in self.all_fields()]
        if unknown:
            raise KeyError(
                f"Stream {self.name!r} of run {self.run.uid!r} has no field(s) {unknown} to "
                f"exclude; its fields are {self.all_fields()}."
            )
        return [f for f in known if f not in self.exclude]

    def timestamp_fields(self) -> list[str]:
        """The selected fields that have per-event timestamps (stream data has none)."""
        data_keys: dict[str, dict[str, Any]] = {}
        for d in self.descriptors():
            data_keys.update(d.get("data_keys") or {})
        return [f for f in self.fields() if data_kind(data_keys.get(f) or {}) != "stream"]

    def config_fields(self, object_name: str | None) -> list[str]:
        """The configuration readings of one device, over the stream's descriptors."""
        names: dict[str, None] = {}
        for d in self.descriptors():
            conf = (d.get("configuration") or {}).get(object_name) or {}
            names.update(dict.fromkeys(conf.get("data") or conf.get("data_keys") or {}))
        return list(names)

    def dataset(self, lazy: bool = False, chunks: Any = None, dtypes: Any = None) -> xr.Dataset:
        ds = build_dataset(
            self.run.source,
            self.run.filler,
            self.descriptors(),
            self.fields(),
            lazy=lazy,
            chunks=chunks,
            dtypes=dtypes,
        )
        return self._decorate(ds)

    def timestamps(self, lazy: bool = False) -> xr.Dataset:
        ds = build_dataset(
            self.run.source, None, self.descriptors(), self.fields(), lazy=lazy, part="timestamps"
        )
        return self._decorate(ds)

    def _decorate(self, ds: xr.Dataset) -> xr.Dataset:
        ds.attrs.update(stream_name=self.name, run_uid=self.run.uid)
        return ds

    def config_objects(self) -> list[str]:
        names: dict[str, None] = {}
        for d in self.descriptors():
            names.update(dict.fromkeys(d.get("configuration", {})))
        return list(names)

    def config(self, object_name: str) -> xr.Dataset:
        """One row per descriptor: the configuration readings of one device."""
        descriptors = self.descriptors()
        if object_name not in self.config_objects():
            raise KeyError(
                f"Stream {self.name!r} of run {self.run.uid!r} has no configuration for "
                f"{object_name!r}; it has {self.config_objects()}."
            )
        rows = [d.get("configuration", {}).get(object_name, {}) for d in descriptors]
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row.get("data", {})))
        variables = {}
        for key in keys:
            values = [row.get("data", {}).get(key, np.nan) for row in rows]
            meta: Any = next(
                (r["data_keys"][key] for r in rows if key in r.get("data_keys", {})), {}
            )
            column = np.asarray(values)
            dims = ("time", *[f"{key}_dim_{i}" for i in range(column.ndim - 1)])
            attrs = {k: meta[k] for k in ("source", "units", "dtype", "shape") if k in meta}
            variables[key] = xr.Variable(dims, column, attrs=attrs)
        times = np.asarray([d.get("time", np.nan) for d in descriptors], dtype=float)
        ds = xr.Dataset(variables, coords={"time": ("time", times)})
        ds.attrs.update(stream_name=self.name, run_uid=self.run.uid, object_name=object_name)
        return ds
