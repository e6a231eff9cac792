"""Reading suitcase-jsonl files: one run per file, one ``[name, doc]`` per line."""

from __future__ import annotations

import functools
import itertools
import json
import os
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import orjson

from intake_bluesky.core import COLUMNAR_ROWS, FileFormat, Location, columnar_page, gc_paused

__all__ = ["JSONLFormat"]

# read_header reads backwards from the end in blocks, starting small because a
# stop line is a few hundred bytes, and doubling so that a huge last line (an
# image event page) costs a few reads, not thousands.
_FIRST_BLOCK = 8 * 1024
_MAX_BLOCK = 16 * 1024 * 1024

_WHAT_TO_DO = (
    "Each line of a bluesky JSONL file must be a JSON array [name, document], as "
    "suitcase-jsonl writes it. Repair or delete that line, or move the file out of the "
    "catalog's paths."
)


def _path(location: Location) -> str:
    if isinstance(location, str):
        return location
    if isinstance(location, os.PathLike):
        return os.fspath(location)
    (path,) = location  # a JSONL run is always exactly one file
    return path


# orjson reads an integer beyond 64 bits (above 2**64 - 1, below -2**63) as a
# float, silently rounding it; the standard library keeps it exact. Such an
# integer has at least 19 digits in a row, which floats as Python and
# suitcase-jsonl write them (17 significant digits at most) seldom have: text
# holding such a run takes the exact path, all other text keeps orjson's
# speed. In a big chunk numpy finds such a run in about a twelfth of the time
# decoding the same bytes takes (a search of the text with its digits mapped
# to "0" for 19 of them takes three times as long there, but is faster below
# 16 KiB; a regular expression costs most of the decoding's).


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19
#: Shorter texts are searched with bytes.translate (a run file's first block:
#: numpy's fixed cost per call, about 5 us, is six times the search).
_NUMPY_FROM = 16 * 1024


def _long_digits(text) -> bool:
    """Whether ``text`` (bytes-like) holds 19 or more digits in a row.

    Examples
    --------
    >>> _long_digits(b"[1.2345678901234567, 18446744073709551616]")
    True
    >>> _long_digits(b"[1.2345678901234567, 184467440737095516]")
    False
    >>> _long_digits(b"1" * 19 + b" " * _NUMPY_FROM), _long_digits(b"12 " * _NUMPY_FROM)
    (True, False)
    """
    if len(text) < _NUMPY_FROM:
        if type(text) is not bytes:
            text = bytes(text)
        return _NINETEEN_ZEROS in text.translate(_DIGITS_TO_ZERO)
    # 1 for each digit byte (the others wrap around below 0 to 10 or more).
    runs = (np.frombuffer(text, np.uint8) - 48) < 10
    # Each step keeps the positions that begin a run twice as long (then 3
    # longer): runs[i] ends up 1 where digits [i, i + 19) all are.
    for step in (1, 2, 4, 8, 3):
        runs = runs[:-step] & runs[step:]
    return bool(runs.any())


def _is_pair(item) -> bool:
    return type(item) is list and len(item) == 2 and type(item[0]) is str and type(item[1]) is dict


def _slow_loads(line: bytes):
    """Decode a line orjson refused; raise ValueError if it is not JSON at all.

    suitcase-jsonl writes with the stdlib, which emits bare ``NaN``,
    ``Infinity`` and ``-Infinity``; orjson rejects them, the stdlib reads them.
    Only the lines that hold one pay for the slower parser.
    """
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError("too deeply nested") from None


def _loads(line: bytes):
    """Decode one line, fast if possible; ValueError if it is not JSON."""
    if _long_digits(line):
        return _slow_loads(line)
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _slow_loads(line)


def _loads_short(line: bytes):
    """:func:`_loads` of a line known to hold no run of 19 digits."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _slow_loads(line)


def _describe(err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at column {err.colno}"
    return str(err)


def _corrupt(path: str, lineno: int, err: ValueError) -> ValueError:
    return ValueError(
        f"{path}, line {lineno}: not valid JSON ({_describe(err)}). A newline follows it, so "
        f"it is not the end of a run still being written: the file is corrupt. {_WHAT_TO_DO}"
    )


def _not_a_pair(path: str, lineno: int, item) -> ValueError:
    text = repr(item)
    if len(text) > 80:
        text = text[:77] + "..."
    return ValueError(
        f"{path}, line {lineno}: expected [name, document] (a string and an object), "
        f"got {text}. {_WHAT_TO_DO}"
    )


class _Starts:
    """Where the file's start document is: a second one is an error (a JSONL
    file holds one run), named with both lines and both uids."""

    __slots__ = ("path", "first")

    def __init__(self, path: str, first: tuple | None = None):
        self.path = path
        self.first = first  # (line, uid) of the start document

    def see(self, lineno: int, doc: dict) -> None:
        if self.first is None:
            self.first = (lineno, doc.get("uid"))
            return
        line, uid = self.first
        raise ValueError(
            f"{self.path}, line {lineno}: a second start document (run {doc.get('uid')!r}); "
            f"line {line} starts run {uid!r}. A JSONL file holds one run, so this file holds "
            "more than one: split it into one file per run (each from its start document "
            "on), or move it out of the catalog's paths."
        )


#: Lines decoded per batch on the careful path (blank lines, bare NaN, an
#: incomplete last line, errors): documents are handed on (and freed by the
#: core, which packs them into columns) batch by batch, so memory holds the
#: file's bytes and one batch of dicts, never every document of the run.
_BATCH = 2048

#: Bytes of complete lines decoded at once on the fast path: about 170 events
#: of a scalar run. Small enough that one batch of dicts stays in the CPU's
#: cache while the core packs it (larger batches are measurably slower).
_CHUNK = 64 * 1024


#: Bytes read from a file at a time: memory holds one block and one batch of
#: documents (which the core packs into columns), never the whole file. A
#: block that stays in the CPU's cache while it is decoded reads a 100,000-event
#: file about 10% faster than 4 MiB blocks.
_BLOCK = 2**20


def _file_batches(
    f: BinaryIO,
    path: str,
    lineno: int = 0,
    offset: int = 0,
    skip_newline=False,
    first_start: tuple | None = None,
):
    """Lists of documents of an open file from its position ``offset`` on,
    block by block; returns like :func:`_batches`, and the ``(line, uid)``
    of the file's start document. The file is closed at the end.

    Runs of NUL bytes (what a crash can leave at a file's end) are skipped
    without being decoded, with a warning: each ends the line before it.
    """
    starts = _Starts(path, first_start)
    with f:
        parts: list[bytes] = []  # pieces of a line not finished in its block
        first = True
        ahead = b""  # bytes read after a run of NULs, not handled yet
        warned = False
        while True:
            if ahead:
                block, ahead = ahead, b""
            else:
                block = f.read(max(_BLOCK, 2))
            if first and skip_newline:
                # The line ending of a line already taken: not a blank line.
                ending = b"\r\n" if block.startswith(b"\r") else b"\n"
                if block.startswith(ending):
                    block = block[len(ending) :]
                    offset += len(ending)
                elif ending.startswith(block):
                    # Nothing new, or only the "\r" of a "\r\n": still waiting.
                    return offset, lineno, True, starts.first
            first = False
            if not block:
                break
            # A memchr per block: files without NULs pay nothing more.
            nul = block.find(b"\x00")
            if nul >= 0:
                block, ahead = block[:nul], block[nul:]
            cut = block.rfind(b"\n") + 1
            if not cut:
                if block:
                    parts.append(block)
            else:
                start = 0
                if parts:
                    # The line left unfinished by the last block, completed
                    # by the head of this one: joined alone (joining the
                    # whole block would copy it).
                    start = block.find(b"\n") + 1
                    line = b"".join([*parts, block[:start]])
                    parts = []
                    _, lineno, _ = yield from _batches(
                        line, path, lineno, offset, len(line), starts
                    )
                    offset += len(line) - start  # now the block's own offset
                # Only complete lines here: what follows the last newline
                # waits for the next block (or the end of the file).
                _, lineno, _ = yield from _batches(block, path, lineno, offset, cut, starts, start)
                offset += cut
                if cut < len(block):
                    parts.append(block[cut:])
            if nul < 0:
                continue
            # NUL bytes from ``at``: they end the line in progress, which is
            # taken if it is complete JSON, else skipped with them.
            at = offset + sum(map(len, parts))
            dropped = b""
            if parts:
                data = b"".join(parts)
                parts = []
                consumed, lineno, _ = yield from _batches(data, path, lineno, offset, None, starts)
                dropped = data[consumed - offset :]
            offset, ahead = _skip_nuls(f, ahead, at)
            if not warned:
                warned = True
                _warn_nuls(path, at, offset, dropped, not ahead)
        if parts:
            end = yield from _batches(b"".join(parts), path, lineno, offset, None, starts)
            return (*end, starts.first)
        return offset, lineno, False, starts.first


#: Blocks of zeros to compare blocks of NULs with (made when first needed).
_zeros = functools.lru_cache(maxsize=2)(bytes)


def _skip_nuls(f: BinaryIO, ahead: bytes, at: int) -> tuple[int, bytes]:
    """Past the run of NUL bytes that begins ``ahead`` (read from byte
    offset ``at``): the offset just after it, and the bytes read after it.

    Whole blocks of NULs are compared, not decoded or searched byte by byte,
    one block at a time: a GiB of NULs costs about a second and a block of
    memory.
    """
    end = at
    while True:
        if ahead == _zeros(len(ahead)):
            rest = b""
        else:
            rest = ahead.lstrip(b"\x00")
        end += len(ahead) - len(rest)
        if rest:
            return end, rest
        ahead = f.read(_BLOCK)
        if not ahead:
            return end, b""


def _warn_nuls(path: str, at: int, end: int, dropped: bytes, at_end: bool) -> None:
    text = f"{path}: {end - at} NUL bytes from byte offset {at} were skipped"
    if dropped.strip():
        text += (
            f", and the incomplete line before them (from byte offset {at - len(dropped)}) "
            "with them"
        )
    if at_end:
        text += (
            ". A crash can leave a file's end filled with NUL bytes where nothing was "
            "written: the documents before them are read. Truncate the file at byte offset "
            f"{at - len(dropped)} to remove them."
        )
    else:
        text += (
            "; the documents before and after them are read (any further NUL bytes in the "
            "file are skipped too). Check how the file was written."
        )
    warnings.warn(text, stacklevel=4)


def _batches(
    data: bytes,
    path: str,
    lineno: int = 0,
    base: int = 0,
    end: int | None = None,
    starts: _Starts | None = None,
    start: int = 0,
):
    """Lists of documents of ``data[start:end]`` (``data`` being the file's
    bytes from offset ``base``, after ``lineno`` lines); returns ``(offset,
    lineno, unterminated)`` just after the last complete line (see
    :meth:`JSONLFormat.read_appended`). ``starts`` is told of every start
    document."""
    if starts is None:
        starts = _Starts(path)
    view = memoryview(data)  # careful lines are decoded from slices, never copied
    pos, end = start, len(data) if end is None else end
    consumed, unterminated = start, False
    # Once a chunk held a bare NaN or Infinity (suitcase-jsonl's spelling of
    # non-finite floats, which orjson refuses), chunks are searched for one
    # first: those go straight down the careful path instead of being
    # decoded twice. Files without any pay for no search.
    non_finite = False
    while pos < end:
        limit = min(pos + _CHUNK, end)
        cut = data.rfind(b"\n", pos, limit) + 1 or data.find(b"\n", limit, end) + 1
        if cut:
            # Complete lines: one C-level call decodes them all when every
            # line is a plain [name, document] (the common case).
            chunk = data[pos : cut - 1]
            if non_finite and (b"NaN" in chunk or b"Infinity" in chunk):
                batch = None
            else:
                with gc_paused():
                    decoded = _decode_plain(chunk)
                if decoded is None:
                    batch = None
                    non_finite = b"NaN" in chunk or b"Infinity" in chunk
                elif not decoded[2] and _long_digits(chunk):
                    # A possible integer beyond 64 bits, which orjson
                    # rounded: line by line. (Rare; decoded for nothing.)
                    batch = None
                else:
                    batch, start_rows, _ = decoded
                    for i in start_rows:
                        starts.see(lineno + i + 1, batch[i][1])
            if batch is not None:
                lineno += len(batch)
                pos = consumed = cut
                unterminated = False
                yield batch
                continue
        else:
            cut = end  # the last line, with no newline after it yet
        # Blank lines, bare NaN, a corrupt or incomplete line: line by line.
        while pos < cut:
            long_digits = _long_digits(view[pos:cut])
            with gc_paused():
                batch, lineno, pos, consumed, unterminated = _decode_lines(
                    data, view, path, lineno, pos, cut, starts, long_digits
                )
            yield batch
    return base + consumed, lineno, unterminated


def _decode_plain(lines: bytes) -> tuple[list[tuple[str, dict]], list[int], bool] | None:
    """The documents of ``lines`` (complete lines, without the last newline),
    the positions of start documents among them, and whether orjson read
    every value exactly; or None if any line is not a plain ``[name,
    document]`` that orjson reads.

    Start documents are found in the loop that checks each line anyway: a
    search of the bytes for them would cost as much again as a tenth of the
    decoding.

    Event pages of at least ``COLUMNAR_ROWS`` rows of plain numbers are made
    columnar here, page by page (see
    :func:`~intake_bluesky.core.columnar_page`), instead of
    being merged by the core into long lists first. When every document is
    such a page, and no float column holds a value an integer beyond 64 bits
    could have been rounded to (see :func:`_exact_page`), the values are
    known to be exact and the third item is True: the caller skips the
    search of the bytes for long runs of digits (:func:`_long_digits`),
    which costs a third as much as decoding them.

    Each line is still decoded on its own (``split``, then ``map``), so a line
    that is not one JSON value by itself never passes; None sends the lines
    down the careful path, which skips blank lines, reads bare NaN and names
    the line of an error.
    """
    try:
        items = list(map(orjson.loads, lines.split(b"\n")))
    except orjson.JSONDecodeError:
        return None
    out: list[tuple[str, dict]] = []
    append = out.append
    start_rows: list[int] = []
    exact = 0  # documents known to hold exact values only
    # _is_pair() inlined: calling it per line (map) costs a third more here,
    # about 10 ms per 100,000 lines.
    for item in items:
        if type(item) is not list or len(item) != 2:
            return None
        name, doc = item
        if type(name) is not str or type(doc) is not dict:
            return None
        if name == "start":
            start_rows.append(len(out))
        elif name == "event_page":
            seq_num = doc.get("seq_num")
            if type(seq_num) is list and len(seq_num) >= COLUMNAR_ROWS:
                page = columnar_page(doc, len(seq_num))
                if page is not None:
                    doc = page
                    exact += _exact_page(page)
        append((name, doc))
    return out, start_rows, exact == len(out)


#: orjson reads an integer beyond 64 bits as a float of at least this
#: magnitude (see _long_digits).
_BEYOND_64_BITS = 2.0**63


def _exact_page(page: dict) -> bool:
    """Whether a page made by ``columnar_page`` from what orjson decoded
    surely holds the values of its text.

    orjson reads integers of up to 64 bits exactly, and an integer beyond as
    a float of magnitude 2**63 or more: a page whose float columns hold no
    such float, and whose ``filled`` columns no float, holds none. (Its int
    columns are exact; its uids and descriptor are strings.)
    """
    columns = [page["time"], page["seq_num"], *page["data"].values()]
    columns.extend(page["timestamps"].values())
    for column in columns:
        if column.dtype.kind == "f" and not (
            -_BEYOND_64_BITS < column.min() and column.max() < _BEYOND_64_BITS
        ):
            return False
    return not any(float in set(map(type, column)) for column in page.get("filled", {}).values())


def _decode_lines(
    data: bytes,
    view: memoryview,
    path: str,
    lineno: int,
    pos: int,
    end: int,
    starts: _Starts,
    long_digits: bool = False,
):
    loads = orjson.loads
    fast_error = orjson.JSONDecodeError
    find = data.find
    out: list[tuple[str, dict]] = []
    append = out.append
    # Where the next read of a growing file resumes: after the last line
    # decoded (or blank); a last line without a newline that decodes is
    # complete JSON, so it is taken, and the newline that follows later is
    # skipped then (``unterminated``).
    consumed, unterminated = pos, False
    while pos < end and len(out) < _BATCH:
        nl = find(b"\n", pos, end)
        # No newline after the last piece: a line whose writing has not
        # finished (or a final line without one).
        terminated = nl >= 0
        stop = nl if terminated else end
        line = view[pos:stop]
        pos = stop + 1
        lineno += 1
        try:
            # Unpacking checks the shape; the hot loop pays for nothing else.
            if long_digits and _long_digits(line):
                raise fast_error("an integer beyond 64 bits, perhaps", "", 0)
            name, doc = loads(line)
        except fast_error:
            raw = bytes(line)
            if not raw.strip():
                if terminated:
                    consumed = pos
                else:
                    lineno -= 1  # counted when it is complete
                continue
            try:
                item = _slow_loads(raw)
            except ValueError as err:
                if not terminated:
                    break  # a run being written: its last line is incomplete
                raise _corrupt(path, lineno, err) from None
            if not _is_pair(item):
                raise _not_a_pair(path, lineno, item) from None
            name, doc = item
        except (ValueError, TypeError):  # valid JSON, but not two items
            raise _not_a_pair(path, lineno, loads(line)) from None
        if type(name) is not str or type(doc) is not dict:
            raise _not_a_pair(path, lineno, loads(line))
        if name == "start":
            starts.see(lineno, doc)
        append((name, doc))
        consumed = pos
    else:
        # pos is one past the end only after a last line without a newline.
        if consumed > end:
            return out, lineno, pos, end, True
        return out, lineno, pos, consumed, unterminated
    # Stopped at an incomplete last line: it is read again next time.
    return out, lineno - 1, pos, consumed, unterminated


def _reverse_lines(f: BinaryIO, end: int) -> Iterator[tuple[bytes, bool]]:
    """The lines of a file's first ``end`` bytes from last to first, as
    ``(line, terminated)``.

    Only as much of the end of the file as the caller consumes is read.
    """
    pos = end
    block = _FIRST_BLOCK
    pending = b""  # the start of this piece lies before ``pos``
    terminated = False  # the piece after the file's last newline is not
    while pos > 0:
        n = min(block, pos)
        pos -= n
        block = min(block * 2, _MAX_BLOCK)
        f.seek(pos)
        parts = (f.read(n) + pending).split(b"\n")
        pending = parts[0]
        for part in reversed(parts[1:]):
            yield part, terminated
            terminated = True
    yield pending, terminated


class JSONLFormat(FileFormat):
    """The suitcase-jsonl format: ``<start uid>.jsonl``, one ``[name, doc]`` per line.

    Lines hold ``event`` and ``event_page``, ``datum`` and ``datum_page``
    documents alike, stream documents, and bare ``NaN``/``Infinity`` for
    non-finite floats. Arrays are nested lists: their dtype comes back from
    the descriptor.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "abc.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('["start", {"uid": "abc", "time": 0.0}]\\n')
    >>> JSONLFormat().read_header(path)
    ({'uid': 'abc', 'time': 0.0}, None)
    """

    suffixes = (".jsonl",)
    name = "JSONL"
    # Headers are decoded from JSON: stored in the on-disk index unchecked.
    json_documents = True
    # JSON decodes to trees: a run's parse runs with the cyclic GC paused.
    acyclic_documents = True

    def read_documents(self, location: Location) -> Iterator[tuple[str, dict]]:
        """Every ``(name, doc)`` of the file, in stored order.

        Blank lines are skipped. An incomplete last line (no newline after it
        and not valid JSON) is a run being written: reading stops before it.

        Raises
        ------
        ValueError
            A complete line (a newline follows it) that is not valid JSON, or
            a line that is not ``[name, document]``; the message names the
            file and the line (1-based) and says what to do.
        """
        path = _path(location)
        # Read in blocks, split in memory (faster than iterating a file object
        # line by line); opened now, so a missing file raises here.
        return itertools.chain.from_iterable(_file_batches(open(path, "rb"), path))

    def read_appended(self, location: Location, resume):
        """Lists of the documents after ``resume`` (None: all); returns the
        next ``resume``.

        ``resume`` is ``(offset, lineno, unterminated, start)``: the byte
        offset after the last complete line read, its (1-based) number,
        whether that line had no newline yet, and the ``(line, uid)`` of the
        start document read (a second one is an error). Only the bytes from
        ``offset`` on are read; an incomplete last line is left for the next
        call.
        """
        path = _path(location)
        offset, lineno, unterminated, start = resume or (0, 0, False, None)
        f = open(path, "rb")
        f.seek(offset)
        return (yield from _file_batches(f, path, lineno, offset, unterminated, start))

    def read_header(self, location: Location) -> tuple[dict | None, dict | None]:
        """``(start, stop)`` from the first and last lines only.

        The stop document is looked for in the last complete line, read
        backwards from the end of the file, so the cost does not grow with the
        number of events. ``start`` is None when the first line is not a
        start document (the core then skips the file with a warning);
        ``stop`` is None while the run is in progress.

        Raises
        ------
        ValueError
            If the first line is complete but not valid JSON.
        """
        return self.read_versioned_header(location)[1:]

    def read_versioned_header(self, location: Location) -> tuple[tuple, dict | None, dict | None]:
        """:meth:`read_header` with the file's version, taken from the open
        file (see :meth:`FileFormat.read_versioned_header`)."""
        path = _path(location)
        # Unbuffered: the first block is one read() into the bytes used.
        with open(path, "rb", buffering=0) as raw:
            version = self.version_of_open_file(raw)
            # Most run files are small (a scan of a few points): one block
            # holds the whole file, and both lines are found in memory; in a
            # big file the block holds the first line.
            block = raw.read(_FIRST_BLOCK)
            if b"\x00" not in block:
                whole = len(block) < _FIRST_BLOCK
                # Long digit runs looked for once in the block, not per line.
                loads = _loads if _long_digits(block) else _loads_short
                if whole and loads is _loads_short:
                    ends = _first_and_last(block)
                    if ends is not None:
                        return version, *ends
                lines = block.split(b"\n")
                found, start = _start_in(lines, whole, path, loads)
                if found:
                    if start is None:
                        return version, None, None
                    if whole:
                        return version, start, _stop_in(lines, loads)
                    return version, start, _last_stop(raw, path)
        # Lines longer than the block, or NUL bytes: read through a buffer (a
        # file replaced meanwhile has another version than the one returned,
        # so it is read again next time).
        with open(path, "rb") as f:
            start = _first_start(f, path)
            if start is None:
                return version, None, None
            return version, start, _last_stop(f, path)


def _first_and_last(block: bytes) -> tuple[dict | None, dict | None] | None:
    """``(start, stop)`` of a whole file in the usual layout: its first line
    and its last (terminated) line both JSON. None for any other layout
    (blank lines, a line being written, NaN), which :func:`_start_in` and
    :func:`_stop_in` read by their full rules, to the same answer here."""
    end = block.find(b"\n")
    last = block.rfind(b"\n", 0, len(block) - 1) + 1
    if end <= 0 or last <= end or not block.endswith(b"\n"):
        return None
    try:
        first, final = orjson.loads(block[:end]), orjson.loads(block[last:-1])
    except orjson.JSONDecodeError:
        return None
    if not (_is_pair(first) and first[0] == "start"):
        return None, None
    return first[1], (final[1] if _is_pair(final) and final[0] == "stop" else None)


def _start_in(
    lines: list[bytes], whole: bool, path: str, loads=_loads
) -> tuple[bool, dict | None]:
    """The start document of a file's first lines (a block split at
    newlines, without NUL bytes), by the rules of :func:`_first_start`:
    ``(False, None)`` when the block does not tell (its first line goes on
    past it)."""
    last = len(lines) - 1  # the text after the last newline: unterminated
    for i, line in enumerate(lines):
        if i == last and not whole:
            return False, None
        if i == last and not line:
            return True, None  # the end of the file
        if not line.strip():
            continue
        try:
            item = loads(line)
        except ValueError as err:
            if i == last:
                return True, None  # the start document is still being written
            raise _corrupt(path, i + 1, err) from None
        return True, (item[1] if _is_pair(item) and item[0] == "start" else None)
    return True, None


def _stop_in(lines: list[bytes], loads=_loads) -> dict | None:
    """The stop document of a whole file's lines, by the rules of
    :func:`_last_stop`."""
    last = len(lines) - 1
    for i in range(last, -1, -1):
        line = lines[i]
        if not line.strip():
            continue
        try:
            item = loads(line)
        except ValueError:
            if i == last:
                continue  # being written; the stop, if any, is before
            return None  # a corrupt last line: reported when the run is read
        return item[1] if _is_pair(item) and item[0] == "stop" else None
    return None


#: Bytes of a line read at a time by :func:`_first_start`.
_LINE_PIECE = 64 * 1024


def _first_line(f: BinaryIO, path: str) -> tuple[bytes, bool]:
    """The next line from the file's position, and whether it is complete
    (a newline, or NUL bytes, follow it). A run of NUL bytes ends the line
    and is skipped (with a warning), as in :func:`_file_batches`; memory
    holds the line, never the NULs."""
    pieces = []
    while True:
        piece = f.readline(_LINE_PIECE)
        nul = piece.find(b"\x00")
        if nul >= 0:
            at = f.tell() - len(piece) + nul
            pieces.append(piece[:nul])
            end, _ = _skip_nuls(f, piece[nul:], at)
            f.seek(end)
            line = b"".join(pieces)
            _warn_nuls(path, at, end, line, end >= os.fstat(f.fileno()).st_size)
            return line, True
        pieces.append(piece)
        if not piece or piece.endswith(b"\n"):
            line = b"".join(pieces)
            return line, line.endswith(b"\n")


def _first_start(f: BinaryIO, path: str) -> dict | None:
    lineno = 0
    while True:
        line, complete = _first_line(f, path)
        if not line and not complete:
            return None  # the end of the file
        lineno += 1
        if not line.strip():
            continue
        try:
            item = _loads(line)
        except ValueError as err:
            if not line.endswith(b"\n"):
                return None  # the start document is still being written (or cut by NULs)
            raise _corrupt(path, lineno, err) from None
        return item[1] if _is_pair(item) and item[0] == "start" else None


def _data_end(f: BinaryIO, path: str) -> int:
    """The size of the file without the NUL bytes at its end (skipped with a
    warning): one byte is read when there are none."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    f.seek(size - 1)
    if f.read(1) != b"\x00":
        return size
    end = size
    while end > 0:
        n = min(_BLOCK, end)
        f.seek(end - n)
        block = f.read(n)
        if block == _zeros(n):
            end -= n
            continue
        end -= n - len(block.rstrip(b"\x00"))
        break
    _warn_nuls(path, end, size, b"", True)
    return end


def _last_stop(f: BinaryIO, path: str) -> dict | None:
    for line, terminated in _reverse_lines(f, _data_end(f, path)):
        # NUL bytes end a line (see _file_batches): its pieces, last first.
        pieces = line.split(b"\x00") if b"\x00" in line else [line]
        for i in range(len(pieces) - 1, -1, -1):
            piece = pieces[i]
            if not piece.strip():
                continue
            try:
                item = _loads(piece)
            except ValueError:
                if not terminated or i < len(pieces) - 1:
                    continue  # being written (or cut by NULs); the stop, if any, is before
                # A corrupt last line: the run is listed, and reading it reports
                # the line with its number (read_documents).
                return None
            return item[1] if _is_pair(item) and item[0] == "stop" else None
    return None
