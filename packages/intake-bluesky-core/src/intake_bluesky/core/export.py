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

A format that is not a document stream (NeXus: an HDF5 file that h5py must
create itself, holding the streams' values rather than their documents) is a
*run file writer* (:class:`RunFileWriter`) instead: besides ``suffix`` it has

* ``write_run(run, path, options)`` -- write the whole run into a new file
  at ``path`` (which does not exist yet), given a :class:`WriteOptions`:
  the export's options, where the run's external files are (after the
  catalog's ``root_map``) and the progress callback;
* ``options`` -- the names of the export options it honours
  (``{"link_external", "copy_external"}``); asking a writer for an option it
  does not honour is an :class:`ExportError`, never a silently different
  file. With ``copy_external`` it copies the files it refers to through
  :attr:`WriteOptions.copy_file` (the core's copier, with its rules).

:func:`export_runs` treats both kinds alike.

:func:`export_runs` writes each run to ``<directory>/<uid><suffix>`` through
a temporary file that is renamed into place only when complete (an
interrupted export leaves no complete-looking file), refuses to overwrite a
run file unless told to, and optionally copies the files that resources and
stream resources point at into the directory, rewriting their locations so
that the export is self-contained.

Uids are data, not paths: a uid that is not a plain file name (one holding
``/``, ``%``, spaces, or beginning with ``.``) is percent-escaped, so a file
name derived from a document never leaves the directory (``../x`` is written
as ``%2E.%2Fx.jsonl``; the documents inside keep the uid as it is). External
files are copied only from inside the roots the documents name (never via
``..``), and a file already in the export is kept only when its content is
equal. An export with copied external files also writes ``catalog.yml``
beside the run files, so that it opens wherever it is moved to.

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

import functools
import glob
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlparse

from ._model.filling import resource_path, stream_resource_path
from ._registry import BACKEND_GROUP, CHECKOUT_HINT, WRITER_GROUP, entry_point_objects, known_names
from .errors import ExportError

__all__ = [
    "CATALOG_FILE",
    "WRITER_GROUP",
    "WRITER_PACKAGES",
    "ExportError",
    "RunFileWriter",
    "RunWriter",
    "WriteOptions",
    "export_runs",
    "exported_format",
    "exported_root_map",
    "get_writer",
    "writers",
]

#: Which distribution provides each known writer (for "pip install" hints;
#: from the registry's table of known distributions).
WRITER_PACKAGES = known_names(WRITER_GROUP)

#: Where copied external files go, inside the export directory.
EXTERNAL_DIR = "external"

#: The intake catalog file an export with copied external files writes beside
#: its run files: ``intake.open_catalog(<directory>/catalog.yml)`` opens it
#: wherever the folder was moved to, as does ``intake-bluesky ls <directory>``.
CATALOG_FILE = "catalog.yml"

#: The metadata key that marks a catalog file as written by an export (only
#: such a file is ever rewritten).
_CATALOG_MARK = "intake_bluesky_export"

#: Longest file name made from a uid (file systems allow 255 bytes; the
#: temporary name of a file being written adds 18).
_MAX_NAME = 200


@runtime_checkable
class RunWriter(Protocol):
    """What a run writer registered in ``intake_bluesky.writers`` provides."""

    suffix: str

    def write(self, documents: Iterable[tuple[str, dict]], file: BinaryIO) -> None:
        """Write a run's documents, in the given order, to a binary file."""


@dataclass(frozen=True)
class WriteOptions:
    """What :func:`export_runs` tells a :class:`RunFileWriter` about one run.

    Attributes
    ----------
    link_external : bool
        Refer to the run's external files (detector HDF5 files) from the
        written file instead of copying their data into it.
    root_map : mapping of str to str
        The catalog's ``root_map`` (old root -> new root), as the run's
        readers apply it; :meth:`locate` applies it.
    progress : callable or None
        To be called with the number of event rows just written.
    file_name : str or None
        The name the file will have once in place (the writer writes it
        under a temporary name).
    stream_resources : tuple of dict
        The run's ``stream_resource`` documents, as its readers see them
        (``transforms`` applied): where its stream data are.
    stream_datums : tuple of dict
        The run's ``stream_datum`` documents: which rows of which stream each
        range of a stream resource's indices holds.
    copy_file : callable or None
        Set when the export copies external files (``copy_external``):
        ``copy_file(resource_or_stream_resource)`` copies the file(s) the
        document names into the export (only from inside the root it names,
        as for every export) and returns the copy's path, for the writer to
        refer to instead of the original.

    Examples
    --------
    >>> options = WriteOptions(root_map={"/old": "/new"})
    >>> options.locate({"uri": "file://localhost/old/det.h5", "mimetype": "application/x-hdf5"})
    '/new/det.h5'
    """

    link_external: bool = False
    root_map: Mapping[str, str] = field(default_factory=dict)
    progress: Callable[[int], None] | None = None
    file_name: str | None = None
    stream_resources: tuple[Mapping[str, Any], ...] = ()
    stream_datums: tuple[Mapping[str, Any], ...] = ()
    copy_file: Callable[[Mapping[str, Any]], str] | None = None

    @classmethod
    def for_run(cls, run, **options: Any) -> WriteOptions:
        """The options for writing ``run``: its catalog's ``root_map`` and its
        stream documents, plus ``options`` (``link_external=True``, ...)."""
        resources, datums = _stream_documents(run)
        return cls(
            root_map=_root_map_of(run),
            stream_resources=resources,
            stream_datums=datums,
            **options,
        )

    def locate(self, document: Mapping[str, Any]) -> str:
        """The local path of the file(s) a ``resource`` or ``stream_resource``
        document names, after ``root_map`` (as the run's readers open it)."""
        if "uri" in document or "mimetype" in document:
            return stream_resource_path(document, self.root_map)
        return resource_path(document, self.root_map)

    def rows_written(self, count: int) -> None:
        """Report ``count`` event rows written (no-op without a progress callback)."""
        if self.progress is not None and count:
            self.progress(count)


@runtime_checkable
class RunFileWriter(Protocol):
    """A run writer that writes a whole run to a path (an HDF5 file, say)."""

    suffix: str
    #: Names of the WriteOptions fields it honours (e.g. ``{"link_external"}``).
    options: frozenset[str]

    def write_run(self, run: Any, path: str, options: WriteOptions) -> None:
        """Write ``run`` into the new file ``path`` (it does not exist yet)."""


def writers() -> dict[str, EntryPoint]:
    """Installed run writers: ``name -> entry point`` of the writer class
    (loaded on demand).

    Examples
    --------
    >>> sorted(writers())  # doctest: +SKIP
    ['jsonl', 'msgpack']
    """
    return dict(sorted(entry_point_objects(WRITER_GROUP).items()))


def get_writer(name: str) -> RunWriter | RunFileWriter:
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
            f"install it: pip install {package}; or, {CHECKOUT_HINT.format(package=package)}"
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
    link_external: bool = False,
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
        A writer registered in ``intake_bluesky.writers``: ``'jsonl'``,
        ``'msgpack'`` or ``'nexus'`` with the packages that provide them
        installed.
    copy_external : bool
        Copy the files that resources and stream resources point at (after
        the catalog's ``root_map``) into ``directory/external/<uid>/`` and
        rewrite ``root``/``resource_path`` and ``uri`` to the copies (a run
        file writer that honours it copies the files it refers to, and
        refers to the copies: ``'nexus'`` links its frames to them). Only
        files inside the root a resource names (its ``root``; a stream
        resource's folder) are copied: a location that leaves it (``..``, an
        absolute ``resource_path`` under a root) or names the root itself is
        refused. Also writes ``directory/catalog.yml``, an intake catalog
        that maps the copies' locations to wherever the folder is, so that
        the export opens after it was moved, when a backend reads the format
        (a ``catalog.yml`` not written by an export is left as it is, with a
        warning). For writers of
        document streams and run file writers that honour it.
    link_external : bool
        Refer to the external files from the run file instead of copying
        their data into it (``'nexus'``: HDF5 virtual datasets over the
        detector files). Only for writers that honour it.
    existing : {'error', 'skip', 'overwrite'}
        What to do when a run file is already there. With ``'error'`` every
        run is checked before anything is written. A copied external file
        already there is kept when its content is equal; a different one is
        an error, unless ``'overwrite'`` (then it is replaced).
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
        A run file exists (``existing='error'``), a start uid is not a string,
        an external file cannot be found, differs from the one already in the
        export or lies outside its root, no such writer is installed, or the
        writer does not honour an option asked for (checked before anything is
        written).
    """
    if existing not in ("error", "skip", "overwrite"):
        raise ValueError(f"existing must be 'error', 'skip' or 'overwrite', not {existing!r}.")
    writer = get_writer(format)
    _check_options(format, writer, copy_external=copy_external, link=link_external)
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ExportError(f"{directory} exists and is not a directory; give a directory.")
    runs = list(runs.values()) if hasattr(runs, "values") else list(runs)
    targets = [(run, _run_file(directory, run, writer.suffix)) for run in runs]
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
    copier = (
        _ExternalCopier(directory, overwrite=existing == "overwrite") if copy_external else None
    )
    written = []
    for run, path in targets:
        if os.path.lexists(path) and existing == "skip":
            continue
        if isinstance(writer, RunFileWriter):
            options = WriteOptions.for_run(
                run,
                link_external=link_external,
                progress=progress,
                file_name=os.path.basename(path),
                copy_file=None if copier is None else functools.partial(copier.copy_of, run),
            )
            _write_run_atomically(writer, run, options, path, overwrite=existing == "overwrite")
            written.append(path)
            if on_written is not None:
                on_written(path)
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
    if copier is not None:
        _write_catalog_file(directory, format)
    return written


def _check_options(format: str, writer, *, copy_external: bool, link: bool) -> None:
    """Refuse, before anything is written, an option the writer would ignore."""
    if isinstance(writer, RunFileWriter):
        honoured = set(writer.options)
    else:  # document streams: the core copies and rewrites their external files
        honoured = {"copy_external"}
    why = {
        "copy_external": f"a {format!r} file holds the external data itself",
        "link_external": f"{format!r} files keep the documents that point at the external "
        "files (--copy-external copies the files beside them)",
    }
    asked = {"copy_external": copy_external, "link_external": link}
    for name, on in asked.items():
        if on and name not in honoured:
            raise ExportError(
                f"The {format!r} writer does not support --{name.replace('_', '-')} "
                f"({name}=True): {why[name]}. Nothing was written."
            )


def _describe(run) -> str:
    """``run 'uid'`` (with its scan_id when it has one), for messages."""
    start = getattr(run, "metadata", {}).get("start") or {}
    scan_id = start.get("scan_id")
    return f"run {start.get('uid', getattr(run, 'uid', None))!r}" + (
        f" (scan_id {scan_id!r})" if scan_id is not None else ""
    )


def _file_name(name: str) -> str:
    """``name`` as one file name: itself when it is a plain name, else
    percent-escaped (injective: ``%`` is escaped too), so it can never be
    ``..``, hold a separator, or begin with ``.`` (a hidden file)."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else _escape(c) for c in name)
    return "%2E" + out[1:] if out.startswith(".") else out


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def _named(what: str, uid, directory: str, suffix: str = "") -> str:
    """The path ``directory/<uid as a file name><suffix>``; refuses a uid
    that is no string, or that is too long for a file name."""
    if not isinstance(uid, str) or not uid:
        raise ExportError(
            f"{what}: its uid is {uid!r} ({type(uid).__name__}), not a non-empty string, so "
            "no file can be named after it. Nothing was written. Fix the document, or leave "
            "it out of the export."
        )
    name = _file_name(uid) + suffix
    if len(name) > _MAX_NAME:
        raise ExportError(
            f"{what}: its uid ({len(uid)} characters, {uid[:40]!r}...) is too long for a file "
            "name. Nothing was written. Leave it out of the export."
        )
    path = os.path.join(directory, name)
    # By construction a single plain name; checked so that no future change of
    # _file_name can ever write outside the directory.
    if os.path.dirname(path) != directory or name in (".", ".."):
        raise ExportError(f"{what}: uid {uid!r} cannot name a file in {directory}.")
    return path


def _run_file(directory: str, run, suffix: str) -> str:
    start = getattr(run, "metadata", {}).get("start") or {}
    uid = start.get("uid", getattr(run, "uid", None))
    what = _describe(run)
    return _named(what[0].upper() + what[1:], uid, directory, suffix)


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


def _write_run_atomically(
    writer: RunFileWriter, run, options: WriteOptions, path: str, *, overwrite: bool
) -> None:
    """A run file writer's file, under a temporary name, then linked into place."""
    tmp = _temp_path(path)
    try:
        writer.write_run(run, tmp, options)
        if not os.path.isfile(tmp):
            raise ExportError(f"The run writer {type(writer).__name__} wrote no file for {path}.")
        # The writer closed its file; make it durable before it looks complete.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
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

    Only files inside the root a document names are copied: the documents
    may come from anyone, and an export is made to be handed on, so a
    resource must not be able to pull ``~/.ssh`` into it.
    """

    def __init__(self, directory: str, *, overwrite: bool = False):
        self.directory = directory
        self.overwrite = overwrite
        # By uid; a document without one is still rewritten once.
        self._done: dict[str | None, dict] = {}
        self._copied: dict[str, str] = {}  # real source path -> its copy

    def rewrite(self, run, documents) -> Iterator[tuple[str, dict]]:
        root_map = _root_map_of(run)
        for name, doc in documents:
            if name == "resource":
                doc = self._resource(run, doc, root_map)
            elif name == "stream_resource":
                doc = self._stream_resource(run, doc, root_map)
            yield name, doc

    def copy_of(self, run, doc: Mapping[str, Any]) -> str:
        """Copy the file(s) a resource or stream resource of ``run`` names
        (once) and return the path of the copy."""
        root_map = _root_map_of(run)
        if "uri" in doc or "mimetype" in doc:
            new = self._stream_resource(run, dict(doc), root_map)
            return stream_resource_path(new, {})
        return resource_path(self._resource(run, dict(doc), root_map), {})

    def _resource(self, run, doc: dict, root_map) -> dict:
        uid = doc.get("uid")
        what = f"resource {uid!r} (spec {doc.get('spec')!r})"
        folder = self._folder(run, what, uid)
        if uid in self._done:
            return self._done[uid]
        stored = doc.get("resource_path")
        _check_relative(run, what, stored, doc.get("root") or "")
        full = resource_path(doc, root_map)
        root = resource_path({**doc, "resource_path": ""}, root_map) if doc.get("root") else None
        target = self._copy(run, what, full, root, stored, folder)
        new = {**doc, "root": os.path.dirname(target), "resource_path": os.path.basename(target)}
        self._done[uid] = new
        return new

    def _stream_resource(self, run, doc: dict, root_map) -> dict:
        uid = doc.get("uid")
        what = f"stream_resource {uid!r} (mimetype {doc.get('mimetype')!r})"
        folder = self._folder(run, what, uid)
        if uid in self._done:
            return self._done[uid]
        if doc.get("uri"):
            parsed = urlparse(doc["uri"])
            if parsed.scheme not in ("file", ""):
                raise ExportError(
                    f"Run {run.uid!r}: {what} points at {doc['uri']!r}, which is not a local "
                    "file; it cannot be copied. Export without copying external files."
                )
            _check_relative(run, what, unquote(parsed.path), "")
            full = stream_resource_path(doc, root_map)
            target = self._copy(run, what, full, None, doc["uri"], folder)
            host = parsed.netloc if parsed.scheme == "file" else "localhost"
            new = {**doc, "uri": f"file://{host}{quote(target)}"}
        else:  # older stream_resource: root + resource_path
            stored = doc.get("resource_path")
            _check_relative(run, what, stored, doc.get("root") or "")
            full = stream_resource_path(doc, root_map)
            root = None
            if doc.get("root"):
                root = stream_resource_path({**doc, "resource_path": ""}, root_map)
            target = self._copy(run, what, full, root, stored, folder)
            new = {
                **doc,
                "root": os.path.dirname(target),
                "resource_path": os.path.basename(target),
            }
        self._done[uid] = new
        return new

    def _folder(self, run, what: str, uid) -> str:
        return _named(f"Run {run.uid!r}: {what}", uid, os.path.join(self.directory, EXTERNAL_DIR))

    def _copy(self, run, what: str, full: str, root, stored, folder: str) -> str:
        """Copy what ``full`` names into ``folder``; return its path there.

        ``root`` is the (mapped) root the document names, or None when the
        location is a whole path (then the root is its folder).
        """
        key = os.path.realpath(full)
        if key in self._copied:
            return self._copied[key]
        full = os.path.abspath(full)
        root = os.path.abspath(root) if root else os.path.dirname(full)
        if os.path.dirname(full) == full or full == root:
            raise ExportError(
                f"Run {run.uid!r}: {what} names {full!r}, the whole of "
                f"{'the file system' if os.path.dirname(full) == full else 'its root'} rather "
                f"than files in it (stored location {stored!r}); it was not copied. Export "
                "without copying external files."
            )
        if not full.startswith(root.rstrip(os.sep) + os.sep):  # _check_relative's net
            raise ExportError(
                f"Run {run.uid!r}: {what} names {full!r}, outside its root {root!r}; it was "
                "not copied. Export without copying external files."
            )
        files = _files_named_by(full)
        if not files:
            raise ExportError(
                f"Run {run.uid!r}: the files of {what} are not found: tried {full!r} (stored "
                f"location {stored!r}), as a file, a directory and a file name prefix. If "
                "the data moved, map the old root to the new one (--root-map OLD=NEW), or "
                "export without copying external files."
            )
        base = os.path.dirname(full)
        for source in files:
            _copy_file(
                source,
                os.path.join(folder, os.path.relpath(source, base)),
                overwrite=self.overwrite,
                what=f"run {run.uid!r}, {what}",
            )
        target = os.path.join(folder, os.path.basename(full))
        self._copied[key] = target
        return target


def _check_relative(run, what: str, location, root: str) -> None:
    """Refuse a stored location that climbs out of its root with ``..``, or
    (under a root) is absolute, before anything is looked up."""
    if not isinstance(location, str):
        raise ExportError(
            f"Run {run.uid!r}: {what} has resource_path {location!r}, not a string; its "
            "files cannot be copied. Export without copying external files."
        )
    parts = location.replace(os.sep, "/").split("/")
    if ".." in parts or (root and os.path.isabs(location)):
        where = f"under its root {root!r}" if root else "as its location"
        raise ExportError(
            f"Run {run.uid!r}: {what} names {location!r} {where}, which leaves the folder it "
            "names ('..' or an absolute path); it was not copied. Only files inside the "
            "roots the documents name are copied. Export without copying external files."
        )


def _root_map_of(run) -> Mapping[str, str]:
    return run._run.settings.root_map


def _stream_documents(run) -> tuple[tuple[Mapping[str, Any], ...], tuple[Mapping[str, Any], ...]]:
    """A run's stream_resource (transformed as its readers see them) and
    stream_datum documents, from its run source's index (no event read)."""
    model = run._run
    resources = tuple(
        model.settings.transform("stream_resource", doc) for doc in model.source.stream_resources()
    )
    return resources, tuple(model.source.stream_datums())


def _files_named_by(full: str) -> list[str]:
    """The files a resource path means: a file, a directory's files, or the
    files whose name begins with it (e.g. NPY_SEQ's ``<path>_<index>.npy``)."""
    full = full.rstrip("/") or "/"
    if os.path.isfile(full):
        return [full]
    if os.path.isdir(full):
        found: list[str] = []
        for dirpath, _, names in os.walk(full):
            found.extend(os.path.join(dirpath, n) for n in sorted(names))
        return sorted(found)
    return sorted(p for p in glob.glob(glob.escape(full) + "*") if os.path.isfile(p))


def _same_content(a: str, b: str) -> bool:
    """Whether two regular files hold the same bytes (read, not trusted to
    size or time: a stale copy can have both)."""
    if os.path.islink(b) or not os.path.isfile(b):
        return False
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def _copy_file(source: str, target: str, *, overwrite: bool = False, what: str = "") -> None:
    if os.path.lexists(target):
        if _same_content(source, target):
            return  # copied before (a resource shared by runs, or a re-export)
        if not overwrite:
            raise ExportError(
                f"{target} already exists and differs from {source} ({what}); it was left as "
                "it is. Remove it, export to another directory, or overwrite existing files "
                "(--overwrite, existing='overwrite')."
            )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = _temp_path(target)
    try:
        shutil.copyfile(source, tmp)
        shutil.copystat(source, tmp)
        _publish(tmp, target, overwrite=overwrite)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


# --- catalog.yml: an export that opens where it lands ---------------------------
def _read_export_catalog(path: str) -> dict | None:
    """The content of an export's catalog file, None if there is none; a
    file there that an export did not write raises ValueError."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"it cannot be read as YAML ({err})") from None
    metadata = content.get("metadata") if isinstance(content, dict) else None
    if not isinstance(metadata, dict) or _CATALOG_MARK not in metadata:
        raise ValueError("it was not written by an intake-bluesky export")
    sources = content.get("sources")
    if not isinstance(sources, dict):
        raise ValueError("it has no sources")
    return content


def _stored_roots(content: dict) -> dict[str, str]:
    """``old root -> template`` over every entry of an export's catalog file."""
    out: dict[str, str] = {}
    for source in content["sources"].values():
        args = source.get("args") if isinstance(source, dict) else None
        root_map = args.get("root_map") if isinstance(args, dict) else None
        if isinstance(root_map, dict):
            out.update({str(k): str(v) for k, v in root_map.items()})
    return out


def _write_catalog_file(directory: str, format: str) -> None:
    """Write (or update) ``directory/catalog.yml``: an entry per exported
    format whose ``root_map`` sends the folders the copies were written to
    (this export's, and those of earlier exports into the same folder, which
    may have been elsewhere) to ``{{ CATALOG_DIR }}/external``."""
    import yaml

    path = os.path.join(directory, CATALOG_FILE)
    try:
        content = _read_export_catalog(path)
    except ValueError as why:
        warnings.warn(
            f"{path} exists and {why}; it was left as it is. If this export is moved, open "
            f"it with root_map={{{os.path.join(directory, EXTERNAL_DIR)!r}: "
            f"'<where it is>/{EXTERNAL_DIR}'}}.",
            stacklevel=3,
        )
        return
    backend = entry_point_objects(BACKEND_GROUP).get(format)
    if content is None:
        content = {
            "metadata": {
                _CATALOG_MARK: 1,
                "description": "Runs exported by intake-bluesky export, with copies of their "
                "external files in external/. Open with intake.open_catalog(this file).",
            },
            "sources": {},
        }
    roots = _stored_roots(content)
    roots[os.path.join(directory, EXTERNAL_DIR)] = "{{ CATALOG_DIR }}/" + EXTERNAL_DIR
    if backend is not None:
        content["sources"][format] = {
            "driver": backend.value.replace(":", "."),
            "description": f"the {format} run files beside this file",
            "args": {"paths": "{{ CATALOG_DIR }}"},
        }
    if not content["sources"]:
        return  # no backend reads this format: nothing to open
    for source in content["sources"].values():
        if isinstance(source, dict) and isinstance(source.setdefault("args", {}), dict):
            source["args"]["root_map"] = dict(roots)
    tmp = _temp_path(path)
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            yaml.safe_dump(content, f, sort_keys=False, allow_unicode=True, width=1000)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def exported_root_map(directory) -> dict[str, str]:
    """The ``root_map`` that opens an export made with copied external files
    where ``directory`` is now (read from its ``catalog.yml``; ``{}`` if it
    has none, or one an export did not write).

    Examples
    --------
    >>> import tempfile
    >>> exported_root_map(tempfile.mkdtemp())
    {}
    """
    directory = os.path.abspath(os.fspath(directory))
    try:
        content = _read_export_catalog(os.path.join(directory, CATALOG_FILE))
    except ValueError:
        return {}
    if content is None:
        return {}
    here = directory.rstrip(os.sep)
    return {
        old: new.replace("{{ CATALOG_DIR }}", here) for old, new in _stored_roots(content).items()
    }


def exported_format(directory) -> str | None:
    """The format of the run files of an export (from its ``catalog.yml``),
    when it holds exactly one; else None."""
    try:
        content = _read_export_catalog(os.path.join(os.fspath(directory), CATALOG_FILE))
    except ValueError:
        return None
    if content is None or len(content["sources"]) != 1:
        return None
    return next(iter(content["sources"]))
