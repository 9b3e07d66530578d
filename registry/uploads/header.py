"""The GGUF header of an upload, read while its bytes arrive: a file that cannot
be GGUF is refused, and everything it wrote discarded, as soon as that is known."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from core.errors import BadRequest
from registry.gguf import GGUFInfo, InvalidGGUF, parse_header
from registry.models import UploadSession
from registry.uploads.sessions import UploadSessions


class HeaderCheck:
    def __init__(self, *, upload_sessions: UploadSessions, max_header_bytes: int):
        self.upload_sessions = upload_sessions
        self.max_header_bytes = max_header_bytes

    async def check_magic(self, upload: UploadSession, head: bytes) -> None:
        try:
            parse_header(head)
        except InvalidGGUF as exc:
            await self.upload_sessions.discard(upload)
            raise BadRequest(str(exc)) from exc

    async def parse(
        self, upload: UploadSession, prefix: bytes | bytearray, *, at_end: bool
    ) -> GGUFInfo | None:
        """The header in ``prefix``, or ``None`` while more bytes may complete it."""
        try:
            info = await asyncio.to_thread(parse_header, prefix)
        except InvalidGGUF as exc:
            await self.upload_sessions.discard(upload)
            raise BadRequest(str(exc)) from exc
        if info is None and (at_end or len(prefix) >= self.max_header_bytes):
            await self.upload_sessions.discard(upload)
            raise BadRequest(
                "truncated or oversized GGUF header: the metadata and tensor index did not end "
                f"within {min(len(prefix), self.max_header_bytes)} bytes; is the file complete?"
            )
        return info


def info_dict(info: GGUFInfo | None) -> dict[str, Any]:
    assert info is not None
    return asdict(info)
