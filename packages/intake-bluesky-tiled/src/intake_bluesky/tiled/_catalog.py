"""The intake catalog of runs kept in a tiled server."""

from __future__ import annotations

from intake_bluesky.core import BlueskyCatalog, with_catalog_parameters

from ._connect import TiledRef, redact
from ._driver import TiledDriver
from ._runsource import DATA_ACCESS

__all__ = ["BlueskyTiledCatalog"]


@with_catalog_parameters
class BlueskyTiledCatalog(BlueskyCatalog):
    """A catalog of bluesky runs kept in tiled (bluesky-tiled-plugins' TiledWriter).

    Parameters
    ----------
    source : str or tiled client node
        A tiled URI of the container holding the runs
        (``https://host/api/v1/metadata/raw``), or a tiled container client.
    api_key : str, optional
        The api key sent with every request; tiled also reads
        ``TILED_API_KEY``. Never shown in reprs, YAML or errors.
    data_access : {"auto", "direct", "http"}
        How detector data (external files) is read: ``"direct"`` opens the
        registered files with the installed stream readers (after
        ``root_map``), ``"http"`` fetches rows through tiled, ``"auto"``
        (default) reads directly when every file of the run is reachable
        from this machine. ``run.describe()`` says which a run uses.
    scalar_keys : iterable of str, optional
        Start document keys (dotted) whose values are never arrays, beside
        those event-model types as scalars (uid, time, scan_id, plan_name,
        plan_type, group, owner, project): searches on them are answered by
        the server. Searches on other keys are decided here, on every
        candidate's start document, because tiled's equality does not match
        elements of arrays as Mongo's does.
    {catalog_parameters}

    See Also
    --------
    intake_bluesky.core.BlueskyCatalog : search, lookup and the run model.

    Notes
    -----
    The documents come back rebuilt from what tiled keeps; see
    :mod:`intake_bluesky.tiled._layout` for what TiledWriter does not store
    (event and stream_datum uids, resources, object_keys).

    Examples
    --------
    >>> cat = BlueskyTiledCatalog("http://localhost:8000/api/v1/metadata/")  # doctest: +SKIP
    >>> run = cat[-1]  # doctest: +SKIP
    >>> run.primary.read()  # doctest: +SKIP
    """

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store`` is an ``http(s)://`` URI (a tiled server)."""
        return isinstance(store, str) and store.startswith(("http://", "https://"))

    @classmethod
    def open_store(cls, store, **common):
        """The catalog at the tiled URI ``store`` (api key from ``TILED_API_KEY``)."""
        return cls(store, **common)

    def __init__(
        self,
        source,
        *,
        api_key: str | None = None,
        data_access: str = "auto",
        scalar_keys=(),
        **common,
    ):
        if data_access not in DATA_ACCESS:
            raise ValueError(f"data_access must be one of {DATA_ACCESS}, not {data_access!r}.")
        ref = TiledRef(source, api_key)
        driver = TiledDriver(
            ref,
            data_access=data_access,
            root_map=common.get("root_map"),
            scalar_keys=scalar_keys,
        )
        super().__init__(driver, **common)

    def __getstate__(self):
        state = super().__getstate__()
        args = list(state["args"])
        if args:
            # The live client (or the URI) is carried by the driver's ref,
            # which refuses to pickle an in-process client with a clear error.
            args[0] = self.driver.ref
        kwargs = dict(state["kwargs"])
        if self._query:
            kwargs["query"] = dict(self._query)
        state["args"], state["kwargs"] = args, type(state["kwargs"])(kwargs)
        return state

    def _yaml(self):
        data = super()._yaml()
        for source in data.get("sources", {}).values():
            args = source.get("args", {})
            if "source" in args:
                args["source"] = self.driver.ref.describe()
            if args.get("api_key"):
                args["api_key"] = "<redacted>"
        return data


def _shown(uri: str) -> str:
    return redact(uri)
