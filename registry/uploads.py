"""Streaming, resumable uploads into content-addressed blobs.

An upload session is an S3 multipart upload plus a row that records the parts
committed so far. Bytes are hashed and the GGUF header is parsed as the parts
are committed, so nothing ever holds more than one part in memory and a dropped
connection loses at most the part in flight: the client asks for ``committed``
and sends the rest. The running SHA-256 lives in this process; if it is gone
(a restart, another replica) the digest is computed by reading the object back.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from minio.error import S3Error
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import transaction, utcnow
from core.errors import BadRequest, Conflict, NotFound
from core.objectstore import ObjectStore
from core.settings import RegistrySettings
from registry import service
from registry.events import ModelChanged, nobody_listens
from registry.gguf import GGUFInfo, InvalidGGUF, parse_header
from registry.models import Blob, UploadSession
from registry.quota import NoQuota, Quota
from registry.schemas import PushResult
from wire.refs import check_digest, check_name

S3_MIN_PART = 5 * 1024 * 1024


@dataclass
class _Progress:
    """What this process knows beyond the row: the running hash and header prefix."""

    committed: int
    hasher: Any = field(default_factory=hashlib.sha256)
    header: bytearray | None = field(default_factory=bytearray)


class Uploads:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        settings: RegistrySettings,
        quota: Quota | None = None,
        on_change: ModelChanged = nobody_listens,
    ):
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.quota = quota or NoQuota()
        self.on_change = on_change
        self._progress: dict[uuid.UUID, _Progress] = {}
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, upload_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def start(
        self,
        *,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
    ) -> UploadSession:
        check_name(model)
        check_name(tag, what="tag")
        if digest is not None:
            check_digest(digest)
        # billing: refuse an upload past the plan's storage limit before any bytes move.
        await self.quota.check_upload_start(tenant_id=tenant_id, size=size)
        upload_id = uuid.uuid4()
        key = f"tenants/{tenant_id}/blobs/{upload_id}"
        s3_upload_id = await self.store.create_multipart(key)
        try:
            upload = await self._insert_session(
                upload_id, tenant_id, model, tag, size, digest, key, s3_upload_id
            )
        except BaseException:
            await self.store.abort_multipart(
                key, s3_upload_id
            )  # nothing may outlive a failed start
            raise
        self._progress[upload_id] = _Progress(committed=0)
        return upload

    async def _insert_session(
        self,
        upload_id: uuid.UUID,
        tenant_id: uuid.UUID,
        model: str,
        tag: str,
        size: int | None,
        digest: str | None,
        key: str,
        s3_upload_id: str,
    ) -> UploadSession:
        async with transaction(self.sessions) as session:
            upload = UploadSession(
                id=upload_id,
                tenant_id=tenant_id,
                model_name=model,
                tag=tag,
                declared_size=size,
                declared_digest=digest,
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

    async def append(
        self,
        *,
        tenant_id: uuid.UUID,
        upload_id: uuid.UUID,
        offset: int,
        body: AsyncIterator[bytes],
        final: bool = False,
    ) -> UploadSession:
        """Write ``body`` at ``offset``. Whole parts are committed as they fill; a
        short tail is committed only when it ends the file (``final`` or the
        declared size), otherwise the client re-sends it with the next request."""
        async with self._lock(upload_id):
            upload = await self.get(tenant_id=tenant_id, upload_id=upload_id)
            if offset != upload.committed:
                raise Conflict(
                    f"this upload has {upload.committed} bytes committed; send the rest from offset {upload.committed}",
                    detail={"committed": upload.committed},
                )
            progress = self._progress.get(upload.id)
            if progress is None or progress.committed != upload.committed:
                # Hash and header are only known from the start of the file.
                fresh = upload.committed == 0
                progress = _Progress(
                    committed=upload.committed,
                    hasher=hashlib.sha256() if fresh else None,
                    header=bytearray() if fresh and upload.gguf is None else None,
                )
                self._progress[upload.id] = progress
            size, part_size = upload.declared_size, self.settings.part_size
            buf = bytearray()
            pending: asyncio.Task | None = None
            magic_checked = offset > 0
            try:
                async for chunk in body:
                    buf += chunk
                    if size is not None and upload.committed + len(buf) > size:
                        raise BadRequest(
                            f"more bytes were sent than the {size} declared for this upload"
                        )
                    if not magic_checked and len(buf) >= 4:  # refuse a non-GGUF file at once
                        await self._check_magic(upload, bytes(buf[:4]))
                        magic_checked = True
                    while len(buf) >= part_size:
                        with memoryview(buf) as view:  # one copy, not two
                            part = bytes(view[:part_size])
                        del buf[:part_size]
                        if pending:
                            await pending
                        pending = asyncio.create_task(self._commit_part(upload, progress, part))
                if pending:
                    await pending
                    pending = None
                ends_file = final or (size is not None and upload.committed + len(buf) == size)
                if not magic_checked and buf:
                    await self._check_magic(upload, bytes(buf))
                if buf and (ends_file or len(buf) >= S3_MIN_PART):
                    await self._commit_part(upload, progress, bytes(buf))
            finally:
                # A part already on its way is whole: let it land so the client can resume after it.
                if pending:
                    await asyncio.wait([pending])
                    if not pending.cancelled():
                        pending.exception()  # already handled or superseded by the error in flight
            return upload

    async def _check_magic(self, upload: UploadSession, head: bytes) -> None:
        try:
            parse_header(head)
        except InvalidGGUF as exc:
            await self._discard(upload)
            raise BadRequest(str(exc)) from exc

    async def _commit_part(self, upload: UploadSession, progress: _Progress, data: bytes) -> None:
        """Upload one part and record it. The running hash and header buffer change
        only once the part is committed: a failure half way (S3, the database) leaves
        them exactly as the committed bytes, so a resume from ``committed`` is exact."""
        number = len(upload.parts) + 1
        hasher = progress.hasher.copy() if progress.hasher is not None else None
        jobs = [self.store.upload_part(upload.s3_key, upload.s3_upload_id, number, data)]
        if hasher is not None:
            jobs.append(asyncio.to_thread(hasher.update, data))
        etag, *_ = await asyncio.gather(*jobs)
        gguf, header = upload.gguf, progress.header
        if header is not None:
            header = header + data
            info = await self._parse(upload, header, at_end=False)
            if info is not None:
                gguf, header = _info_dict(info), None
        parts = [*upload.parts, {"n": number, "etag": etag, "size": len(data)}]
        async with transaction(self.sessions) as session:
            result = await session.execute(
                update(UploadSession)
                .where(UploadSession.id == upload.id, UploadSession.committed == upload.committed)
                .values(
                    committed=upload.committed + len(data),
                    parts=parts,
                    gguf=gguf,
                    updated_at=utcnow(),
                )
            )
            if result.rowcount != 1:
                raise Conflict(
                    "another client is writing to this upload; let it finish or cancel it"
                )
        upload.committed += len(data)
        upload.parts, upload.gguf = parts, gguf
        progress.committed, progress.hasher, progress.header = upload.committed, hasher, header

    async def _parse(
        self, upload: UploadSession, prefix: bytes | bytearray, *, at_end: bool
    ) -> GGUFInfo | None:
        try:
            info = await asyncio.to_thread(parse_header, prefix)
        except InvalidGGUF as exc:
            await self._discard(upload)
            raise BadRequest(str(exc)) from exc
        if info is None and (at_end or len(prefix) >= self.settings.max_header_bytes):
            await self._discard(upload)
            raise BadRequest(
                "truncated or oversized GGUF header: the metadata and tensor index did not end "
                f"within {min(len(prefix), self.settings.max_header_bytes)} bytes; is the file complete?"
            )
        return info

    async def complete(
        self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID, digest: str | None
    ) -> PushResult:
        async with self._lock(upload_id):
            upload = await self.get(tenant_id=tenant_id, upload_id=upload_id)
            size = upload.committed
            if upload.declared_size is not None and size != upload.declared_size:
                raise BadRequest(
                    f"upload incomplete: {size} of {upload.declared_size} bytes received; "
                    f"send the rest from offset {size}, then complete",
                    detail={"committed": size},
                )
            if size == 0:
                raise BadRequest("empty upload: no bytes were sent")
            expected = self._expected_digest(upload, digest)
            progress = self._progress.get(upload.id)
            actual = None
            if progress and progress.hasher is not None and progress.committed == size:
                actual = "sha256:" + progress.hasher.hexdigest()
                await self._check_digest(upload, expected, actual, completed=False)
            # billing: checked again with the real size; a refusal keeps the session, so
            # the client can free space and complete it then.
            await self.quota.check_upload_complete(
                tenant_id=tenant_id, digest=actual or expected, size=size
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
                await self._check_digest(upload, expected, actual, completed=True)
            gguf = upload.gguf
            if gguf is None:
                head = await self._read_prefix(
                    upload.s3_key, min(size, self.settings.max_header_bytes)
                )
                info = await self._parse(upload, head, at_end=True)
                gguf = _info_dict(info)
            info = GGUFInfo(**gguf)
            result = await self._publish(upload, actual, size, info.as_dict(size))
            self._progress.pop(upload.id, None)
            return result

    def _expected_digest(self, upload: UploadSession, digest: str | None) -> str | None:
        if digest is not None:
            check_digest(digest)
            if upload.declared_digest and digest != upload.declared_digest:
                raise BadRequest(
                    f"digest {digest} differs from the {upload.declared_digest} declared at start"
                )
        return digest or upload.declared_digest

    async def _check_digest(
        self, upload: UploadSession, expected: str | None, actual: str, *, completed: bool
    ) -> None:
        if expected is None or expected == actual:
            return
        await self._discard(upload)
        raise BadRequest(
            f"digest mismatch: the bytes received hash to {actual} but {expected} was declared; "
            "nothing was kept. Check the file and push again.",
            detail={"expected": expected, "actual": actual},
        )

    async def _publish(
        self, upload: UploadSession, digest: str, size: int, gguf: dict[str, Any]
    ) -> PushResult:
        async with transaction(self.sessions) as session:
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
            blob = await self._blob_for(session, upload, digest, size)
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
            model = await service.get_model(
                session, tenant_id=upload.tenant_id, name=upload.model_name
            )
            tags = [t.name for t in model.tags if t.version_id == version.id]
            out = PushResult(
                model=upload.model_name,
                tag=upload.tag,
                version=service.version_out(version, tags),
                deduplicated=deduplicated,
            )
        if deduplicated:  # these bytes were already stored: keep one copy
            await self.store.delete(upload.s3_key)
        return out

    async def _blob_for(
        self, session: AsyncSession, upload: UploadSession, digest: str, size: int
    ) -> Blob:
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

    async def cancel(self, *, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        async with self._lock(upload_id):
            await self._discard(await self.get(tenant_id=tenant_id, upload_id=upload_id))

    async def _discard(self, upload: UploadSession) -> None:
        """Forget an upload and everything it wrote."""
        if upload.s3_upload_id:
            await self.store.abort_multipart(upload.s3_key, upload.s3_upload_id)
        else:
            await self.store.delete(upload.s3_key)
        async with transaction(self.sessions) as session:
            await session.execute(delete(UploadSession).where(UploadSession.id == upload.id))
        self._progress.pop(upload.id, None)

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
            async with self._lock(upload.id):
                try:
                    current = await self.get(tenant_id=tenant_id, upload_id=upload.id)
                except NotFound:
                    pass
                else:
                    await self._discard(current)
            raise


def _info_dict(info: GGUFInfo | None) -> dict[str, Any]:
    assert info is not None
    return asdict(info)
