"""Indexes that make the drivers' reads fast; reads work without them.

suitcase-mongo creates some indexes when it writes; databases filled by other
tools (or restored without indexes) may have none. These functions create the
ones every read of this package relies on, and skip any that an equivalent
existing index already serves, so they are safe to run on a facility database
at any time (idempotent, and never a second copy of suitcase-mongo's indexes).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._connect import DatabaseRef, translate_errors

__all__ = ["NORMALIZED_INDEXES", "EMBEDDED_INDEXES", "create_indexes", "create_embedded_indexes"]

#: One index: (collection, keys, number of leading equality keys). Leading
#: equality keys may have any direction in an existing index; the rest must
#: match in direction, or all be reversed (MongoDB walks an index backwards).
IndexSpec = tuple[str, Sequence[tuple[str, int]], int]

#: The normalized layout's indexes, by database (``"mds"`` or ``"assets"``).
NORMALIZED_INDEXES: dict[str, list[IndexSpec]] = {
    "mds": [
        # run(uid), anchored partial uid (a prefix regex walks this index).
        ("run_start", [("uid", 1)], 1),
        # Listing and paging oldest/newest first, ties in insertion order.
        ("run_start", [("time", 1), ("_id", 1)], 0),
        # cat[scan_id]: the newest run with that scan_id.
        ("run_start", [("scan_id", 1), ("time", 1), ("_id", 1)], 1),
        ("run_stop", [("run_start", 1)], 1),
        ("event_descriptor", [("run_start", 1), ("time", 1)], 1),
        # Events of a descriptor in time order, with skip/limit windows.
        ("event", [("descriptor", 1), ("time", 1)], 1),
    ],
    "assets": [
        ("resource", [("run_start", 1)], 1),
        ("resource", [("uid", 1)], 1),
        ("datum", [("datum_id", 1)], 1),
        ("datum", [("resource", 1)], 1),
        ("stream_resource", [("run_start", 1)], 1),
        ("stream_resource", [("uid", 1)], 1),
        ("stream_datum", [("descriptor", 1)], 1),
    ],
}

#: The embedded layout's indexes.
EMBEDDED_INDEXES: list[IndexSpec] = [
    ("header", [("start.uid", 1)], 1),
    ("header", [("start.time", 1), ("_id", 1)], 0),
    ("header", [("start.scan_id", 1), ("start.time", 1), ("_id", 1)], 1),
    # Pages of a descriptor in row order; row windows by first/last index.
    ("event", [("descriptor", 1), ("first_index", 1)], 1),
    ("event", [("descriptor", 1), ("last_index", 1)], 1),
    ("datum", [("resource", 1), ("first_index", 1)], 1),
    # datum_id is an array per page: a multikey index serves $in lookups.
    ("datum", [("datum_id", 1)], 1),
    ("stream_datum", [("descriptor", 1)], 1),
]


def create_indexes(
    metadatastore_db, asset_registry_db=None, *, server_selection_timeout_ms=None
) -> list[str]:
    """Create the indexes the normalized layout's reads use (idempotent).

    Parameters
    ----------
    metadatastore_db : str or Database
        A URI naming the database or a ``pymongo`` ``Database``.
    asset_registry_db : str or Database, optional
        Where ``resource``/``datum`` live; default: ``metadatastore_db``.
    server_selection_timeout_ms : int, optional
        How long to wait for a server (URIs).

    Returns
    -------
    list of str
        ``"collection: index name"`` of the indexes created by this call; empty
        when all were there already (including equivalent ones made by
        suitcase-mongo).

    Notes
    -----
    Building an index on a large collection takes time and I/O on the server;
    run this once when setting up, or in a quiet period. Indexes are not
    unique: reads do not need it, and legacy data may hold duplicates.

    Examples
    --------
    >>> import mongomock
    >>> db = mongomock.MongoClient()["mds"]
    >>> created = create_indexes(db)
    >>> "run_start: uid_1" in created
    True
    >>> create_indexes(db)
    []
    """
    mds = _ref(metadatastore_db, server_selection_timeout_ms, "metadatastore_db")
    assets = (
        mds
        if asset_registry_db is None
        else _ref(asset_registry_db, server_selection_timeout_ms, "asset_registry_db")
    )
    created = _ensure(mds, NORMALIZED_INDEXES["mds"])
    created += _ensure(assets, NORMALIZED_INDEXES["assets"])
    return created


def create_embedded_indexes(datastore_db, *, server_selection_timeout_ms=None) -> list[str]:
    """Create the indexes the embedded layout's reads use (idempotent).

    Parameters
    ----------
    datastore_db : str or Database
        A URI naming the database or a ``pymongo`` ``Database``.
    server_selection_timeout_ms : int, optional
        How long to wait for a server (URIs).

    Returns
    -------
    list of str
        ``"collection: index name"`` of the indexes created by this call.

    Notes
    -----
    ``header.start`` is an array (of one document), so the indexes on
    ``start.*`` are multikey: they serve equality, ranges and prefix regexes
    (partial uids); sorting by ``start.time`` may still sort in memory.

    Examples
    --------
    >>> import mongomock
    >>> db = mongomock.MongoClient()["datastore"]
    >>> "header: start.uid_1" in create_embedded_indexes(db)
    True
    >>> create_embedded_indexes(db)
    []
    """
    db = _ref(datastore_db, server_selection_timeout_ms, "datastore_db")
    return _ensure(db, EMBEDDED_INDEXES)


def _ref(target, timeout, role) -> DatabaseRef:
    if isinstance(target, DatabaseRef):
        return target
    return DatabaseRef(target, server_selection_timeout_ms=timeout, role=role)


def _ensure(ref: DatabaseRef, specs: Sequence[IndexSpec]) -> list[str]:
    created = []
    with translate_errors(ref):
        existing: dict[str, list[list[tuple[str, int | str]]]] = {}
        for collection, keys, n_equal in specs:
            if collection not in existing:
                info = ref[collection].index_information()
                existing[collection] = [
                    [(k, _direction(d)) for k, d in index["key"]] for index in info.values()
                ]
            if any(_serves(have, keys, n_equal) for have in existing[collection]):
                continue
            name = ref[collection].create_index(list(keys))
            existing[collection].append(list(keys))
            created.append(f"{collection}: {name}")
    return created


def _direction(value) -> int | str:
    try:
        return 1 if float(value) > 0 else -1
    except (TypeError, ValueError):
        return value  # "text", "hashed", "2dsphere": never serves our specs


def _serves(
    have: Sequence[tuple[str, int | str]], want: Sequence[tuple[str, int]], n_equal
) -> bool:
    """Whether an existing index ``have`` serves the reads ``want`` is for."""
    if len(have) < len(want):
        return False
    prefix = list(have[: len(want)])
    if [k for k, _ in prefix] != [k for k, _ in want]:
        return False
    if any(not isinstance(d, int) for _, d in prefix):
        return False
    tail_have = [d for _, d in prefix[n_equal:]]
    tail_want = [d for _, d in want[n_equal:]]
    return tail_have == tail_want or tail_have == [-d for d in tail_want]
