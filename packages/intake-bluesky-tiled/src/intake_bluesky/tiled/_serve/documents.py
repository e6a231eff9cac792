"""``GET /api/v1/documents/{path}``: a served run's documents.

The route bluesky-tiled-plugins' ``BlueskyRunV2Mongo.documents()`` reads:
one ``{"name": ..., "doc": ...}`` record per document of the run's
``canonical()`` stream, framed as JSON text sequences (RFC 7464: each record
after ``\\x1e``, ending in a newline), or msgpack records when the client
accepts ``application/x-msgpack``. ``?fill=true`` fills external data into
the events. Reading needs the ``read:data`` and ``read:metadata`` scopes, as
tiled's own data routes do. There is no writing route.

Examples
--------
>>> record(("stop", {"uid": "u", "num_events": {"primary": 2}}))
b'\\x1e{"name": "stop", "doc": {"uid": "u", "num_events": {"primary": 2}}}\\n'
>>> record(("event", {"data": {"x": float("nan")}}))
b'\\x1e{"name": "event", "doc": {"data": {"x": NaN}}}\\n'
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Security
from starlette.responses import StreamingResponse

from tiled.server.authentication import (
    check_scopes,
    get_current_access_tags,
    get_current_principal,
    get_current_scopes,
    get_session_state,
)
from tiled.server.dependencies import get_entry, get_root_tree

from .adapters import RunAdapter

__all__ = ["record", "router"]

JSON_SEQ = "application/json-seq"
MSGPACK = "application/x-msgpack"

router = APIRouter()


def _plain(value: Any) -> Any:
    # Filled events hold numpy arrays; documents may hold numpy scalars.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def record(pair: tuple[str, Any]) -> bytes:
    """One JSON text sequence record. NaN and infinities are written as
    Python's json writes them (``NaN``), which the client's ``json.loads``
    reads back: a reading that was NaN stays NaN, not null."""
    name, doc = pair
    return b"\x1e" + json.dumps({"name": name, "doc": doc}, default=_plain).encode() + b"\n"


def _msgpack_records(documents: Iterator[tuple[str, Any]]) -> Iterator[bytes]:
    import msgpack

    packer = msgpack.Packer(default=_plain)
    for name, doc in documents:
        yield packer.pack({"name": name, "doc": doc})


@router.get("/documents/{path:path}")
async def get_documents(
    request: Request,
    path: str,
    principal: Annotated[Any, Depends(get_current_principal)],
    root_tree: Annotated[Any, Depends(get_root_tree)],
    session_state: Annotated[dict, Depends(get_session_state)],
    authn_access_tags: Annotated[Any, Depends(get_current_access_tags)],
    authn_scopes: Annotated[Any, Depends(get_current_scopes)],
    _: Annotated[Any, Security(check_scopes, scopes=["read:data", "read:metadata"])],
    fill: bool = False,
):
    """The documents of the run at ``path``."""
    entry = await get_entry(
        path,
        ["read:data", "read:metadata"],
        principal,
        authn_access_tags,
        authn_scopes,
        root_tree,
        session_state,
        request.state.metrics,
        None,
        getattr(request.app.state, "access_policy", None),
    )
    if not isinstance(entry, RunAdapter):
        raise HTTPException(status_code=404, detail=f"{path!r} is not a run.")
    accepted = [
        part.split(";")[0].strip() for part in request.headers.get("Accept", JSON_SEQ).split(",")
    ]
    for media_type in accepted:
        if media_type in ("*/*", JSON_SEQ, "application/json"):
            return StreamingResponse(
                (record(pair) for pair in entry.documents(fill)), media_type=JSON_SEQ
            )
        if media_type == MSGPACK:
            return StreamingResponse(_msgpack_records(entry.documents(fill)), media_type=MSGPACK)
    raise HTTPException(
        status_code=406, detail=f"Documents are served as {JSON_SEQ} or {MSGPACK}."
    )
