"""The catalog of runs, over any :class:`~intake_bluesky.core.driver.Driver`.

Search, getitem sugar and nesting live here once; every backend's catalog is
this class with its own driver.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from intake.catalog.base import Catalog

from ._faces import BlueskyRun, EntriesMixin, describe
from ._model import Settings
from ._query import and_queries, validate_query
from .driver import Driver

__all__ = ["BlueskyCatalog"]

_NEWEST_FIRST = [("time", -1)]


class BlueskyCatalog(EntriesMixin, Catalog):
    """A catalog of bluesky runs.

    Parameters
    ----------
    driver : Driver
        The storage backend (see :mod:`intake_bluesky.core.driver`).
    handler_registry : dict, optional
        Resource spec (or stream mimetype) -> handler class or dotted name.
        Wins over handlers discovered in the ``databroker.handlers`` group.
    root_map : dict, optional
        Old root -> new root, for external files that moved.
    query : dict, optional
        A MongoDB query on start documents that pre-filters the catalog.
    transforms : dict, optional
        ``start``/``stop``/``descriptor``/``resource`` -> callable that patches
        those documents on read. Searches see the stored start documents,
        not the transformed ones (a database evaluates them where they are).
    **kwargs
        Passed to ``intake.catalog.Catalog`` (``name``, ``metadata``, ...).

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
    version = "0.1.0"

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
        given = self._captured_init_kwargs.get("handler_registry")
        if given:
            # Written by yaml()/pickle as importable names, not Python objects.
            self._captured_init_kwargs["handler_registry"] = {
                k: _dotted(v) for k, v in given.items()
            }
        self._settings = Settings(handler_registry, root_map, transforms)
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

    def search(self, query: Mapping, **kwargs) -> BlueskyCatalog:
        """The runs whose start document matches ``query`` (MongoDB language).

        Parameters
        ----------
        query : dict
            A MongoDB query on start documents: dotted keys, ``$gt``, ``$in``,
            ``$regex``, ``$and``, ``$or``, ``$exists``, ... (see
            :func:`~intake_bluesky.core.validate_query`).

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
        if kwargs:
            raise TypeError(f"search() takes one query mapping, not {sorted(kwargs)}.")
        query = validate_query(query, server=getattr(self.driver, "server_side_queries", False))
        # Not copy.copy: intake's pickling hooks would re-create the driver.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._query = and_queries(self._query, query)
        # intake pickles and exports (yaml) from the constructor arguments:
        # the subset must be re-created as a subset.
        new._captured_init_kwargs = {**self._captured_init_kwargs, "query": new._query}
        return new

    def _search(self, query=None, **kwargs) -> Iterator[dict]:
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
    def __getitem__(self, key) -> BlueskyRun:
        if isinstance(key, str) and re.fullmatch(r"-?\d+", key.strip()):
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise TypeError(
                f"Look runs up by uid (str), partial uid, scan_id (int >= 0) or -N (N-th most "
                f"recent), not {type(key).__name__}."
            )
        if isinstance(key, int):
            return self._run(self._start_for_int(key)["uid"])
        return self._run(self._start_for_uid(key)["uid"])

    def _start_for_int(self, key: int) -> dict:
        if key < 0:
            found = list(self._search(sort=_NEWEST_FIRST, skip=-key - 1, limit=1))
            if not found:
                count = len(self)
                raise IndexError(
                    f"cat[{key}] is out of range: the catalog holds {count} "
                    f"run{'s' if count != 1 else ''} (cat[-1] is the most recent)."
                )
            return found[0]
        found = list(self._search({"scan_id": key}, sort=_NEWEST_FIRST, limit=1))
        if not found:
            raise KeyError(f"No run with scan_id {key} in this catalog.")
        return found[0]

    def _start_for_uid(self, key: str) -> dict:
        found = list(self._search({"uid": key}, limit=1))
        if found:
            return found[0]
        pattern = "^" + re.escape(key)
        found = list(self._search({"uid": {"$regex": pattern}}, limit=11))
        if not found:
            raise KeyError(f"No run with uid (or uid beginning with) {key!r} in this catalog.")
        if len(found) > 1:
            matches = ", ".join(s["uid"] for s in found[:10])
            more = " and more" if len(found) > 10 else ""
            raise ValueError(
                f"Partial uid {key!r} is ambiguous: it matches {matches}{more}. "
                "Give more characters."
            )
        return found[0]

    def _run(self, uid: str) -> BlueskyRun:
        return BlueskyRun(self.driver.run(uid), self._settings)

    def __getattr__(self, name):
        # intake falls back to __getitem__ for attributes; runs are not
        # attributes (uids are not identifiers), so fail fast and clearly.
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def _dotted(obj):
    """An importable name for a class when there is one, else the object."""
    if isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if module and name and "<" not in name and module != "__main__":
        return f"{module}.{name}"
    return obj
