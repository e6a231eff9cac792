"""Serving any intake-bluesky catalog through tiled (read-only).

:func:`build_app` makes tiled's ASGI app over a catalog; its tree
(:class:`CatalogAdapter`) has the layout databroker 2 serves from MongoDB,
so tiled's client and bluesky-tiled-plugins' client classes read it
unchanged: ``client[uid]["primary"].read()``, ``run.start``,
``run.documents()``, ``client[-1]``, ``client[scan_id]``, searches.

Needs the ``server`` extra: ``pip install 'intake-bluesky-tiled[server]'``.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_registry, example_runs
>>> from tiled.client import Context, from_context
>>> cat = BlueskyInMemoryCatalog(**example_registry("/tmp/intake-bluesky-doctest"))
>>> for docs in example_runs("/tmp/intake-bluesky-doctest"):
...     cat.ingest(docs)
>>> with Context.from_app(build_app(cat)) as context:
...     client = from_context(context)
...     run = client[2]
...     run.start["sample"], [name for name, _ in run.documents()][:2]
({'name': 'Fe'}, ['start', 'descriptor'])
"""

from .adapters import CatalogAdapter, RunAdapter, StreamAdapter
from .app import build_app, new_api_key

__all__ = ["CatalogAdapter", "RunAdapter", "StreamAdapter", "build_app", "new_api_key"]
