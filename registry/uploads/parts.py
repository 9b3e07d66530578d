"""Streaming a request body into S3 parts, hashing and reading the GGUF header as
each part is committed, so nothing holds more than one part in memory and a
dropped connection loses at most the part in flight.

Each part commits its own transaction once S3 has it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from sqlalchemy import update

from core.db import transaction, utcnow
from core.errors import BadRequest, Conflict
from core.objectstore import ObjectStore
from core.settings import RegistrySettings
from registry.models import UploadSession
from registry.uploads.header import HeaderCheck, info_dict
from registry.uploads.sessions import Progress, UploadSessions

S3_MIN_PART = 5 * 1024 * 1024


class PartWriter:
    def __init__(
        self, *, upload_sessions: UploadSessions, store: ObjectStore, settings: RegistrySettings
    ):
        self.upload_sessions = upload_sessions
        self.store = store
        self.settings = settings
        self.header = HeaderCheck(
            upload_sessions=upload_sessions, max_header_bytes=settings.max_header_bytes
        )

    def _progress(self, upload: UploadSession) -> Progress:
        progress = self.upload_sessions.progress.get(upload.id)
        if progress is None or progress.committed != upload.committed:
            # Hash and header are only known from the start of the file.
            fresh = upload.committed == 0
            progress = Progress(
                committed=upload.committed,
                hasher=hashlib.sha256() if fresh else None,
                header=bytearray() if fresh and upload.gguf is None else None,
            )
            self.upload_sessions.progress[upload.id] = progress
        return progress

    async def append(
        self,
        upload: UploadSession,
        *,
        offset: int,
        body: AsyncIterator[bytes],
        final: bool,
    ) -> UploadSession:
        """Write ``body`` at ``offset`` (the caller holds the upload's lock). Whole
        parts are committed as they fill; a short tail is committed only when it
        ends the file (``final`` or the declared size), otherwise the client
        re-sends it with the next request."""
        if offset != upload.committed:
            raise Conflict(
                f"this upload has {upload.committed} bytes committed; send the rest from offset {upload.committed}",
                detail={"committed": upload.committed},
            )
        progress = self._progress(upload)
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
                    await self.header.check_magic(upload, bytes(buf[:4]))
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
                await self.header.check_magic(upload, bytes(buf))
            if buf and (ends_file or len(buf) >= S3_MIN_PART):
                await self._commit_part(upload, progress, bytes(buf))
        finally:
            # A part already on its way is whole: let it land so the client can resume after it.
            if pending:
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()  # already handled or superseded by the error in flight
        return upload

    async def _commit_part(self, upload: UploadSession, progress: Progress, data: bytes) -> None:
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
            info = await self.header.parse(upload, header, at_end=False)
            if info is not None:
                gguf, header = info_dict(info), None
        parts = [*upload.parts, {"n": number, "etag": etag, "size": len(data)}]
        async with transaction(self.upload_sessions.sessions) as session:
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
