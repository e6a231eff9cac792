"""A progress bar for exports: on stderr, and only when it is a terminal."""

from __future__ import annotations

import contextlib
import sys

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
    """Yields ``update(n)`` for rows written, or None when no bar is shown."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:  # a progress bar is a nicety, never a failure
        yield None
        return
    bar = tqdm(
        total=_total_events(runs),
        unit=" events",
        desc=f"exporting {len(runs)} run{'s' if len(runs) != 1 else ''}",
        file=sys.stderr,
        leave=False,
    )
    try:
        yield bar.update
    finally:
        bar.close()
