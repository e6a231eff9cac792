"""Opening the store named on the command line as a catalog of runs.

A store is a path, glob, directory or URI, read by the backend named with
``--backend`` or else by the installed backend that recognises it; or a YAML
catalog file and an entry name. Backends are the catalog classes in the
``intake_bluesky.backends`` entry point group; each is asked, xarray style:

* ``guess_can_open(store) -> bool`` (classmethod, optional): whether it
  recognises the store (its file suffixes, its URI scheme);
* ``open_store(store, **options) -> catalog`` (classmethod, optional): the
  catalog of the store, given the backend's own options from the command
  line (``--layout``, ``--assets``) and ``root_map``. Without it the catalog
  is ``cls(store, root_map=...)``.

What is not installed is looked up in the registry's table of known
distributions, only to say which package to install.
"""

from __future__ import annotations

import glob
import inspect
import os
import re
from collections.abc import Mapping

from .._faces.catalog import BlueskyCatalog
from .._files.driver import holds_files
from .._registry import (
    BACKEND_GROUP,
    KNOWN_DISTRIBUTIONS,
    backends,
    checkout_hint,
    entry_point_objects,
    known_names,
    known_suffixes,
    known_uri_schemes,
    provider,
)
from ..export import exported_format, exported_root_map
from .errors import CLIError

__all__ = ["open_store", "KNOWN_BACKENDS"]

#: Backends this project ships: name -> (distribution, file suffixes), from
#: the registry's table (for install hints).
KNOWN_BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (distribution, known.suffixes)
    for distribution, known in KNOWN_DISTRIBUTIONS.items()
    for name in known.backends
}
_YAML_SUFFIXES = (".yml", ".yaml")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)")


def backend_class(name: str) -> type:
    """The catalog class registered as ``name``; a clear error if not installed."""
    found = entry_point_objects(BACKEND_GROUP)
    if name not in found:
        package = provider(BACKEND_GROUP, name)
        installed = ", ".join(sorted(found)) or "none"
        if package:
            raise CLIError(
                f"The {name} backend is not installed; install it with: pip install {package} "
                f"(or, {checkout_hint(package)})"
            )
        raise CLIError(
            f"No backend named {name!r} is installed (installed: {installed}). Known "
            f"backends: {', '.join(sorted(known_names(BACKEND_GROUP)))}."
        )
    try:
        return found[name].load()
    except Exception as err:
        raise CLIError(
            f"The {name} backend ({found[name].value}) failed to load: {err!r}. Reinstall "
            "the package that provides it."
        ) from err


def uri_scheme(store: str) -> str | None:
    """``"mongodb://"`` of ``"mongodb://host/db"``; None for a path."""
    match = _URI.match(store)
    return match.group(1) if match else None


def open_store(
    store: str,
    *,
    backend: str | None = None,
    layout: str | None = None,
    assets: str | None = None,
    entry: str | None = None,
    root_map: Mapping[str, str] | None = None,
) -> BlueskyCatalog:
    """The catalog of runs named by ``store`` (see the module docstring)."""
    common = {"root_map": dict(root_map)} if root_map else {}
    # The backend's own options: passed to its open_store only when given.
    options = {k: v for k, v in (("layout", layout), ("assets", assets)) if v is not None}
    is_uri = uri_scheme(store) is not None
    if not is_uri and store.lower().endswith(_YAML_SUFFIXES) and os.path.isfile(store):
        if backend is None:
            if options:
                raise CLIError(f"{_flags(options)} not apply to YAML catalog files.")
            return _open_yaml(store, entry, common)
    if entry:
        raise CLIError("--entry applies to YAML catalog files (.yml, .yaml) only.")
    if not is_uri and os.path.isdir(store) and not glob.has_magic(store):
        # An export with copied external files, maybe moved: its catalog.yml
        # says where the copies are now (given roots win) and its format
        # (its external/ folder may hold files of another backend's format).
        moved = exported_root_map(store)
        if moved:
            common = {"root_map": {**moved, **common.get("root_map", {})}}
        if backend is None:
            backend = exported_format(store)
    if backend is None:
        backend = _recognising_backend(store)
    cls = backend_class(backend)
    return _checked(_open_with(backend, cls, store, options, common), store)


def _flags(options: Mapping[str, object]) -> str:
    names = " and ".join(f"--{k}" for k in options)
    return f"{names} {'does' if len(options) == 1 else 'do'}"


def _open_with(name: str, cls: type, store: str, options: dict, common: dict):
    """``cls.open_store(store, **options, **common)``, or ``cls(store, **common)``
    for a backend that offers no ``open_store``."""
    opener = getattr(cls, "open_store", None)
    if opener is None:
        if options:
            raise CLIError(f"{_flags(options)} not apply to the {name} backend.")
        scheme = uri_scheme(store)
        if scheme is not None:
            raise CLIError(f"The {name} backend does not read {scheme} URIs.")
        try:
            inspect.signature(cls).bind(store, **common)
        except TypeError:
            raise CLIError(f"The {name} backend cannot be opened from a path.") from None
        return cls(store, **common)
    unknown = {k: v for k, v in options.items() if not _accepts(opener, k)}
    if unknown:
        raise CLIError(f"{_flags(unknown)} not apply to the {name} backend.")
    return opener(store, **options, **common)


def _accepts(func, keyword: str) -> bool:
    params = inspect.signature(func).parameters.values()
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == keyword and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in params
    )


def _checked(cat, store: str) -> BlueskyCatalog:
    if not isinstance(cat, BlueskyCatalog):
        raise CLIError(f"{store} is not a catalog of bluesky runs ({type(cat).__name__}).")
    return cat


def _recognising_backend(store: str) -> str:
    """The one backend that recognises ``store``: an installed one that says
    so, or a known one (not installed: its name, for the install hint)."""
    installed = entry_point_objects(BACKEND_GROUP)
    found = [
        name
        for name, cls in backends().items()
        if (guess := getattr(cls, "guess_can_open", None)) is not None and guess(store)
    ]
    scheme = uri_scheme(store)
    for known in KNOWN_DISTRIBUTIONS.values():
        if not known.backends or any(n in installed for n in known.backends):
            continue
        if scheme in known.uri_schemes or (scheme is None and holds_files(store, known.suffixes)):
            found.append(known.backends[0])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CLIError(
            f"{_shown(store)} holds files of several formats (read by {', '.join(found)}); "
            "pick one with --backend."
        )
    if scheme is not None:
        raise CLIError(
            f"No installed backend reads {scheme} URIs (installed: "
            f"{', '.join(sorted(installed)) or 'none'})."
        )
    if not glob.has_magic(store) and not os.path.exists(store):
        schemes = " or ".join(known_uri_schemes())
        raise CLIError(f"{store}: no such file or directory (and not a {schemes} URI).")
    raise CLIError(
        f"{store}: no run files found ({', '.join(known_suffixes())}). Name the backend "
        "with --backend."
    )


def _shown(store: str) -> str:
    """A store as messages show it: a URI by its scheme only (it may hold a
    password)."""
    scheme = uri_scheme(store)
    return f"the {scheme} URI" if scheme else store


def _open_yaml(path: str, entry: str | None, common) -> BlueskyCatalog:
    import intake

    try:
        yaml_cat = intake.open_catalog(path)
        names = list(yaml_cat)
    except Exception as err:
        raise CLIError(f"{path}: cannot be read as an intake catalog: {err}") from None
    if entry is None:
        if len(names) != 1:
            raise CLIError(
                f"{path} has {len(names)} entries ({', '.join(names) or 'none'}); pick one "
                "with --entry NAME."
            )
        entry = names[0]
    if entry not in names:
        raise CLIError(f"{path} has no entry {entry!r}; its entries: {', '.join(names)}.")
    try:
        cat = yaml_cat[entry](**common) if common else yaml_cat[entry]
    except ImportError as err:
        raise CLIError(
            f"{path}, entry {entry!r}: its driver cannot be imported ({err}). Install the "
            "backend package it names (pip install intake-bluesky-<backend>; or, "
            f"{checkout_hint('intake-bluesky-<backend>')})."
        ) from None
    except Exception as err:  # bad args: a transform that is no function, ...
        raise CLIError(
            f"{path}, entry {entry!r}: cannot be opened: {str(err).rstrip('.')}. Fix the "
            "entry's args."
        ) from None
    return _checked(cat, f"{path} entry {entry!r}")
