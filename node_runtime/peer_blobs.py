"""Serving cached model blobs to same-tenant peers, so a site pulls a model from the
control plane once. A peer presents a ticket the control plane issued for exactly this
digest, keyed by this node's credential (never a tenant key, never its own credential);
anything else is a 404 that says nothing about what this node holds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from litestar import Request, get
from litestar.response import Stream

from node_runtime.errors import NodeError
from wire.contract import PEER_BLOBS, PEER_TICKET_HEADER, check_peer_ticket

if TYPE_CHECKING:
    from node_runtime.runtime import NodeRuntime

CHUNK = 1024 * 1024


class NotHere(NodeError):
    status, type, code = 404, "not_found_error", "not_found"


async def _chunks(path: Path, offset: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(offset)
        while chunk := await f.read(CHUNK):
            yield chunk


@get(PEER_BLOBS + "{digest:str}")
async def peer_blob(request: Request, digest: str) -> Stream:
    """The verified bytes of ``digest``; ``Range: bytes=N-`` resumes."""
    rt: NodeRuntime = request.app.state.runtime
    ticket = request.headers.get(PEER_TICKET_HEADER, "")
    if not check_peer_ticket(
        ticket.strip(), credential=rt.identity.credential, digest=digest, now=time.time()
    ):
        raise NotHere(f"no blob {digest} for this ticket; ask the control plane for peers")
    path = rt.cache.path(digest)
    if digest not in rt.cache.present() or not path.is_file():
        raise NotHere(f"no blob {digest} here")
    size = path.stat().st_size
    offset = 0
    spec = request.headers.get("range", "")
    if spec.startswith("bytes=") and spec.endswith("-"):
        try:
            offset = min(int(spec[6:-1]), size)
        except ValueError:
            offset = 0
    headers = {"Content-Length": str(size - offset), "ETag": f'"{digest}"'}
    if offset:
        headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
    return Stream(
        _chunks(path, offset),
        status_code=206 if offset else 200,
        headers=headers,
        media_type="application/octet-stream",
    )
