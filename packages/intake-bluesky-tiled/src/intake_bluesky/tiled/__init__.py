"""Bluesky runs kept in a tiled server, as intake catalogs.

Reads the layout bluesky-tiled-plugins' ``TiledWriter`` writes (the
RunEngine callback facilities use to keep runs in tiled): search with the
Mongo query language (translated to tiled queries the server answers, the
rest decided on the start documents), ``cat[uid]``/``cat[-1]``/
``cat[scan_id]``, ``run.primary.read()``/``to_dask()``, and
``run.canonical()``, the run's documents rebuilt from what tiled keeps.
Detector files registered in tiled are read directly when this machine
reaches them, else through tiled's array endpoints.

Examples
--------
Serve a tiled catalog in this process, write a run into it with
TiledWriter, and read it back:

>>> from tiled.catalog import in_memory  # doctest: +SKIP
>>> from tiled.client import Context, from_context  # doctest: +SKIP
>>> from tiled.server.app import build_app  # doctest: +SKIP
>>> tree = in_memory(writable_storage=directory)  # doctest: +SKIP
>>> client = from_context(Context.from_app(build_app(tree)))  # doctest: +SKIP
>>> RE.subscribe(TiledWriter(client))  # doctest: +SKIP
>>> cat = BlueskyTiledCatalog(client)  # doctest: +SKIP
>>> cat[-1].primary.read()  # doctest: +SKIP

Over HTTP, with an api key:

>>> cat = BlueskyTiledCatalog("https://tiled.example.org/api/v1/metadata/raw",
...                           api_key="secret")  # doctest: +SKIP

Serve any intake-bluesky catalog through tiled (the ``server`` extra;
tiled's and bluesky-tiled-plugins' clients read it):

>>> app = build_app(BlueskyJSONLCatalog("data/"), api_key="secret")  # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

from ._catalog import BlueskyTiledCatalog
from ._connect import TiledConnectionError, TiledRef, redact
from ._driver import TiledDriver
from ._query import SCALAR_KEYS, translate
from ._reader import TiledArrayReader
from ._runsource import DATA_ACCESS, TiledRunSource

if TYPE_CHECKING:
    from ._serve import CatalogAdapter, build_app

#: Serving names, imported when first used: they need the ``server`` extra
#: (tiled's server), which reading from tiled does not.
_SERVING = ("CatalogAdapter", "build_app")


def __getattr__(name: str) -> Any:
    if name in _SERVING:
        try:
            from . import _serve
        except ImportError as err:
            raise ImportError(
                f"intake_bluesky.tiled.{name} serves catalogs through tiled, which needs the "
                f"server extra: pip install 'intake-bluesky-tiled[server]' ({err})."
            ) from err
        return getattr(_serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATA_ACCESS",
    "SCALAR_KEYS",
    "BlueskyTiledCatalog",
    "CatalogAdapter",
    "TiledArrayReader",
    "TiledConnectionError",
    "TiledDriver",
    "TiledRef",
    "TiledRunSource",
    "build_app",
    "redact",
    "translate",
]
