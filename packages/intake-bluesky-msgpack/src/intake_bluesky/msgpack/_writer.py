"""Writing runs as suitcase-msgpack writes them: ``[name, doc]`` records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import msgpack
import msgpack_numpy
import numpy as np

__all__ = ["MsgpackWriter"]

_PARTS = ("data", "timestamps", "filled")


def _rows(column):
    # A column stacked into one array (N, ...) is stored row by row, as
    # suitcase-msgpack stores the pages bluesky emits: each row keeps its
    # dtype and shape through msgpack-numpy.
    if isinstance(column, np.ndarray):
        return list(column) if column.ndim > 1 else column.tolist()
    return list(column)


def _event_page(doc: dict) -> dict:
    page = dict(doc)
    for key in ("time", "uid", "seq_num"):
        page[key] = _rows(doc[key])
    for part in _PARTS:
        if part in doc:
            page[part] = {k: _rows(v) for k, v in doc[part].items()}
    return page


def _one_row_event_page(event: dict) -> dict:
    page = {
        "time": [event["time"]],
        "uid": [event["uid"]],
        "seq_num": [event["seq_num"]],
        "descriptor": event["descriptor"],
    }
    for part in _PARTS:
        if part in event:
            page[part] = {k: [v] for k, v in event[part].items()}
    return page


def _one_row_datum_page(datum: dict) -> dict:
    return {
        "resource": datum["resource"],
        "datum_id": [datum["datum_id"]],
        "datum_kwargs": {k: [v] for k, v in datum.get("datum_kwargs", {}).items()},
    }


def _datum_page(doc: dict) -> dict:
    return {
        **doc,
        "datum_id": _rows(doc["datum_id"]),
        "datum_kwargs": {k: _rows(v) for k, v in doc["datum_kwargs"].items()},
    }


class MsgpackWriter:
    """The run writer ``msgpack`` (entry point group ``intake_bluesky.writers``).

    A concatenation of msgpack records ``[name, doc]`` in the order given,
    laid out as suitcase-msgpack lays them out: every ``event`` becomes a
    1-row ``event_page`` and every ``datum`` a 1-row ``datum_page``; numpy
    arrays and scalars are msgpack-numpy maps (raw bytes, dtype, shape), so
    dtypes survive. Files it writes are read back by
    :class:`~intake_bluesky.msgpack.BlueskyMsgpackCatalog` and by
    suitcase-msgpack's readers.

    Examples
    --------
    >>> import io, msgpack
    >>> out = io.BytesIO()
    >>> MsgpackWriter().write([("start", {"uid": "abc", "time": 0.0})], out)
    >>> msgpack.unpackb(out.getvalue())
    ['start', {'uid': 'abc', 'time': 0.0}]
    """

    suffix = ".msgpack"

    def write(self, documents: Iterable[tuple[str, dict]], file: BinaryIO) -> None:
        """Write every ``(name, doc)`` as one msgpack record of ``file``."""
        packer = msgpack.Packer(default=msgpack_numpy.encode)
        for name, doc in documents:
            if name == "event":
                name, doc = "event_page", _one_row_event_page(doc)
            elif name == "event_page":
                doc = _event_page(doc)
            elif name == "datum":
                name, doc = "datum_page", _one_row_datum_page(doc)
            elif name == "datum_page":
                doc = _datum_page(doc)
            try:
                data = packer.pack([name, doc])
            except (TypeError, ValueError) as err:
                what = doc.get("uid", doc.get("datum_id", "?"))
                raise ValueError(f"The {name} document {what!r} cannot be written: {err}") from err
            file.write(data)
