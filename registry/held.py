"""Blobs a tenant already holds, looked up by digest, so a client can skip sending
bytes the registry has: ``hangar push`` asks first and, when the answer is yes,
publishes the new version from the stored blob without uploading anything."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from registry import service, signing
from registry.events import ModelChanged
from registry.models import Blob, ModelVersion
from registry.schemas import HeldBlob, PushResult
from wire.refs import check_digest, check_name
from wire.signing import Signature


async def _held(
    session: AsyncSession, *, tenant_id: uuid.UUID, digest: str
) -> tuple[Blob, ModelVersion]:
    check_digest(digest)
    # A version carries the GGUF facts a new version needs; a blob no version uses
    # is on its way out (gc) and counts as not held.
    found = (
        await session.execute(
            select(Blob, ModelVersion)
            .join(ModelVersion, ModelVersion.blob_id == Blob.id)
            .where(Blob.tenant_id == tenant_id, Blob.digest == digest)
            .order_by(ModelVersion.created_at)
            .limit(1)
        )
    ).first()
    if found is None:
        raise NotFound(
            f"this tenant holds no blob {digest}; upload it (`hangar push FILE NAME:TAG`)"
        )
    return found[0], found[1]


async def get_held(session: AsyncSession, *, tenant_id: uuid.UUID, digest: str) -> HeldBlob:
    blob, _ = await _held(session, tenant_id=tenant_id, digest=digest)
    return HeldBlob(digest=blob.digest, size=blob.size)


async def publish_held(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    digest: str,
    name: str,
    tag: str,
    on_change: ModelChanged,
    signature: Signature | None = None,
) -> PushResult:
    """A version of ``name`` (tagged ``tag``) pointing at a blob the tenant holds,
    under the same signing rules as an upload."""
    check_name(name)
    check_name(tag, what="tag")
    blob, source = await _held(session, tenant_id=tenant_id, digest=digest)
    await signing.check_upload_start(
        session, tenant_id=tenant_id, digest=blob.digest, signature=signature
    )
    version = await service.add_version(
        session,
        tenant_id=tenant_id,
        name=name,
        tag=tag,
        blob=blob,
        gguf=source.gguf,
        on_change=on_change,
    )
    if signature is not None:
        await signing.attach(session, version=version, signature=signature)
    model = await service.get_model(session, tenant_id=tenant_id, name=name)
    tags = [t.name for t in model.tags if t.version_id == version.id]
    return PushResult(
        model=name, tag=tag, version=service.version_out(version, tags), deduplicated=True
    )
