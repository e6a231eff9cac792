"""The catalog of runs, over any :class:`~intake_bluesky.core.driver.Driver`.

Search, getitem sugar and nesting live here once; every backend's catalog is
this class with its own driver.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from intake.catalog.base import Catalog

from .._model.lookup import RunLookup
from .._model.run import ReadOptions
from .._query.evaluate import and_queries, validate_query
from .._version import __version__
from ..driver import Driver
from .docstrings import with_catalog_parameters
from .html import catalog_html
from .run import BlueskyRun, EntriesMixin, describe
from .table import _check_fields, rows_to_dataframe, run_rows

if TYPE_CHECKING:
    from event_model.documents import RunStart

__all__ = ["BlueskyCatalog", "RunsView"]


@with_catalog_parameters
class BlueskyCatalog(EntriesMixin, Catalog):
    """A catalog of bluesky runs.

    Parameters
    ----------
    driver : Driver
        The storage backend (see :mod:`intake_bluesky.core.driver`).
    {catalog_parameters}

    Notes
    -----
    ``len``/``iter`` list run uids oldest first. ``cat[key]``: a full uid; an
    anchored partial uid (ambiguous -> ``ValueError``); ``-N``, the N-th most
    recent run (``IndexError``); ``N >= 0``, the most recent run with that
    ``scan_id`` (``KeyError``). Numeric strings count as integers.

    Examples
    --------
    >>> from intake_bluesky.core import BlueskyInMemoryCatalog
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> for docs in example_runs():
    ...     cat.ingest(docs)
    >>> scans = cat.search({"plan_name": "scan"})
    >>> scans[-1].metadata["start"]["plan_name"]
    'scan'
    """

    container = "catalog"
    version = __version__

    def __init__(
        self,
        driver: Driver,
        *,
        handler_registry: Mapping | None = None,
        root_map: Mapping[str, str] | None = None,
        query: Mapping | None = None,
        transforms: Mapping | None = None,
        **kwargs,
    ):
        if not isinstance(driver, Driver):
            raise TypeError(f"{type(driver).__name__} does not implement the Driver protocol.")
        self.driver = driver
        self._query = validate_query(query, server=getattr(driver, "server_side_queries", False))
        if query is not None:
            # yaml()/pickle re-create the catalog from these: the plain query
            # (a TimeRange or numpy values would not load back as YAML).
            self._captured_init_kwargs["query"] = self._query
        given = self._captured_init_kwargs.get("handler_registry")
        if given:
            # Written by yaml()/pickle as importable names, not Python objects.
            self._captured_init_kwargs["handler_registry"] = {
                k: _dotted(v) for k, v in given.items()
            }
        self._settings = ReadOptions(handler_registry, root_map, transforms)
        kwargs.setdefault("name", type(self).__name__)
        super().__init__(**kwargs)

    # --- intake plumbing: entries are computed from the driver, never cached
    def _load(self):
        pass

    def reload(self):
        pass

    def __dir__(self):
        # Not intake's Catalog.__dir__: it would list every run.
        return sorted(object.__dir__(self))

    def __repr__(self):
        query = f" query={self._query!r}" if self._query else ""
        try:
            n = len(self)
            count = f"{n} run{'s' if n != 1 else ''}"
        except Exception as err:  # a repr must not raise (e.g. a server down)
            count = f"runs unknown: {type(err).__name__}"
        return f"<{type(self).__name__} {self.driver!r}{query}: {count}>"

    def describe(self) -> dict:
        """What this catalog is, for intake's GUI and listings."""
        text = self.description or (type(self).__doc__ or "").split("\n")[0]
        return describe(self, text, dict(self.metadata or {}), {"query": self.query})

    # --- search -------------------------------------------------------------
    @property
    def query(self) -> dict:
        return dict(self._query)

    def search(self, query: Mapping | None = None, **equal) -> BlueskyCatalog:
        """The runs whose start document matches ``query`` (MongoDB language).

        Parameters
        ----------
        query : dict, optional
            A MongoDB query on start documents: dotted keys, ``$gt``, ``$in``,
            ``$regex``, ``$and``, ``$or``, ``$exists``, ... (see
            :func:`~intake_bluesky.core.validate_query`).
        **equal
            Shorthand for equality conditions:
            ``cat.search(plan_name="scan")`` is
            ``cat.search({"plan_name": "scan"})``. Combined with ``query``
            (AND) when both are given.

        Returns
        -------
        BlueskyCatalog
            A catalog of the same kind over the matching runs, same order.
            Searches nest (AND); ``search({})`` is the same catalog; the
            subset stays live (new matching runs appear in it).

        Raises
        ------
        ValueError
            For a malformed query or a refused operator (``$where``,
            ``$function``, ``$accumulator``).
        """
        if query is None:
            query = {}
        if equal:
            if not isinstance(query, Mapping):
                raise ValueError(
                    f"search() got a query {query!r} and keyword conditions {equal}; give "
                    "the query as a dict, e.g. search({'plan_name': 'scan'})."
                )
            query = and_queries(dict(query), dict(equal))
        query = validate_query(query, server=getattr(self.driver, "server_side_queries", False))
        # Not copy.copy: intake's pickling hooks would re-create the driver.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._query = and_queries(self._query, query)
        # intake pickles and exports (yaml) from the constructor arguments:
        # the subset must be re-created as a subset.
        new._captured_init_kwargs = {**self._captured_init_kwargs, "query": new._query}
        return new

    def _search(self, query=None, **kwargs) -> Iterator[RunStart]:

        return self.driver.search(and_queries(self._query, query), **kwargs)

    # --- listing ------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        # One lazy driver call (a server cursor streams in batches); paging
        # with skip would cost the server quadratically over many runs.
        for start in self._search():
            yield start["uid"]

    def __len__(self) -> int:
        return self.driver.count(self._query)

    def __contains__(self, key) -> bool:
        if not isinstance(key, str):
            return False
        return any(True for _ in self._search({"uid": key}, limit=1))

    # --- lookup -------------------------------------------------------------
    def __getitem__(self, key) -> BlueskyRun | list[BlueskyRun]:
        """One run, by uid, partial uid, ``-N`` or scan_id; or a slice of runs.

        Parameters
        ----------
        key : str, int or slice
            * a full uid: that run;
            * the beginning of a uid (``'a1b2c3'``, anchored at the start,
              at least as many characters as make it unique): that run;
            * a negative int ``-N``: the N-th most recent run (``cat[-1]`` is
              the newest; runs are ordered by start time);
            * an int ``N >= 0``: the most recent run whose ``scan_id`` is N
              (scan ids repeat across sessions: the newest wins);
            * a string of digits counts as that int (``'-1'``, ``'42'``);
            * a slice: positions in the catalog's order, oldest first, as
              for a list (``cat[-3:]`` the three newest runs, oldest of them
              first; ``cat[:2]`` the two oldest).

        Returns
        -------
        BlueskyRun or list of BlueskyRun
            A run; for a slice, a list of runs (each opened lazily, as by
            ``cat[uid]``; nothing of their data is read).

        Raises
        ------
        KeyError
            No run has that uid, uid beginning or scan_id.
        ValueError
            A partial uid matches several runs (the message names them).
        IndexError
            ``-N`` beyond the number of runs.
        TypeError
            A key of another type.

        Examples
        --------
        >>> from intake_bluesky.core import BlueskyInMemoryCatalog
        >>> from intake_bluesky.core.testing import example_runs
        >>> cat = BlueskyInMemoryCatalog()
        >>> for docs in example_runs():
        ...     cat.ingest(docs)
        >>> cat[-1].start["plan_name"], cat[2].start["uid"][:8], cat["c0ff"].start["scan_id"]
        ('fly', 'c0ffee00', 2)
        >>> [run.start["scan_id"] for run in cat[-3:]]
        [2, 3, 4]
        """
        if isinstance(key, slice):
            return [self._run(start["uid"]) for start in self._lookup.starts(key)]
        return self._run(self._lookup.start(key)["uid"])

    @property
    def _lookup(self) -> RunLookup:
        """The lookup rules (:mod:`.._model.lookup`) over this catalog's runs."""
        return RunLookup(self._search, self.__len__)

    def _run(self, uid: str) -> BlueskyRun:
        return BlueskyRun(self.driver.run(uid), self._settings)

    def __getattr__(self, name):
        # intake falls back to __getitem__ for attributes; runs are not
        # attributes (uids are not identifiers), so fail fast and clearly.
        hint = _ATTRIBUTE_HINTS.get(name)
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r}" + (f"; {hint}" if hint else "")
        )

    # --- databroker / tiled habits ------------------------------------------
    def keys(self) -> RunsView:
        """The run uids, oldest first, as a lazy view (see :class:`RunsView`)."""
        return RunsView(self, "keys")

    def values(self) -> RunsView:
        """The runs, oldest first, opened one at a time as iterated.

        Returns
        -------
        RunsView
            Iterable, sized, indexable by position (``[0]`` oldest, ``[-1]``
            newest, slices), with ``first()``, ``last()``, ``head(n)`` and
            ``tail(n)`` (tiled's names).

        Examples
        --------
        >>> from intake_bluesky.core import BlueskyInMemoryCatalog
        >>> from intake_bluesky.core.testing import example_runs
        >>> cat = BlueskyInMemoryCatalog()
        >>> for docs in example_runs():
        ...     cat.ingest(docs)
        >>> cat.values().last().start["plan_name"]
        'fly'
        >>> [run.start["scan_id"] for run in cat.values().head(2)]
        [1, 2]
        """
        return RunsView(self, "values")

    def items(self) -> RunsView:
        """``(uid, run)`` pairs, oldest first, as a lazy view (see :meth:`values`)."""
        return RunsView(self, "items")

    def __call__(self, *args, **kwargs):
        """Re-create the catalog with other constructor arguments (intake's
        ``configure_new``), e.g. ``cat(root_map={...})``.

        Not a query and not a lookup: ``cat(plan_name='scan')`` and
        ``cat.get(uid)`` (databroker habits) raise ``TypeError`` saying to
        use ``cat.search({...})`` and ``cat[uid]``.
        """
        known = _init_parameters(type(self))
        unknown = [k for k in kwargs if k not in known]
        if args or unknown:
            raise TypeError(_call_hint(type(self).__name__, args, {k: kwargs[k] for k in unknown}))
        return self.configure_new(**kwargs)

    get = __call__

    # --- a table of runs ----------------------------------------------------
    def to_dataframe(self, fields=None, limit: int | None = None):
        """A table of the runs: one row per run, newest last (a pandas DataFrame).

        Reads start and stop documents only (pushed down to the database
        where the backend can; from the index on file catalogs), never event
        data. Works on search results like on the whole catalog.

        Parameters
        ----------
        fields : list of str, optional
            More columns, each a dotted key of the start document
            (``'sample.name'``, or ``'start.sample.name'``) or, prefixed with
            ``'stop.'``, of the stop document (``'stop.reason'``). A run
            lacking the key has a missing value there.
        limit : int, optional
            Only the newest ``limit`` runs.

        Returns
        -------
        pandas.DataFrame
            Index: position 0..n-1 in the table (a ``RangeIndex``; the uid is
            a column, so ``cat[df.uid.iloc[-1]]`` opens a row's run).
            Columns: ``uid``, ``scan_id``, ``plan_name``, ``time``
            (timezone-aware, local timezone), ``duration`` (seconds, NaN while
            in progress), ``exit_status`` (missing while in progress), then one
            ``events.<stream>`` column per stream named in any run's stop
            document (``primary`` first, then alphabetical; integer counts,
            missing where unknown), then ``fields`` in the order given.
            Integer columns with gaps use pandas' nullable ``Int64``.

        Examples
        --------
        >>> from intake_bluesky.core import BlueskyInMemoryCatalog
        >>> from intake_bluesky.core.testing import example_runs
        >>> cat = BlueskyInMemoryCatalog()
        >>> for docs in example_runs():
        ...     cat.ingest(docs)
        >>> df = cat.to_dataframe(fields=["sample.name"], limit=3)
        >>> df[["scan_id", "plan_name", "sample.name"]].values.tolist()
        [[2, 'count', 'Fe'], [3, 'scan', 'Ni'], [4, 'fly', 'Au']]
        >>> df["events.primary"].tolist()
        [2, <NA>, 4]
        """
        fields = _check_fields(fields)
        return rows_to_dataframe(run_rows(self, fields, limit), fields)

    # --- notebooks ------------------------------------------------------------
    # intake's DataSource defines _ipython_display_ (a YAML dump), which
    # IPython would use instead of the HTML below.
    _ipython_display_ = None

    def _repr_html_(self) -> str:
        return catalog_html(self)


#: Names people type from other libraries' habits, and what to use here.
_ATTRIBUTE_HINTS = {
    "first": "the oldest run is cat[list(cat)[0]] or cat.values().first()",
    "last": "the newest run is cat[-1] (or cat.values().last())",
    "head": "use cat.values().head(n), or cat.to_dataframe() for a table",
    "tail": "use cat.values().tail(n) or cat[-n:], or cat.to_dataframe(limit=n) for a table",
    "v1": "there is no databroker v1 layer: runs are cat[key], data run.primary.read()",
    "v2": "this catalog is the databroker v2 style already: cat[key], run.primary.read()",
    "listruns": "use cat.to_dataframe(limit=20) for a table of recent runs",
}


class RunsView:
    """A catalog's runs (or uids, or ``(uid, run)`` pairs), oldest first,
    computed lazily.

    ``for run in cat.values()`` opens one run at a time; ``len()`` counts
    without listing; ``view[i]`` is by position (``[0]`` the oldest,
    ``[-1]`` the newest), ``view[a:b]`` a list; ``first()``, ``last()``,
    ``head(n)``, ``tail(n)`` as in tiled.

    Examples
    --------
    >>> from intake_bluesky.core import BlueskyInMemoryCatalog
    >>> from intake_bluesky.core.testing import example_runs
    >>> cat = BlueskyInMemoryCatalog()
    >>> for docs in example_runs():
    ...     cat.ingest(docs)
    >>> [uid[:4] for uid in cat.keys().tail(2)]
    ['d00d', 'e1e1']
    """

    def __init__(self, catalog: BlueskyCatalog, kind: str):
        self._catalog = catalog
        self._kind = kind

    def _make(self, start: dict):
        if self._kind == "keys":
            return start["uid"]
        run = self._catalog._run(start["uid"])
        return run if self._kind == "values" else (start["uid"], run)

    def __iter__(self):
        for start in self._catalog._search():
            yield self._make(start)

    def __len__(self) -> int:
        return len(self._catalog)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._make(s) for s in self._catalog._lookup.starts(index)]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(
                f"cat.{self._kind}()[...] takes a position (int) or a slice, not "
                f"{type(index).__name__}; look runs up by uid or scan_id with cat[key]."
            )
        return self._make(self._catalog._lookup.start_at(index))

    def first(self):
        """The oldest: ``view[0]``."""
        return self[0]

    def last(self):
        """The newest: ``view[-1]``."""
        return self[-1]

    def head(self, n: int = 5) -> list:
        """The ``n`` oldest, oldest first."""
        return self[:n]

    def tail(self, n: int = 5) -> list:
        """The ``n`` newest, oldest of them first."""
        return self[-n:] if n > 0 else []

    def __repr__(self):
        try:
            count = f"{len(self)} runs"
        except Exception as err:  # a repr must not raise
            count = f"runs unknown: {type(err).__name__}"
        return f"<{self._kind} of {type(self._catalog).__name__}: {count}>"


def _init_parameters(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(
            p.name
            for p in params
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
        )
    return names


def _call_hint(cls_name: str, args: tuple, unknown: dict) -> str:
    if args and not unknown and len(args) == 1 and isinstance(args[0], str | int):
        return (
            f"{cls_name}.get({args[0]!r}) / {cls_name}({args[0]!r}) is not a lookup here: "
            f"use cat[{args[0]!r}] (a uid, partial uid, -N for the N-th newest, or a scan_id)."
        )
    if unknown and not args:
        query = ", ".join(f"{k!r}: {v!r}" for k, v in unknown.items())
        return (
            f"A catalog is not called with a query ({', '.join(unknown)} "
            f"{'is not an argument' if len(unknown) == 1 else 'are not arguments'} of "
            f"{cls_name}): use cat.search({{{query}}}) to find runs, or cat[key] to get one."
        )
    return (
        f"{cls_name} is not called with {args!r}{' ' + str(unknown) if unknown else ''}: "
        "use cat[key] to get a run (uid, partial uid, -N, scan_id) and cat.search({...}) to "
        "find runs; calling a catalog re-creates it with other constructor arguments "
        "(e.g. cat(root_map={...}))."
    )


def _dotted(obj):
    """An importable name for a class when there is one, else the object."""
    if isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if module and name and "<" not in name and module != "__main__":
        return f"{module}.{name}"
    return obj
