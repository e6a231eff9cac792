"""Where the runs are: a tiled container reached by URI or given as a client node.

A :class:`TiledRef` is what drivers and run sources carry. It opens the
container of runs with tiled's *plain* client classes (no special clients
chosen by spec, so bluesky-tiled-plugins' catalog class never rewrites our
queries), with data sources included (the registered detector files are
read directly when they are reachable). It pickles as its URI and api key,
so dask workers in other processes reconnect; an in-process client (tests,
``Context.from_app``) cannot travel and says so. The api key never appears in
a repr or an error.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TiledConnectionError", "TiledRef", "plain_structure_clients", "redact"]


class TiledConnectionError(ConnectionError):
    """The tiled server could not be reached or refused the credentials."""


def redact(uri: str) -> str:
    """``uri`` without credentials or query string (where api keys travel).

    Examples
    --------
    >>> redact("https://user:pw@tiled.example.org/api/v1/metadata/raw?api_key=secret")
    'https://tiled.example.org/api/v1/metadata/raw'
    """
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def plain_structure_clients() -> dict[str, Any]:
    """tiled's client classes by structure family only: no special clients.

    bluesky-tiled-plugins registers client classes chosen by a node's spec
    (``BlueskyRun``, ``CatalogOfBlueskyRuns``); those rewrite searches and
    keys. This backend speaks tiled's plain API.
    """
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH, Container
    from tiled.structures.core import StructureFamily

    dispatch = DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"]
    families = {family.value for family in StructureFamily} | {"xarray_dataset"}
    clients = {name: dispatch[name] for name in families if name in dispatch}
    # A composite node (a TiledWriter stream) as the container it is: its
    # children are the event table and the data keys' arrays, where the
    # composite client would list the table's columns one by one.
    clients["composite"] = Container
    return clients


class TiledRef:
    """A tiled container of runs, opened lazily, picklable when given by URI.

    Parameters
    ----------
    source : str or tiled client node
        ``http(s)://host/api/v1/metadata/<path>`` (or the server's root URI
        plus ``path``), or a tiled container client.
    api_key : str, optional
        The key sent with every request (also read from ``TILED_API_KEY`` by
        tiled when not given).
    """

    def __init__(self, source: Any, api_key: str | None = None) -> None:
        self._lock = threading.Lock()
        self._node: Any = None
        self.uri: str | None
        self.api_key: str | None
        if isinstance(source, TiledRef):
            self.uri, self.api_key, self._node = source.uri, source.api_key, source._node
        elif isinstance(source, str):
            self.uri, self.api_key = source, api_key
        elif hasattr(source, "context") and hasattr(source, "path_parts"):
            self.uri, self.api_key = None, api_key
            self._node = _plain(source.context, list(source.path_parts))
        else:
            raise TypeError(
                f"A tiled catalog needs a tiled URI (http(s)://host/api/v1/...) or a tiled "
                f"client node, not {type(source).__name__}."
            )

    def describe(self) -> str:
        """Where the runs are, without credentials."""
        if self.uri is not None:
            return redact(self.uri)
        uri = getattr(self._node, "uri", None)
        return f"<in-process tiled: {redact(uri)}>" if uri else "<in-process tiled>"

    def __repr__(self) -> str:
        return f"TiledRef({self.describe()!r})"

    def __getstate__(self) -> dict[str, Any]:
        if self.uri is None:
            raise TypeError(
                f"This catalog reads {self.describe()}, a tiled client made in this process "
                "(e.g. Context.from_app): it cannot be pickled or sent to another process. "
                "Open the catalog by URI (BlueskyTiledCatalog('http://host/api/v1/...')) to use "
                "it with dask.distributed or multiprocessing."
            )
        return {"uri": self.uri, "api_key": self.api_key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.uri, self.api_key = state["uri"], state["api_key"]
        self._lock = threading.Lock()
        self._node = None

    def node(self) -> Any:
        """The container of runs (a plain tiled client with data sources)."""
        if self._node is not None:
            return self._node
        with self._lock:
            if self._node is None:
                self._node = self._connect()
        return self._node

    def _connect(self) -> Any:
        assert self.uri is not None
        try:
            node = _open(self.uri, self.api_key)
        except Exception as err:
            # tiled's errors may quote the request URL, api key included.
            raise TiledConnectionError(
                f"Could not open the tiled container {self.describe()}: "
                f"{type(err).__name__}{_status(err)}. Check the URI, that the server is "
                "running, and the api key (api_key=... or the TILED_API_KEY variable)."
            ) from None
        return node


#: The TLS contexts of this process's catalogs, by CA bundle.
_TLS: dict[tuple[str | None, str | None], Any] = {}
_TLS_LOCK = threading.Lock()


def _tls() -> Any:
    """The verifying TLS context httpx makes for each client (the CA bundle
    of ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's), made once per
    process and bundle: loading the bundle is most of the cost of a client
    (~20 ms), and a catalog opened by URI makes a client of its own."""
    import httpx

    key = (os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)
    with _TLS_LOCK:
        context = _TLS.get(key)
        if context is None:
            context = _TLS[key] = httpx.create_ssl_context(verify=True, trust_env=True)
    return context


def _split(uri: str) -> tuple[Any, list[str]]:
    """The API root and the node's path of a tiled URI, read as tiled's
    ``Context.from_any_uri`` reads them."""
    import httpx

    url = httpx.URL(uri)
    path = url.path
    if "/metadata" in path:
        api_path, _, node_path = path.partition("/metadata")
        return url.copy_with(path=api_path), [part for part in node_path.split("/") if part]
    if "/api" not in path:
        return url.copy_with(path=f"{path.rstrip('/')}/api/v1"), []
    if "/v1" not in path:
        return url.copy_with(path=f"{path.rstrip('/')}/v1"), []
    return url, []


def _open(uri: str, api_key: str | None) -> Any:
    """The container at ``uri``, as tiled's ``from_uri`` opens it, without
    its first request: for an ``http://`` URI, tiled asks the server once,
    on a connection of its own, whether it redirects to ``https://``. Here
    the server's first answer on the client's own connection says so
    instead, and only then is the container opened again over https.
    """
    from tiled.client import from_uri
    from tiled.client.context import Context

    api_uri, path_parts = _split(uri)
    context = Context(api_uri, api_key=api_key, verify=_tls())
    upgrade: list[Any] = []

    def redirects(response: Any) -> None:
        if response.has_redirect_location and not upgrade:
            target = response.request.url.join(response.headers["location"])
            if target.scheme == "https" and target.host == response.request.url.host:
                upgrade.append(target)

    hooks = context.http_client.event_hooks
    watched = api_uri.scheme == "http"
    if watched:
        context.http_client.event_hooks = {**hooks, "response": [*hooks["response"], redirects]}
    try:
        node = _plain(context, path_parts)
    except Exception:
        if not upgrade:
            raise
    finally:
        if watched:
            context.http_client.event_hooks = hooks
    if upgrade:
        https = api_uri.copy_with(scheme="https", port=upgrade[0].port)
        return from_uri(
            str(https.copy_with(path=f"{https.path.rstrip('/')}/metadata/{'/'.join(path_parts)}")),
            structure_clients=plain_structure_clients(),
            api_key=api_key,
            include_data_sources=True,
        )
    return node


def _plain(context: Any, path_parts: list[str]) -> Any:
    from tiled.client import from_context

    return from_context(
        context,
        structure_clients=plain_structure_clients(),
        node_path_parts=path_parts,
        include_data_sources=True,
    )


def _status(err: Exception) -> str:
    response = getattr(err, "response", None)
    code = getattr(response, "status_code", None)
    return f" (HTTP {code})" if code else ""
