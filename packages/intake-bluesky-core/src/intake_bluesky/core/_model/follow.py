"""Following a live run: its documents as they are written, until its stop.

Backend-neutral: the run's storage (a :class:`~intake_bluesky.core.driver.RunSource`)
is asked again every ``poll_interval`` seconds, and only what is new is
yielded. A run source may offer a hook so that no polling is needed::

    def wait_for_change(self, token, timeout: float | None):
        '''Block until the run may have changed since ``token`` (or ``timeout``
        seconds passed); return the token for the next call. ``token`` None
        returns the current token at once.'''

The in-memory catalog implements it (documents fed by ``cat(name, doc)`` wake
the follower at once); a database backend may implement it with change
streams. File backends are polled: each poll stats the run's file and parses
only the bytes appended since the last.

Examples
--------
>>> from intake_bluesky.core import BlueskyInMemoryCatalog
>>> from intake_bluesky.core.testing import example_runs
>>> cat = BlueskyInMemoryCatalog()
>>> for name, doc in example_runs()[1]:
...     cat(name, doc)
>>> [name for name, doc in cat[-1].follow()][:2]
['start', 'descriptor']
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RunChangedError
from .canonical import canonical

if TYPE_CHECKING:
    from event_model.documents import (
        Datum,
        DatumPage,
        EventDescriptor,
        EventPage,
        Resource,
        RunStart,
        RunStop,
        StreamDatum,
        StreamResource,
    )

    from ..driver import RunSource
    from .run import RunModel

__all__ = ["follow"]


class _Snapshot:
    """The run as one poll sees it: only event rows not yet yielded.

    The stop is read first: once it is stored, every event is stored too, so
    the snapshot never ends the run before its last events.
    """

    def __init__(self, source: RunSource, emitted_rows: dict[str, int]) -> None:
        self.uid = source.uid
        self._source = source
        self._stop = source.stop()
        self._descriptors = source.descriptors()
        self._rows: dict[str, tuple[int, int]] = {}
        for d in self._descriptors:
            first = emitted_rows.get(d["uid"], 0)
            self._rows[d["uid"]] = (first, max(first, source.event_count(d["uid"])))

    def start(self) -> RunStart:
        return self._source.start()

    def stop(self) -> RunStop | None:
        return self._stop

    def descriptors(self) -> list[EventDescriptor]:
        return self._descriptors

    def event_pages(
        self,
        descriptor_uid: str,
        fields: Sequence[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[EventPage]:
        first, last = self._rows.get(descriptor_uid, (0, 0))
        if first >= last:
            return iter(())
        return self._source.event_pages(descriptor_uid, fields, rows=(first, last))

    def event_count(self, descriptor_uid: str) -> int:
        first, last = self._rows.get(descriptor_uid, (0, 0))
        return last - first

    def stored_event_pages(
        self, descriptor_uid: str, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[str, EventPage]]:
        first, last = self._rows.get(descriptor_uid, (0, 0))
        if first >= last:
            return iter(())
        stored = getattr(self._source, "stored_event_pages", None)
        if stored is None:
            pages = self._source.event_pages(descriptor_uid, rows=(first, last))
            return (("event_page", page) for page in pages)
        units: Iterator[tuple[str, EventPage]] = stored(descriptor_uid, rows=(first, last))
        return units

    def stored_datum_pages(
        self, resource_uid: str | None = None
    ) -> Iterator[tuple[str, DatumPage]]:
        stored = getattr(self._source, "stored_datum_pages", None)
        if stored is None:
            return (("datum_page", page) for page in self._source.datum_pages(resource_uid))
        units: Iterator[tuple[str, DatumPage]] = stored(resource_uid)
        return units

    def resources(self) -> list[Resource]:
        return self._source.resources()

    def datum_pages(self, resource_uid: str | None = None) -> Iterator[DatumPage]:
        return self._source.datum_pages(resource_uid)

    def datums(self, datum_ids: Iterable[str]) -> dict[str, Datum]:
        return self._source.datums(datum_ids)

    def stream_resources(self) -> list[StreamResource]:
        return self._source.stream_resources()

    def stream_datums(self, descriptor_uid: str | None = None) -> list[StreamDatum]:
        return self._source.stream_datums(descriptor_uid)


class _Seen:
    """What was yielded already, by kind and uid."""

    def __init__(self) -> None:
        self.start = False
        self.rows: dict[str, int] = {}
        # descriptor uid -> uid of the last event yielded: still there, in
        # the same row, unless the run was rewritten rather than appended to.
        self.last_event: dict[str, object] = {}
        self.uids: dict[str, set[Any]] = {
            "descriptor": set(),
            "resource": set(),
            "stream_resource": set(),
            "stream_datum": set(),
            "datum": set(),
        }

    def new(self, name: str, doc: Any) -> tuple[str, Any] | None:
        """``(name, doc)`` reduced to what was not yielded yet, or None."""
        if name == "start":
            if self.start:
                return None
            self.start = True
            return name, doc
        if name in ("event", "event_page"):
            n = 1 if name == "event" else len(doc["seq_num"])
            self.rows[doc["descriptor"]] = self.rows.get(doc["descriptor"], 0) + n
            if n:
                uid = doc["uid"] if name == "event" else doc["uid"][-1]
                self.last_event[doc["descriptor"]] = uid
            return name, doc
        if name == "datum_page":
            seen = self.uids["datum"]
            keep = [i for i, d in enumerate(doc["datum_id"]) if d not in seen]
            if not keep:
                return None
            seen.update(doc["datum_id"][i] for i in keep)
            if len(keep) < len(doc["datum_id"]):
                doc = _take_datums(doc, keep)
            return name, doc
        if name == "datum":
            key, kind = doc["datum_id"], "datum"
        elif name in self.uids:
            key, kind = doc["uid"], name
        else:
            return name, doc  # stop
        if key in self.uids[kind]:
            return None
        self.uids[kind].add(key)
        return name, doc

    def rewritten(self, source: RunSource) -> str | None:
        """How ``source`` no longer holds what was yielded (the run was
        rewritten, not appended to), or None: descriptors yielded are still
        there, with at least as many events, the last one yielded in its row."""
        if self.uids["descriptor"]:
            present = {d["uid"] for d in source.descriptors()}
            for uid in self.uids["descriptor"] - present:
                return f"descriptor {uid!r} is gone"
        for descriptor, n in self.rows.items():
            count = source.event_count(descriptor)
            if count < n:
                return (
                    f"the events of descriptor {descriptor!r} are {count} now, and {n} were "
                    "yielded"
                )
            last = self.last_event.get(descriptor)
            if last is None:
                continue
            page = next(iter(source.event_pages(descriptor, [], rows=(n - 1, n))), None)
            uids = list(page["uid"]) if page is not None else []
            if uids[-1:] != [last]:
                return f"event {n} of descriptor {descriptor!r} is another event now"
        return None


def _take_datums(page: DatumPage, keep: list[int]) -> DatumPage:
    return {
        "resource": page["resource"],
        "datum_id": [page["datum_id"][i] for i in keep],
        "datum_kwargs": {k: [v[i] for i in keep] for k, v in page["datum_kwargs"].items()},
    }


def follow(
    run: RunModel,
    *,
    poll_interval: float = 0.5,
    idle_timeout: float | None = None,
    fill: str = "no",
) -> Iterator[tuple[str, Any]]:
    """Yield a run's ``(name, doc)`` as they are written, ending after its stop.

    Parameters
    ----------
    run : RunModel
        The run (``BlueskyRun.follow`` passes its model).
    poll_interval : float
        Seconds between looks at storage that offers no change notification.
    idle_timeout : float or None
        Raise ``TimeoutError`` when no new document arrived for this long
        (None: wait for the stop however long it takes).
    fill : {'no', 'yes'}
        As for ``canonical()``; ``'no'`` by default because the external files
        of a run being written may not be complete yet.

    Yields
    ------
    (name, doc)
        What each look at storage found new, in canonical order (start first,
        each descriptor before its events, resources and datums before the
        events referring to them, events in time order across streams). A
        document is never yielded twice; events found in a later look come
        after those of an earlier one.

    Raises
    ------
    RunChangedError
        The run was rewritten rather than appended to (e.g. a run file
        truncated and written again): what was yielded is no longer what is
        stored, so following it on would mix two versions of the run.
    """
    if fill not in ("yes", "no"):
        raise ValueError(f"fill must be 'yes' or 'no', not {fill!r}.")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval!r}.")
    source = run.source
    wait = getattr(source, "wait_for_change", None)
    token = wait(None, 0) if callable(wait) else None
    seen = _Seen()
    last_new = time.monotonic()
    while True:
        try:
            changed = seen.rewritten(source) if seen.start else None
        except RunChangedError as err:
            # The storage itself noticed (a file caught mid-rewrite): same words.
            changed = str(err)
        if changed is not None:
            where = getattr(source, "location", None)
            where = f" ({where})" if where is not None else ""
            raise RunChangedError(
                f"Run {run.uid!r} changed while it was followed: {changed}. Its storage{where} "
                "was rewritten, not appended to, so the documents yielded so far are not the "
                "run as stored now. Look the run up again and read or follow it anew."
            )
        snapshot = _Snapshot(source, seen.rows)
        found = False
        for name, doc in canonical(
            # Every RunSource method canonical() calls (not documents()).
            snapshot,  # type: ignore[arg-type]
            fill=fill == "yes",
            filler=run.filler,
            transforms=run.settings.transforms,
        ):
            item = seen.new(name, doc)
            if item is not None:
                found = True
                yield item
        if snapshot.stop() is not None:
            return
        now = time.monotonic()
        if found:
            last_new = now
        remaining = None if idle_timeout is None else idle_timeout - (now - last_new)
        if remaining is not None and remaining <= 0:
            raise TimeoutError(
                f"Run {run.uid!r}: no new document for {idle_timeout} s (idle_timeout) and no "
                "stop document yet; the documents written so far were yielded. Follow it "
                "again to resume, or give a longer idle_timeout."
            )
        if callable(wait):
            # Woken by new documents; the poll interval only bounds how long
            # a stalled writer goes unnoticed by idle_timeout.
            token = wait(token, remaining)
        else:
            time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))
