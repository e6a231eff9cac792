"""Feeding a run's documents to a callback with their original timing.

Examples
--------
>>> from intake_bluesky.core import DocumentRunSource
>>> from intake_bluesky.core.testing import example_runs
>>> from intake_bluesky.core._model.run import RunModel
>>> run = RunModel(DocumentRunSource(example_runs()[1]))
>>> names = []
>>> replay(run.canonical(), lambda name, doc: names.append(name), speed=None)
>>> names
['start', 'descriptor', 'event_page', 'stop']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["document_time", "replay"]


def document_time(name: str, doc: Any) -> float | None:
    """When a document was emitted, from its ``time`` (an event page: its
    first event's); None for documents that carry no time (resource, datum,
    stream_resource, stream_datum)."""
    if name not in ("start", "descriptor", "event", "event_page", "stop"):
        return None
    t = doc.get("time") if hasattr(doc, "get") else None
    if name == "event_page":
        times = [v for v in (t if t is not None else ()) if _is_time(v)]
        return float(min(times)) if times else None
    return float(t) if t is not None and _is_time(t) else None


def _is_time(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def replay(
    documents: Iterable[tuple[str, Any]],
    callback: Callable[[str, Any], Any],
    *,
    speed: float | None = 1.0,
    sleep: Callable[[float], Any] | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Call ``callback(name, doc)`` for each document, as timed when emitted.

    Each timed document is due ``(t - t0) / speed`` seconds after the first
    one, ``t`` its own time and ``t0`` the first timed document's: the wait
    before it is what remains of that after the callback's own work on the
    earlier documents, so a slow callback does not add up drift. A document
    without a time, or whose time goes back (clocks of several hosts), is
    passed on at once.

    Parameters
    ----------
    documents : iterable of (name, doc)
        In the order to feed them (a run's canonical documents).
    callback : callable
        ``callback(name, doc)``: a bluesky callback, LiveTable, LivePlot, a
        serializer, a producer.
    speed : float or None
        Time scale: 2.0 plays twice as fast, 0.5 at half speed; None feeds
        the documents without waiting.
    sleep, clock : callable, optional
        ``time.sleep`` and ``time.monotonic`` by default (tests pass their
        own).

    Raises
    ------
    ValueError
        If ``speed`` is not a positive finite number or None.
    """
    if speed is not None and (isinstance(speed, bool) or not _is_time(speed) or float(speed) <= 0):
        raise ValueError(
            f"speed must be a positive number (2.0: twice as fast) or None (no waiting), "
            f"not {speed!r}."
        )
    if not callable(callback):
        raise TypeError(f"callback must be callable as callback(name, doc), not {callback!r}.")
    sleep = time.sleep if sleep is None else sleep
    clock = time.monotonic if clock is None else clock
    origin: tuple[float, float] | None = None  # (document time, clock) of the first timed one
    for name, doc in documents:
        t = document_time(name, doc) if speed is not None else None
        if t is not None and speed is not None:
            if origin is None:
                origin = (t, clock())
            else:
                due = origin[1] + (t - origin[0]) / speed
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
        callback(name, doc)
