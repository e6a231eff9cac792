"""One run file as a run source: parsed once, then read incrementally as it
grows; a rewritten file is noticed (:class:`~intake_bluesky.core.errors.RunChangedError`).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict

from .._gc import gc_paused
from .._model.documents import DelegatingRunSource, DocumentRunSource
from ..errors import BadDocumentError, RunChangedError
from .format import FileFormat, Location, _files_of, _incremental
from .headers import _HEADERS_LOCK, _version

#: Bytes compared, before the resume offset and at the file's start, to tell
#: a file that grew from one rewritten.
_FINGERPRINT = 256


def _fingerprint(path: str, offset: int) -> tuple | None:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            head = f.read(min(_FINGERPRINT, offset))
            f.seek(max(0, offset - _FINGERPRINT))
            tail = f.read(min(_FINGERPRINT, offset))
    except OSError:
        return None
    return (st.st_dev, st.st_ino, head, tail)


class _ParsedRunFile:
    """One run file as parsed so far: its run source for one version of the
    file, with what is needed to parse only the bytes appended later."""

    def __init__(self):
        self.lock = threading.Lock()
        self.version = None
        self.source: DocumentRunSource | None = None
        self.resume = None
        self.fingerprint = None

    def update(self, fmt: FileFormat, location: Location, uid: str, version) -> None:
        """Bring :attr:`source` to ``version`` (call with :attr:`lock` held)."""
        if self.source is not None and version == self.version:
            return
        if not fmt.acyclic_documents:
            self._update(fmt, location, uid, version)
            return
        # One pause for the whole parse, not one per decoded batch: after
        # each batch the collector would otherwise traverse everything the
        # batch decoded (and, every tenth time, all batches so far), which
        # cost a seventh of reading a file of frames stored inline. The
        # format says its documents make no reference cycles; the core's
        # parse of them makes none.
        with gc_paused():
            self._update(fmt, location, uid, version)

    def _update(self, fmt: FileFormat, location: Location, uid: str, version) -> None:
        if self.source is not None and self.source._has_taken():
            # Appended events would join pages that were handed to a read:
            # read the whole file again.
            self.source = self.resume = self.fingerprint = self.version = None
        if not _incremental(fmt):
            self.source = DocumentRunSource(
                fmt.read_documents(location), uid=uid, keep_documents=False
            )
            self.source._hand_over = True  # the file can be read again
            self.version = version
            return
        (path,) = _files_of(location)
        resume = self.resume
        if self.source is not None and resume is not None:
            # A serializer only appends: a file that did not grow was
            # rewritten in place (same size) or truncated; one that
            # grew keeps its bytes up to where we stopped (checked by sample).
            grew = self.version is not None and version[0][0] > self.version[0][0]
            now = _fingerprint(path, resume[0]) if grew else None
            if now is None or now != self.fingerprint:
                resume = None  # truncated or rewritten: start over
        result: list = []

        def batches():
            result.append((yield from fmt.read_appended(location, resume)))

        documents = itertools.chain.from_iterable(batches())
        try:
            if resume is None or self.source is None:
                self.source = DocumentRunSource(documents, uid=uid, keep_documents=False)
                self.source._hand_over = True  # the file can be read again
            else:
                self.source.extend(documents)
        except BaseException:
            # Part of the appended documents may have been taken: the next
            # access reads the file from the start (and reports the error).
            self.source = self.resume = self.fingerprint = self.version = None
            raise
        self.resume = result[0] if result else None
        self.fingerprint = _fingerprint(path, self.resume[0]) if self.resume else None
        self.version = version


# Runs recently read in this process, so that looking a run up again
# (``cat[-1]`` twice) does not parse its file again. Small: each entry holds a
# run's columns.
_SOURCES: OrderedDict[tuple[FileFormat, Location], _ParsedRunFile] = OrderedDict()
_SOURCES_MAX = 2


def _parsed_run_file(fmt: FileFormat, location: Location) -> _ParsedRunFile:
    """The shared parse of a run file (the most recent few are kept)."""
    key = (fmt, location)
    with _HEADERS_LOCK:
        parsed = _SOURCES.get(key)
        if parsed is None:
            parsed = _SOURCES[key] = _ParsedRunFile()
        _SOURCES.move_to_end(key)
        while len(_SOURCES) > _SOURCES_MAX:
            _SOURCES.popitem(last=False)
    return parsed


class FileRunSource(DelegatingRunSource):
    """A run stored in files, read again (only the appended bytes, where the
    format allows) whenever a file's size, mtime, ctime or inode changes.

    So a live run's new events and its stop show up on the next access.
    """

    def __init__(self, location: Location, fmt: FileFormat, uid: str, header=None, on_change=None):
        self.location = location
        self.fmt = fmt
        self.uid = uid
        # (version, start, stop) from the index: start/stop without reading
        # the whole file while the file is unchanged.
        self._header = header
        self._on_change = on_change
        self._parsed: _ParsedRunFile | None = None

    def __getstate__(self):
        return {"location": self.location, "fmt": self.fmt, "uid": self.uid}

    def __setstate__(self, state):
        self.__init__(state["location"], state["fmt"], state["uid"])

    def _check_version(self):
        version = _version(self.location)
        if version is None:
            raise FileNotFoundError(
                f"Run {self.uid!r}: its file(s) {self.location} were removed after the catalog "
                "was opened."
            )
        return version

    def __repr__(self):
        return f"{type(self).__name__}({self.location!r}, uid={self.uid!r})"

    @property
    def _current(self) -> DocumentRunSource:
        version = self._check_version()
        parsed = self._parsed
        if parsed is None or parsed.version != version:
            # Shared with other run objects of the same file in this process;
            # kept here too, so a followed run stays incremental even when
            # other runs are read meanwhile.
            if parsed is None:
                parsed = self._parsed = _parsed_run_file(self.fmt, self.location)
        with parsed.lock:
            parsed.update(self.fmt, self.location, self.uid, version)
            source = parsed.source
        # update() always leaves a source (it raises when it cannot).
        assert source is not None
        try:
            start = source.start()
        except BadDocumentError:
            # The file no longer begins with a start document: truncated, or
            # caught in the middle of being written again.
            raise RunChangedError(
                f"Run {self.uid!r} no longer exists as it was: its file(s) {self.location} "
                "no longer begin with its start document (truncated or being written "
                "again). Look it up again once the file is complete."
            ) from None
        if start["uid"] != self.uid:
            self._raise_more_than_one_run(start["uid"])
            raise RunChangedError(
                f"Run {self.uid!r} no longer exists: its file(s) {self.location} changed "
                f"and now hold run {start['uid']!r}. Look it up again."
            )
        return source

    def _current_for(self, descriptor_uid: str) -> DocumentRunSource:
        source = self._current
        if source._has_taken(descriptor_uid):
            # An eager read took these events' pages (so that the run is not
            # held twice): read the file again.
            parsed = self._parsed
            assert parsed is not None  # set by _current
            with parsed.lock:
                if parsed.source is source:
                    parsed.source = parsed.resume = parsed.fingerprint = parsed.version = None
            source = self._current
        return source

    def _raise_more_than_one_run(self, other) -> None:
        """ValueError if the file still begins with this run: then the run
        read last (``other``) is a second run in the same file, not a sign
        that the file changed."""
        try:
            first = self.fmt.read_header(self.location)[0]
        except (OSError, ValueError):
            return
        if first is not None and first.get("uid") == self.uid:
            raise ValueError(
                f"{self.location} holds more than one run: it begins with the start document "
                f"of run {self.uid!r} and has another, of run {other!r}, after it. A run file "
                "holds one run: split it into one file per run, or move it out of the "
                "catalog's paths."
            )

    def _valid_header(self):
        header = self._header
        if header is not None:
            if header[0] == self._check_version():
                return header
            if self._on_change is not None:
                self._on_change(self.location)
        self._header = None
        return None

    def start(self):
        header = self._valid_header()
        return header[1] if header is not None else self._current.start()

    def stop(self):
        header = self._valid_header()
        return header[2] if header is not None else self._current.stop()

    def documents(self):
        # Streamed from the file: the organized view keeps no raw documents.
        return self.fmt.read_documents(self.location)
