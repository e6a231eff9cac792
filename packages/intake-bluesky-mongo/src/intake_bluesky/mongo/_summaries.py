"""Start and stop documents of many runs at once, projected, for a table of
runs (the core's :class:`~intake_bluesky.core.driver.SummaryDriver`).

Projection, sort, skip and limit run on the server: the normalized layout
makes one query on ``run_start`` and one ``$in`` query on ``run_stop`` per
batch of runs; the embedded layout one query on ``header``. No event, datum
or descriptor is read.

Examples
--------
>>> import mongomock
>>> from intake_bluesky.mongo._normalized import NormalizedDriver
>>> db = mongomock.MongoClient()["mds"]
>>> _ = db["run_start"].insert_one({"uid": "u1", "time": 1.0, "scan_id": 7, "big": [0] * 9})
>>> _ = db["run_stop"].insert_one({"run_start": "u1", "time": 3.0, "exit_status": "success"})
>>> pairs = NormalizedDriver(db).summaries({}, start_fields=["scan_id"], stop_fields=["time"])
>>> list(pairs)
[({'uid': 'u1', 'scan_id': 7}, {'run_start': 'u1', 'time': 3.0})]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from intake_bluesky.core.driver import DEFAULT_SORT

from ._common import IN_BATCH, NO_ID, check_paging, check_query, iterate

__all__ = ["embedded_summaries", "normalized_summaries", "projection"]

#: Runs per ``$in`` query on ``run_stop``: few round trips, small queries.
STOP_BATCH = min(IN_BATCH, 1000)


def _usable_path(path: str) -> str | None:
    """The part of a dotted path a projection can name: up to (not
    including) an array index or an operator-like component, which MongoDB
    projections do not address the way a lookup does."""
    kept = []
    for part in path.split("."):
        if not part or part.isdigit() or part.startswith("$"):
            break
        kept.append(part)
    return ".".join(kept) or None


def projection(fields: Sequence[str] | None, required: Sequence[str] = (), prefix: str = ""):
    """A find() projection keeping ``fields`` (dotted) and ``required``.

    ``None`` (or a field that cannot be projected) keeps the whole document.
    Paths inside another kept path are dropped: MongoDB refuses such
    "path collisions".

    Examples
    --------
    >>> projection(["sample.name", "sample", "motors.0", "uid"], ["uid"])
    {'_id': False, 'motors': True, 'sample': True, 'uid': True}
    """
    if fields is None:
        return None
    paths = set()
    for field in (*required, *fields):
        usable = _usable_path(field)
        if usable is None:
            return None
        paths.add(usable)
    kept = sorted(p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p))
    return {"_id": False, **{prefix + p: True for p in kept}}


def normalized_summaries(
    self,
    query: Mapping[str, Any],
    *,
    start_fields: Sequence[str] | None = None,
    stop_fields: Sequence[str] | None = None,
    sort=DEFAULT_SORT,
    skip: int = 0,
    limit: int | None = None,
) -> Iterator[tuple[dict, dict | None]]:
    """``NormalizedDriver.summaries``: see the module notes."""
    query = check_query(query)
    sort, skip, limit = check_paging(sort, skip, limit)
    if limit == 0:
        return iter(())
    start_projection = projection(start_fields, ["uid"]) or dict(NO_ID)
    stop_projection = projection(stop_fields, ["run_start"]) or dict(NO_ID)
    starts = iterate(
        [self.mds],
        lambda: self.mds["run_start"].find(
            query, start_projection, sort=sort, skip=skip, limit=limit or 0
        ),
    )
    return _with_stops(self, starts, stop_projection)


def _with_stops(self, starts, stop_projection) -> Iterator[tuple[dict, dict | None]]:
    batch: list[dict] = []
    for start in starts:
        batch.append(start)
        if len(batch) >= STOP_BATCH:
            yield from _pair(self, batch, stop_projection)
            batch = []
    if batch:
        yield from _pair(self, batch, stop_projection)


def _pair(self, starts: list[dict], stop_projection) -> Iterator[tuple[dict, dict | None]]:
    uids = [s["uid"] for s in starts]
    stops: dict[str, dict] = {}
    for stop in iterate(
        [self.mds],
        lambda: self.mds["run_stop"].find({"run_start": {"$in": uids}}, stop_projection),
    ):
        # A run with two stop documents is damaged; the first stored wins,
        # as in run(uid).stop().
        stops.setdefault(stop["run_start"], stop)
    for start in starts:
        yield start, stops.get(start["uid"])


def embedded_summaries(
    self,
    query: Mapping[str, Any],
    *,
    start_fields: Sequence[str] | None = None,
    stop_fields: Sequence[str] | None = None,
    sort=DEFAULT_SORT,
    skip: int = 0,
    limit: int | None = None,
) -> Iterator[tuple[dict, dict | None]]:
    """``EmbeddedDriver.summaries``: see the module notes."""
    from ._embedded import prefix_query, prefix_sort  # it imports this module

    query = prefix_query(check_query(query))
    sort, skip, limit = check_paging(sort, skip, limit)
    if limit == 0:
        return iter(())
    sort = prefix_sort(sort)
    starts = projection(start_fields, ["uid"], "start.") or {"_id": False, "start": True}
    stops = projection(stop_fields, [], "stop.") or {"_id": False, "stop": True}
    if stops == {"_id": False}:
        stops = {"stop": True}
    wanted = {**starts, **{k: v for k, v in stops.items() if k != "_id"}}
    collection = self.db["header"]
    return iterate(
        [self.db],
        lambda: collection.find(query, wanted, sort=sort, skip=skip, limit=limit or 0),
        _pair_of_header,
    )


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _pair_of_header(header: dict) -> tuple[dict, dict | None]:
    return _first(header.get("start")), _first(header.get("stop"))
