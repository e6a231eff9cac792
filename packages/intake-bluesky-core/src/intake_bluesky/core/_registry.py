"""Entry point groups, what is installed in them, and what this project ships.

Every entry point group the project uses is named here, once. Installed
plugins are discovered lazily (on first use) and cached; a plugin that fails
to load is a warning naming it, never a crash of the whole discovery.

:data:`KNOWN_DISTRIBUTIONS` is the one table of the distributions this
project ships and what each provides (backends, the file suffixes and URI
schemes they read, run writers, stream readers, handlers). The core looks a
name up in it only to say which package to install when nothing installed
provides it; what is installed is asked, never this table.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

__all__ = [
    "BACKEND_GROUP",
    "CHECKOUT_HINT",
    "HANDLER_GROUP",
    "KNOWN_DISTRIBUTIONS",
    "READER_GROUP",
    "WRITER_GROUP",
    "Known",
    "backends",
    "checkout_hint",
    "entry_point_objects",
    "known_file_formats",
    "known_names",
    "known_suffixes",
    "known_uri_schemes",
    "provider",
]

#: Storage backends register their catalog class here.
BACKEND_GROUP = "intake_bluesky.backends"
#: Run writers (``intake-bluesky export --format``) register here.
WRITER_GROUP = "intake_bluesky.writers"
#: Stream readers, by mimetype (``=`` written ``%3D``), register here.
READER_GROUP = "intake_bluesky.stream_readers"
#: databroker's group of resource handlers, by resource spec.
HANDLER_GROUP = "databroker.handlers"

#: How to install a package from a checkout while the packages are not on
#: PyPI (as the repository's README says); ``{package}`` is its name.
CHECKOUT_HINT = (
    "from a checkout of intake-bluesky, while the packages are not on PyPI: "
    "python3 -m pip install ./packages/intake-bluesky-core ./packages/{package}"
)


@dataclass(frozen=True)
class Known:
    """What one distribution of this project provides.

    Attributes
    ----------
    backends : tuple of str
        Names in :data:`BACKEND_GROUP`.
    label : str
        The format's name in messages (``"JSONL"``).
    catalog : str
        Dotted name of the catalog class that reads its files.
    suffixes : tuple of str
        File name endings of its run files.
    uri_schemes : tuple of str
        URI prefixes its backends read (``"mongodb://"``).
    writers : tuple of str
        Names in :data:`WRITER_GROUP`.
    stream_readers : tuple of str
        Mimetypes in :data:`READER_GROUP`.
    handlers : tuple of str
        Resource specs in :data:`HANDLER_GROUP`.
    """

    backends: tuple[str, ...] = ()
    label: str = ""
    catalog: str = ""
    suffixes: tuple[str, ...] = ()
    uri_schemes: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()
    stream_readers: tuple[str, ...] = ()
    handlers: tuple[str, ...] = ()

    def names(self, group: str) -> tuple[str, ...]:
        """What it registers in an entry point group."""
        return {
            BACKEND_GROUP: self.backends,
            WRITER_GROUP: self.writers,
            READER_GROUP: self.stream_readers,
            HANDLER_GROUP: self.handlers,
        }.get(group, ())


#: The distributions this project ships, by name: what each provides.
KNOWN_DISTRIBUTIONS: dict[str, Known] = {
    "intake-bluesky-core": Known(backends=("in_memory",)),
    "intake-bluesky-jsonl": Known(
        backends=("jsonl",),
        label="JSONL",
        catalog="intake_bluesky.jsonl.BlueskyJSONLCatalog",
        suffixes=(".jsonl",),
        writers=("jsonl",),
    ),
    "intake-bluesky-msgpack": Known(
        backends=("msgpack",),
        label="msgpack",
        catalog="intake_bluesky.msgpack.BlueskyMsgpackCatalog",
        suffixes=(".msgpack",),
        writers=("msgpack",),
    ),
    "intake-bluesky-tiff": Known(
        backends=("tiff",),
        label="TIFF",
        catalog="intake_bluesky.tiff.BlueskyTiffCatalog",
        suffixes=(".tif", ".tiff"),
        stream_readers=("multipart/related;type=image/tiff", "multipart/related;type=image/jpeg"),
        handlers=("TIFF_PAGES",),
    ),
    "intake-bluesky-mongo": Known(
        backends=("mongo_normalized", "mongo_embedded"),
        label="MongoDB",
        catalog="intake_bluesky.mongo.BlueskyMongoCatalog",
        uri_schemes=("mongodb://", "mongodb+srv://"),
    ),
    "intake-bluesky-tiled": Known(
        backends=("tiled",),
        label="tiled",
        catalog="intake_bluesky.tiled.BlueskyTiledCatalog",
        uri_schemes=("http://", "https://"),
    ),
    "intake-bluesky-hdf5": Known(writers=("nexus",), stream_readers=("application/x-hdf5",)),
}


def checkout_hint(distribution: str) -> str:
    """How to install ``distribution`` from a checkout of this repository.

    Examples
    --------
    >>> checkout_hint("intake-bluesky-jsonl").endswith("./packages/intake-bluesky-jsonl")
    True
    """
    return CHECKOUT_HINT.format(package=distribution)


def provider(group: str, name: str) -> str | None:
    """The known distribution that registers ``name`` in ``group`` (or None).

    Examples
    --------
    >>> provider(WRITER_GROUP, "msgpack")
    'intake-bluesky-msgpack'
    >>> provider(BACKEND_GROUP, "nope") is None
    True
    """
    for distribution, known in KNOWN_DISTRIBUTIONS.items():
        if name in known.names(group):
            return distribution
    return None


def known_names(group: str) -> dict[str, str]:
    """Every name the known distributions register in ``group``:
    ``name -> distribution``.

    Examples
    --------
    >>> known_names(WRITER_GROUP)["nexus"]
    'intake-bluesky-hdf5'
    >>> sorted(known_names(WRITER_GROUP))
    ['jsonl', 'msgpack', 'nexus']
    """
    return {n: dist for dist, known in KNOWN_DISTRIBUTIONS.items() for n in known.names(group)}


def known_suffixes() -> dict[str, str]:
    """Run file suffixes of the known distributions: ``suffix -> distribution``."""
    return {s: dist for dist, known in KNOWN_DISTRIBUTIONS.items() for s in known.suffixes}


def known_uri_schemes() -> dict[str, str]:
    """URI prefixes the known backends read: ``prefix -> distribution``."""
    return {s: dist for dist, known in KNOWN_DISTRIBUTIONS.items() for s in known.uri_schemes}


def known_file_formats() -> dict[str, str]:
    """Run file suffix -> the format and catalog that read it, for messages.

    Examples
    --------
    >>> known_file_formats()[".tif"]
    'TIFF (intake_bluesky.tiff.BlueskyTiffCatalog)'
    """
    return {
        s: f"{known.label} ({known.catalog})"
        for known in KNOWN_DISTRIBUTIONS.values()
        for s in known.suffixes
    }


@functools.cache
def entry_point_objects(group: str) -> dict[str, EntryPoint]:
    """The entry points of a group, by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def backends() -> dict[str, type]:
    """Installed storage backends: ``name -> catalog class``.

    Examples
    --------
    >>> backends()["in_memory"].__name__
    'BlueskyInMemoryCatalog'
    """
    found = {}
    for name, ep in sorted(entry_point_objects(BACKEND_GROUP).items()):
        try:
            found[name] = ep.load()
        except Exception as err:  # a broken plugin must not break the others
            warnings.warn(
                f"intake-bluesky backend {name!r} ({ep.value}) failed to load and is skipped: "
                f"{err!r}. Reinstall or remove the package that provides it.",
                stacklevel=2,
            )
    return found
