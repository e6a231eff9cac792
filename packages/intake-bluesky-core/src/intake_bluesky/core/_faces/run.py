"""The intake faces: a run as an intake Catalog of streams, a stream as an
intake DataSource of container ``xarray``. Thin: the model does the work.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import xarray as xr
from intake.catalog.base import Catalog
from intake.source.base import DataSource, Schema

from .._model.run import ReadOptions, RunModel, StreamModel
from .._progress import ProgressCounter
from .._version import __version__
from ..driver import RunSource
from .html import run_html, stream_html

if TYPE_CHECKING:
    from .._model.diff import RunDiff

__all__ = ["BlueskyRun", "BlueskyEventStream"]


def describe(source, description: str, metadata: dict, args: dict) -> dict:
    """intake's description of a catalog, run or stream (GUI, listings)."""
    return {
        "name": source.name,
        "container": source.container,
        "plugin": [type(source).__name__],
        "description": description,
        "direct_access": "forbid",
        "user_parameters": [],
        "metadata": metadata,
        "args": args,
    }


class _ConfigMapping(dict):
    def __init__(self, streams, model):
        super().__init__(streams)
        self._model = model

    def __missing__(self, key):
        raise KeyError(
            f"Stream {self._model.name!r} of run {self._model.run.uid!r} has no configuration "
            f"for {key!r}; it has {sorted(self)}."
        )


class BlueskyEventStream(DataSource):
    """One event stream of a run, e.g. ``run.primary``.

    ``read()`` gives an ``xarray.Dataset``, ``to_dask()`` the same backed by
    dask (no data read until compute). Call it to select fields before
    anything is read: ``run.primary(include=["det"])``,
    ``run.primary(exclude=["img"])``.

    Parameters
    ----------
    run : RunModel
        The run's model (given by the run; streams are not made directly).
    stream_name : str
    include, exclude : list of str, optional
        Fields to keep / to drop, applied before any data is read.
    part : {'data', 'timestamps', 'config'}
        What the stream's Dataset holds.
    object_name : str, optional
        The device, for ``part='config'``.
    metadata : dict, optional

    Attributes
    ----------
    timestamps : BlueskyEventStream
        The per-field timestamps, as a stream of the same shape.
    config : dict of BlueskyEventStream
        Per device (object name), its configuration readings, one row per
        descriptor.

    Examples
    --------
    >>> from intake_bluesky.core import BlueskyInMemoryCatalog
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> cat.ingest(example_runs()[1])
    >>> ds = cat[-1].primary(include=["det"]).read()
    >>> list(ds.data_vars)
    ['det']
    """

    container = "xarray"
    name = "bluesky_event_stream"
    version = __version__
    partition_access = False

    def __init__(
        self,
        run: RunModel,
        stream_name: str,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        part: str = "data",
        object_name: str | None = None,
        metadata: dict | None = None,
    ):
        if not isinstance(run, RunModel):
            raise TypeError(
                "BlueskyEventStream is made by a run (run.primary, run['baseline']); "
                f"it takes a RunModel, not {type(run).__name__}."
            )
        if isinstance(include, str):
            include = [include]
        if isinstance(exclude, str):
            exclude = [exclude]
        self._model = StreamModel(run, stream_name, include, exclude)
        self._model.fields()  # an unknown field in include= fails here, not later
        self._part = part
        self._object_name = object_name
        super().__init__(metadata=metadata)
        self.name = stream_name

    @property
    def metadata(self) -> dict:
        """The stream's descriptors and name (read from storage on each access)."""
        return {
            **self._extra_metadata,
            "descriptors": self._model.descriptors(),
            "stream_name": self._model.name,
        }

    @metadata.setter
    def metadata(self, value):
        self._extra_metadata = dict(value or {})

    def __call__(self, *, include=None, exclude=None) -> BlueskyEventStream:
        """The same stream with only some fields (applied before reading)."""
        return type(self)(
            self._model.run,
            self._model.name,
            include=include,
            exclude=exclude,
            part=self._part,
            object_name=self._object_name,
        )

    get = configure_new = __call__

    @property
    def descriptors(self) -> list[dict]:
        """The stream's event descriptors, oldest first (as in tiled)."""
        return self._model.descriptors()

    def _field_names(self) -> list[str]:
        if self._part == "config":
            return self._model.config_fields(self._object_name)
        if self._part == "timestamps":
            return self._model.timestamp_fields()
        return self._model.fields()

    def __repr__(self):
        what = {"data": "", "timestamps": " timestamps"}.get(
            self._part, f" config {self._object_name!r}"
        )
        try:
            fields = f"fields {self._field_names()}"
        except Exception as err:  # a repr must not raise (e.g. a file removed)
            fields = f"fields unknown: {type(err).__name__}"
        return (
            f"<BlueskyEventStream {self._model.name!r}{what} of run {self._model.run.uid[:8]!r}: "
            f"{fields}>"
        )

    # intake's DataSource defines _ipython_display_ (a YAML dump), which
    # IPython would use instead of the HTML.
    _ipython_display_ = None

    def _repr_html_(self) -> str:
        return stream_html(self)

    def _dataset(self, lazy: bool, chunks=None, dtypes=None) -> xr.Dataset:
        if self._part == "timestamps":
            return self._model.timestamps(lazy=lazy)
        if self._part == "config":
            # A config part always names its object.
            assert self._object_name is not None
            ds = self._model.config(self._object_name)
            return ds.chunk() if lazy else ds
        return self._model.dataset(lazy=lazy, chunks=chunks, dtypes=dtypes)

    def read(self, *, dtypes=None) -> xr.Dataset:
        """The stream as an ``xarray.Dataset`` (external data filled).

        Parameters
        ----------
        dtypes : dict, optional
            Field -> dtype to use instead of the one the descriptor declares.

        Notes
        -----
        Values are never changed by a cast: where stored values do not fit
        the declared dtype (ophyd declares ``'integer'`` and records 2.5),
        they keep their own dtype and a ``DtypeMismatchWarning`` names the
        run and field.
        """
        return self._dataset(lazy=False, dtypes=dtypes)

    def to_dask(self, *, chunks=None, dtypes=None) -> xr.Dataset:
        """The stream as a dask-backed ``xarray.Dataset``; nothing read until compute.

        Parameters
        ----------
        chunks : int, str or dict, optional
            Rows per chunk (``500``), a size per chunk (``"20MB"``), or a dict
            of those per field (key ``None`` for the rest). Default: about
            100 MB per chunk, in whole multiples of the file's own chunks for
            stream data (HDF5).
        dtypes : dict, optional
            Field -> dtype to use instead of the one the descriptor declares.

        Notes
        -----
        dtypes are fixed before any data is read, from the descriptor; a chunk
        whose values do not fit (ophyd declares ``'integer'`` and records
        2.5) raises ``DtypeMismatchError`` at compute instead of being
        truncated. ``read()``, or ``to_dask(dtypes={field: 'float64'})``,
        reads it.
        """
        return self._dataset(lazy=True, chunks=chunks, dtypes=dtypes)

    def describe(self) -> dict:
        """What this stream is, for intake's GUI and listings."""
        args = {"include": self._model.include, "exclude": self._model.exclude}
        return describe(self, repr(self), {"stream_name": self._model.name}, args)

    def _get_schema(self):
        return Schema(
            datashape=None,
            dtype=None,
            shape=None,
            npartitions=1,
            extra_metadata={},
        )

    def _get_partition(self, i):
        return self.read()

    def _close(self):
        pass

    @property
    def timestamps(self) -> BlueskyEventStream:
        """The per-field timestamps, as a stream: ``stream.timestamps.read()``."""
        return type(self)(
            self._model.run,
            self._model.name,
            include=self._model.include,
            exclude=self._model.exclude,
            part="timestamps",
        )

    @property
    def config(self) -> _ConfigMapping:
        """Per device (object name), its configuration readings as a stream."""
        return _ConfigMapping(
            {
                obj: type(self)(self._model.run, self._model.name, part="config", object_name=obj)
                for obj in self._model.config_objects()
            },
            self._model,
        )


class EntriesMixin:
    """Mapping-style access for catalogs whose entries are computed, not stored."""

    def keys(self):
        """Entry names (run uids, or stream names)."""
        return iter(self)

    def items(self):
        """``(name, entry)`` pairs, computed one at a time."""
        for name in self:
            yield name, self[name]

    def values(self):
        """Entries, computed one at a time."""
        for name in self:
            yield self[name]

    def _get_entries(self):
        # intake's walk()/GUI ask for all entries at once.
        return dict(self.items())


class BlueskyRun(EntriesMixin, Catalog):
    """One bluesky run: an intake catalog of its event streams.

    ``run.metadata['start']`` / ``['stop']`` (``None`` while in progress),
    ``list(run)`` the stream names, ``run.primary`` or ``run['primary']`` a
    :class:`BlueskyEventStream`, ``run.canonical()`` the document stream.

    Parameters
    ----------
    source : RunSource
        The run's storage, from a driver.
    settings : ReadOptions, optional
        Handlers, root_map, transforms (given by the catalog).
    """

    container = "catalog"
    name = "bluesky_run"
    version = __version__

    def __init__(self, source: RunSource, settings: ReadOptions | None = None, **kwargs):
        if not isinstance(source, RunSource):
            raise TypeError(
                "BlueskyRun is made by a catalog (cat[uid]); it takes a RunSource, "
                f"not {type(source).__name__}."
            )
        self._run = RunModel(source, settings)
        super().__init__(**kwargs)
        self.name = source.uid

    # --- metadata -----------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """``{'start': ..., 'stop': ...}``; ``stop`` is None while the run is in progress.

        Read from storage on each access, so a live run's stop shows up.
        """
        return {**self._extra_metadata, "start": self._run.start(), "stop": self._run.stop()}

    @metadata.setter
    def metadata(self, value):
        self._extra_metadata = {
            k: v for k, v in dict(value or {}).items() if k not in ("start", "stop")
        }

    @property
    def uid(self) -> str:
        """The run's uid (its start document's)."""
        return self._run.uid

    @property
    def start(self) -> dict:
        """The start document (as databroker's Header and tiled's run have it)."""
        return self._run.start()

    @property
    def stop(self) -> dict | None:
        """The stop document; ``None`` while the run is in progress.

        Read from storage on each access, so a live run's stop shows up.
        """
        return self._run.stop()

    @property
    def descriptors(self) -> list[dict]:
        """Every event descriptor of the run, all streams, oldest first."""
        return self._run.descriptors()

    # --- entries ------------------------------------------------------------
    def _load(self):
        pass

    def reload(self):
        pass

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.stream_names())

    def __len__(self) -> int:
        return len(self._run.stream_names())

    def __contains__(self, name) -> bool:
        return name in self._run.stream_names()

    def __getitem__(self, name: str) -> BlueskyEventStream:
        self._run.stream(name)  # raises KeyError naming the streams
        return BlueskyEventStream(self._run, name)

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self:
            raise AttributeError(f"{type(self).__name__} has no attribute or stream {name!r}")
        return self[name]

    def __dir__(self):
        # Not intake's Catalog.__dir__, which lists entries but hides methods.
        return sorted(set(object.__dir__(self)) | {n for n in self if n.isidentifier()})

    def describe(self) -> dict:
        """What this run is, for intake's GUI and listings."""
        # A store may say how it reads this run (e.g. tiled: files directly
        # or through the server).
        own = getattr(self._run.source, "describe", None)
        extra = own() if callable(own) else {}
        return describe(self, repr(self), self.metadata, {"uid": self.uid, **extra})

    # --- documents ----------------------------------------------------------
    def canonical(self, *, fill: str = "yes") -> Iterator[tuple[str, dict]]:
        """The run's ``(name, doc)`` stream in canonical order.

        Parameters
        ----------
        fill : {'yes', 'no'}
            ``'yes'`` replaces the resource/datum references in events with
            the loaded data (``filled[key]`` true); ``'no'`` yields documents
            as stored. Stream data (stream_resource/stream_datum, as
            ophyd-async detectors write it) is not filled into documents
            either way: its stream_datums come as stored; read its rows with
            ``run[stream].read()``.

        Yields
        ------
        name : str
            ``'start'``, ``'descriptor'``, ``'event'``/``'event_page'``, ... ,
            ``'stop'``.
        doc : dict
            The document, in the form it is stored in (a stored event is an
            ``event``, a stored event_page an ``event_page``; likewise datum
            and datum_page), so that an export reads back document for
            document. ``start`` comes first, every descriptor before its
            events, every resource/datum before the events that reference it,
            events in time order across streams (a page is split only where
            another stream's events fall inside its time span), ``stop`` last.
        """
        documents = self._run.canonical(fill)
        if fill != "yes":
            return documents
        return _counting_events(documents, self._run, f"Filling run {self.uid[:8]}")

    def follow(
        self, *, poll_interval: float = 0.5, idle_timeout: float | None = None, fill: str = "no"
    ) -> Iterator[tuple[str, dict]]:
        """The run's ``(name, doc)`` as they are written, ending after its stop.

        For a run in progress, e.g. in a second process while a RunEngine
        writes it: ``for name, doc in run.follow(): live_plot(name, doc)``.
        A finished run yields its documents and ends at once.

        Parameters
        ----------
        poll_interval : float
            Seconds between looks at storage (file catalogs parse only what
            was appended); the in-memory catalog wakes on each new document.
        idle_timeout : float or None
            Raise ``TimeoutError`` (naming the run) when no new document came
            for this long; None waits for the stop however long it takes.
        fill : {'no', 'yes'}
            As for :meth:`canonical`; ``'no'`` by default because a live
            run's external files may not be complete yet.

        Yields
        ------
        (name, doc)
            Each document once: what each look found new, in canonical order
            (start first, descriptors before their events, events in time
            order across streams), the stop last.
        """
        from .._model.follow import follow

        return follow(self._run, poll_interval=poll_interval, idle_timeout=idle_timeout, fill=fill)

    def replay(
        self,
        callback: Callable[[str, dict], object],
        *,
        speed: float | None = 1.0,
        fill: str = "yes",
    ) -> None:
        """Feed the canonical documents to ``callback`` with their original timing.

        As databroker's ``replay``: each document is passed on when it is due,
        ``(t - t0) / speed`` seconds after the start document, ``t`` the
        document's ``time`` (an event page's first event's). Documents
        without a time (resource, datum, stream_resource, stream_datum) follow
        the one before them at once.

        Parameters
        ----------
        callback : callable
            ``callback(name, doc)``, e.g. a ``LiveTable``, ``LivePlot``, a
            ``RunRouter`` or a producer publishing documents.
        speed : float or None
            2.0 plays twice as fast, 0.5 at half speed; None passes the
            documents on without waiting.
        fill : {'yes', 'no'}
            As for :meth:`canonical`.

        Examples
        --------
        >>> from intake_bluesky.core import BlueskyInMemoryCatalog
        >>> from intake_bluesky.core.testing import example_runs
        >>> cat = BlueskyInMemoryCatalog()
        >>> cat.ingest(example_runs()[1])
        >>> seen = []
        >>> cat[-1].replay(lambda name, doc: seen.append(name), speed=None)
        >>> seen
        ['start', 'descriptor', 'event_page', 'stop']
        """
        from .._model.replay import replay

        replay(self.canonical(fill=fill), callback, speed=speed)

    def diff(self, other: BlueskyRun, *, rtol: float = 0.0, atol: float = 0.0) -> RunDiff:
        """What differs between this run (A) and ``other`` (B), of any backend.

        Parameters
        ----------
        other : BlueskyRun
            The run to compare with.
        rtol, atol : float
            Floats (also in arrays) are equal when
            ``|a - b| <= atol + rtol * max(|a|, |b|)``; exact by default.

        Returns
        -------
        RunDiff
            Falsy when nothing differs; ``print(diff)`` for a report,
            ``diff.to_dict()`` for JSON.

        Examples
        --------
        >>> from intake_bluesky.core import BlueskyInMemoryCatalog
        >>> from intake_bluesky.core.testing import example_runs
        >>> cat = BlueskyInMemoryCatalog()
        >>> for docs in example_runs()[1:4]:
        ...     cat.ingest(docs)
        >>> diff = cat[-3].diff(cat[-1])
        >>> [(c.key, c.a, c.b) for c in diff.section("start")]
        [('sample.name', 'Fe', 'Ni'), ('operator', 'bob', 'carol'), ('plan_name', 'count', 'scan')]
        >>> bool(cat[-1].diff(cat[-1]))
        False
        """
        from .._model.diff import diff_runs

        if not isinstance(other, BlueskyRun):
            raise TypeError(f"A run is compared with another run, not {type(other).__name__}.")
        return diff_runs(self._run, other._run, rtol=rtol, atol=atol)

    def read_canonical(self) -> Iterator[tuple[str, dict]]:
        """Same as :meth:`canonical` with ``fill='yes'``."""
        return self.canonical()

    def documents(self, *, fill: str = "yes"):
        """Alias of :meth:`canonical` (databroker 1.x name)."""
        return self.canonical(fill=fill)

    def read(self):
        """Not for a run: read one of its streams, e.g. ``run.primary.read()``.

        Raises
        ------
        NotImplementedError
            Always, naming the streams.
        """
        raise NotImplementedError(
            "A run holds several streams; read one of them: "
            f"run.{self._run.default_stream()}.read() (streams: {list(self)})."
        )

    def to_dask(self):
        """Not for a run: use one of its streams, e.g. ``run.primary.to_dask()``.

        Raises
        ------
        NotImplementedError
            Always, naming the streams.
        """
        raise NotImplementedError(
            "A run holds several streams; pick one: "
            f"run.{self._run.default_stream()}.to_dask() (streams: {list(self)})."
        )

    _ipython_display_ = None  # see BlueskyEventStream

    def _repr_html_(self) -> str:
        return run_html(self)

    def __repr__(self):
        try:
            return self._repr()
        except Exception as err:  # a repr must not raise (e.g. a file removed)
            return f"<BlueskyRun uid={self._run.uid!r} (unreadable: {type(err).__name__})>"

    def _repr(self):
        start = self._run.start()
        stop = self._run.stop()
        when = start.get("time")
        when = (
            datetime.datetime.fromtimestamp(when)
            .astimezone()
            .isoformat(sep=" ", timespec="seconds")
            if isinstance(when, int | float)
            else "?"
        )
        status = "in progress" if stop is None else stop.get("exit_status", "?")
        return (
            f"<BlueskyRun uid={start.get('uid')!r} scan_id={start.get('scan_id')!r} "
            f"plan_name={start.get('plan_name')!r} time={when} ({status}) "
            f"streams={list(self)}>"
        )


def _counting_events(documents, run: RunModel, desc: str):
    """The documents, with a progress bar over their events (filling a big
    run can take a while); the total comes from the stop document."""
    stop = run.stop() or {}
    counts = stop.get("num_events") or {}
    total = sum(v for v in counts.values() if isinstance(v, int)) or None
    with ProgressCounter(total=total, desc=desc, unit="event") as bar:
        for name, doc in documents:
            if name == "event":
                bar.update(1)
            elif name == "event_page":
                bar.update(len(doc.get("seq_num", ())))
            yield name, doc
