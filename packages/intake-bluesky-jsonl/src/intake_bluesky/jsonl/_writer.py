"""Writing runs as suitcase-jsonl writes them: ``[name, doc]`` per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
import orjson

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

    One line per document, ``[name, doc]``, in the order given, as
    suitcase-jsonl writes them: numpy arrays as nested lists, NaN and
    infinities as bare ``NaN``/``Infinity`` (as the standard library's
    ``json`` writes them). Files it writes are read back by
    :class:`~intake_bluesky.jsonl.BlueskyJSONLCatalog` and by any JSON reader
    (suitcase-jsonl's, databroker's JSONL catalog).

    Lines are encoded by orjson (numpy arrays without a detour through Python
    lists: several times faster on images); a line orjson cannot write
    exactly -- it writes NaN as ``null``, and refuses some dtypes and
    non-string keys -- is written by the standard library instead.

    Examples
    --------
    >>> import io
    >>> out = io.BytesIO()
    >>> JSONLWriter().write([("start", {"uid": "abc", "time": 0.0})], out)
    >>> out.getvalue()
    b'["start",{"uid":"abc","time":0.0}]\\n'
    """

    suffix = ".jsonl"

    def write(self, documents: Iterable[tuple[str, dict]], file: BinaryIO) -> None:
        """Write every ``(name, doc)`` as one line of ``file`` (binary)."""
        fast, option = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        for name, doc in documents:
            try:
                line = fast([name, doc], option=option)
            except (orjson.JSONEncodeError, TypeError):
                line = None
            if line is None or b"null" in line:
                # null may stand for NaN/Infinity (orjson's choice): the
                # standard library keeps them. A real None comes out the same.
                line = _slow(name, doc)
            file.write(line)
            file.write(b"\n")


def _slow(name: str, doc) -> bytes:
    try:
        return json.dumps([name, doc], default=_default).encode("utf-8")
    except (TypeError, ValueError) as err:
        what = doc.get("uid", doc.get("datum_id", "?")) if isinstance(doc, dict) else "?"
        raise ValueError(f"The {name} document {what!r} cannot be written: {err}") from err
