"""The export's progress bar: the core's :class:`ProgressCounter` (shown on a
terminal or in Jupyter, after a short delay; ``INTAKE_BLUESKY_PROGRESS``)."""

from __future__ import annotations

import contextlib

from .._progress import ProgressCounter

__all__ = ["progress_for"]


def _total_events(runs) -> int | None:
    # From the stop documents (no event data read); unknown for live runs.
    total = 0
    for run in runs:
        stop = run.metadata["stop"]
        counts = (stop or {}).get("num_events")
        if not isinstance(counts, dict):
            return None
        total += sum(int(v) for v in counts.values())
    return total


@contextlib.contextmanager
def progress_for(runs, *, enabled: bool = True):
    """Yields ``update(n)`` for event rows written, or None without a bar."""
    if not enabled:
        yield None
        return
    desc = f"Exporting {len(runs)} run{'s' if len(runs) != 1 else ''}"
    with ProgressCounter(total=_total_events(runs), desc=desc, unit="event") as bar:
        yield bar.update
