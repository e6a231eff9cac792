"""Exporting runs as files: run writers, atomic run files, external files.

A *run writer* turns a run's ``(name, doc)`` stream into the bytes of one run
file. Writers are registered by the backend packages in the
``intake_bluesky.writers`` entry point group (the core imports none of their
dependencies): ``jsonl`` (intake-bluesky-jsonl, suitcase-jsonl's format) and
``msgpack`` (intake-bluesky-msgpack, suitcase-msgpack's format). A writer is a
class, instantiated without arguments, with

* ``suffix`` -- the file name ending, e.g. ``".jsonl"``;
* ``write(documents, file)`` -- write every ``(name, doc)`` to ``file``, a
  binary file object opened for writing.

:func:`export_runs` writes each run to ``<directory>/<uid><suffix>`` through
a temporary file that is renamed into place only when complete (an
interrupted export leaves no complete-looking file), refuses to overwrite a
run file unless told to, and optionally copies the files that resources and
stream resources point at into the directory, rewriting their locations so
that the export is self-contained.

Examples
--------
>>> import tempfile
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.export import export_runs, writers
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> cat.ingest(example_runs()[1])
>>> if "jsonl" in writers():  # intake-bluesky-jsonl installed
...     paths = export_runs(cat, tempfile.mkdtemp(), format="jsonl")
...     assert paths[0].endswith(cat[-1].uid + ".jsonl")
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote, urlparse

from ._filling import resource_path, stream_resource_path
from ._plugins import entry_point_objects

__all__ = [
    "WRITER_GROUP",
    "WRITER_PACKAGES",
    "ExportError",
    "RunWriter",
    "export_runs",
    "get_writer",
    "writers",
]

#: The entry point group in which backends register their run writers.
WRITER_GROUP = "intake_bluesky.writers"

#: Which distribution provides each known writer (for "pip install" hints).
WRITER_PACKAGES = {"jsonl": "intake-bluesky-jsonl", "msgpack": "intake-bluesky-msgpack"}

#: Where copied external files go, inside the export directory.
EXTERNAL_DIR = "external"


class ExportError(RuntimeError):
    """An export that cannot be done as asked (names the run/file and what to do)."""


@runtime_checkable
class RunWriter(Protocol):
    """What a run writer registered in ``intake_bluesky.writers`` provides."""

    suffix: str

    def write(self, documents: Iterable[tuple[str, dict]], file: BinaryIO) -> None:
        """Write a run's documents, in the given order, to a binary file."""


def writers() -> dict[str, type]:
    """Installed run writers: ``name -> writer class`` (loaded on demand).

    Examples
    --------
    >>> sorted(writers())  # doctest: +SKIP
    ['jsonl', 'msgpack']
    """
    return dict(sorted(entry_point_objects(WRITER_GROUP).items()))


def get_writer(name: str) -> RunWriter:
    """An instance of the writer registered as ``name``.

    Raises
    ------
    ExportError
        If no installed package registers it; the message names the package
        to install.
    """
    found = writers()
    if name not in found:
        package = WRITER_PACKAGES.get(name)
        hint = (
            f"install it: pip install {package}"
            if package
            else "install the package that provides it"
        )
        have = ", ".join(found) or "none"
        raise ExportError(f"No run writer {name!r} is installed ({hint}). Installed: {have}.")
    try:
        return found[name].load()()
    except Exception as err:  # a broken plugin: say which
        raise ExportError(
            f"The run writer {name!r} ({found[name].value}) failed to load: {err!r}. "
            "Reinstall the package that provides it."
        ) from err


def export_runs(
    runs,
    directory,
    *,
    format: str = "jsonl",
    copy_external: bool = False,
    existing: str = "error",
    progress: Callable[[int], None] | None = None,
    on_written: Callable[[str], None] | None = None,
) -> list[str]:
    """Write runs as run files in ``directory``, one ``<uid><suffix>`` each.

    Parameters
    ----------
    runs : BlueskyCatalog or iterable of BlueskyRun
        The runs to write (a catalog: every run in it, oldest first).
    directory : path
        Created if missing.
    format : str
        A writer registered in ``intake_bluesky.writers``: ``'jsonl'`` or
        ``'msgpack'`` with the backend packages installed.
    copy_external : bool
        Copy the files that resources and stream resources point at (after
        the catalog's ``root_map``) into ``directory/external/<uid>/`` and
        rewrite ``root``/``resource_path`` and ``uri`` to the copies.
    existing : {'error', 'skip', 'overwrite'}
        What to do when a run file is already there. With ``'error'`` every
        run is checked before anything is written.
    progress : callable, optional
        Called with the number of event rows just written (for a progress bar).
    on_written : callable, optional
        Called with each run file's path once it is in place.

    Returns
    -------
    list of str
        The run files written (skipped ones excluded).

    Raises
    ------
    ExportError
        A run file exists (``existing='error'``), an external file cannot be
        found, or no such writer is installed.
    """
    if existing not in ("error", "skip", "overwrite"):
        raise ValueError(f"existing must be 'error', 'skip' or 'overwrite', not {existing!r}.")
    writer = get_writer(format)
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ExportError(f"{directory} exists and is not a directory; give a directory.")
    runs = list(runs.values()) if hasattr(runs, "values") else list(runs)
    targets = [(run, os.path.join(directory, run.uid + writer.suffix)) for run in runs]
    if existing == "error":
        there = [path for _, path in targets if os.path.lexists(path)]
        if there:
            listed = ", ".join(there[:5]) + (
                f" and {len(there) - 5} more" if len(there) > 5 else ""
            )
            raise ExportError(
                f"Run file(s) already exist: {listed}. Nothing was written. Remove them, or "
                "choose to skip or overwrite existing runs."
            )
    os.makedirs(directory, exist_ok=True)
    copier = _ExternalCopier(directory) if copy_external else None
    written = []
    for run, path in targets:
        if os.path.lexists(path) and existing == "skip":
            continue
        documents = run.canonical(fill="no")
        if copier is not None:
            documents = copier.rewrite(run, documents)
        if progress is not None:
            documents = _counting(documents, progress)
        _write_atomically(writer, documents, path, overwrite=existing == "overwrite")
        written.append(path)
        if on_written is not None:
            on_written(path)
    return written


def _counting(documents, progress) -> Iterator[tuple[str, dict]]:
    for name, doc in documents:
        yield name, doc
        if name == "event":
            progress(1)
        elif name == "event_page":
            progress(len(doc["seq_num"]))


def _temp_path(path: str) -> str:
    # Hidden and not ending in the run suffix: no backend lists it as a run.
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.partial")


def _write_atomically(writer: RunWriter, documents, path: str, *, overwrite: bool) -> None:
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as file:
            writer.write(documents, file)
            file.flush()
            os.fsync(file.fileno())
        _publish(tmp, path, overwrite=overwrite)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _publish(tmp: str, path: str, *, overwrite: bool) -> None:
    """Move a complete file into place; never replace one unless asked."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        # link() fails if the name exists: no race with another writer.
        os.link(tmp, path)
    except FileExistsError:
        raise ExportError(
            f"{path} appeared while it was being exported; it was left as it is."
        ) from None
    except OSError:  # a filesystem without hard links
        if os.path.lexists(path):
            raise ExportError(f"{path} already exists; it was left as it is.") from None
        os.rename(tmp, path)


class _ExternalCopier:
    """Copies external files into the export and rewrites their documents.

    Each (stream) resource gets its own folder, ``external/<uid>/``, so files
    of the same name from different resources never collide. A resource
    shared by several runs, and a file shared by several (stream) resources
    (ophyd-async detectors write several data keys into one HDF5 file), are
    copied once.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self._done: dict[str, dict] = {}
        self._copied: dict[str, str] = {}  # real source path -> its copy

    def rewrite(self, run, documents) -> Iterator[tuple[str, dict]]:
        root_map = _root_map_of(run)
        for name, doc in documents:
            if name == "resource":
                doc = self._resource(run, doc, root_map)
            elif name == "stream_resource":
                doc = self._stream_resource(run, doc, root_map)
            yield name, doc

    def _resource(self, run, doc: dict, root_map) -> dict:
        uid = doc.get("uid")
        if uid in self._done:
            return self._done[uid]
        full = resource_path(doc, root_map)
        what = f"resource {uid!r} (spec {doc.get('spec')!r})"
        target = self._copy(run, what, full, doc.get("root"), uid)
        new = {**doc, "root": os.path.dirname(target), "resource_path": os.path.basename(target)}
        self._done[uid] = new
        return new

    def _stream_resource(self, run, doc: dict, root_map) -> dict:
        uid = doc.get("uid")
        if uid in self._done:
            return self._done[uid]
        full = stream_resource_path(doc, root_map)
        what = f"stream_resource {uid!r} (mimetype {doc.get('mimetype')!r})"
        if doc.get("uri"):
            parsed = urlparse(doc["uri"])
            if parsed.scheme not in ("file", ""):
                raise ExportError(
                    f"Run {run.uid!r}: {what} points at {doc['uri']!r}, which is not a local "
                    "file; it cannot be copied. Export without copying external files."
                )
            target = self._copy(run, what, full, doc["uri"], uid)
            host = parsed.netloc if parsed.scheme == "file" else "localhost"
            new = {**doc, "uri": f"file://{host}{quote(target)}"}
        else:  # older stream_resource: root + resource_path
            target = self._copy(run, what, full, doc.get("root"), uid)
            new = {
                **doc,
                "root": os.path.dirname(target),
                "resource_path": os.path.basename(target),
            }
        self._done[uid] = new
        return new

    def _copy(self, run, what: str, full: str, stored, uid) -> str:
        """Copy what ``full`` names; return its path in the export."""
        key = os.path.realpath(full)
        if key in self._copied:
            return self._copied[key]
        files = _files_named_by(full)
        if not files:
            raise ExportError(
                f"Run {run.uid!r}: the files of {what} are not found: tried {full!r} (stored "
                f"location {stored!r}), as a file, a directory and a file name prefix. If "
                "the data moved, map the old root to the new one (--root-map OLD=NEW), or "
                "export without copying external files."
            )
        folder = os.path.join(self.directory, EXTERNAL_DIR, _safe(str(uid)))
        base = os.path.dirname(full.rstrip("/")) or "/"
        for source in files:
            _copy_file(source, os.path.join(folder, os.path.relpath(source, base)))
        target = os.path.join(folder, os.path.basename(full.rstrip("/")))
        self._copied[key] = target
        return target


def _root_map_of(run) -> Mapping[str, str]:
    return run._run.settings.root_map


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _files_named_by(full: str) -> list[str]:
    """The files a resource path means: a file, a directory's files, or the
    files whose name begins with it (e.g. NPY_SEQ's ``<path>_<index>.npy``)."""
    full = full.rstrip("/") or "/"
    if os.path.isfile(full):
        return [full]
    if os.path.isdir(full):
        found = []
        for dirpath, _, names in os.walk(full):
            found.extend(os.path.join(dirpath, n) for n in sorted(names))
        return sorted(found)
    return sorted(p for p in glob.glob(glob.escape(full) + "*") if os.path.isfile(p))


def _copy_file(source: str, target: str) -> None:
    if os.path.lexists(target):
        if os.path.getsize(target) == os.path.getsize(source):
            return  # copied before (a resource shared by runs, or a re-export)
        raise ExportError(
            f"{target} already exists and differs from {source}; it was left as it is. "
            "Remove it, or export to another directory."
        )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = _temp_path(target)
    try:
        shutil.copyfile(source, tmp)
        shutil.copystat(source, tmp)
        _publish(tmp, target, overwrite=False)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
