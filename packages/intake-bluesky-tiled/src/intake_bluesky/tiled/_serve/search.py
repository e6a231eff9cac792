"""The queries a served catalog answers, registered on :class:`CatalogAdapter`.

tiled's ``Eq``, ``NotEq``, ``Comparison``, ``Contains``, ``In``, ``NotIn``,
``Regex``, ``KeyPresent`` and ``Like`` become one Mongo query each
(:mod:`.queries`), ``KeysFilter`` a query on uids; bluesky-tiled-plugins'
``ScanID``, ``ScanIDRange``, ``PartialUID`` and ``TimeRange`` (which older
clients send as they are, and which its current client still sends for
partial uids) too. ``FullText``
matches runs whose start or stop document holds one of the words (as
tiled's own in-memory trees do); no store indexes words, so it reads the
start and stop documents of the runs still in the search.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_registry, example_runs
>>> from tiled.queries import FullText, Key
>>> from bluesky_tiled_plugins.queries import PartialUID, ScanID
>>> cat = BlueskyInMemoryCatalog(**example_registry("/tmp/intake-bluesky-doctest"))
>>> for docs in example_runs("/tmp/intake-bluesky-doctest"):
...     cat.ingest(docs)
>>> tree = CatalogAdapter(cat)
>>> len(tree.search(Key("start.plan_name") == "scan"))
2
>>> [tree.search(ScanID(2))[uid].metadata()["start"]["sample"] for uid in tree.search(ScanID(2))]
[{'name': 'Fe'}]
>>> list(tree.search(PartialUID("c0ffee")))
['c0ffee00-0000-4000-8000-000000000003']
>>> len(tree.search(FullText("carol")))
1
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bluesky_tiled_plugins.queries import ScanIDRange, TimeRange, _PartialUID, _ScanID

from intake_bluesky.core.driver import summaries
from tiled.queries import FullText, KeysFilter, QueryValueError

from .adapters import CatalogAdapter
from .queries import TRANSLATIONS, to_mongo

__all__ = ["register_queries"]


def _translated(query: Any, tree: CatalogAdapter) -> CatalogAdapter:
    return tree.with_query(to_mongo(query))


def _words(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield from value.lower().split()
    elif isinstance(value, dict):
        for item in value.values():
            yield from _words(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _words(item)


def full_text(query: FullText, tree: CatalogAdapter) -> CatalogAdapter:
    """Runs whose start or stop document holds any word of ``query.text``
    (case-insensitive, whole words)."""
    wanted = set(query.text.lower().split())
    catalog = tree.catalog
    uids = [
        start["uid"]
        for start, stop in summaries(catalog.driver, catalog.query)
        if not wanted.isdisjoint(_words(start)) or not wanted.isdisjoint(_words(stop or {}))
    ]
    return tree.with_query({"uid": {"$in": uids}})


def _latest_per_scan_id(tree: CatalogAdapter, duplicates: Any) -> CatalogAdapter:
    """Keep, per scan_id, the newest run (``latest``), all of them (``all``),
    or refuse duplicates (``error``), as databroker's scan_id queries do."""
    mode = str(getattr(duplicates, "value", duplicates))
    if mode == "all":
        return tree
    newest: dict[Any, str] = {}
    counts: dict[Any, int] = {}
    # Our order is oldest first: the last one seen of a scan_id is the newest.
    for start in tree.catalog.driver.search(tree.catalog.query):
        scan_id = start.get("scan_id")
        newest[scan_id] = start["uid"]
        counts[scan_id] = counts.get(scan_id, 0) + 1
    if mode == "error":
        repeated = sorted(str(k) for k, n in counts.items() if n > 1)
        if repeated:
            raise QueryValueError(f"Several runs have scan_id {', '.join(repeated)}.")
        return tree
    return tree.with_query({"uid": {"$in": list(newest.values())}})


def scan_id(query: _ScanID, tree: CatalogAdapter) -> CatalogAdapter:
    ids = [int(i) for i in query.scan_ids]
    return _latest_per_scan_id(tree.with_query({"scan_id": {"$in": ids}}), query.duplicates)


def scan_id_range(query: ScanIDRange, tree: CatalogAdapter) -> CatalogAdapter:
    narrowed = tree.with_query(
        {"scan_id": {"$gte": int(query.start_id), "$lt": int(query.end_id)}}
    )
    return _latest_per_scan_id(narrowed, query.duplicates)


def partial_uid(query: _PartialUID, tree: CatalogAdapter) -> CatalogAdapter:
    prefixes = [str(p) for p in query.partial_uids]
    if len(prefixes) == 1:
        return tree.with_query({"uid": {"$regex": "^" + re.escape(prefixes[0])}})
    return tree.with_query({"$or": [{"uid": {"$regex": "^" + re.escape(p)}} for p in prefixes]})


def keys_filter(query: KeysFilter, tree: CatalogAdapter) -> CatalogAdapter:
    """Only the runs with these uids."""
    return tree.with_query({"uid": {"$in": [str(key) for key in query.keys]}})


def time_range(query: TimeRange, tree: CatalogAdapter) -> CatalogAdapter:
    condition = {}
    if query.since is not None:
        condition["$gte"] = float(query.since)
    if query.until is not None:
        condition["$lt"] = float(query.until)
    return tree.with_query({"time": condition}) if condition else tree


def register_queries(register: Any = CatalogAdapter.register_query) -> None:
    """Register every query above with ``register(query_type, translator)``."""
    for query_type in TRANSLATIONS:
        register(query_type, _translated)
    register(FullText, full_text)
    register(KeysFilter, keys_filter)
    register(_ScanID, scan_id)
    register(ScanIDRange, scan_id_range)
    register(_PartialUID, partial_uid)
    register(TimeRange, time_range)


register_queries()
