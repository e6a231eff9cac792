"""The parameters every catalog takes, documented once for all catalog classes.

A catalog class writes the line ``{catalog_parameters}`` in the Parameters
section of its docstring and is decorated with :func:`with_catalog_parameters`,
which puts :data:`CATALOG_PARAMETERS` there at the marker's indentation. The
API reference site does the same for the static docstring (a griffe extension
in ``docs/``), so both read the same text.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["CATALOG_PARAMETERS", "MARKER", "fill_catalog_parameters", "with_catalog_parameters"]

#: The line a catalog docstring writes where the shared parameters go.
MARKER = "{catalog_parameters}"

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

_C = TypeVar("_C", bound=type)


def fill_catalog_parameters(doc: str) -> str:
    """``doc`` with its marker line replaced by :data:`CATALOG_PARAMETERS`, indented alike.

    Examples
    --------
    >>> doc = "Parameters\\n    ----------\\n    {catalog_parameters}\\n"
    >>> print(fill_catalog_parameters(doc).splitlines()[2])
        handler_registry : dict, optional
    """
    lines = doc.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == MARKER:
            indent = line[: len(line) - len(line.lstrip())]
            block = [indent + part if part else part for part in CATALOG_PARAMETERS.split("\n")]
            lines[i : i + 1] = block
    return "\n".join(lines)


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
