"""What a file format implements: reading one run file's documents and header.

A backend subclasses :class:`FileFormat`; :class:`~.driver.FileDriver` turns it
into a complete driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

#: Where one run is stored: a file, or a tuple of files.
Location = str | tuple[str, ...]


def _files_of(location: Location) -> tuple[str, ...]:
    return (location,) if isinstance(location, str) else tuple(location)


def _location_key(location: Location) -> str:
    return location if isinstance(location, str) else "\n".join(location)


def file_version(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another: size, mtime, ctime and
    inode (from ``os.stat`` or ``os.fstat``).

    Size and mtime alone miss a file rewritten in place to the same size whose
    mtime was then set back (``os.utime``, ``touch -r``, ``cp -p``, ``rsync``):
    its ctime cannot be set back, and a file replaced by another has another
    inode.

    Examples
    --------
    >>> import os, tempfile
    >>> path = tempfile.mktemp()
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"12345")
    >>> file_version(os.stat(path))[0]
    5
    """
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def location_version(location: Location) -> tuple | None:
    """:func:`file_version` of every file of a location; None if one is gone."""
    out = []
    for path in _files_of(location):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        out.append(file_version(st))
    return tuple(out)


class FileFormat:
    """How to read bluesky documents out of one file of a format.

    Subclasses set :attr:`suffixes` and implement :meth:`read_documents`;
    they should override :meth:`read_header` to read only the first and last
    records, and may implement :meth:`read_appended` so that a growing file is
    read incrementally. Instances must be picklable (no open handles).
    """

    #: File name endings this format claims inside a directory.
    suffixes: tuple[str, ...] = ()
    #: Short name for messages.
    name: str = "file"
    #: Whether directories are searched recursively.
    recursive: bool = False
    #: True if :meth:`read_header` warns itself about files it cannot use
    #: (returning ``(None, None)``); otherwise the core warns for it.
    reports_skipped_files: bool = False
    #: True if :meth:`read_header` returns only JSON types (dict, list, str,
    #: int, float, bool, None), e.g. documents decoded from JSON: they are
    #: stored in the on-disk index without a check of every value.
    json_documents: bool = False
    #: True if reading a run's documents makes no reference cycles (a
    #: decoder of bytes such as JSON or msgpack): a run file's whole parse
    #: then runs with the cyclic garbage collector paused, instead of the
    #: collector traversing everything decoded so far again and again.
    acyclic_documents: bool = False
    #: Bump when :meth:`read_header` changes what it returns for the same
    #: bytes: entries of the on-disk index made by older versions are ignored.
    index_version: int = 1

    @classmethod
    def guess_can_open(cls, store) -> bool:
        """Whether ``store`` holds files of this format (by :attr:`suffixes`).

        What a file backend's catalog class answers when asked whether it
        recognises a store: see :func:`holds_files`.
        """
        from .listing import holds_files  # listing builds on formats

        return holds_files(store, cls.suffixes)

    def read_documents(self, location: Location) -> Iterator[tuple[str, dict]]:
        """Every ``(name, doc)`` in the file, stored order.

        A truncated last record is a run being written: stop there silently.
        A corrupt record before the end raises ``ValueError`` naming the file
        and the (1-based) line or byte offset.
        """
        raise NotImplementedError

    def read_header(self, location: Location) -> tuple[dict | None, dict | None]:
        """``(start, stop)`` of a run file; ``stop`` is None while running.

        The default reads every document; formats should read the first and
        last records only.
        """
        start = stop = None
        for name, doc in self.read_documents(location):
            if name == "start" and start is None:
                start = doc
            elif name == "stop":
                stop = doc
        return start, stop

    def read_versioned_header(
        self, location: Location
    ) -> tuple[tuple | None, dict | None, dict | None]:
        """``(version, start, stop)``: :meth:`read_header` and the version of
        the files it read (a tuple of :func:`file_version`, one per file of the
        location), or ``(None, None, None)`` if a file is gone.

        The default stats the files, then reads them. A format reading one
        file should override it to take the version from the open file
        (``os.fstat``): indexing a directory of 100,000 runs then looks each
        path up once, not twice. The version must be taken before the
        contents are read (a file changing meanwhile is read again later).
        """
        version = location_version(location)
        if version is None:
            return None, None, None
        start, stop = self.read_header(location)
        return version, start, stop

    @staticmethod
    def version_of_open_file(file) -> tuple[tuple[int, int, int, int]]:
        """The version of a one-file location, from its open file object
        (what :meth:`read_versioned_header` returns for it)."""
        return (file_version(os.fstat(file.fileno())),)

    def read_appended(self, location: Location, resume):
        """Lists of the documents after ``resume``, from a generator that
        *returns* the next ``resume`` (lists, not single documents: a run of
        100,000 events then passes through a few generator steps, not
        100,000).

        ``resume`` is None (read from the beginning) or what the previous call
        returned; its first item must be the byte offset just after the last
        complete record read. Implement it to read a growing file
        incrementally; the core checks that the bytes before that offset are
        unchanged (else it reads from the beginning again). Formats that do
        not implement it are read whole again when their file changes.
        """
        raise NotImplementedError

    def split_runs(self, paths: Sequence[str]) -> list[Location]:
        """Group the listed files into runs.

        A location is one path (one file per run, the default) or a tuple of
        paths (a run made of several files, e.g. a TIFF series); it is what
        :meth:`read_header` and :meth:`read_documents` receive.
        """
        return list(paths)

    def index_key(self) -> str:
        """What distinguishes this format's entries in the on-disk index
        (class, :attr:`index_version` and options)."""
        options = sorted((k, repr(v)) for k, v in vars(self).items())
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}/{self.index_version}/{options!r}"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in vars(self).items()))))


def _incremental(fmt: FileFormat) -> bool:
    return type(fmt).read_appended is not FileFormat.read_appended


# ---------------------------------------------------------------------------
# Listing.
