"""Completing an upload: check the digest and the quota, close the S3 multipart
upload, then publish blob and version in one transaction of its own, claimed so
that of two completes racing exactly one publishes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

from minio.error import S3Error
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import transaction, utcnow
from core.errors import BadRequest, Conflict
from core.objectstore import ObjectStore
from core.settings import RegistrySettings
from registry import service, signing
from registry.events import ModelChanged
from registry.gguf import GGUFInfo
from registry.models import Blob, UploadSession
from registry.quota import Quota
from registry.schemas import PushResult
from registry.uploads.header import HeaderCheck, info_dict
from registry.uploads.sessions import UploadSessions
from wire.refs import check_digest
from wire.signing import Signature


class Publisher:
    def __init__(
        self,
        *,
        upload_sessions: UploadSessions,
        store: ObjectStore,
        settings: RegistrySettings,
        quota: Quota,
        on_change: ModelChanged,
    ):
        self.upload_sessions = upload_sessions
        self.store = store
        self.settings = settings
        self.quota = quota
        self.on_change = on_change
        self.header = HeaderCheck(
            upload_sessions=upload_sessions, max_header_bytes=settings.max_header_bytes
        )

    async def complete(self, upload: UploadSession, *, digest: str | None) -> PushResult:
        """Publish ``upload`` (the caller holds its lock)."""
        size = upload.committed
        if upload.declared_size is not None and size != upload.declared_size:
            raise BadRequest(
                f"upload incomplete: {size} of {upload.declared_size} bytes received; "
                f"send the rest from offset {size}, then complete",
                detail={"committed": size},
            )
        if size == 0:
            raise BadRequest("empty upload: no bytes were sent")
        expected = _expected_digest(upload, digest)
        progress = self.upload_sessions.progress.get(upload.id)
        actual = None
        if progress and progress.hasher is not None and progress.committed == size:
            actual = "sha256:" + progress.hasher.hexdigest()
            await self._check_digest(upload, expected, actual)
        # billing: checked again with the real size; a refusal keeps the session, so
        # the client can free space and complete it then.
        await self.quota.check_upload_complete(
            tenant_id=upload.tenant_id, digest=actual or expected, size=size
        )
        try:
            await self.store.complete_multipart(
                upload.s3_key, upload.s3_upload_id, [(p["n"], p["etag"]) for p in upload.parts]
            )
        except S3Error as exc:
            # A retry after a completion whose database commit failed: the object is there.
            if exc.code != "NoSuchUpload" or not await self.store.exists(upload.s3_key):
                raise
        upload.s3_upload_id = ""  # completed: discarding now means deleting the object
        if actual is None:
            actual = await self._hash_object(upload.s3_key, size)
            await self._check_digest(upload, expected, actual)
        gguf = upload.gguf
        if gguf is None:
            head = await self._read_prefix(upload.s3_key, min(size, self.settings.max_header_bytes))
            info = await self.header.parse(upload, head, at_end=True)
            gguf = info_dict(info)
        info = GGUFInfo(**gguf)
        result = await self._publish(upload, actual, size, info.as_dict(size))
        self.upload_sessions.progress.pop(upload.id, None)
        return result

    async def _check_digest(self, upload: UploadSession, expected: str | None, actual: str) -> None:
        if expected is None or expected == actual:
            return
        await self.upload_sessions.discard(upload)
        raise BadRequest(
            f"digest mismatch: the bytes received hash to {actual} but {expected} was declared; "
            "nothing was kept. Check the file and push again.",
            detail={"expected": expected, "actual": actual},
        )

    async def _publish(
        self, upload: UploadSession, digest: str, size: int, gguf: dict[str, Any]
    ) -> PushResult:
        async with transaction(self.upload_sessions.sessions) as session:
            # Claim the session first: of two completes racing (replicas, a retry),
            # exactly one publishes; the other must not touch the object.
            claimed = await session.scalar(
                delete(UploadSession)
                .where(UploadSession.id == upload.id)
                .returning(UploadSession.id)
            )
            if claimed is None:
                raise Conflict(
                    "this upload was completed or cancelled by another request; "
                    f"`hangar models show {upload.model_name}` shows what was published"
                )
            blob = await _blob_for(session, upload, digest, size)
            deduplicated = blob.s3_key != upload.s3_key
            version = await service.add_version(
                session,
                tenant_id=upload.tenant_id,
                name=upload.model_name,
                tag=upload.tag,
                blob=blob,
                gguf=gguf,
                on_change=self.on_change,
            )
            if upload.signature is not None:
                # Checked again: the key may have been removed while the bytes moved.
                sig = Signature.model_validate(upload.signature)
                await signing.check(
                    session, tenant_id=upload.tenant_id, digest=digest, signature=sig
                )
                await signing.attach(session, version=version, signature=sig)
            model = await service.get_model(
                session, tenant_id=upload.tenant_id, name=upload.model_name
            )
            tags = [t.name for t in model.tags if t.version_id == version.id]
            shown = await signing.annotate(
                session,
                tenant_id=upload.tenant_id,
                versions={version.id: service.version_out(version, tags)},
            )
            out = PushResult(
                model=upload.model_name,
                tag=upload.tag,
                version=shown[version.id],
                deduplicated=deduplicated,
            )
        if deduplicated:  # these bytes were already stored: keep one copy
            await self.store.delete(upload.s3_key)
        return out

    async def _hash_object(self, key: str, size: int) -> str:
        hasher = hashlib.sha256()
        chunks = await self.store.open_range(key, 0, size - 1, 4 * 1024 * 1024)
        async for chunk in chunks:
            await asyncio.to_thread(hasher.update, chunk)
        return "sha256:" + hasher.hexdigest()

    async def _read_prefix(self, key: str, length: int) -> bytes:
        buf = bytearray()
        async for chunk in await self.store.open_range(key, 0, length - 1, 1024 * 1024):
            buf += chunk
        return bytes(buf)


def _expected_digest(upload: UploadSession, digest: str | None) -> str | None:
    if digest is not None:
        check_digest(digest)
        if upload.declared_digest and digest != upload.declared_digest:
            raise BadRequest(
                f"digest {digest} differs from the {upload.declared_digest} declared at start"
            )
    return digest or upload.declared_digest


async def _blob_for(session: AsyncSession, upload: UploadSession, digest: str, size: int) -> Blob:
    """The tenant's blob for ``digest``: this upload's object, or the one already
    stored. Locked, so the GC job cannot delete it before the version points at it."""
    for _ in range(2):  # a GC may delete the existing row between the two statements
        await session.execute(
            insert(Blob)
            .values(
                id=uuid.uuid4(),
                tenant_id=upload.tenant_id,
                digest=digest,
                size=size,
                s3_key=upload.s3_key,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "digest"])
        )
        blob = await session.scalar(
            select(Blob)
            .where(Blob.tenant_id == upload.tenant_id, Blob.digest == digest)
            .with_for_update()
        )
        if blob is not None:
            return blob
    raise Conflict("the blob changed while publishing; complete the upload again")
