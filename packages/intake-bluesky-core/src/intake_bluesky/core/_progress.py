"""Progress bars for long work, shown only when a person is watching.

A bar (tqdm) appears when work takes longer than :data:`DELAY` seconds *and*
someone is watching: a terminal (stderr is a TTY) or a Jupyter kernel. In
scripts whose output goes to a file or a pipe, in CI and in tests nothing is
printed. Turn bars off (or force them on) with the environment variable
``INTAKE_BLUESKY_PROGRESS=0`` (``1``), or in code with
:func:`set_progress` ``(False)``; tqdm's own ``TQDM_DISABLE=1`` is honoured
too.

Where the core uses it: the first index of a large directory of run files,
``read()`` of many external frames, ``canonical(fill='yes')`` of a big run.
Backends and tools call :func:`progress` the same way.

Examples
--------
>>> from intake_bluesky.core._progress import progress
>>> sum(progress(range(1000), total=1000, desc="Adding"))  # silent: not a TTY
499500
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

__all__ = [
    "DELAY",
    "ENV_VAR",
    "ProgressCounter",
    "progress",
    "progress_enabled",
    "set_progress",
]

_T = TypeVar("_T")

#: Seconds of work before a bar appears: quick work never shows one.
DELAY = 2.0
#: ``0``/``off``/``false``/``no`` hides bars, ``1``/``on``/``true``/``yes``
#: shows them even when nobody seems to watch; unset (or ``auto``): decide.
ENV_VAR = "INTAKE_BLUESKY_PROGRESS"

_OFF = {"0", "off", "false", "no"}
_ON = {"1", "on", "true", "yes"}
_override: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Show (``True``), hide (``False``) or auto-detect (``None``) progress bars.

    Wins over the environment variable, for this process.
    """
    global _override
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress takes True, False or None, not {enabled!r}.")
    _override = enabled


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def progress_enabled() -> bool:
    """Whether a bar would be shown now (see the module notes)."""
    if _override is not None:
        return _override
    setting = os.environ.get(ENV_VAR, "auto").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        return True
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in _ON:
        return False
    if _in_notebook():
        return True
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _bar_class():
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


def progress(
    iterable: Iterable[_T],
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = False,
) -> Iterable[_T]:
    """``iterable``, with a progress bar when someone is watching.

    Parameters
    ----------
    iterable : iterable
        The work, one item per step.
    total : int, optional
        Number of steps (``len(iterable)`` when it has one).
    desc : str
        What is being done, e.g. ``"Indexing run files"``.
    unit : str
        What one step is (``"file"``, ``"frame"``, ``"event"``).
    leave : bool
        Keep the finished bar on screen.

    Returns
    -------
    iterator
        The same items. When bars are off this is ``iterable`` itself (no
        cost at all).
    """
    if not progress_enabled():
        return iterable
    if total is None:
        try:
            # An iterable without a length is the TypeError caught below.
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    tqdm = _bar_class()
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, leave=leave, delay=DELAY, dynamic_ncols=True
    )


class ProgressCounter:
    """A bar advanced by hand (``update(n)``), for work that is not one loop.

    A no-op object when bars are off. Use as a context manager.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it"):
        self._bar = None
        if progress_enabled():
            tqdm = _bar_class()
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, leave=False, delay=DELAY, dynamic_ncols=True
            )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
