"""Eager assembly: a window of one descriptor's rows as numpy columns.

Every cast to a declared dtype is lossless (:mod:`.casting`): values that do
not fit keep their own dtype, with a warning. External data is filled
through the :class:`~.filling.Filler`; stream data is read from the
stream_datums that cover the window's seq_nums.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..driver import RunSource
from ..errors import RunChangedError
from .casting import fits, lossless_cast
from .documents import BadDocumentError, event_columns
from .filling import Filler, FillError
from .pages import slice_pages
from .rows import (
    FieldSpec,
    Window,
    missing_capable,
    page_column,
    row_event,
    seconds_column,
    seq_digest,
    seq_range,
    seq_runs,
)

if TYPE_CHECKING:
    from event_model.documents import EventPage, StreamDatum

__all__ = ["load_columns", "stream_datums_for", "stream_rows"]


def load_columns(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    specs: Sequence[FieldSpec],
    window: Window | tuple[int, int] | None,
    part: str = "data",
    cast: bool = True,
) -> dict[str, np.ndarray]:
    """Columns of a window of one descriptor's rows, with ``time``/``seq_num``.

    ``part`` is ``"data"`` or ``"timestamps"``. Datum ids are filled when a
    ``filler`` is given; ``stream`` fields are read from stream datums.
    ``window=None`` or ``(r0, r1)`` means rows that are exactly events.
    ``cast=False`` leaves inline values in their own dtype (dask tasks check
    them against the array's dtype themselves).
    """
    if window is None or isinstance(window, tuple):
        rows = window
        window = None
    else:
        rows = (window.e0, window.e1)
    event_specs = [s for s in specs if s.kind != "stream"]
    keys = [s.key for s in event_specs]
    # A whole descriptor's data: the source may hand its pages over, and each
    # column is then dropped from them once this read has made its own.
    owned = _own_pages(source, descriptor_uid, keys) if rows is None and part == "data" else None
    pages: Sequence[Mapping[str, Any]] = (
        owned if owned is not None else event_columns(source, descriptor_uid, keys, rows, part)
    )
    event_seq = page_column([p["seq_num"] for p in pages]).astype("int64", copy=False)
    if window is not None and window.events is not None and rows is not None:
        if seq_digest(event_seq) != window.events:
            pages, event_seq = _events_as_indexed(source, descriptor_uid, keys, window, part)
    event_time = seconds_column(
        pages, [p["time"] for p in pages], source.uid, descriptor_uid, "time"
    )
    if owned is not None:
        for page in owned:
            del page["time"]
    seq = None if window is None else window.seq_nums()
    positions = None
    if seq is None or (len(seq) == len(event_seq) and np.array_equal(seq, event_seq)):
        out = {"time": event_time, "seq_num": event_seq}
    else:
        positions = np.searchsorted(seq, event_seq)
        time = np.full(len(seq), np.nan)
        time[positions] = event_time
        out = {"time": time, "seq_num": seq}
    n = len(out["seq_num"])
    for spec in event_specs:
        pieces = [p.get(part, {}).get(spec.key) for p in pages]
        if any(piece is None for piece in pieces):
            at = next(i for i, piece in enumerate(pieces) if piece is None)
            row = sum(len(p["seq_num"]) for p in pages[:at])
            raise BadDocumentError(
                f"Run {source.uid!r}: {row_event(pages, row)} of descriptor {descriptor_uid!r} "
                f"lacks the {part} of {spec.key!r}, which the descriptor declares. Read the "
                f"other fields with exclude=[{spec.key!r}]."
            )
        if part == "timestamps":
            column = seconds_column(
                pages, pieces, source.uid, descriptor_uid, f"timestamp of {spec.key!r}"
            )
        elif spec.kind == "datum" and filler is not None:
            ids = list(itertools.chain.from_iterable(pieces))
            # A whole descriptor read eagerly may be many frames: a progress
            # bar (dask chunk tasks, cast=False, stay silent).
            desc = f"Loading {spec.key}" if cast else None
            column = filler.fill_column(
                ids, spec.dtype, field=spec.key, declared=spec.declared, desc=desc
            )
        elif spec.kind == "datum":
            column = page_column(pieces)
        else:
            numeric = spec.data_key.get("dtype") == "number"
            float_hint = spec.dtype is not None and spec.dtype.kind in "fc"
            column = page_column(pieces, numeric, float_hint)
            if column.dtype.kind == "O" and not spec.shape and spec.data_key.get("shape") == []:
                _check_scalars(column, pages, source.uid, descriptor_uid, spec.key)
            if cast:
                column = lossless_cast(
                    column, spec.dtype, run=source.uid, field=spec.key, what=spec.declared
                )
        if len(column) == 0 and part == "data":
            column = spec.empty() if spec.kind != "datum" or filler is not None else column
        out[spec.key] = column if positions is None else _spread(column, positions, n)
        del pieces, column
        if owned is not None:
            for page in owned:
                del page["data"][spec.key]
    if part == "data":
        for spec in specs:
            if spec.kind == "stream":
                out[spec.key] = _stream_column(source, filler, descriptor_uid, spec, out)
    return out


def _events_as_indexed(
    source: RunSource, descriptor_uid: str, keys: Sequence[str], window: Window, part: str
) -> tuple[list[EventPage], np.ndarray]:
    """Events ``e0:e1`` of a window, as the row index saw them, when a read
    of those rows found others.

    A store whose order of events with equal times is not the same from one
    query to the next (a database sorting by time alone) can give a window
    of rows other events than the whole descriptor's read that built the
    index; the whole descriptor is read again, as then, and cut. Events
    still not the indexed ones mean the run changed since (events inserted
    among the old ones, or removed). Each chunk that finds other events reads
    the whole descriptor: rare (equal times at a window's edge), so not
    shared between chunks.
    """
    whole = event_columns(source, descriptor_uid, keys, None, part)
    pages = list(slice_pages(whole, (window.e0, window.e1)))
    event_seq = page_column([p["seq_num"] for p in pages]).astype("int64", copy=False)
    if seq_digest(event_seq) != window.events:
        raise RunChangedError(
            f"Run {source.uid!r}: the events of descriptor {descriptor_uid!r} at positions "
            f"{window.e0}-{window.e1} are no longer the ones the Dataset was built from: "
            "events were added, removed or reordered since. Call to_dask() again."
        )
    return pages, event_seq


def _own_pages(
    source: RunSource, descriptor_uid: str, keys: Sequence[str]
) -> list[dict[str, Any]] | None:
    """The descriptor's event pages handed over by a source that holds them
    in memory (a run read from a file: see
    :meth:`~.documents.DocumentRunSource._take_event_pages`), as new dicts
    with only what this read uses; None from any other source."""
    take = getattr(source, "_take_event_pages", None)
    taken = take(descriptor_uid) if take is not None else None
    if taken is None:
        return None
    return [
        {
            "descriptor": page["descriptor"],
            "uid": page["uid"],
            "seq_num": page["seq_num"],
            "time": page["time"],
            "data": {k: page["data"][k] for k in keys if k in page["data"]},
        }
        for page in taken
    ]


def _spread(values: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Event values placed at their rows; rows without an event are missing
    (see :func:`missing_capable`). Integers too large for float64 keep their
    values in an object array: no value is changed."""
    dtype = missing_capable(values.dtype)
    if dtype.kind == "f" and not fits(values, dtype):
        dtype = np.dtype(object)
    fill = np.nan if dtype.kind in "fc" else None
    out = np.full((n, *values.shape[1:]), fill, dtype=dtype)
    out[positions] = values
    return out


def _check_scalars(
    column: np.ndarray,
    pages: Sequence[Mapping[str, Any]],
    run: str,
    descriptor_uid: str,
    key: str,
) -> None:
    """A field declared scalar (``shape: []``) whose events hold arrays in
    some rows: an error naming the first such event, not a ragged column."""
    for row, value in enumerate(column.tolist()):
        if isinstance(value, list | dict | np.ndarray):
            raise BadDocumentError(
                f"Run {run!r}: {row_event(pages, row)} of descriptor {descriptor_uid!r} "
                f"holds {type(value).__name__} {_brief_value(value)} in field {key!r}, which "
                "the descriptor declares a scalar (shape []). Read the other fields with "
                f"exclude=[{key!r}]."
            )


def _brief_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def stream_datums_for(
    source: RunSource, filler: Filler, descriptor_uid: str, key: str
) -> list[StreamDatum]:
    """The stream_datums of field ``key`` of one descriptor, by seq_num."""
    sds = [
        sd
        for sd in source.stream_datums(descriptor_uid)
        if filler.stream_resource(sd["stream_resource"]).get("data_key") == key
    ]
    return sorted(sds, key=lambda sd: seq_range(sd, source.uid)[0])


def _stream_column(
    source: RunSource,
    filler: Filler | None,
    descriptor_uid: str,
    spec: FieldSpec,
    columns: Mapping[str, np.ndarray],
) -> np.ndarray:
    if filler is None:
        raise ValueError(f"Field {spec.key!r} is stream data; it can only be read filled.")
    return stream_rows(source, filler, descriptor_uid, spec, columns["seq_num"])


def stream_rows(
    source: RunSource,
    filler: Filler,
    descriptor_uid: str,
    spec: FieldSpec,
    seq: np.ndarray,
    *,
    out: np.ndarray | None = None,
    check: Callable[[np.ndarray, int], np.ndarray] | None = None,
    sds: Sequence[StreamDatum] | None = None,
) -> np.ndarray:
    """The rows of stream field ``spec`` at the sorted seq_nums ``seq``,
    read from the stream_datums that cover them (only those rows are read).

    ``out``/``check``: see :meth:`Filler.fill_stream`. ``sds``: the field's
    stream_datums sorted by seq_num, when the caller has them already.
    """
    if len(seq) == 0:
        return spec.empty() if out is None else out
    if sds is None:
        sds = stream_datums_for(source, filler, descriptor_uid, spec.key)
    if not sds:
        raise FillError(
            f"Run {source.uid!r}: field {spec.key!r} of descriptor {descriptor_uid!r} is stream "
            "data, but the run's storage holds no stream_datum documents for it (suitcase-"
            "msgpack 0.3 and other serializers older than stream data drop them). Read the "
            f"other fields with exclude=[{spec.key!r}], or re-export the run from a store that "
            "kept its stream_resource/stream_datum documents."
        )
    lo, hi = int(seq[0]), int(seq[-1]) + 1
    wanted: list[dict[str, Any]] = []
    pieces: list[np.ndarray] = []
    for sd in sds:
        s0, s1 = seq_range(sd, source.uid)
        a, b = max(s0, lo), min(s1, hi)
        if a < b:
            i0 = sd["indices"]["start"] + (a - s0)
            wanted.append({**sd, "indices": {"start": i0, "stop": i0 + (b - a)}})
            pieces.append(np.arange(a, b, dtype="int64"))
    covered = np.concatenate(pieces) if pieces else np.empty((0,), dtype="int64")
    if not np.array_equal(covered, seq):
        missing = np.setdiff1d(seq, covered)
        extra = len(covered) - len(np.unique(covered))
        what = (
            f"no stream_datum covers seq_num(s) {_brief(missing)}"
            if len(missing)
            else f"stream_datums overlap ({extra} seq_num(s) covered twice)"
        )
        raise FillError(
            f"Run {source.uid!r}: field {spec.key!r} (descriptor {descriptor_uid!r}): {what}. "
            "If the run is still in progress, read again later; otherwise its storage lost "
            f"stream_datum documents. Read the other fields with exclude=[{spec.key!r}]."
        )
    return filler.fill_stream(wanted, spec.data_key, field=spec.key, out=out, check=check)


def _brief(values: np.ndarray) -> str:
    runs = seq_runs(np.unique(values))
    text = ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in runs[:5])
    return text + (", ..." if len(runs) > 5 else "")
