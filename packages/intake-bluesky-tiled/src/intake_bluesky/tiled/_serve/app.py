"""``build_app(catalog)``: tiled's ASGI application serving a catalog.

Examples
--------
Serve the example runs in this process and read them with tiled's client
(bluesky-tiled-plugins' client classes are picked by the nodes' specs):

>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_registry, example_runs
>>> from tiled.client import Context, from_context
>>> cat = BlueskyInMemoryCatalog(**example_registry("/tmp/intake-bluesky-doctest"))
>>> for docs in example_runs("/tmp/intake-bluesky-doctest"):
...     cat.ingest(docs)
>>> with Context.from_app(build_app(cat)) as context:
...     client = from_context(context)
...     client[-1]["primary"].read()["x"].values.tolist()
[0.1, 0.2, 0.30000000000000004, 0.4]
"""

from __future__ import annotations

import secrets
from typing import Any

# Registers bluesky-tiled-plugins' query types (ScanID, PartialUID, ...)
# under the names its clients send.
import bluesky_tiled_plugins.queries  # noqa: F401

from intake_bluesky.core import BlueskyCatalog
from tiled.config import Authentication
from tiled.server.app import build_app as tiled_build_app

from . import search  # noqa: F401  (registers the queries the tree answers)
from .adapters import CatalogAdapter

__all__ = ["build_app", "new_api_key"]


def new_api_key() -> str:
    """A random api key of the kind tiled accepts (64 hex digits)."""
    return secrets.token_hex(32)


def build_app(
    catalog: BlueskyCatalog | CatalogAdapter,
    *,
    api_key: str | None = None,
    public: bool = False,
    scalable: bool = False,
    cache_size: int = 64,
    server_settings: dict[str, Any] | None = None,
):
    """tiled's ASGI app serving ``catalog``, read-only.

    Parameters
    ----------
    catalog : BlueskyCatalog or CatalogAdapter
        Any intake-bluesky catalog (or a tree already made of one).
    api_key : str, optional
        The single key that opens it (tiled's single-user mode: clients pass
        ``api_key=`` or the ``TILED_API_KEY`` environment variable). Letters
        and digits only. Default: the ``TILED_SINGLE_USER_API_KEY``
        environment variable, else a random key (which an in-process client,
        ``Context.from_app``, finds by itself).
    public : bool
        Let anyone read without a key (the key still works).
    scalable : bool
        The app runs in several processes (uvicorn workers): tiled then
        insists that the key be given (the same in every process).
    cache_size : int
        How many finished runs each process keeps open between requests.
    server_settings : dict, optional
        More of tiled's server settings (e.g. ``allow_origins``).

    Returns
    -------
    fastapi.FastAPI
        Serve it with any ASGI server (``uvicorn.run(app)``).

    Notes
    -----
    Nothing can be written through it: the tree has no writing methods and
    the only route it adds reads documents. Raw files are never served
    (tiled's ``expose_raw_assets`` is off, and the nodes hold no assets): a
    client sees arrays computed by this project's readers, never a path.
    """
    tree = (
        catalog
        if isinstance(catalog, CatalogAdapter)
        else CatalogAdapter(catalog, cache_size=cache_size)
    )
    if api_key is not None and not (api_key.isascii() and api_key.isalnum()):
        raise ValueError("An api key must be letters and digits only (e.g. new_api_key()).")
    authentication = Authentication(
        single_user_api_key=api_key, allow_anonymous_access=True if public else None
    )
    settings = {"expose_raw_assets": False, **(server_settings or {})}
    return tiled_build_app(
        tree, authentication=authentication, server_settings=settings, scalable=scalable
    )
