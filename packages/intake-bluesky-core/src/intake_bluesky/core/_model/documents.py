"""A run held as its list of documents: the run source of file backends and
of the in-memory driver."""

from __future__ import annotations

import threading
import warnings
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from ..driver import RunSourceBase
from ..errors import BadDocumentError
from .pages import (
    COLUMNAR_ROWS,
    as_column,
    first_of,
    merge_datum_pages,
    merge_event_pages,
    pack_datums,
    pack_events,
    select_fields,
    slice_page,
    slice_pages,
    unpack_datum_page,
)
from .slabs import ColumnSlabs
from .uids import UidColumn

if TYPE_CHECKING:
    from event_model.documents import (
        Datum,
        DatumPage,
        Event,
        EventDescriptor,
        EventPage,
        Resource,
        RunStart,
        RunStop,
        StreamDatum,
        StreamResource,
    )

__all__ = [
    "DocumentRunSource",
    "BadDocumentError",
    "MergedPage",
    "PagesTakenError",
    "packed_event_pages",
    "packed_stored_event_pages",
]


class PagesTakenError(RuntimeError):
    """A run source was asked for event pages it handed over to a read
    (see :meth:`DocumentRunSource._take_event_pages`)."""


class MergedPage(dict[str, Any]):
    """An event_page or datum_page that a file format merged from several
    stored pages while reading (to build columns in one go).

    ``stored_rows`` lists the rows of each stored page, in order, so that
    ``canonical()`` still gives every page back as it was stored. A plain
    ``dict`` in every other respect (equality, JSON, pickling of its items).

    Examples
    --------
    >>> page = MergedPage({"descriptor": "d", "seq_num": [1, 2, 3]})
    >>> page.stored_rows = [1, 2]
    >>> page == {"descriptor": "d", "seq_num": [1, 2, 3]}
    True
    """

    stored_rows: list[int]


def _plain_uids(page: EventPage) -> EventPage:
    """The page with its uids as a list of str (as the protocol gives
    pages), if they were packed."""
    uids: Any = page["uid"]
    if type(uids) is not UidColumn:
        return page
    if isinstance(page, MergedPage):
        merged = MergedPage(page)
        merged["uid"] = uids.tolist()
        merged.stored_rows = page.stored_rows
        return cast("EventPage", merged)
    plain = page.copy()
    plain["uid"] = uids.tolist()
    return plain


def packed_event_pages(
    source: Any,
    descriptor_uid: str,
    fields: Sequence[str] | None = None,
    rows: tuple[int, int] | None = None,
) -> Iterator[EventPage]:
    """``source.event_pages(...)``, with uids as the source keeps them when it
    is one of the core's (a :class:`UidColumn` where packed): for the core's
    own reading, which gives uids back as strings only where they leave it."""
    packed = getattr(source, "_packed_event_pages", None)
    if packed is None:
        pages: Iterator[EventPage] = source.event_pages(descriptor_uid, fields, rows)
        return pages
    return cast("Iterator[EventPage]", packed(descriptor_uid, fields, rows))


def event_columns(
    source: Any,
    descriptor_uid: str,
    fields: Sequence[str],
    rows: tuple[int, int] | None,
    part: str | None,
) -> list[EventPage]:
    """Every event page of those rows, for a read that takes them all at once.

    A source with ``lean_event_pages`` (a database, where each column sent
    costs) gives pages of only ``seq_num``, ``time`` and ``part``
    (``'data'``/``'timestamps'``, ``None``: neither) of ``fields``; their
    ``uid`` is a :class:`LeanUids`, which looks an event's uid up only when
    an error names it. Any other source gives what
    :func:`packed_event_pages` gives.
    """
    lean = getattr(source, "lean_event_pages", None)
    if lean is None:
        return list(packed_event_pages(source, descriptor_uid, fields, rows))
    pages = cast("list[EventPage]", lean(descriptor_uid, fields, rows, part))
    first = 0 if rows is None else rows[0]
    for page in pages:
        if "uid" not in page:
            uids = LeanUids(source, descriptor_uid, first, page["seq_num"])
            page["uid"] = cast("list[str]", uids)
        first += len(page["seq_num"])
    return pages


class LeanUids:
    """The uids of a lean page's events (see :func:`event_columns`), looked
    up when an error names an event: a lean read does not fetch them.

    ``uids[i]`` asks the source for the event at that position among the
    descriptor's events and, if that one has another seq_num (a store may
    order events with equal times differently from one query to the next),
    for the descriptor's events until one has the seq_num; None when none
    does or the source cannot be read.
    """

    def __init__(self, source: Any, descriptor_uid: str, first: int, seq_nums: Any):
        self.source = source
        self.descriptor_uid = descriptor_uid
        self.first = first
        self.seq_nums = seq_nums

    def __len__(self) -> int:
        return len(self.seq_nums)

    def __iter__(self) -> Iterator[str | None]:
        # One query for the page's events, not one per event.
        found: dict[Any, str] = {}
        try:
            rows = (self.first, self.first + len(self))
            for page in self.source.event_pages(self.descriptor_uid, [], rows):
                found.update(zip(page["seq_num"], page["uid"], strict=True))
        except Exception:
            pass
        return (found.get(seq) for seq in self.seq_nums)

    @overload
    def __getitem__(self, i: int) -> str | None: ...
    @overload
    def __getitem__(self, i: slice) -> LeanUids: ...
    def __getitem__(self, i: int | slice) -> str | None | LeanUids:
        if isinstance(i, slice):  # a lean page sliced (pages.slice_page)
            start, stop, _ = i.indices(len(self))
            seq_nums = self.seq_nums[start:stop]
            return LeanUids(self.source, self.descriptor_uid, self.first + start, seq_nums)
        i = range(len(self))[i]  # negative indices, and IndexError
        at = self.first + i
        seq_num = list(self.seq_nums)[i]
        try:
            for rows in ((at, at + 1), None):
                for page in self.source.event_pages(self.descriptor_uid, [], rows):
                    for uid, seq in zip(page["uid"], page["seq_num"], strict=True):
                        if seq == seq_num:
                            return cast(str, uid)
        except Exception:
            # Only ever asked while an error about the event is being
            # written: that error, without the uid, is what matters.
            return None
        return None


def packed_stored_event_pages(
    source: Any, descriptor_uid: str, rows: tuple[int, int] | None = None
) -> Iterator[tuple[str, EventPage]] | None:
    """``source.stored_event_pages(...)`` with uids as kept (see
    :func:`packed_event_pages`); None for a source without stored forms."""
    packed = getattr(source, "_packed_stored_event_pages", None)
    if packed is None:
        stored = getattr(source, "stored_event_pages", None)
        return None if stored is None else stored(descriptor_uid, rows)
    return cast("Iterator[tuple[str, EventPage]]", packed(descriptor_uid, rows))


_T = TypeVar("_T")

#: Rows gathered into one page when packing events or merging small pages:
#: bounds the transient per-event dicts, keeps every later step columnar.
_PAGE_ROWS = 4096

#: Pages of fewer rows keep their uids as strings: packing a few costs more
#: time than it saves memory (runs whose streams take turns make pages of
#: one event each).
_PACKED_UIDS = 64

#: Single events packed at a time (see _RunContents._pack).
_PACK_ROWS = 256

#: The descriptor of _RunContents._add_all's group when it has none: equal to
#: no value a document holds (None included).
_NO_GROUP = object()


def _push_form(layout: list[int], form: int) -> None:
    """Add one stored document to a page's layout (see :class:`_RunContents`)."""
    if form < 0 and layout and layout[-1] < 0:
        layout[-1] += form  # one more of a run of single documents
    else:
        layout.append(form)


def _stored_rows(page: Any, rows_key: str) -> list[int]:
    """The layout of a page as read: one stored page, or the pages a
    :class:`MergedPage` was merged from."""
    stored = getattr(page, "stored_rows", None)
    return list(stored) if stored is not None else [len(page[rows_key])]


def _joined_layouts(a: list[int], b: list[int]) -> list[int]:
    out = list(a)
    for form in b:
        _push_form(out, form)
    return out


class _RunContents:
    """The documents of a run sorted into what the protocol asks for.

    Single events and small pages of one descriptor are packed into pages of
    up to ``_PAGE_ROWS`` rows with numpy columns, so a run of 100,000 single
    events costs 25 column conversions per field, not 100,000 dicts.

    Each page keeps its *layout*: how its rows were stored, as a list of
    ints, ``n > 0`` one stored page of ``n`` rows, ``-n`` a run of ``n``
    single documents (events, datums). So ``canonical()`` gives every
    document back in its stored form at the cost of a few ints per page.
    """

    def __init__(
        self, uid: str, documents: Iterable[tuple[str, Any]] = (), pack_uids: bool = True
    ) -> None:
        self.uid = uid
        # Packed uids save memory only where the documents are not kept too.
        self.pack_uids = pack_uids
        self.start: RunStart | None = None
        self.stop: RunStop | None = None
        self.descriptors: dict[str, EventDescriptor] = {}
        self.pages: dict[str, list[EventPage]] = defaultdict(list)
        self.layouts: dict[str, list[list[int]]] = defaultdict(list)  # parallel to pages
        self.resources: dict[str, Resource] = {}
        self.datum_pages: list[DatumPage] = []
        self.datum_layouts: list[list[int]] = []  # parallel to datum_pages
        self.stream_resources: list[StreamResource] = []
        self.stream_datums: list[StreamDatum] = []
        self.datum_index: dict[str, Datum] | None = None
        # Descriptors whose pages were handed to a read (see
        # DocumentRunSource._take_event_pages), with their number of rows:
        # this view no longer has them.
        self.taken: dict[str, int] = {}
        # Rows waiting to become one page: single events or small pages of one
        # descriptor with one set of keys.
        self._pending: list[Any] = []
        # "event" for single events, else the pages' descriptor and key sets.
        self._pending_key: tuple[Any, ...] | str | None = None
        self._pending_rows = 0
        self._pending_layout: list[int] = []
        self._pending_datums: list[Any] = []
        self._pending_datum_layout: list[int] = []
        self._unknown: set[str] = set()
        # The memory of the pages' number columns: freed whole when a read
        # drops a column (see slabs.py). Only where a read may take them:
        # runs that keep their documents keep their pages too.
        self._slabs: ColumnSlabs | None = ColumnSlabs() if pack_uids else None
        self._add_all(documents)
        self.flush()
        # Documents added later (a run being written) are never taken by a
        # read while the run goes on: numpy's memory, and no new mappings
        # for every few appended events.
        self._slabs = None

    @property
    def _empty(self) -> Callable[..., Any] | None:
        """What merged columns are written into (see slabs.py), or None."""
        return self._slabs.empty if self._slabs is not None else None

    def _add_all(self, documents: Iterable[tuple[str, Any]]) -> None:
        # The same as add() for each document, with the single-event path
        # inlined on local variables: for runs stored as 100,000 single
        # events this loop is the cost of reading beyond decoding. Events are
        # grouped by descriptor only; pack_events() checks their keys.
        add = self.add
        group: list[Event] = []
        descriptor: object = _NO_GROUP
        for name, doc in documents:
            if name == "event":
                if doc["descriptor"] == descriptor:
                    group.append(doc)
                    if len(group) >= _PACK_ROWS:
                        self._pack(group)
                        group = []
                    continue
                self._pack(group)
                self._flush_events()  # pages pending from add()
                self._check_descriptor(self.uid, doc, name)
                group = [doc]
                descriptor = doc["descriptor"]
                continue
            if descriptor is not _NO_GROUP:
                self._pack(group)
                group, descriptor = [], _NO_GROUP
            add(name, doc)
        self._pack(group)

    def _pack(self, group: list[Event]) -> None:
        """Pack events of one descriptor into a small page of lists, while
        their dicts are still in the CPU's cache (packing 4,096 at once reads
        them back from memory); add() joins such pages into big ones."""
        if not group:
            return
        try:
            page = pack_events(group)
            if len(group) >= COLUMNAR_ROWS:
                # Arrays now, while the rows wait to fill a page (runs whose
                # streams take turns make groups of one: left as lists).
                page = _columnar(page, self.pack_uids)
        except KeyError:
            # Rare: an event has other keys than the first. Split where the
            # key sets change, through add().
            for event in group:
                self.add("event", event)
            self._flush_events()
            return
        self._add_page(page, [-len(group)])

    def add(self, name: str, doc: Any) -> None:
        """Take one more document (call :meth:`flush` before reading)."""
        if name == "event":
            # The hot path of runs stored as single events: kept minimal.
            pending = self._pending
            if pending and (
                self._pending_key != "event"
                or doc["descriptor"] != pending[0]["descriptor"]
                # Events whose keys differ (a reading missing from one
                # event) are never packed together: pages stay rectangular.
                or doc["data"].keys() != pending[0]["data"].keys()
                or doc["timestamps"].keys() != pending[0]["timestamps"].keys()
            ):
                self._flush_events()
                pending = self._pending
            if not pending:
                self._check_descriptor(self.uid, doc, name)
                self._pending_key = "event"
            pending.append(doc)
            _push_form(self._pending_layout, -1)
            if len(pending) >= _PAGE_ROWS:
                self._flush_events()
            return
        if name == "event_page":
            self._add_page(doc, _stored_rows(doc, "seq_num"))
            return
        if name in ("datum", "datum_page"):
            if self._pending_datums and self._pending_datums[0]["resource"] != doc["resource"]:
                self._flush_datums()
            self._pending_datums.append(doc)
            for form in [-1] if name == "datum" else _stored_rows(doc, "datum_id"):
                _push_form(self._pending_datum_layout, form)
            return
        self.flush()
        if name == "descriptor":
            self.descriptors[doc["uid"]] = doc
        elif name == "resource":
            self.resources[doc["uid"]] = doc
        elif name == "start":
            self.start = doc
        elif name == "stop":
            self.stop = doc
        elif name == "stream_resource":
            self.stream_resources.append(doc)
        elif name == "stream_datum":
            self.stream_datums.append(doc)
        elif name not in self._unknown:
            self._unknown.add(name)
            warnings.warn(
                f"Run {self.uid!r}: document name {name!r} is not an event-model document; "
                "such documents are ignored by reading and by canonical().",
                stacklevel=2,
            )

    def _add_page(self, doc: EventPage, forms: list[int]) -> None:
        """Take an event page and how its rows were stored (its layout, see
        the class docstring)."""
        self._check_descriptor(self.uid, doc, "event_page")
        rows = len(doc["seq_num"])
        if rows >= _PAGE_ROWS:
            self._flush_events()
            page = _columnar(doc, self.pack_uids)
            if self._empty is not None:
                page = merge_event_pages([page], self._empty)
            self.pages[doc["descriptor"]].append(page)
            self.layouts[doc["descriptor"]].append(_joined_layouts([], forms))
            return
        key = (
            doc["descriptor"],
            frozenset(doc["data"]),
            frozenset(doc["timestamps"]),
            # Pages stored without 'filled' are given back so: never merged
            # with pages that have one.
            frozenset(doc["filled"]) if "filled" in doc else None,
        )
        if self._pending and key != self._pending_key:
            self._flush_events()
        self._pending_key = key
        # Big enough to be worth arrays now: pending rows are then held as
        # numbers, not Python objects, until the page is full.
        self._pending.append(_columnar(doc, self.pack_uids) if rows >= COLUMNAR_ROWS else doc)
        self._pending_rows += rows
        for form in forms:
            _push_form(self._pending_layout, form)
        if self._pending_rows >= _PAGE_ROWS:
            self._flush_events()

    def flush(self) -> None:
        self._flush_events()
        self._flush_datums()
        if self._slabs is not None:
            self._slabs.release()

    def _flush_events(self) -> None:
        if not self._pending:
            return
        page = (
            pack_events(self._pending)
            if self._pending_key == "event"
            else merge_event_pages(self._pending, self._empty)
        )
        self.pages[page["descriptor"]].append(_columnar(page, self.pack_uids))
        self.layouts[page["descriptor"]].append(self._pending_layout)
        self._pending, self._pending_key, self._pending_rows = [], None, 0
        self._pending_layout = []

    def _flush_datums(self) -> None:
        pending = self._pending_datums
        if not pending:
            return
        page: DatumPage
        if all(isinstance(d["datum_id"], str) for d in pending):
            page = pack_datums(pending)
        else:
            page = merge_datum_pages(
                [pack_datums([d]) if isinstance(d["datum_id"], str) else d for d in pending]
            )
        self.datum_pages.append(page)
        self.datum_layouts.append(self._pending_datum_layout)
        self.datum_index = None
        self._pending_datums = []
        self._pending_datum_layout = []

    def _check_descriptor(self, uid: str, doc: Any, name: str) -> None:
        if doc["descriptor"] not in self.descriptors:
            raise BadDocumentError(
                f"Run {uid!r}: {name} {first_of(doc.get('uid'))!r} refers to descriptor "
                f"{doc['descriptor']!r}, which is not in the run (it must come before "
                "its events). The run's storage is incomplete or corrupt."
            )


def _compact(pages: list[EventPage], layouts: list[list[int]], first: int) -> None:
    """Merge neighbouring small pages (from ``first`` on) of one descriptor
    laid out alike, up to ``_PAGE_ROWS`` rows each (their stored layouts
    joined alike)."""
    i = max(first, 0)
    while i + 1 < len(pages):
        a, b = pages[i], pages[i + 1]
        if len(a["seq_num"]) + len(b["seq_num"]) <= _PAGE_ROWS and _same_layout(a, b):
            pages[i : i + 2] = [_columnar(merge_event_pages([a, b]))]
            layouts[i : i + 2] = [_joined_layouts(layouts[i], layouts[i + 1])]
        else:
            i += 1


def _same_layout(a: EventPage, b: EventPage) -> bool:
    """Whether two event pages have the same data, timestamps and filled keys."""
    return (
        a["data"].keys() == b["data"].keys()
        and a["timestamps"].keys() == b["timestamps"].keys()
        and ("filled" in a) == ("filled" in b)
        and a.get("filled", {}).keys() == b.get("filled", {}).keys()
    )


def _columnar(page: EventPage, uids: bool = True) -> EventPage:
    """The page with its number columns as arrays and, with ``uids``, its
    uids packed (kept for canonical(): 16 bytes a uid, not a Python
    string's ~90)."""
    out: dict[str, Any] = dict(page)
    if uids and len(page["uid"]) >= _PACKED_UIDS:
        out["uid"] = UidColumn.pack(page["uid"]) or page["uid"]
    out["time"] = as_column(page["time"])
    out["seq_num"] = as_column(page["seq_num"])
    for part in ("data", "timestamps"):
        out[part] = {k: as_column(v) for k, v in out.get(part, {}).items()}
    return cast("EventPage", out)


class DocumentRunSource(RunSourceBase):
    """A :class:`~intake_bluesky.core.driver.RunSource` over ``(name, doc)`` pairs.

    Parameters
    ----------
    documents : iterable of (name, doc)
        The run's documents in stored order, starting with ``start``.
    uid : str, optional
        The run's uid, if known before the documents are read.
    keep_documents : bool
        Keep the raw documents (for :meth:`documents` and :meth:`append`).
        File backends pass False: the file is the raw store, and only the
        columnar organized view stays in memory.

    Notes
    -----
    Documents can be appended (a live run); the organized view is rebuilt
    lazily on the next read after a change.

    Examples
    --------
    >>> src = DocumentRunSource([("start", {"uid": "abc", "time": 0.0})])
    >>> src.start()["uid"], src.stop()
    ('abc', None)
    """

    def __init__(
        self,
        documents: Iterable[tuple[str, Any]] = (),
        uid: str | None = None,
        *,
        keep_documents: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._generation = 0
        self._org: _RunContents | None = None
        self._dirty = False
        self._docs: list[tuple[str, Any]] | None = None
        # Set by a FileRunSource, which reads its file again for pages it
        # handed over (see _take_event_pages).
        self._hand_over = False
        first: tuple[str, Any] | None
        if keep_documents:
            self._docs = list(documents)
            first = self._docs[0] if self._docs else None
        else:
            self._org = _RunContents(uid or "?", documents)
            first = ("start", self._org.start) if self._org.start is not None else None
        if uid is None:
            if first is None or first[0] != "start":
                raise BadDocumentError("A run's documents must begin with its start document.")
            uid = first[1]["uid"]
        self.uid = uid

    def __getstate__(self) -> dict[str, Any]:
        if self._docs is None:
            raise TypeError(
                "This DocumentRunSource did not keep its documents; pickle the run source "
                "that made it (e.g. a FileRunSource) instead."
            )
        return {"_docs": self._docs, "uid": self.uid}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Re-initialized in place, as unpickling does.
        self.__init__(state["_docs"], state["uid"])  # type: ignore[misc]

    def append(self, name: str, doc: Any) -> None:
        if self._docs is None:
            raise TypeError("This DocumentRunSource did not keep its documents; cannot append.")
        with self._lock:
            self._docs.append((name, doc))
            if self._org is not None:
                # Incremental: a live run read after every event stays O(N).
                self._org.add(name, doc)
                self._dirty = True
        self._notify()

    def extend(self, documents: Iterable[tuple[str, Any]]) -> None:
        """Add documents that follow those already read (a file that grew).

        For sources that keep no documents (file backends): the new
        documents are organized into the existing columns' pages; the small
        pages a few appended events make are merged, so a run followed event
        by event stays a few pages per stream.
        """
        with self._lock:
            if self._docs is not None:
                for name, doc in documents:
                    self._docs.append((name, doc))
                    if self._org is not None:
                        self._org.add(name, doc)
                        self._dirty = True
                self._notify()
                return
            org = self._org
            # A source that keeps no documents organized them when made.
            assert org is not None
            # New lists: readers iterating the old ones (a generator of
            # event_pages handed out earlier) see the run as it was.
            org.pages = defaultdict(list, {uid: list(p) for uid, p in org.pages.items()})
            org.layouts = defaultdict(list, {uid: list(v) for uid, v in org.layouts.items()})
            org.datum_pages = list(org.datum_pages)
            org.datum_layouts = list(org.datum_layouts)
            org.stream_datums = list(org.stream_datums)
            org.stream_resources = list(org.stream_resources)
            before = {uid: len(pages) for uid, pages in org.pages.items()}
            org._add_all(documents)
            org.flush()
            for uid, pages in org.pages.items():
                if len(pages) > before.get(uid, 0):
                    _compact(pages, org.layouts[uid], max(before.get(uid, 0) - 1, 0))
            self._notify()

    def _notify(self) -> None:
        cond = self._changed
        with cond:
            self._generation += 1
            cond.notify_all()

    def wait_for_change(self, token: int | None, timeout: float | None) -> int:
        """Block until documents were added since ``token`` or ``timeout``
        seconds passed; return the token for the next call.

        ``token`` None returns the current token at once. This is the
        optional hook :func:`~intake_bluesky.core.BlueskyRun.follow` uses
        instead of polling (see the backend guide).
        """
        cond = self._changed
        with cond:
            if token is not None:
                cond.wait_for(lambda: self._generation != token, timeout)
            return self._generation

    @property
    def _contents(self) -> _RunContents:
        org = self._org
        if org is None or self._dirty:
            with self._lock:
                if self._org is None:
                    self._org = _RunContents(self.uid, self._docs or (), pack_uids=False)
                elif self._dirty:
                    self._org.flush()
                self._dirty = False
                org = self._org
        return org

    def _take_event_pages(self, descriptor_uid: str) -> list[EventPage] | None:
        """Hand one descriptor's event pages over to a read that uses each
        column once (an eager read of a whole stream), or None.

        The caller may drop each column as soon as it has made its own, so
        a run's events are not held twice at the end of a read. This source
        no longer has them: asking it for them again raises
        :class:`PagesTakenError`, which a :class:`FileRunSource` answers by
        reading its file again. Only a source made by a FileRunSource hands
        pages over (any other could not read them again); sources that keep
        their documents (the in-memory driver) would free nothing. A run
        without its stop document keeps them too: it may still be written,
        and the next read should parse only what was appended. A second
        take of the same pages (by another thread) is None as well.
        """
        if self._docs is not None or not self._hand_over:
            return None
        org = self._contents
        if org.stop is None:
            return None
        with self._lock:
            if descriptor_uid in org.taken:
                return None  # taken by another read meanwhile: it has them
            pages = org.pages.pop(descriptor_uid, [])
            org.layouts.pop(descriptor_uid, None)
            org.taken[descriptor_uid] = sum(len(p["seq_num"]) for p in pages)
        return pages

    def _pages_of(self, descriptor_uid: str) -> tuple[list[EventPage], list[list[int]]]:
        """A descriptor's pages and their layouts, as one consistent pair
        (an eager read may be taking them in another thread)."""
        org = self._contents
        with self._lock:
            if descriptor_uid in org.taken:
                raise PagesTakenError(
                    f"Run {self.uid!r}: the events of descriptor {descriptor_uid!r} were "
                    "handed to a read and are no longer held; read the run's storage again."
                )
            return org.pages.get(descriptor_uid, []), org.layouts.get(descriptor_uid, [])

    def _has_taken(self, descriptor_uid: str | None = None) -> bool:
        """Whether the pages of ``descriptor_uid`` (of any descriptor, when
        None) were handed to a read (see :meth:`_take_event_pages`)."""
        taken = self._contents.taken
        return bool(taken) if descriptor_uid is None else descriptor_uid in taken

    def _packed_event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        """:meth:`event_pages` with uid columns as kept (a :class:`UidColumn`
        where they were packed): what the core reads. The pages are looked
        up at the call, not at the first item."""
        pages, _ = self._pages_of(descriptor_uid)
        return (select_fields(page, fields) for page in slice_pages(pages, rows))

    def _packed_stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        """:meth:`stored_event_pages` with uid columns as kept."""
        pages, layouts = self._pages_of(descriptor_uid)
        return _stored_units(pages, layouts, rows, "event", "event_page", slice_page)

    # --- the protocol -------------------------------------------------------
    def start(self) -> RunStart:
        start = self._contents.start
        if start is None:
            raise BadDocumentError(f"Run {self.uid!r} has no start document.")
        return start

    def stop(self) -> RunStop | None:
        return self._contents.stop

    def descriptors(self) -> list[EventDescriptor]:
        return sorted(self._contents.descriptors.values(), key=lambda d: d.get("time", 0))

    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        return map(_plain_uids, self._packed_event_pages(descriptor_uid, fields, rows))

    def event_count(self, descriptor_uid: str) -> int:
        org = self._contents
        with self._lock:
            taken = org.taken.get(descriptor_uid)
            pages = org.pages.get(descriptor_uid, [])
        if taken is not None:
            return taken
        return sum(len(p["seq_num"]) for p in pages)

    def stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        units = self._packed_stored_event_pages(descriptor_uid, rows)
        return ((form, _plain_uids(page)) for form, page in units)

    def stored_datum_pages(
        self, resource_uid: str | None = None
    ) -> Iterator[tuple[str, DatumPage]]:
        org = self._contents
        for page, layout in zip(org.datum_pages, org.datum_layouts, strict=True):
            if resource_uid is None or page["resource"] == resource_uid:
                yield from _stored_units([page], [layout], None, "datum", "datum_page", _datums)

    def resources(self) -> list[Resource]:
        return list(self._contents.resources.values())

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        for page in self._contents.datum_pages:
            if resource_uid is None or page["resource"] == resource_uid:
                yield page

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        org = self._contents
        index = getattr(org, "datum_index", None)
        if index is None:
            # Built once per organized view: filling looks datums up per chunk.
            index = org.datum_index = {
                d["datum_id"]: d for page in org.datum_pages for d in unpack_datum_page(page)
            }
        return {i: index[i] for i in datum_ids if i in index}

    def stream_resources(self) -> list[StreamResource]:
        return list(self._contents.stream_resources)

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        return [
            d
            for d in self._contents.stream_datums
            if descriptor_uid is None or d["descriptor"] == descriptor_uid
        ]

    def documents(self) -> Iterator[tuple[str, Any]]:
        if self._docs is None:
            raise TypeError("This DocumentRunSource did not keep its documents.")
        yield from list(self._docs)


def _stored_units(
    pages: Sequence[Any],
    layouts: Sequence[list[int]],
    rows: tuple[int, int] | None,
    single: str,
    paged: str,
    cut: Callable[[Any, int, int], Any],
) -> Iterator[tuple[str, Any]]:
    """``(form, page)`` of the stored documents in ``pages``, within the
    ``rows`` window (see :class:`_RunContents`): a run of single documents as
    one ``(single, page)``; consecutive stored pages as one ``(paged, page)``
    whose page is a :class:`MergedPage` when it holds more than one (a
    thousand 1-row pages cost one slice, not a thousand)."""
    lo: int = 0
    hi: int | None = None
    if rows is not None:
        lo, hi = rows
    offset = 0  # rows of the earlier pages
    for page, layout in zip(pages, layouts, strict=True):
        n_page = len(page[_ROW_KEY[single]])
        top = n_page if hi is None else min(n_page, hi - offset)
        first = 0  # of the current group of units, in the page
        sizes: list[int] = []  # rows of the stored pages in the group, in the window
        group_start: int | None = None
        for form in (*layout, None):  # None ends the last group
            if form is not None and form >= 0:
                a, b = max(first, lo - offset), min(first + form, top)
                if a < b:
                    group_start = a if group_start is None else group_start
                    sizes.append(b - a)
                first += form
                continue
            if sizes:
                assert group_start is not None  # set with the group's first size
                a, b = group_start, group_start + sum(sizes)
                part = page if (a, b) == (0, n_page) else cut(page, a, b)
                if len(sizes) > 1:
                    part = MergedPage(part)
                    part.stored_rows = sizes
                yield paged, part
                sizes, group_start = [], None
            if form is None:
                break
            a, b = max(first, lo - offset), min(first - form, top)
            first -= form
            if a < b:
                yield single, page if (a, b) == (0, n_page) else cut(page, a, b)
        offset += n_page


def _datums(page: DatumPage, start: int, stop: int) -> DatumPage:
    return {
        "resource": page["resource"],
        "datum_id": page["datum_id"][start:stop],
        "datum_kwargs": {k: v[start:stop] for k, v in page["datum_kwargs"].items()},
    }


_ROW_KEY = {"event": "seq_num", "datum": "datum_id"}


class DelegatingRunSource(RunSourceBase):
    """A run source that reads through a :class:`DocumentRunSource` it makes
    on demand (:attr:`_current`): from a file, a generator, ..."""

    @property
    @abstractmethod
    def _current(self) -> DocumentRunSource:
        """The run's documents as they are now."""

    def _current_for(self, descriptor_uid: str) -> DocumentRunSource:
        """:attr:`_current`, holding the event pages of ``descriptor_uid``
        (a subclass that can read its storage again reads it when they were
        handed to a read)."""
        return self._current

    def _take_event_pages(self, descriptor_uid: str) -> list[EventPage] | None:
        return self._current_for(descriptor_uid)._take_event_pages(descriptor_uid)

    def _with_pages(self, descriptor_uid: str, call: Callable[[DocumentRunSource], _T]) -> _T:
        """``call(source)`` on the run's documents holding the event pages of
        ``descriptor_uid``: again, if a read in another thread took them
        after they were looked for (:meth:`_current_for` reads them anew)."""
        while True:
            try:
                return call(self._current_for(descriptor_uid))
            except PagesTakenError:
                continue

    def _packed_event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        return self._with_pages(
            descriptor_uid, lambda s: s._packed_event_pages(descriptor_uid, fields, rows)
        )

    def _packed_stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        return self._with_pages(
            descriptor_uid, lambda s: s._packed_stored_event_pages(descriptor_uid, rows)
        )

    def start(self) -> RunStart:
        return self._current.start()

    def stop(self) -> RunStop | None:
        return self._current.stop()

    def descriptors(self) -> list[EventDescriptor]:
        return self._current.descriptors()

    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        return map(_plain_uids, self._packed_event_pages(descriptor_uid, fields, rows))

    def event_count(self, descriptor_uid: str) -> int:
        return self._current.event_count(descriptor_uid)

    def resources(self) -> list[Resource]:
        return self._current.resources()

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        return self._current.datum_pages(resource_uid)

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        return self._current.datums(datum_ids)

    def stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        units = self._packed_stored_event_pages(descriptor_uid, rows)
        return ((form, _plain_uids(page)) for form, page in units)

    def stored_datum_pages(
        self, resource_uid: str | None = None
    ) -> Iterator[tuple[str, DatumPage]]:
        return self._current.stored_datum_pages(resource_uid)

    def stream_resources(self) -> list[StreamResource]:
        return self._current.stream_resources()

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        return self._current.stream_datums(descriptor_uid)

    def documents(self) -> Iterator[tuple[str, Any]]:
        return self._current.documents()
