"""The parameters catalogs share, documented once for all catalog classes.

A catalog class writes a marker line such as ``{catalog_parameters}`` in the
Parameters section of its docstring and is decorated with
:func:`with_catalog_parameters`, which puts the fragment the marker names
(:data:`FRAGMENTS`) there at the marker's indentation. The API reference site
does the same for the static docstring (a griffe extension in ``tools/``), so
both read the same text.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "CATALOG_PARAMETERS",
    "FRAGMENTS",
    "INDEX_PATH_PARAMETER",
    "fill_catalog_parameters",
    "with_catalog_parameters",
]

#: The parameters of :class:`~intake_bluesky.core.BlueskyCatalog` that every
#: catalog passes on, as numpydoc Parameters entries.
CATALOG_PARAMETERS = """\
handler_registry : dict, optional
    Resource spec (or stream mimetype) -> handler (or stream reader) class,
    or its dotted name, for external data. Wins over those discovered in the
    ``databroker.handlers`` (``intake_bluesky.stream_readers``) entry point
    groups.
root_map : dict, optional
    Old root -> new root, for external files that moved.
query : dict, optional
    A MongoDB query on start documents that pre-filters the catalog.
transforms : dict, optional
    ``start``/``stop``/``descriptor``/``resource``/``stream_resource`` ->
    callable that patches those documents on read. Searches see the stored
    start documents, not the transformed ones (a database evaluates them
    where they are).
**kwargs
    Passed to intake's ``Catalog`` (``name``, ``metadata``, ...)."""

#: The ``index_path`` parameter of catalogs over files
#: (:meth:`~intake_bluesky.core.FileDriver.for_catalog`).
INDEX_PATH_PARAMETER = """\
index_path : str, path or False, optional
    The on-disk index of the runs' start and stop documents, which lets a
    new process open an unchanged directory without reading any file.
    Default: the ``INTAKE_BLUESKY_INDEX`` environment variable if set (a
    path, or ``off``), else ``file-index.sqlite`` in the user's cache
    directory (``platformdirs.user_cache_dir("intake-bluesky")``). A path
    puts it there; ``False`` keeps the index in memory only."""

#: Marker line -> the fragment that replaces it.
FRAGMENTS = {
    "{catalog_parameters}": CATALOG_PARAMETERS,
    "{index_path_parameter}": INDEX_PATH_PARAMETER,
}

_C = TypeVar("_C", bound=type)


def fill_catalog_parameters(doc: str) -> str:
    """``doc`` with each marker line replaced by its fragment, indented alike.

    Examples
    --------
    >>> doc = "Parameters\\n    ----------\\n    {catalog_parameters}\\n"
    >>> print(fill_catalog_parameters(doc).splitlines()[2])
        handler_registry : dict, optional
    """
    lines = doc.split("\n")
    out: list[str] = []
    for line in lines:
        fragment = FRAGMENTS.get(line.strip())
        if fragment is None:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(indent + part if part else part for part in fragment.split("\n"))
    return "\n".join(out)


def with_catalog_parameters(cls: _C) -> _C:
    """Class decorator: fill the catalog parameters into ``cls``'s docstring.

    Examples
    --------
    >>> @with_catalog_parameters
    ... class MyCatalog:
    ...     '''Runs from somewhere.
    ...
    ...     Parameters
    ...     ----------
    ...     {catalog_parameters}
    ...     '''
    >>> "root_map : dict, optional" in MyCatalog.__doc__
    True
    """
    if cls.__doc__:  # None under python -OO
        cls.__doc__ = fill_catalog_parameters(cls.__doc__)
    return cls
