"""Entry point discovery: backends, handlers, stream readers.

Discovered lazily (on first use) and cached; a plugin that fails to load is
a warning naming it, never a crash of the whole discovery.
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import EntryPoint, entry_points

__all__ = ["entry_point_objects", "backends", "BACKEND_GROUP"]

#: The entry point group in which storage backends register their catalog class.
BACKEND_GROUP = "intake_bluesky.backends"


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
