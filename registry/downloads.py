"""Blob downloads with ``Range`` support; the bytes actually sent are metered.

Transactions: downloads own theirs, unlike request and job services (see
``core.db``). The bytes sent are known only once the response has ended, after
the request's session is gone, so egress is recorded in a transaction of its
own, retried until it lands; looking the blob up reads in a short session that
is closed before the first byte is streamed."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import transaction, utcnow
from core.errors import RangeNotSatisfiable
from core.objectstore import ObjectStore
from core.settings import RegistrySettings
from metering.service import record_event
from registry import service
from registry.quota import NoQuota, Quota

log = logging.getLogger("hangar.registry")
# ~2 minutes of retries with backoff before an egress write is given up (and logged).
RECORD_ATTEMPTS = 8
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")  # 19 digits: any int64 offset


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive
    partial: bool

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange:
    """One ``bytes=`` range (RFC 9110). Anything we do not serve as a range — a
    multi-range, another unit — gets the whole file, which the RFC allows."""
    full = ByteRange(0, size - 1, partial=False)
    match = _RANGE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return full
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside this {size}-byte file",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return ByteRange(start, end, partial=True)


@dataclass
class Download:
    digest: str
    size: int
    range: ByteRange
    body: AsyncIterator[bytes]

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


class Downloads:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        settings: RegistrySettings,
        quota: Quota | None = None,
    ):
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.quota = quota or NoQuota()
        self._recording: set[asyncio.Task] = set()

    async def open(
        self,
        *,
        tenant_id: uuid.UUID,
        name: str,
        ref: str,
        range_header: str | None = None,
        if_range: str | None = None,
        node_id: uuid.UUID | None = None,
        send_body: bool = True,
    ) -> Download:
        async with self.sessions() as session:
            _, version = await service.resolve(session, tenant_id=tenant_id, name=name, ref=ref)
            blob = await service.get_blob(session, blob_id=version.blob_id)
        etag = f'"{version.digest}"'
        # If-Range: resume only if the file is the one the client started with.
        if if_range is not None and if_range.strip() != etag:
            range_header = None
        byte_range = parse_range(range_header, blob.size)
        if not send_body:
            return Download(version.digest, blob.size, byte_range, _empty())
        # billing: refuse a download past the plan's egress limit before sending a byte.
        await self.quota.check_download(tenant_id=tenant_id, nbytes=byte_range.length)
        chunks = await self.store.open_range(
            blob.s3_key, byte_range.start, byte_range.end, self.settings.download_chunk_size
        )
        body = self._metered(
            chunks,
            tenant_id=tenant_id,
            node_id=node_id,
            version_id=version.id,
            digest=version.digest,
        )
        return Download(version.digest, blob.size, byte_range, body)

    async def _metered(
        self,
        chunks: AsyncIterator[bytes],
        *,
        tenant_id: uuid.UUID,
        node_id: uuid.UUID | None,
        version_id: uuid.UUID,
        digest: str,
    ) -> AsyncIterator[bytes]:
        """Count what the client was actually sent. A resumed download is a new
        response that sends only the missing range, so nothing is counted twice."""
        sent = 0
        try:
            async for chunk in chunks:
                yield chunk
                sent += len(chunk)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            if sent:
                # Own task: a cancelled response must not cancel the metering write.
                task = asyncio.create_task(
                    self._record(tenant_id, node_id, version_id, digest, sent)
                )
                self._recording.add(task)
                task.add_done_callback(self._recording.discard)

    async def _record(
        self,
        tenant_id: uuid.UUID,
        node_id: uuid.UUID | None,
        version_id: uuid.UUID,
        digest: str,
        sent: int,
    ) -> None:
        """Egress is money: retry a failed write (one event id, so a retry after a
        lost commit reply is not counted twice) and shout if it still fails."""
        event_id, occurred_at = f"egress:{uuid.uuid4()}", utcnow()
        for attempt in range(RECORD_ATTEMPTS):
            try:
                async with transaction(self.sessions) as session:
                    await record_event(
                        session,
                        tenant_id=tenant_id,
                        event_id=event_id,
                        meter="egress",
                        quantity=sent,
                        occurred_at=occurred_at,
                        node_id=node_id,
                        model_version_id=version_id,
                        attrs={"digest": digest},
                    )
                return
            except Exception:
                if attempt == RECORD_ATTEMPTS - 1:
                    log.exception(
                        "LOST EGRESS: %s bytes of %s for tenant %s (event %s) could not be recorded",
                        sent,
                        digest,
                        tenant_id,
                        event_id,
                    )
                    return
                await asyncio.sleep(min(2**attempt, 30))

    async def drain(self) -> None:
        """Wait for metering writes still in flight (at shutdown, and in tests)."""
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""
