"""Upload sessions: the row, the S3 multipart upload behind it, and what this
process knows beyond the row (the running hash and header prefix).

Each method commits its own transaction: the row must match what S3 holds after
every step, whatever the next request does."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import transaction, utcnow
from core.errors import NotFound
from core.objectstore import ObjectStore
from registry.models import UploadSession
from wire.signing import Signature


@dataclass
class Progress:
    """The running hash and header prefix of the bytes committed so far. Lost with
    the process (a restart, another replica): then the digest is computed by reading
    the object back, and the header parsed from its first bytes."""

    committed: int
    hasher: Any = field(default_factory=hashlib.sha256)
    header: bytearray | None = field(default_factory=bytearray)


class UploadSessions:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], store: ObjectStore):
        self.sessions = sessions
        self.store = store
        self.progress: dict[uuid.UUID, Progress] = {}
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def lock(self, upload_id: uuid.UUID) -> asyncio.Lock:
        """One writer per upload in this process; other processes are kept out by
        the row itself (a part commits only on the ``committed`` it started from)."""
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def open(
        self,
        *,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
        signature: Signature | None = None,
    ) -> UploadSession:
        upload_id = uuid.uuid4()
        key = f"tenants/{tenant_id}/blobs/{upload_id}"
        s3_upload_id = await self.store.create_multipart(key)
        try:
            upload = await self._insert(
                upload_id, tenant_id, model, tag, size, digest, key, s3_upload_id, signature
            )
        except BaseException:
            await self.store.abort_multipart(
                key, s3_upload_id
            )  # nothing may outlive a failed start
            raise
        self.progress[upload_id] = Progress(committed=0)
        return upload

    async def _insert(
        self,
        upload_id: uuid.UUID,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
        key: str,
        s3_upload_id: str,
        signature: Signature | None,
    ) -> UploadSession:
        async with transaction(self.sessions) as session:
            upload = UploadSession(
                id=upload_id,
                tenant_id=tenant_id,
                model_name=model,
                tag=tag,
                declared_size=size,
                declared_digest=digest,
                signature=signature.model_dump() if signature else None,
                s3_key=key,
                s3_upload_id=s3_upload_id,
                committed=0,
                parts=[],
                updated_at=utcnow(),
            )
            session.add(upload)
        return upload

    async def get(self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> UploadSession:
        async with self.sessions() as session:
            upload = await session.scalar(
                select(UploadSession).where(
                    UploadSession.id == upload_id, UploadSession.tenant_id == tenant_id
                )
            )
        if upload is None:
            raise NotFound(
                f"no upload session {upload_id}: it finished, was cancelled or expired; start a new push"
            )
        return upload

    async def list(self, *, tenant_id: uuid.UUID) -> list[UploadSession]:
        async with self.sessions() as session:
            stmt = (
                select(UploadSession)
                .where(UploadSession.tenant_id == tenant_id)
                .order_by(UploadSession.created_at)
            )
            return list(await session.scalars(stmt))

    async def discard(self, upload: UploadSession) -> None:
        """Forget an upload and everything it wrote."""
        if upload.s3_upload_id:
            await self.store.abort_multipart(upload.s3_key, upload.s3_upload_id)
        else:
            await self.store.delete(upload.s3_key)
        async with transaction(self.sessions) as session:
            await session.execute(delete(UploadSession).where(UploadSession.id == upload.id))
        self.progress.pop(upload.id, None)
