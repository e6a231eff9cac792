"""Opening a MongoDB URI in the layout its database holds.

suitcase-mongo writes two layouts: normalized (start documents in
``run_start``) and embedded (start documents in ``header``). A catalog over
the other layout's database counts no runs, so the layout of a database is
told by opening it both ways and counting. This is what the catalogs'
``open_store`` does for ``intake-bluesky ls mongodb://...``.
"""

from __future__ import annotations

from ._catalog import BlueskyMongoCatalog, BlueskyMongoEmbeddedCatalog

__all__ = ["LAYOUTS", "URI_SCHEMES", "is_mongo_uri", "open_uri"]

#: The URI prefixes of MongoDB connection strings.
URI_SCHEMES = ("mongodb://", "mongodb+srv://")

#: suitcase-mongo's layouts and the catalog that reads each.
LAYOUTS: dict[str, type] = {
    "normalized": BlueskyMongoCatalog,
    "embedded": BlueskyMongoEmbeddedCatalog,
}


def is_mongo_uri(store) -> bool:
    """Whether ``store`` is a MongoDB connection string.

    Examples
    --------
    >>> is_mongo_uri("mongodb+srv://db.facility/mds"), is_mongo_uri("data/runs")
    (True, False)
    """
    return isinstance(store, str) and store.startswith(URI_SCHEMES)


def open_uri(uri: str, *, layout: str | None = None, assets: str | None = None, **common):
    """The catalog of the runs in the database ``uri`` names.

    Parameters
    ----------
    uri : str
        A MongoDB URI naming the database (``mongodb://host:27017/mds``).
    layout : {"normalized", "embedded"}, optional
        The layout to read; default: the one the database holds runs in.
    assets : str, optional
        URI of the asset registry database (normalized layout only; default:
        ``uri``).
    **common
        Passed to the catalog (``root_map``, ``handler_registry``, ...).

    Raises
    ------
    ValueError
        If ``uri`` is not a MongoDB URI, the layout is unknown, ``assets``
        is given for the embedded layout, or (detecting) the database holds
        runs in both layouts or in neither.

    Examples
    --------
    >>> open_uri("data/runs")
    Traceback (most recent call last):
    ...
    ValueError: A MongoDB catalog is opened from a URI (mongodb://host/db), not 'data/runs'.
    """
    if not is_mongo_uri(uri):
        raise ValueError(
            f"A MongoDB catalog is opened from a URI (mongodb://host/db), not {uri!r}."
        )
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout (--layout) must be one of {sorted(LAYOUTS)}, not {layout!r}.")
    if assets and layout == "embedded":
        raise ValueError("assets (--assets) applies to the normalized layout only.")
    normalized, embedded = LAYOUTS["normalized"], LAYOUTS["embedded"]
    if layout == "normalized":
        return normalized(uri, asset_registry_db=assets, **common)
    if layout == "embedded":
        return embedded(uri, **common)
    as_normalized = normalized(uri, asset_registry_db=assets, **common)
    as_embedded = embedded(uri, **common)
    n_normalized, n_embedded = len(as_normalized), len(as_embedded)
    if n_normalized and n_embedded:
        raise ValueError(
            f"The database holds runs in both layouts ({n_normalized} normalized, "
            f"{n_embedded} embedded); pick one with layout='normalized' or 'embedded' "
            "(--layout normalized|embedded)."
        )
    if n_embedded:
        if assets:
            raise ValueError("assets (--assets) applies to the normalized layout only.")
        return as_embedded
    if n_normalized:
        return as_normalized
    raise ValueError(
        f"{as_normalized.driver!r} holds no runs in either layout (no run_start or header "
        "documents). Check the database name in the URI, or give the layout (--layout) to "
        "open it anyway."
    )
