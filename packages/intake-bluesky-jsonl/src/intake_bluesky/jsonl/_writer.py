"""Writing runs as suitcase-jsonl writes them: ``[name, doc]`` per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np

__all__ = ["JSONLWriter"]


def _default(obj):
    # What suitcase-jsonl's encoder (event_model.NumpyEncoder) does: numpy
    # arrays become nested lists, numpy scalars Python numbers.
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(
        f"a {type(obj).__name__} value ({obj!r:.80}) cannot be written to JSON; bluesky "
        "documents hold JSON-compatible values and numpy arrays only."
    )


class JSONLWriter:
    """The run writer ``jsonl`` (entry point group ``intake_bluesky.writers``).

    One line per document, ``[name, doc]``, in the order given, written with
    the standard library's ``json`` as suitcase-jsonl does: numpy arrays as
    nested lists, NaN and infinities as bare ``NaN``/``Infinity``. Files it
    writes are read back by :class:`~intake_bluesky.jsonl.BlueskyJSONLCatalog`
    and by suitcase-jsonl's readers (databroker's JSONL catalog).

    Examples
    --------
    >>> import io
    >>> out = io.BytesIO()
    >>> JSONLWriter().write([("start", {"uid": "abc", "time": 0.0})], out)
    >>> out.getvalue()
    b'["start", {"uid": "abc", "time": 0.0}]\\n'
    """

    suffix = ".jsonl"

    def write(self, documents: Iterable[tuple[str, dict]], file: BinaryIO) -> None:
        """Write every ``(name, doc)`` as one line of ``file`` (binary)."""
        dumps = json.dumps
        for name, doc in documents:
            try:
                line = dumps([name, doc], default=_default)
            except (TypeError, ValueError) as err:
                what = doc.get("uid", doc.get("datum_id", "?")) if isinstance(doc, dict) else "?"
                raise ValueError(f"The {name} document {what!r} cannot be written: {err}") from err
            file.write(line.encode("utf-8"))
            file.write(b"\n")
