"""Reading runs written by suitcase-msgpack.

A run file is a concatenation of msgpack records ``[name, doc]`` in emission
order. suitcase-msgpack writes every event as a 1-row ``event_page`` and every
datum as a 1-row ``datum_page``; numpy values are msgpack-numpy maps::

    {b"nd": True, b"type": "<u2", b"kind": b"", b"shape": [4, 5], b"data": <bytes>}
    {b"nd": False, b"type": "<i8", b"data": <bytes>}          # a numpy scalar
    {b"complex": True, b"data": "(1+2j)"}                      # a Python complex

Reading merges consecutive 1-row pages back into big pages: a 100,000-event
run is then a handful of pages instead of 100,000, which is what makes every
later (columnar) step fast. Pages that are big already (a fly scan's, or a
writer's that packs events) are made columnar one by one instead, their
float64 columns read from the msgpack bytes by numpy.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import cast

import msgpack
import numpy as np

from intake_bluesky.core import COLUMNAR_ROWS as _COLUMNAR_ROWS
from intake_bluesky.core import FileFormat, Location, MergedPage, UidColumn
from intake_bluesky.core import columnar_page as _columnar_page

__all__ = ["MsgpackFormat", "decode_numpy"]

#: How much of a file's end :meth:`MsgpackFormat.read_header` reads to find
#: the stop record; a stop document is a few hundred bytes.
TAIL_BYTES = 64 * 2**10
#: A second, larger look at the end before concluding there is no stop record.
TAIL_BYTES_MAX = 4 * 2**20
#: Bytes asked of the file per read while streaming records.
READ_SIZE = 2**20

# The msgpack prefix of a stop record: fixarray of 2, fixstr "stop".
_STOP_PREFIX = b"\x92\xa4stop"
# Record beginnings worth looking for after an undecodable stretch.
_RECORD_PREFIXES = tuple(
    b"\x92" + bytes([0xA0 | len(name)]) + name.encode()
    for name in ("event_page", "datum_page", "descriptor", "resource", "stop", "event", "datum")
)
# Values that cannot hold a msgpack-numpy map.
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


class _ExtTypeValue(ValueError):
    """A msgpack extension value in a document; ``where`` is its path."""

    def __init__(self, ext: msgpack.ExtType):
        super().__init__()
        self.ext = ext
        self.where: list = []

    def __str__(self):
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in self.where)
        return (
            f"{where.lstrip('.') or 'it'} holds a msgpack extension value (ExtType code "
            f"{self.ext.code}, {len(self.ext.data)} bytes), which neither bluesky's "
            "serializers nor msgpack-numpy write: the file was written by another program. "
            "Rewrite the value as a number, string, list or msgpack-numpy array."
        )


def decode_numpy(obj: dict):
    """Decode a msgpack-numpy map; any other map is returned unchanged.

    Arrays are views of the msgpack bytes (no copy), so they are read-only.
    Object arrays, which msgpack-numpy stores as pickles, are refused: loading
    a pickle from a data file can run arbitrary code.

    Parameters
    ----------
    obj : dict
        A map as decoded by msgpack.

    Returns
    -------
    numpy.ndarray, numpy scalar, complex, or the map itself

    Examples
    --------
    >>> a = decode_numpy({b"nd": True, b"type": "<u2", b"kind": b"", b"shape": [2],
    ...                   b"data": b"\\x01\\x00\\x02\\x00"})
    >>> a.tolist(), a.dtype
    ([1, 2], dtype('uint16'))
    """
    if b"nd" in obj:
        if obj[b"nd"] is True:
            if obj.get(b"kind", b"") == b"O":
                raise ValueError(
                    "it holds an object array, which msgpack-numpy stores as a pickle; "
                    "intake-bluesky does not load pickles from data files (it could run "
                    "arbitrary code). Re-write the run with numeric or string dtypes."
                )
            dtype = _dtype(obj[b"type"])
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(tuple(obj[b"shape"]))
        return np.frombuffer(obj[b"data"], dtype=_dtype(obj[b"type"]))[0]
    if b"complex" in obj:
        data = obj[b"data"]
        return complex(data.decode() if isinstance(data, bytes) else data)
    return obj


def _dtype(descr) -> np.dtype:
    """A dtype from an array-protocol string or a structured description."""
    if isinstance(descr, bytes):
        descr = descr.decode()
    if isinstance(descr, list | tuple):
        # Structured: [[name, type, *shape], ...] (types nest).
        fields = []
        for field in descr:
            name = field[0].decode() if isinstance(field[0], bytes) else field[0]
            fields.append((name, _dtype(field[1]), *(tuple(s) for s in field[2:])))
        return np.dtype(fields)
    return np.dtype(descr)


def _decode_tree(obj):
    """``obj`` with every msgpack-numpy map inside it decoded (in place).

    Decoding after the fact instead of in a msgpack ``object_hook`` saves a
    Python call per map: most maps (every event's data, timestamps, filled)
    are plain, and whole columns are checked at once (see :func:`_column`).
    """
    kind = type(obj)
    if kind is dict:
        if b"nd" in obj or b"complex" in obj:
            return decode_numpy(obj)
        for key, value in obj.items():
            if type(value) not in _PLAIN:
                try:
                    new = _decode_tree(value)
                except _ExtTypeValue as err:
                    err.where.insert(0, key)  # named where it sits: data.x
                    raise
                if new is not value:
                    obj[key] = new
    elif kind is list:
        for i, value in enumerate(obj):
            if type(value) not in _PLAIN:
                try:
                    new = _decode_tree(value)
                except _ExtTypeValue as err:
                    err.where.insert(0, i)
                    raise
                if new is not value:
                    obj[i] = new
    elif kind is msgpack.ExtType:
        # (Left alone it would read as a 2-tuple [code, bytes] of data.)
        raise _ExtTypeValue(obj)
    return obj


def _unpacker(file, read_size: int = READ_SIZE) -> msgpack.Unpacker:
    # max_buffer_size=0 lifts msgpack's 100 MiB default (and the string, bin,
    # array and map limits derived from it) to 2**32-1, so records holding
    # 2048x2048 float64 frames, or pages of millions of rows, decode.
    return msgpack.Unpacker(
        file, read_size=read_size, max_buffer_size=0, raw=False, strict_map_key=False
    )


class MsgpackFormat(FileFormat):
    """Run files written by suitcase-msgpack (``<start uid>.msgpack``).

    Examples
    --------
    >>> fmt = MsgpackFormat()
    >>> fmt.name, fmt.suffixes
    ('msgpack', ('.msgpack',))
    """

    suffixes = (".msgpack",)
    name = "msgpack"
    # msgpack decodes to trees: a run's parse runs with the cyclic GC paused.
    acyclic_documents = True

    def read_documents(self, location: Location) -> Iterator[tuple[str, dict]]:
        """Every ``(name, doc)`` of one run file, in stored order.

        Consecutive event pages of one descriptor and datum pages of one
        resource are merged into one page each; any other document ends a
        merge, and merged datum pages come before merged event pages, so
        every datum still precedes the events that refer to it. Columns of
        merged pages are lists, except array data of one shape and dtype,
        which is stacked into one numpy array (rows first). A merged page is
        a :class:`~intake_bluesky.core.MergedPage` that lists the rows of
        each stored page, so ``canonical()`` still gives each back as stored.

        A truncated last record (a run being written) ends the documents
        silently; a corrupt record before the end raises ``ValueError``
        naming the file and the record's byte offset.
        """
        path = os.fspath(cast(str, location))  # one file per run: a path
        with open(path, "rb") as file:
            # Read eagerly: the file is closed before the first document is
            # handed out, however long the caller takes.
            batches = list(_read(path, file))
        for documents in batches:
            for name, doc in documents:
                if name == "event_page" and type(doc["uid"]) is UidColumn:
                    # Packed for the core (read_appended); lists for anyone else.
                    doc = {**doc, "uid": doc["uid"].tolist()}
                yield name, doc

    def read_appended(self, location: Location, resume):
        """Lists of the documents after ``resume`` (None: all); returns the
        next ``resume``.

        ``resume`` is ``(offset,)``, the byte offset after the last complete
        record read: only the bytes from there on are read, and a truncated
        last record is left for the next call.
        """
        path = os.fspath(cast(str, location))  # one file per run: a path
        offset = resume[0] if resume is not None else 0
        with open(path, "rb") as file:
            file.seek(offset)
            end = yield from _read(path, file, offset)
        return (end,)

    def read_header(self, location: Location) -> tuple[dict | None, dict | None]:
        """``(start, stop)`` of a run file from its first and last records.

        The stop record is found by reading only the end of the file: the
        last occurrence of the bytes that begin a ``["stop", {...}]`` record
        from which exactly one record decodes, ending at the end of the file.
        ``stop`` is None while the run is being written.
        """
        return self.read_versioned_header(location)[1:]

    def read_versioned_header(self, location: Location):
        """:meth:`read_header` with the file's version, taken from the open
        file (see :meth:`FileFormat.read_versioned_header`)."""
        path = os.fspath(cast(str, location))  # one file per run: a path
        with open(path, "rb") as file:
            version = self.version_of_open_file(file)
            start = _first_start(file)
            if start is None:
                return version, None, None
            stop = _last_stop(file, version[0][0], start.get("uid"))
        return version, start, stop


# ---------------------------------------------------------------------------
# Headers.


def _first_start(file) -> dict | None:
    unpacker = _unpacker(file, read_size=TAIL_BYTES)
    try:
        record = unpacker.unpack()
    except msgpack.OutOfData:
        return None  # empty, or the start record is still being written
    except Exception:
        return None  # not msgpack: the caller warns that there is no start
    if _is_record(record) and record[0] == "start" and "uid" in record[1]:
        return _decode_tree(record[1])
    return None


def _last_stop(file, size: int, start_uid) -> dict | None:
    seen = 0  # bytes at the end already searched
    for window in (TAIL_BYTES, TAIL_BYTES_MAX):
        window = min(window, size)
        if window <= seen:
            break
        file.seek(size - window)
        tail = file.read(window)
        # Only candidates not already tried in the smaller window.
        end = len(tail) - seen + len(_STOP_PREFIX) - 1 if seen else len(tail)
        pos = tail.rfind(_STOP_PREFIX, 0, end)
        while pos >= 0:
            stop = _stop_at(tail, pos, start_uid)
            if stop is not None:
                return stop
            pos = tail.rfind(_STOP_PREFIX, 0, pos)
        seen = window
    return None


def _stop_at(tail: bytes, pos: int, start_uid) -> dict | None:
    """The stop document if exactly one record spans ``tail[pos:]``."""
    unpacker = _unpacker(None)
    unpacker.feed(memoryview(tail)[pos:])
    try:
        record = unpacker.unpack()
    except Exception:
        return None
    if unpacker.tell() != len(tail) - pos or not _is_record(record):
        return None
    doc = record[1]
    if start_uid is not None and doc.get("run_start", start_uid) != start_uid:
        return None
    return _decode_tree(doc)


def _is_record(record) -> bool:
    return (
        type(record) is list
        and len(record) == 2
        and type(record[0]) is str
        and type(record[1]) is dict
    )


# ---------------------------------------------------------------------------
# Documents.


class _NotARecord(Exception):
    pass


def _read(path: str, file, base: int = 0):
    """Decode and merge the records of an open file (see ``read_documents``),
    from its position ``base``: lists of documents, from a generator that
    returns the offset after the last complete record.

    Pages are merged while streaming: each page's rows are appended to the
    columns of its descriptor (or resource) as soon as it is decoded, so the
    decoded records die young instead of piling up. Every ``_STRETCH_ROWS``
    rows the merged pages are handed on, so the caller turns them into
    arrays before the next rows are decoded: memory holds that many rows as
    Python objects, never the whole run's. Event pages of at least
    ``_COLUMNAR_ROWS`` rows of plain numbers are not merged but made
    columnar on their own, those after the first straight from their bytes
    (see :func:`_columnar_page` and :func:`_skim`).
    """
    out: list[tuple[str, dict]] = []
    stretch = _Stretch()
    tape = _Tape(file, base)
    unpacker = _unpacker(tape)
    tell = unpacker.tell
    # End of the last complete record. (After an incomplete record, tell()
    # has moved past the parts already parsed, so it is kept per record.)
    offset = base
    # (key, add) of the columns that took the last event page and the last
    # datum page: the next page of the same descriptor or resource goes
    # straight there. Reset at every flush, which ends those columns.
    last_event = last_datum = (None, None)
    rows = 0  # in the stretch's pages
    # Whether the last event page was big enough to be made columnar on its
    # own: then the next records are looked at as bytes first, and big event
    # pages are decoded from them (see _skim). Runs of 1-row pages never pay
    # for that look.
    skim = False
    unpack = unpacker.unpack
    try:
        while True:
            try:
                record = _skim(unpacker, tape, offset) if skim else unpack()
            except msgpack.OutOfData:
                break  # the end, or a record still being written
            if skim and type(record) is _Ready:
                # A big event page decoded from its bytes (see _skim).
                stretch.keep(stretch.events, record.page["descriptor"], record)
                last_event = (None, None)
                rows += len(record.page["seq_num"])
            else:
                if type(record) is not list or len(record) != 2:
                    raise _NotARecord
                name, doc = record
                if type(doc) is not dict or type(name) is not str:
                    raise _NotARecord
                if name == "event_page":
                    key = doc.get("descriptor")
                    n = _rows(doc.get("seq_num"))
                    page = _columnar_page(doc, n) if n >= _COLUMNAR_ROWS else None
                    if page is not None:
                        stretch.keep(stretch.events, key, _Ready(page))
                        # Rows after this page must not join columns before it.
                        last_event = (None, None)
                        skim = True
                        tape.mark = base + tell()
                    else:
                        if skim:
                            skim = False
                            tape.mark = None
                        if last_event[1] is None or key != last_event[0] or not last_event[1](doc):
                            last_event = stretch.add(stretch.events, key, doc, _EventColumns)
                    rows += n
                elif name == "datum_page":
                    key = doc.get("resource")
                    if last_datum[1] is None or key != last_datum[0] or not last_datum[1](doc):
                        last_datum = stretch.add(stretch.datums, key, doc, _DatumColumns)
                    rows += _rows(doc.get("datum_id"))
                else:
                    if stretch:
                        stretch.flush(path, out)
                        last_event = last_datum = (None, None)
                        rows = 0
                    out.append((name, _decode_document(path, name, doc)))
            offset = base + tell()
            if rows >= _STRETCH_ROWS:
                # Datum pages go first, as at the end of a stretch: every
                # datum still precedes the events that refer to it.
                stretch.flush(path, out)
                last_event = last_datum = (None, None)
                rows = 0
                yield out
                out = []
    except _NotARecord:
        raise _corrupt(path, offset, "it is not a [name, document] pair") from None
    except _ReadError:
        raise
    except Exception as exc:
        why = f"it is not valid msgpack ({type(exc).__name__}: {exc})"
        raise _corrupt(path, offset, why) from exc
    stretch.flush(path, out)
    _check_tail(path, file, offset, file.tell())
    yield out
    return offset


class _Tape:
    """A binary file as an unpacker reads it, holding on to the bytes read
    from :attr:`mark` on (None: only the last read), so that a record can
    be looked at as bytes after the unpacker went past it.

    Parameters
    ----------
    file : binary file
        Open at byte offset ``base``.
    base : int
    """

    def __init__(self, file, base: int):
        self._file = file
        self._chunks: list[bytes] = []
        self._start = base  # the file offset of self._chunks[0]
        #: File offset from which bytes are held; None: only the last read.
        self.mark: int | None = None

    def read(self, size: int) -> bytes:
        """What the unpacker asks for: ``file.read(size)``."""
        chunks = self._chunks
        # Bytes no longer wanted are let go before reading more, so that
        # the memory they held is reused for the new read.
        if self.mark is None:
            self._start += sum(map(len, chunks))
            chunks.clear()
        else:
            while chunks and self._start + len(chunks[0]) <= self.mark:
                self._start += len(chunks.pop(0))
        data = self._file.read(size)
        chunks.append(data)
        return data

    def get(self, start: int, end: int):
        """File bytes ``[start, end)`` (bytes, or a memoryview of what was
        read in one piece), or None if they are not all held."""
        if start < self._start:
            return None
        pieces = []
        pos = self._start
        for chunk in self._chunks:
            lo, hi = max(start - pos, 0), min(end - pos, len(chunk))
            if lo < hi:
                pieces.append(memoryview(chunk)[lo:hi])
            pos += len(chunk)
        if pos < end:
            return None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


# The msgpack bytes that begin an event_page record: fixarray of 2, then
# the fixstr "event_page".
_PAGE_PREFIX = b"\x92\xaaevent_page"
# A msgpack array of float64s, item by item: the float64 tag, then the value
# (big-endian).
_FLOAT64_TAG = 0xCB
_FLOAT64_ITEMS = np.dtype([("tag", "u1"), ("value", ">f8")])


def _skim(unpacker: msgpack.Unpacker, tape: _Tape, start: int):
    """The next record, a big event page decoded from its bytes if it is one:
    a :class:`_Ready` of the page as :func:`_columnar_page` makes it, or the
    record as msgpack decodes it.

    Decoding float columns from the bytes (one numpy view of the tags and
    values) skips the Python float per value that msgpack would make and
    ``number_array`` (of the core's pages) would read back, most of the cost
    of a big page.
    """
    tape.mark = start
    if tape.get(start, start + len(_PAGE_PREFIX)) != _PAGE_PREFIX:
        return unpacker.unpack()
    origin = start - unpacker.tell()  # the file offset of the unpacker's 0
    unpacker.skip()  # to the record's end, at C speed
    data = tape.get(start, origin + unpacker.tell())
    if data is None:  # (cannot happen: held from the mark on)
        raise AssertionError("the record's bytes are not held")
    page = _page_from_bytes(data)
    if page is not None:
        return _Ready(page)
    # Anything unusual (a small page, other keys or values): decoded as any
    # record, which also reports what is wrong with it.
    whole = _unpacker(None)
    whole.feed(data)
    return whole.unpack()


def _page_from_bytes(data: bytes) -> dict | None:
    """An event page record (``data``, its msgpack bytes) made columnar as
    by :func:`_columnar_page`, or None for a page it does not take or bytes
    it cannot decode. Columns of float64s in ``time``, ``data`` and
    ``timestamps`` are read straight from the bytes (the same values, bit
    for bit, that msgpack would make Python floats of); everything else is
    decoded by msgpack.
    """
    unpacker = _unpacker(None)
    unpacker.feed(data)
    doc: dict = {}
    try:
        if unpacker.read_array_header() != 2 or unpacker.unpack() != "event_page":
            return None
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "time":
                doc[key] = _float_column(unpacker, data)
            elif key == "uid":
                doc[key] = _uid_column(unpacker, data)
            elif key in ("data", "timestamps"):
                columns = doc[key] = {}
                for _ in range(unpacker.read_map_header()):
                    field = unpacker.unpack()
                    columns[field] = _float_column(unpacker, data)
            else:
                doc[key] = unpacker.unpack()
    except Exception:
        # Not laid out as expected (a part that is not a map, an unhashable
        # key, ...): the caller decodes the record as any other.
        return None
    n = _rows(doc.get("seq_num"))
    return _columnar_page(doc, n) if n >= _COLUMNAR_ROWS else None


def _array_at(data: bytes, pos: int) -> tuple[int, int]:
    """``(items, offset of the first)`` of the msgpack array at ``pos``;
    ``(0, pos)`` if there is none."""
    head = data[pos]
    if 0x90 <= head <= 0x9F:  # fixarray
        return head & 0x0F, pos + 1
    if head == 0xDC:  # array 16
        return int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
    if head == 0xDD:  # array 32
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    return 0, pos


#: How msgpack writes a 36-character string: str 8 (msgpack >= 1.0) or, in
#: files written without bin types, raw 16.
_UID_HEADS = (b"\xd9\x24", b"\xda\x00\x24")


def _uid_column(unpacker: msgpack.Unpacker, data: bytes):
    """The next value: the uids packed (:class:`~intake_bluesky.core.UidColumn`)
    if it is a msgpack array of 36-character strings that pack, else as
    msgpack decodes it (no Python string is made per uid)."""
    n, first = _array_at(data, unpacker.tell())
    head = bytes(data[first : first + 3])  # data may be a memoryview
    for prefix in _UID_HEADS:
        if n and head.startswith(prefix):
            size = len(prefix) + 36
            if first + n * size > len(data):
                break
            items = np.frombuffer(data, np.uint8, n * size, first).reshape(n, size)
            heads = np.frombuffer(prefix, np.uint8)
            if not (items[:, : len(prefix)] == heads).all():
                break
            packed = UidColumn.from_text(items[:, len(prefix) :])
            if packed is None:
                break
            unpacker.skip()
            return packed
    return unpacker.unpack()


def _float_column(unpacker: msgpack.Unpacker, data: bytes):
    """The next value: a float64 array if it is a msgpack array of float64s
    only, else as msgpack decodes it."""
    n, first = _array_at(data, unpacker.tell())
    if n == 0 or first + n * _FLOAT64_ITEMS.itemsize > len(data):
        return unpacker.unpack()
    items = np.frombuffer(data, _FLOAT64_ITEMS, n, first)
    # Each tag read is a float64's, so the next item starts 9 bytes on: all
    # n tags being that of a float64 means n float64s, nothing else.
    if not (items["tag"] == _FLOAT64_TAG).all():
        return unpacker.unpack()
    unpacker.skip()
    return items["value"].astype(np.float64)  # native byte order, a copy


#: Rows of merged pages handed on at a time (see :func:`_read`): few enough
#: that little waits as Python objects (the core makes each hand-over numpy
#: columns at once and joins them into its pages).
_STRETCH_ROWS = 1024


def _rows(column) -> int:
    return len(column) if type(column) is list else 1


class _ReadError(ValueError):
    """A ValueError that already names the file."""


def _decode_document(path: str, name: str, doc: dict) -> dict:
    try:
        return _decode_tree(doc)
    except ValueError as exc:
        uid = doc.get("uid", doc.get("datum_id"))
        raise _ReadError(f"{path}: the {name} document {uid!r} cannot be read: {exc}") from exc


def _check_tail(path: str, file, offset: int, end: int) -> None:
    """Bytes after the last complete record must be the start of one record.

    A writer appends whole records, so an incomplete last record is a run
    being written. But a corrupt length in the middle of a file also makes
    msgpack wait for more bytes: a complete record further on tells the two
    apart. Only the bytes msgpack saw (up to ``end``) are searched, so a
    record appended meanwhile by a writer is not taken for one.
    """
    if end <= offset:
        return
    file.seek(offset)
    rest = file.read(end - offset)
    view = memoryview(rest)
    for prefix in _RECORD_PREFIXES:
        pos = rest.find(prefix, 1)
        while pos > 0:
            unpacker = _unpacker(None)
            unpacker.feed(view[pos:])
            try:
                record = unpacker.unpack()
            except Exception:
                record = None
            if _is_record(record):
                raise _corrupt(
                    path,
                    offset,
                    f"it cannot be decoded, yet a complete {record[0]!r} record follows at "
                    f"byte offset {offset + pos}",
                )
            pos = rest.find(prefix, pos + 1)


def _corrupt(path: str, offset: int, why: str) -> ValueError:
    return _ReadError(
        f"{path}: the msgpack record at byte offset {offset} is corrupt: {why}. The run "
        "cannot be read past this point; restore the file from a copy, or truncate it at "
        "this offset to read the documents before it."
    )


# ---------------------------------------------------------------------------
# Merging the pages of one stretch.


class _Stretch:
    """The event and datum pages between two other documents, merged.

    At the end of a stretch the merged datum pages are emitted first, then
    the merged event pages, each in the order of first appearance: every
    datum still precedes the events that refer to it, and the pages of one
    descriptor keep their order.
    """

    def __init__(self):
        # key -> [_Columns or a page kept as stored, ...], in stored order
        self.events: dict = {}
        self.datums: dict = {}

    def __bool__(self):
        return bool(self.events or self.datums)

    @staticmethod
    def add(groups: dict, key, doc: dict, columns_type) -> tuple:
        """Add a page; ``(key, add)`` of the columns that took it, if any."""
        try:
            entries = groups.get(key)
        except TypeError:  # an unhashable uid: keep the page as stored
            groups[id(doc)] = [doc]
            return None, None
        if entries is None:
            entries = groups[key] = []
        elif type(entries[-1]) is columns_type and entries[-1].add(doc):
            return key, entries[-1].add
        columns = columns_type(doc)
        if columns.add(doc):
            entries.append(columns)
            return key, columns.add
        # A page that cannot start columns (laid out unlike bluesky's) is
        # kept as stored.
        entries.append(doc)
        return None, None

    @staticmethod
    def keep(groups: dict, key, ready: _Ready) -> None:
        """Add a page that needs no more decoding, to be handed on as it is."""
        try:
            entries = groups.setdefault(key, [])
        except TypeError:  # an unhashable uid
            entries = groups[id(ready)] = []
        entries.append(ready)

    def flush(self, path: str, out: list) -> None:
        try:
            for name, groups in (("datum_page", self.datums), ("event_page", self.events)):
                for entries in groups.values():
                    for entry in entries:
                        if isinstance(entry, _Columns):
                            page = entry.page()
                        elif type(entry) is _Ready:
                            page = entry.page
                        else:
                            page = _decode_tree(entry)
                        out.append((name, page))
        except _ExtTypeValue as exc:
            raise _ReadError(f"{path}: {_ext_location(entry, exc)}") from exc
        except ValueError as exc:
            raise _ReadError(f"{path}: an event or datum page cannot be read: {exc}") from exc
        self.events.clear()
        self.datums.clear()


class _Ready:
    """A page in a stretch that needs no more decoding (see :meth:`_Stretch.keep`)."""

    __slots__ = ("page",)

    def __init__(self, page: dict):
        self.page = page


def _ext_location(entry, exc: _ExtTypeValue) -> str:
    """Which document and field of merged pages hold an extension value."""
    if not isinstance(entry, _Columns):
        uid = entry.get("uid", entry.get("datum_id"))
        return f"the page {uid!r}: {exc}"
    for part, columns in entry.part_columns.items():
        for key, column in columns.items():
            for row, value in enumerate(column):
                try:
                    _decode_tree([value])
                except _ExtTypeValue as found:
                    found.where = [part, key, *found.where[1:]]
                    uids = entry.row_columns.get("uid") or entry.rows
                    what = "event" if "uid" in entry.row_columns else "datum"
                    seq = f" (seq_num {entry.rows[row]})" if what == "event" else ""
                    return f"{what} {uids[row]!r}{seq}: {found}"
    return f"an event or datum page: {exc}"


class _Columns:
    """Columns of consecutive pages laid out alike (same keys, list columns).

    :meth:`add` checks a page entirely before appending any of its rows, so
    a page that does not fit leaves the columns as they were.
    """

    #: The page key whose length is the number of rows, the other row
    #: columns, and the parts holding one column per key.
    rows_key: str
    row_keys: tuple[str, ...]
    part_keys: tuple[str, ...]

    def __init__(self, doc: dict):
        known = {self.rows_key, *self.row_keys, *self.part_keys}
        # Keys outside the schema: merged only while every page agrees.
        self.extra = {k: v for k, v in doc.items() if k not in known}
        self.rows: list = []
        # Rows of each stored page: canonical() gives the pages back as stored.
        self.sizes: list[int] = []
        self.row_columns: dict[str, list] = {k: [] for k in self.row_keys}
        self.part_columns: dict[str, dict] = {
            part: {k: [] for k in doc[part]}
            for part in self.part_keys
            if type(doc.get(part)) is dict
        }
        self.add = _adder(
            len(doc),
            (self.rows_key, self.rows),
            self.sizes,
            list(self.row_columns.items()),
            [(part, list(cols.items())) for part, cols in self.part_columns.items()],
            self.extra,
        )

    def _finish(self, column: list, part: str | None):
        if column and type(column[0]) is float:
            types = list(map(type, column))
            if types.count(float) == len(types):
                # Only floats (most columns: data, timestamps, time): one
                # scan of the types says so, and the column is made an array
                # here at once, where the core would scan them again.
                return np.fromiter(column, np.float64, len(column))
            kinds = set(types)
        else:
            kinds = set(map(type, column))
        if not kinds <= _PLAIN:
            _decode_tree(column)
        return _stack(column) if part == "data" else column

    def page(self) -> dict:
        page = MergedPage({self.rows_key: self._finish(self.rows, None)})
        page.stored_rows = self.sizes
        for key, column in self.row_columns.items():
            page[key] = self._finish(column, None)
        for part, columns in self.part_columns.items():
            page[part] = {k: self._finish(c, part) for k, c in columns.items()}
        for key, value in self.extra.items():
            page[key] = _decode_tree(value)
        return page


def _adder(size: int, rows: tuple, sizes: list, row_columns: list, parts: list, extra: dict):
    """A function ``add(page) -> bool`` for pages of one layout.

    It is called once per stored page (100,000 times for 100,000 events), so
    it is generated as straight-line code for the layout: a lookup, a type
    check and a length check per column, then one ``extend`` per column. The
    generated source holds only names made here; keys, columns and values
    from the file reach it through its namespace, never as source text.
    """
    namespace: dict = {"list": list}
    fetch: list[str] = []  # statements that look values up
    lists: list[str] = []  # names of values that must be lists of n rows
    sized: list[tuple[str, int]] = []  # (name, length) of parts
    extend: list[str] = []
    checks: list[str] = []

    def name(prefix, value):
        label = f"{prefix}{len(namespace)}"
        namespace[label] = value
        return label

    rows_key, rows_column = rows
    fetch.append(f"r = doc[{name('k', rows_key)}]")
    extend.append(f"{name('x', rows_column.extend)}(r)")
    extend.append(f"{name('x', sizes.append)}(n)")
    for i, (key, column) in enumerate(row_columns):
        fetch.append(f"a{i} = doc[{name('k', key)}]")
        lists.append(f"a{i}")
        extend.append(f"{name('x', column.extend)}(a{i})")
    j = 0
    for i, (part, columns) in enumerate(parts):
        fetch.append(f"p{i} = doc[{name('k', part)}]")
        sized.append((f"p{i}", len(columns)))
        for key, column in columns:
            fetch.append(f"v{j} = p{i}[{name('k', key)}]")
            lists.append(f"v{j}")
            extend.append(f"{name('x', column.extend)}(v{j})")
            j += 1
    for key, value in extra.items():
        checks.append(f"if doc[{name('k', key)}] != {name('e', value)}: return False")
    type_check = " or ".join(f"type({v}) is not list" for v in ["r", *lists])
    part_check = " or ".join(f"type({p}) is not dict or len({p}) != {n}" for p, n in sized)
    length_check = " or ".join(f"len({v}) != n" for v in lists)
    lines = [
        "def add(doc):",
        f"    if len(doc) != {int(size)}:",
        "        return False",
        "    try:",
        *(f"        {line}" for line in (*fetch, *checks)),
        "    except (KeyError, TypeError):",
        "        return False",
        f"    if {type_check}:",
        "        return False",
        *([f"    if {part_check}:", "        return False"] if part_check else []),
        "    n = len(r)",
        *([f"    if {length_check}:", "        return False"] if length_check else []),
        *(f"    {line}" for line in extend),
        "    return True",
    ]
    # Safe: the source is built from names made above only. Compiled once
    # per layout (a run's stretches share one; compiling costs more than
    # the stretch's extends).
    exec(_compiled("\n".join(lines)), namespace)
    # Taken out of its own globals: a function in the namespace it runs in is
    # a reference cycle, so its columns (a whole stretch's rows) would wait
    # for the cyclic garbage collector instead of dying with the stretch.
    return namespace.pop("add")


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    return compile(source, "<msgpack page columns>", "exec")


class _EventColumns(_Columns):
    rows_key = "seq_num"
    row_keys = ("time", "uid")
    part_keys = ("data", "timestamps", "filled")


class _DatumColumns(_Columns):
    rows_key = "datum_id"
    row_keys = ()
    part_keys = ("datum_kwargs",)


def _stack(column: list):
    """Rows that are arrays of one shape and dtype become one array."""
    if not column or type(column[0]) is not np.ndarray:
        return column
    if set(map(type, column)) != {np.ndarray}:
        return column
    first = column[0]
    shape, dtype = first.shape, first.dtype
    for row in column:
        if row.shape != shape or row.dtype != dtype:
            return column
    # One copy out of the msgpack bytes (which are freed with the pages),
    # into exactly the stored dtype: np.stack alone would turn a non-native
    # byte order into the native one.
    return np.stack(column, out=np.empty((len(column), *shape), dtype=dtype))
