"""Garbage collection: abandoned upload sessions, blobs no version uses, and
objects nothing points at. Idempotent: a second run finds nothing to do.

A job that commits item by item (see ``core.db``): each upload or blob is removed
in its own transaction, so one that a push reuses meanwhile fails alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import transaction, utcnow
from core.objectstore import ObjectStore
from registry.models import Blob, ModelVersion, UploadSession

# An object younger than this may belong to an upload completing right now.
ORPHAN_GRACE = timedelta(hours=1)


@dataclass
class GCReport:
    stale_uploads: int = 0
    blobs: int = 0
    bytes_freed: int = 0
    orphans: int = 0
    orphan_multiparts: int = 0


async def collect_garbage(
    sessions: async_sessionmaker[AsyncSession], store: ObjectStore, *, stale_after: timedelta
) -> GCReport:
    report = GCReport()
    async with sessions() as session:
        stale = list(
            await session.scalars(
                select(UploadSession).where(UploadSession.updated_at < utcnow() - stale_after)
            )
        )
        unused = list(
            await session.scalars(
                select(Blob).where(
                    ~select(ModelVersion.id).where(ModelVersion.blob_id == Blob.id).exists()
                )
            )
        )
    for upload in stale:
        await store.abort_multipart(upload.s3_key, upload.s3_upload_id)
        async with transaction(sessions) as session:
            await session.execute(delete(UploadSession).where(UploadSession.id == upload.id))
        report.stale_uploads += 1
    for blob in unused:
        try:
            async with transaction(sessions) as session:
                # Re-checked in the delete: a push may have reused the blob meanwhile,
                # and the foreign key refuses the delete if a new version points at it.
                gone = await session.scalar(
                    delete(Blob)
                    .where(
                        Blob.id == blob.id,
                        ~select(ModelVersion.id).where(ModelVersion.blob_id == Blob.id).exists(),
                    )
                    .returning(Blob.s3_key)
                )
        except IntegrityError:
            continue
        if gone:
            await store.delete(gone)
            report.blobs += 1
            report.bytes_freed += blob.size
    report.orphans = await _sweep_orphans(sessions, store)
    report.orphan_multiparts = await _abort_orphan_multiparts(sessions, store)
    return report


async def _sweep_orphans(sessions: async_sessionmaker[AsyncSession], store: ObjectStore) -> int:
    """Objects left by a crash between S3 and the database commit."""
    objects = await store.list_objects("tenants/")
    async with sessions() as session:
        known = set(await session.scalars(select(Blob.s3_key)))
        known |= set(await session.scalars(select(UploadSession.s3_key)))
    cutoff = utcnow() - ORPHAN_GRACE
    removed = 0
    for key, modified in objects:
        if key not in known and modified < cutoff:
            await store.delete(key)
            removed += 1
    return removed


async def _abort_orphan_multiparts(
    sessions: async_sessionmaker[AsyncSession], store: ObjectStore
) -> int:
    """Multipart uploads no session knows (a start that failed after S3 said yes):
    their parts take space but no listing shows them."""
    uploads = await store.list_multipart("tenants/")
    async with sessions() as session:
        known = set(await session.scalars(select(UploadSession.s3_upload_id)))
    cutoff = utcnow() - ORPHAN_GRACE
    aborted = 0
    for key, upload_id, started in uploads:
        if upload_id not in known and (started is None or started < cutoff):
            await store.abort_multipart(key, upload_id)
            aborted += 1
    return aborted
