"""The documents of a run, rebuilt from the layout TiledWriter writes.

TiledWriter (bluesky-tiled-plugins >= 2) keeps a run as a container keyed by
its start uid (spec ``BlueskyRun`` 3.x, metadata ``{start, stop}``); each
stream as a container (``BlueskyEventStream`` 3.x, ``composite``) whose
metadata is the stream's first descriptor without ``name``, ``run_start``
and ``object_keys`` (later descriptors of the stream under
``_config_updates``: uid, time, configuration); the event data in a table
``internal`` (``seq_num``, ``time``, one column per field, ``ts_<field>``);
internal arrays of more than a few elements as arrays beside it; and each
external data key as an array node that references the detector file(s)
(one data source, ``management='external'``, the file as an asset).

What tiled does not keep, and how it comes back here:

* event, stream_resource and stream_datum uids: rebuilt deterministically
  (``uuid5`` of run, stream and row; ``<stream_resource uid>/0``), stable
  across reads;
* which descriptor an event belongs to when a stream has several (a
  configuration change mid-run): an event belongs to the last descriptor
  older than it;
* a descriptor's ``object_keys``: rebuilt from the data keys'
  ``object_name``;
* a stream's stream_datums: one per data key, covering every row;
* ``resource``/``datum`` documents: TiledWriter turns them into
  stream_resource/stream_datum documents before writing;
* integers beyond +-2**53 in start, stop and descriptor documents: clamped
  by TiledWriter to +-(2**53 - 1).

Examples
--------
>>> rebuild_object_keys({"det": {"object_name": "det"}, "x": {}})
{'det': ['det'], 'x': ['x']}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, overload

__all__ = [
    "EventUids",
    "INTERNAL_TABLE",
    "descriptors_of_stream",
    "event_uid",
    "plain",
    "rebuild_object_keys",
    "stream_resource_uid",
]

#: The table of a stream's event data.
INTERNAL_TABLE = "internal"
#: Namespace of the uids rebuilt for documents whose uid tiled does not keep.
_NAMESPACE = uuid.UUID("6f0a1a3e-2b51-4c1e-9d67-4e1c2a9b7f10")


def event_uid(run_uid: str, stream: str, seq_num: int) -> str:
    """The rebuilt uid of one event: the same on every read."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_uid}/{stream}/{int(seq_num)}"))


class EventUids(Sequence[str]):
    """The rebuilt uids of a page of events, made when read.

    Reading columns never looks at event uids (an error message names one at
    most); making 100,000 of them up front would cost more than the table.
    """

    __slots__ = ("_run_uid", "_seq_nums", "_stream")

    def __init__(self, run_uid: str, stream: str, seq_nums: Sequence[int]) -> None:
        self._run_uid, self._stream, self._seq_nums = run_uid, stream, seq_nums

    def __len__(self) -> int:
        return len(self._seq_nums)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [event_uid(self._run_uid, self._stream, s) for s in self._seq_nums[index]]
        return event_uid(self._run_uid, self._stream, self._seq_nums[index])

    def __repr__(self) -> str:
        return f"EventUids({len(self)} events of {self._stream!r})"


def stream_resource_uid(run_uid: str, stream: str, data_key: str) -> str:
    """The rebuilt uid of the stream_resource of one external data key."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_uid}/{stream}/{data_key}/stream_resource"))


def rebuild_object_keys(data_keys: Mapping[str, Any]) -> dict[str, list[str]]:
    """``object_keys`` from the data keys' ``object_name`` (each key under
    its own name when it has none)."""
    out: dict[str, list[str]] = {}
    for key, data_key in data_keys.items():
        name = data_key.get("object_name") if isinstance(data_key, Mapping) else None
        out.setdefault(str(name or key), []).append(key)
    return out


def plain(value: Any) -> Any:
    """A copy of tiled metadata as plain dicts and lists (tiled gives
    read-only views)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


def descriptors_of_stream(
    run_uid: str, stream: str, metadata: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The stream's descriptor documents, oldest first, from its metadata."""
    first = {k: plain(v) for k, v in metadata.items() if k != "_config_updates"}
    first["name"] = stream
    first["run_start"] = run_uid
    first.setdefault("data_keys", {})
    first.setdefault("configuration", {})
    first.setdefault("hints", {})
    first["object_keys"] = rebuild_object_keys(first["data_keys"])
    out = [first]
    updates: Sequence[Mapping[str, Any]] = plain(metadata.get("_config_updates") or [])
    for update in updates:
        later = dict(first)
        later["uid"] = update["uid"]
        later["time"] = update["time"]
        if "configuration" in update:
            later["configuration"] = update["configuration"]
        out.append(later)
    return out
