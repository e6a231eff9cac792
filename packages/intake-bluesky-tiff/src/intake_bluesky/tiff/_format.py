"""TIFF files retrofitted into the bluesky data model.

A run is a group of TIFF files (see :mod:`._grouping`). Its documents are
synthesized from file-system and TIFF metadata, never from pixels:

* ``start``: ``time`` = earliest mtime; file names, directory, sample name
  (series stem), frame shape/dtype and selected tags of the first file;
* one ``descriptor`` (stream ``primary``, data key ``image``, external);
* per file a ``resource`` (spec ``TIFF_PAGES``) and a ``datum_page`` with one
  datum per page (``datum_kwargs={'page': i}``);
* one ``event_page``: an event per page, ``time`` = its file's mtime;
* ``stop``: ``exit_status='success'``, ``num_events``, ``time`` = latest mtime.

Uids are deterministic: uuid5 over each file's name, size and mtime (whole
seconds). See :func:`run_uid` for what "the same files" means.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Iterator, Sequence

from intake_bluesky.core import FileFormat, Location

from ._grouping import Grouping, strip_suffix
from ._handler import SPEC
from ._metadata import BadFile, FileInfo, scan_file

__all__ = ["TiffFormat", "MixedFramesError", "TiffSkippedWarning", "run_uid"]

#: Namespace of every uid this package derives. Changing it (or the recipe in
#: run_uid) changes every uid, so it is versioned in the hashed text instead.
NAMESPACE = uuid.UUID("6f0f5a52-3c43-5d8e-9b57-7a1d1b5c0e11")
_RECIPE = "intake-bluesky-tiff/1"

_AXIS_DIMS = {"Y": "dim_y", "X": "dim_x", "S": "dim_sample", "Z": "dim_z", "C": "dim_channel"}


class MixedFramesError(ValueError):
    """Files of one run hold frames of different shape or dtype."""


class TiffSkippedWarning(UserWarning):
    """A file of a bucket was left out because it is not a readable TIFF."""


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\n".join(parts)))


def run_uid(files: Sequence[FileInfo]) -> str:
    """The uid of the run made of these files (in frame order).

    "The same files" means the same names, sizes and modification times (in
    whole seconds), in the same order, whatever the directory they are in:
    a bucket copied to another machine with its times preserved (``cp -p``,
    ``rsync -a``, ``tar``) keeps its uids; a file rewritten, added or removed
    gives a new uid. Whole seconds because copies across file systems do not
    all keep sub-second times.

    Examples
    --------
    >>> from intake_bluesky.tiff._metadata import FileInfo
    >>> f = FileInfo("/a/x.tif", 10, 1_700_000_000_123_456_789, (0,), (2, 2), "|u1", "YX", {})
    >>> g = FileInfo("/b/x.tif", 10, 1_700_000_000_987_654_321, (0,), (2, 2), "|u1", "YX", {})
    >>> run_uid([f]) == run_uid([g])
    True
    """
    lines = [f"{f.name}\t{f.size}\t{f.mtime_ns // 1_000_000_000}" for f in files]
    return _uid(_RECIPE, *lines)


def _warn_bad(bad: BadFile) -> None:
    warnings.warn(
        f"Skipping {bad.path}: {bad.reason}. It is left out of its run; if it is still "
        "being written it will be included once complete, otherwise move it out of the "
        "bucket.",
        TiffSkippedWarning,
        stacklevel=2,
    )


def _dims(info: FileInfo) -> list[str]:
    axes = info.axes if len(info.axes) == len(info.shape) else ""
    if not axes:
        return [f"dim_{i}" for i in range(len(info.shape))]
    dims = [_AXIS_DIMS.get(a, f"dim_{a.lower()}") for a in axes]
    # Unique names, or the core would treat two axes as one dimension.
    return dims if len(set(dims)) == len(dims) else [f"dim_{i}" for i in range(len(dims))]


class TiffFormat(FileFormat):
    """A bucket of TIFF files as bluesky runs (a :class:`~intake_bluesky.core.FileFormat`).

    Parameters
    ----------
    group_by : {"directory", "series", "file"} or regular expression
        How files group into runs (see :class:`intake_bluesky.tiff.Grouping`).
    recursive : bool
        Also look for TIFF files in subdirectories (each directory is grouped
        on its own).

    Examples
    --------
    >>> import os, tempfile, numpy as np, tifffile
    >>> d = tempfile.mkdtemp()
    >>> for i in (1, 2, 10):
    ...     tifffile.imwrite(os.path.join(d, f"s_{i}.tif"), np.zeros((2, 3), "uint8"))
    >>> fmt = TiffFormat(group_by="series")
    >>> [loc] = fmt.split_runs(sorted(os.path.join(d, n) for n in os.listdir(d)))
    >>> [os.path.basename(p) for p in loc]
    ['s_1.tif', 's_2.tif', 's_10.tif']
    >>> start, stop = fmt.read_header(loc)
    >>> start["sample_name"], stop["num_events"]
    ('s', {'primary': 3})
    """

    suffixes = (".tif", ".tiff")
    name = "TIFF"
    # read_header warns, naming the bad file, for each file it cannot use.
    reports_skipped_files = True

    def __init__(
        self, group_by: str | re.Pattern | Grouping = "directory", recursive: bool = False
    ):
        self.grouping = group_by if isinstance(group_by, Grouping) else Grouping(group_by)
        self.recursive = bool(recursive)

    def __repr__(self):
        return f"TiffFormat(group_by={self.grouping!r}, recursive={self.recursive})"

    def __hash__(self):
        return hash((type(self), self.grouping, self.recursive))

    # --- the FileFormat protocol ------------------------------------------
    def split_runs(self, paths: Sequence[str]) -> list[Location]:
        """Group files into runs: tuples of paths in frame order."""
        return list(self.grouping.split(paths))

    def read_header(self, location: Location) -> tuple[dict | None, dict | None]:
        """``(start, stop)`` from TIFF headers and IFDs only (no pixel read).

        ``(None, None)`` if no file of the group is a readable TIFF.
        """
        files = self._files(location)
        if not files:
            return None, None
        run = _Run(files, self.grouping)
        return run.start(), run.stop()

    def read_documents(self, location: Location) -> Iterator[tuple[str, dict]]:
        """The whole synthesized document stream of a run.

        Raises
        ------
        MixedFramesError
            If a file's frames differ in shape or dtype from the first file's.
        """
        files = self._files(location)
        if not files:
            return iter(())
        run = _Run(files, self.grouping)
        run.check_frames()
        return run.documents()

    # --- helpers ----------------------------------------------------------
    def _files(self, location: Location) -> list[FileInfo]:
        paths = (location,) if isinstance(location, str) else tuple(location)
        files = []
        for path in paths:
            try:
                info = scan_file(path)
            except FileNotFoundError:
                continue  # deleted since it was listed: the next listing drops it too
            if isinstance(info, BadFile):
                _warn_bad(info)
            else:
                files.append(info)
        return files


class _Run:
    """The documents of one group of readable files."""

    def __init__(self, files: list[FileInfo], grouping: Grouping):
        self.files = files
        self.grouping = grouping
        self.uid = run_uid(files)
        first = files[0]
        self.first = first
        self.num_events = sum(len(f.pages) for f in files)

    def sample_name(self) -> str:
        stems = {self.grouping.stem(f.name) for f in self.files}
        if len(stems) == 1 and (stem := stems.pop().strip(" _-.")):
            return stem
        # Several series in one directory: the directory names the sample.
        directory = os.path.dirname(self.first.path)
        return os.path.basename(directory) or strip_suffix(self.first.name)

    def start(self) -> dict:
        first = self.first
        return {
            "uid": self.uid,
            "time": min(f.mtime for f in self.files),
            "sample_name": self.sample_name(),
            "directory": os.path.dirname(first.path),
            "files": [f.name for f in self.files],
            "num_files": len(self.files),
            "num_images": self.num_events,
            "image_shape": list(first.shape),
            "image_dtype": first.dtype,
            "tiff_tags": dict(first.tags),
        }

    def stop(self) -> dict:
        return {
            "uid": _uid(self.uid, "stop"),
            "run_start": self.uid,
            "time": max(f.mtime for f in self.files),
            "exit_status": "success",
            "reason": "",
            "num_events": {"primary": self.num_events},
        }

    def check_frames(self) -> None:
        first = self.first
        for info in self.files:
            if info.inconsistent:
                raise MixedFramesError(
                    f"TIFF file {info.path} mixes frame shapes ({info.inconsistent}); a run's "
                    "frames must all have one shape and dtype. Split it into files of one "
                    "shape, or move it out of the bucket."
                )
            if (info.shape, info.dtype) != (first.shape, first.dtype):
                raise MixedFramesError(
                    f"TIFF file {info.path} has frames of shape {list(info.shape)} "
                    f"{info.dtype}, but the first file of its run, {first.path}, has "
                    f"{list(first.shape)} {first.dtype}; a run's frames must all have one "
                    "shape and dtype. Move the odd file out of the directory or group the "
                    "bucket by series (group_by='series')."
                )

    def descriptor(self) -> dict:
        first = self.first
        return {
            "uid": _uid(self.uid, "descriptor", "primary"),
            "run_start": self.uid,
            "time": min(f.mtime for f in self.files),
            "name": "primary",
            "data_keys": {
                "image": {
                    "source": "tiff",
                    "object_name": "tiff",
                    "dtype": "array",
                    "dtype_numpy": first.dtype,
                    "shape": list(first.shape),
                    "dims": _dims(first),
                    "external": "FILESTORE:",
                }
            },
            "object_keys": {"tiff": ["image"]},
            "configuration": {},
            "hints": {"tiff": {"fields": ["image"]}},
        }

    def documents(self) -> Iterator[tuple[str, dict]]:
        semantics = "windows" if os.name == "nt" else "posix"
        yield "start", self.start()
        descriptor = self.descriptor()
        yield "descriptor", descriptor
        datum_ids: list[str] = []
        times: list[float] = []
        for info in self.files:
            resource_uid = _uid(self.uid, "resource", info.name)
            resource = {
                "uid": resource_uid,
                "run_start": self.uid,
                "spec": SPEC,
                "root": os.path.dirname(info.path),
                "resource_path": info.name,
                "resource_kwargs": {},
                "path_semantics": semantics,
            }
            yield "resource", resource
            ids = [f"{resource_uid}/{page}" for page in info.pages]
            datum_page = {
                "resource": resource_uid,
                "datum_id": ids,
                "datum_kwargs": {"page": list(info.pages)},
            }
            yield "datum_page", datum_page
            datum_ids.extend(ids)
            times.extend([info.mtime] * len(ids))
        n = len(datum_ids)
        if n:
            event_page = {
                "descriptor": descriptor["uid"],
                "uid": [_uid(self.uid, "event", str(i)) for i in range(1, n + 1)],
                "seq_num": list(range(1, n + 1)),
                "time": times,
                "data": {"image": datum_ids},
                "timestamps": {"image": list(times)},
                "filled": {"image": [False] * n},
            }
            yield "event_page", event_page
        yield "stop", self.stop()
