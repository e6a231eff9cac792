"""Opening the store named on the command line as a catalog of runs.

A store is a path or glob (the backend picked from the files found, or named
with ``--backend``), a MongoDB URI (the layout detected from its collections,
or named with ``--layout``), or a YAML catalog file and an entry name.
Backends are found in the ``intake_bluesky.backends`` entry point group.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

from .._faces.catalog import BlueskyCatalog
from .._registry import BACKEND_GROUP, entry_point_objects
from ..export import CHECKOUT_HINT, exported_format, exported_root_map
from .errors import CLIError

__all__ = ["open_store", "KNOWN_BACKENDS"]

#: Backends this project ships: name -> (distribution, file suffixes).
KNOWN_BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jsonl": ("intake-bluesky-jsonl", (".jsonl",)),
    "msgpack": ("intake-bluesky-msgpack", (".msgpack",)),
    "tiff": ("intake-bluesky-tiff", (".tif", ".tiff")),
    "mongo_normalized": ("intake-bluesky-mongo", ()),
    "mongo_embedded": ("intake-bluesky-mongo", ()),
    "in_memory": ("intake-bluesky-core", ()),
}
LAYOUTS = {"normalized": "mongo_normalized", "embedded": "mongo_embedded"}
_YAML_SUFFIXES = (".yml", ".yaml")


def backend_class(name: str) -> type:
    """The catalog class registered as ``name``; a clear error if not installed."""
    found = entry_point_objects(BACKEND_GROUP)
    if name not in found:
        known = KNOWN_BACKENDS.get(name)
        installed = ", ".join(sorted(found)) or "none"
        if known:
            raise CLIError(
                f"The {name} backend is not installed; install it with: pip install {known[0]} "
                f"(or, {CHECKOUT_HINT.format(package=known[0])})"
            )
        raise CLIError(
            f"No backend named {name!r} is installed (installed: {installed}). Known "
            f"backends: {', '.join(sorted(KNOWN_BACKENDS))}."
        )
    try:
        return found[name].load()
    except Exception as err:
        raise CLIError(
            f"The {name} backend ({found[name].value}) failed to load: {err!r}. Reinstall "
            "the package that provides it."
        ) from err


def is_mongo_uri(store: str) -> bool:
    return store.startswith(("mongodb://", "mongodb+srv://"))


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
    if is_mongo_uri(store):
        return _open_mongo(store, backend, layout, assets, common)
    if layout or assets:
        raise CLIError("--layout and --assets apply to MongoDB URIs only.")
    if store.lower().endswith(_YAML_SUFFIXES) and os.path.isfile(store) and backend is None:
        return _open_yaml(store, entry, common)
    if entry:
        raise CLIError("--entry applies to YAML catalog files (.yml, .yaml) only.")
    if os.path.isdir(store) and not glob.has_magic(store):
        # An export with copied external files, maybe moved: its catalog.yml
        # says where the copies are now (given roots win) and its format
        # (its external/ folder may hold .tif files of the data).
        moved = exported_root_map(store)
        if moved:
            common = {"root_map": {**moved, **common.get("root_map", {})}}
        if backend is None:
            backend = exported_format(store)
    if backend is None:
        backend = _detect_file_backend(store)
    if backend in ("mongo_normalized", "mongo_embedded"):
        raise CLIError(f"The {backend} backend needs a MongoDB URI (mongodb://host/db).")
    if backend == "in_memory":
        raise CLIError(
            "The in_memory backend holds runs in memory only; it cannot be opened from a path."
        )
    cls = backend_class(backend)
    return _checked(cls(store, **common), store)


def _checked(cat, store: str) -> BlueskyCatalog:
    if not isinstance(cat, BlueskyCatalog):
        raise CLIError(f"{store} is not a catalog of bluesky runs ({type(cat).__name__}).")
    return cat


def _candidates(store: str) -> list[str]:
    """Files to look at to tell the format of a path, glob or directory."""
    if glob.has_magic(store):
        paths = sorted(glob.glob(store))
    elif os.path.exists(store):
        paths = [store]
    else:
        raise CLIError(f"{store}: no such file or directory (and not a mongodb:// URI).")
    files = []
    for path in paths:
        if os.path.isdir(path):
            for dirpath, dirnames, names in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files.extend(os.path.join(dirpath, n) for n in names)
        else:
            files.append(path)
    return files


def _detect_file_backend(store: str) -> str:
    counts: dict[str, int] = {}
    for path in _candidates(store):
        lower = path.lower()
        for name, (_, suffixes) in KNOWN_BACKENDS.items():
            if suffixes and lower.endswith(suffixes):
                counts[name] = counts.get(name, 0) + 1
    if not counts:
        suffixes = ", ".join(s for _, sfx in KNOWN_BACKENDS.values() for s in sfx)
        raise CLIError(
            f"{store}: no run files found ({suffixes}). Name the backend with --backend."
        )
    if len(counts) > 1:
        found = ", ".join(f"{n} {name} file(s)" for name, n in sorted(counts.items()))
        raise CLIError(
            f"{store} holds files of several formats ({found}); pick one with --backend."
        )
    return next(iter(counts))


def _open_mongo(uri, backend, layout, assets, common) -> BlueskyCatalog:
    if layout is not None and layout not in LAYOUTS:
        raise CLIError(f"--layout must be one of {sorted(LAYOUTS)}, not {layout!r}.")
    if backend is not None:
        if backend not in LAYOUTS.values():
            raise CLIError(
                f"A MongoDB URI is read by the mongo_normalized or mongo_embedded backend, "
                f"not {backend!r}."
            )
        if layout is not None and LAYOUTS[layout] != backend:
            raise CLIError(f"--backend {backend} contradicts --layout {layout}.")
        layout = next(k for k, v in LAYOUTS.items() if v == backend)
    if assets and layout == "embedded":
        raise CLIError("--assets applies to the normalized layout only.")
    normalized = backend_class("mongo_normalized")
    embedded = backend_class("mongo_embedded")
    try:
        if layout == "normalized":
            return normalized(uri, asset_registry_db=assets, **common)
        if layout == "embedded":
            return embedded(uri, **common)
        # Detected: suitcase-mongo's normalized layout keeps start documents in
        # run_start, the embedded one in header; a catalog over the other
        # layout's database counts no runs.
        as_normalized = normalized(uri, asset_registry_db=assets, **common)
        as_embedded = embedded(uri, **common)
        n_normalized, n_embedded = len(as_normalized), len(as_embedded)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from None
    if n_normalized and n_embedded:
        raise CLIError(
            f"The database holds runs in both layouts ({n_normalized} normalized, "
            f"{n_embedded} embedded); pick one with --layout normalized|embedded."
        )
    if n_embedded:
        if assets:
            raise CLIError("--assets applies to the normalized layout only.")
        return as_embedded
    if n_normalized:
        return as_normalized
    raise CLIError(
        f"{as_normalized.driver!r} holds no runs in either layout (no run_start or header "
        "documents). Check the database name in the URI, or give --layout to open it anyway."
    )


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
            f"{CHECKOUT_HINT.format(package='intake-bluesky-<backend>')})."
        ) from None
    except Exception as err:  # bad args: a transform that is no function, ...
        raise CLIError(
            f"{path}, entry {entry!r}: cannot be opened: {str(err).rstrip('.')}. Fix the "
            "entry's args."
        ) from None
    return _checked(cat, f"{path} entry {entry!r}")
