"""How a bucket of TIFF files groups into runs, and the order of frames in a run.

Three rules, chosen by ``group_by``:

* ``"directory"`` (default): every directory's TIFF files are one run, frames in
  natural name order (``img_2`` before ``img_10``);
* ``"series"``: every file-name series in a directory is one run. A series is
  the files whose names differ only by a trailing number
  (``sampleA_exp0.5s_0000.tif`` ... -> series stem ``sampleA_exp0.5s``); frames
  are ordered by that number, not lexically. A file with no trailing number is
  a run of its own;
* ``"file"``: every file is one run (a bucket of multi-page stacks);
* a regular expression (string or compiled) with a named group ``stem`` and
  optionally ``index``: ``re.match`` against the file name; files with equal
  stem in one directory form a run, ordered by ``index`` as an integer. Files
  that do not match are runs of their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

__all__ = ["SERIES_PATTERN", "Grouping", "natural_key"]

#: The default series rule: a stem, an optional separator, a trailing number.
#: The stem is lazy so that the number takes every trailing digit
#: (``frame_0010`` -> ``frame`` and ``0010``, not ``frame_001`` and ``0``).
SERIES_PATTERN = re.compile(r"(?P<stem>.*?)[_\-. ]?(?P<index>\d+)\.tiff?$", re.IGNORECASE)

_SUFFIX = re.compile(r"\.tiff?$", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")

MODES = ("directory", "series", "file")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``a2`` < ``a10``).

    Examples
    --------
    >>> sorted(["f_10.tif", "f_2.tif", "f_1.tif"], key=natural_key)
    ['f_1.tif', 'f_2.tif', 'f_10.tif']
    """
    parts = _DIGITS.split(name)
    # Alternate (text, number) so that tuples always compare like with like.
    return tuple((0, int(p), p) if i % 2 else (1, p.lower(), p) for i, p in enumerate(parts))


def strip_suffix(name: str) -> str:
    """The file name without ``.tif``/``.tiff``."""
    return _SUFFIX.sub("", name)


class Grouping:
    """A rule grouping file paths into runs (picklable, comparable).

    Parameters
    ----------
    group_by : {"directory", "series", "file"} or regular expression
        See the module documentation.

    Examples
    --------
    >>> g = Grouping("series")
    >>> g.split(["/d/a_2.tif", "/d/a_10.tif", "/d/b_1.tif"])
    [('/d/a_2.tif', '/d/a_10.tif'), ('/d/b_1.tif',)]
    >>> g.stem("a_10.tif")
    'a'
    """

    def __init__(self, group_by: str | re.Pattern = "directory"):
        if isinstance(group_by, re.Pattern):
            pattern, flags, mode = group_by.pattern, group_by.flags, "regex"
        elif isinstance(group_by, str) and group_by in MODES:
            pattern, flags, mode = SERIES_PATTERN.pattern, SERIES_PATTERN.flags, group_by
        elif isinstance(group_by, str):
            pattern, flags, mode = group_by, 0, "regex"
        else:
            raise TypeError(
                f"group_by must be one of {MODES} or a regular expression, not {group_by!r}."
            )
        try:
            compiled = re.compile(pattern, flags)
        except re.error as err:
            raise ValueError(
                f"group_by={group_by!r} is neither one of {MODES} nor a valid regular "
                f"expression: {err}."
            ) from None
        if "stem" not in compiled.groupindex:
            raise ValueError(
                f"group_by regular expression {pattern!r} needs a named group 'stem' (and "
                r"optionally 'index'), e.g. r'(?P<stem>.+)_(?P<index>\d+)\.tif'."
            )
        self.mode = mode
        self.pattern = pattern
        self.flags = int(flags)
        self._regex = compiled

    def __repr__(self):
        return f"Grouping({self.mode if self.mode != 'regex' else self.pattern!r})"

    def __eq__(self, other):
        return isinstance(other, Grouping) and (self.mode, self.pattern, self.flags) == (
            other.mode,
            other.pattern,
            other.flags,
        )

    def __hash__(self):
        return hash((self.mode, self.pattern, self.flags))

    def __getstate__(self):
        return {"mode": self.mode, "pattern": self.pattern, "flags": self.flags}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._regex = re.compile(state["pattern"], state["flags"])

    def _match(self, name: str) -> tuple[str, int | None]:
        """``(stem, index)`` of a file name; index None if it has no number."""
        m = self._regex.match(name)
        if m is None:
            return strip_suffix(name), None
        index = m.groupdict().get("index")
        try:
            number = int(index) if index is not None else None
        except ValueError:
            number = None
        return m.group("stem"), number

    def stem(self, name: str) -> str:
        """The series stem of a file name (the whole name if it has no number)."""
        return self._match(name)[0]

    def split(self, paths: Sequence[str]) -> list[tuple[str, ...]]:
        """Group paths into runs, each a tuple of paths in frame order."""
        by_dir: dict[str, list[str]] = {}
        for path in paths:
            by_dir.setdefault(os.path.dirname(path), []).append(path)
        runs: list[tuple[str, ...]] = []
        for directory in sorted(by_dir):
            files = by_dir[directory]
            if self.mode == "directory":
                runs.append(tuple(sorted(files, key=lambda p: natural_key(os.path.basename(p)))))
            elif self.mode == "file":
                runs.extend((p,) for p in sorted(files))
            else:
                runs.extend(self._series(files))
        return runs

    def _series(self, files: list[str]) -> list[tuple[str, ...]]:
        groups: dict[tuple, list[tuple[int, tuple, str]]] = {}
        for path in files:
            name = os.path.basename(path)
            stem, index = self._match(name)
            # An unnumbered file is its own run, even if its name equals a stem.
            key = ("series", stem) if index is not None else ("single", name)
            groups.setdefault(key, []).append(
                (index if index is not None else -1, natural_key(name), path)
            )
        return [
            tuple(path for _, _, path in sorted(members)) for _, members in sorted(groups.items())
        ]
