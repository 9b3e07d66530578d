"""Streaming, resumable uploads into content-addressed blobs.

An upload session is an S3 multipart upload plus a row that records the parts
committed so far. Bytes are hashed and the GGUF header is parsed as the parts
are committed, so nothing ever holds more than one part in memory and a dropped
connection loses at most the part in flight: the client asks for ``committed``
and sends the rest. The running SHA-256 lives in this process; if it is gone
(a restart, another replica) the digest is computed by reading the object back.

Transactions: uploads own theirs, unlike request and job services (see
``core.db``). They are given a sessionmaker, not the request's session, and
commit each step as it happens — the session row at start, each part once S3
has it, blob and version together at completion — because the row must match
what S3 holds even when the client never sends the next request.

- ``sessions``: the row, the multipart upload behind it, the per-upload lock;
- ``parts``: a request body streamed into parts, hashed as they are committed;
- ``header``: the GGUF header read as the bytes arrive;
- ``publish``: completion — digest, quota, blob and version.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import Conflict, NotFound
from core.objectstore import ObjectStore
from core.settings import RegistrySettings
from registry import signing
from registry.events import ModelChanged, nobody_listens
from registry.models import UploadSession
from registry.quota import NoQuota, Quota
from registry.schemas import PushResult
from registry.uploads.parts import PartWriter
from registry.uploads.publish import Publisher
from registry.uploads.sessions import UploadSessions
from wire.refs import check_digest, check_name, check_tag
from wire.signing import Signature

__all__ = ["Uploads"]


class Uploads:
    """What the API calls: one method per step of a push, each under the upload's lock."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        settings: RegistrySettings,
        quota: Quota | None = None,
        on_change: ModelChanged = nobody_listens,
    ):
        self.quota = quota or NoQuota()
        self.upload_sessions = UploadSessions(sessions=sessions, store=store)
        self.parts = PartWriter(
            upload_sessions=self.upload_sessions, store=store, settings=settings
        )
        self.publisher = Publisher(
            upload_sessions=self.upload_sessions,
            store=store,
            settings=settings,
            quota=self.quota,
            on_change=on_change,
        )

    async def start(
        self,
        *,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
        signature: Signature | None = None,
    ) -> UploadSession:
        check_name(model)
        check_tag(tag)  # refused before the first byte, not after the whole file
        if digest is not None:
            check_digest(digest)
        # provenance: a required or invalid signature is refused before any bytes move.
        async with self.upload_sessions.sessions() as session:
            await signing.check_upload_start(
                session, tenant_id=tenant_id, digest=digest, signature=signature
            )
        # billing: refuse an upload past the plan's storage limit before any bytes move.
        await self.quota.check_upload_start(tenant_id=tenant_id, size=size)
        return await self.upload_sessions.open(
            tenant_id=tenant_id,
            model=model,
            tag=tag,
            size=size,
            digest=digest,
            signature=signature,
        )

    async def get(self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> UploadSession:
        return await self.upload_sessions.get(tenant_id=tenant_id, upload_id=upload_id)

    async def list(self, *, tenant_id: uuid.UUID) -> list[UploadSession]:
        return await self.upload_sessions.list(tenant_id=tenant_id)

    async def append(
        self,
        *,
        tenant_id: uuid.UUID,
        upload_id: uuid.UUID,
        offset: int,
        body: AsyncIterator[bytes],
        final: bool = False,
    ) -> UploadSession:
        lock = self.upload_sessions.lock(upload_id)
        if lock.locked() and not final:
            # Say so at once rather than queue behind it: the writer may be a stalled
            # connection (dropped after body_idle_seconds) or the client's own earlier try.
            raise Conflict(
                "another request is still writing to this upload; retry shortly, then send "
                "from the offset GET /v1/uploads/{id} reports"
            )
        async with lock:
            upload = await self.get(tenant_id=tenant_id, upload_id=upload_id)
            return await self.parts.append(upload, offset=offset, body=body, final=final)

    async def complete(
        self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID, digest: str | None
    ) -> PushResult:
        async with self.upload_sessions.lock(upload_id):
            upload = await self.get(tenant_id=tenant_id, upload_id=upload_id)
            return await self.publisher.complete(upload, digest=digest)

    async def cancel(self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        async with self.upload_sessions.lock(upload_id):
            await self.upload_sessions.discard(
                await self.get(tenant_id=tenant_id, upload_id=upload_id)
            )

    async def push(
        self,
        *,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
        body: AsyncIterator[bytes],
    ) -> PushResult:
        """One request, one file: the simple path for ``curl -T``."""
        upload = await self.start(
            tenant_id=tenant_id, model=model, tag=tag, size=size, digest=digest
        )
        try:
            await self.append(
                tenant_id=tenant_id, upload_id=upload.id, offset=0, body=body, final=True
            )
            return await self.complete(tenant_id=tenant_id, upload_id=upload.id, digest=None)
        except BaseException:
            # Nothing to resume without a session the client knows about.
            async with self.upload_sessions.lock(upload.id):
                try:
                    current = await self.get(tenant_id=tenant_id, upload_id=upload.id)
                except NotFound:
                    pass
                else:
                    await self.upload_sessions.discard(current)
            raise
