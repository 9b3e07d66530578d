"""The S3 object store: MinIO in production, SeaweedFS embedded.

The minio SDK is synchronous, so calls run in worker threads; downloads stream
through httpx on a presigned URL so a slow client never pins a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import InvalidResponseError, S3Error, ServerError

from core.errors import StorageInconsistent, Unavailable
from core.settings import S3Settings

T = TypeVar("T")
log = logging.getLogger("hangar.s3")

# S3 error codes that mean "the store is unwell", not "your request is wrong".
_S3_UNAVAILABLE = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}
# ...and those that mean Hangar's S3 settings are wrong: an operator must act.
_S3_MISCONFIGURED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"}


def _s3_code(body: str) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", body)
    return match.group(1) if match else "unknown"


class ObjectStore:
    def __init__(self, settings: S3Settings):
        self.bucket = settings.bucket
        # Short connect and idle timeouts and no retries: when S3 is down or hung we
        # answer 503 fast. The read timeout bounds silence between bytes, not a transfer.
        connect, idle = settings.connect_timeout_seconds, settings.timeout_seconds
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect, read=idle),
            retries=urllib3.Retry(total=0),
            maxsize=16,
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,  # set, so presigning never asks the server
            http_client=http,
        )
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(idle, connect=connect))

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except S3Error as exc:
            if exc.code in _S3_UNAVAILABLE:
                raise Unavailable(
                    f"object storage (S3) is failing ({exc.code}); retry shortly"
                ) from exc
            raise
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable("object storage (S3) is unreachable; retry shortly") from exc

    async def ensure_bucket(self) -> None:
        if not await self._call(self.client.bucket_exists, self.bucket):
            await self._call(self.client.make_bucket, self.bucket)

    async def ping(self) -> None:
        await self._call(self.client.bucket_exists, self.bucket)

    # Multipart uploads: the SDK keeps these calls private because its own
    # put_object drives them, but resumable sessions need them one by one.
    async def create_multipart(self, key: str) -> str:
        return await self._call(self.client._create_multipart_upload, self.bucket, key, {})

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """PUT one part on a presigned URL. Presigned requests carry UNSIGNED-PAYLOAD,
        so the bytes are not hashed a second time just to sign them (the SDK's own
        call would, over plain HTTP), and the transfer is async, not a thread."""
        url = await self._call(
            self.client.get_presigned_url,
            "PUT",
            self.bucket,
            key,
            timedelta(hours=1),
            None,
            None,
            None,
            {"partNumber": str(number), "uploadId": upload_id},
        )
        try:
            response = await self.http.put(url, content=data)
        except httpx.TransportError as exc:
            raise Unavailable("object storage (S3) is unreachable; retry shortly") from exc
        if response.status_code != 200:
            code = _s3_code(response.text)
            if response.status_code >= 500 or code in _S3_UNAVAILABLE:
                raise Unavailable(f"object storage (S3) is failing ({code}); retry shortly")
            if code in _S3_MISCONFIGURED:
                log.error("S3 refused Hangar (%s): check HANGAR_S3_* settings", code)
                raise Unavailable(
                    f"object storage refused this server ({code}); the operator must check its S3 settings"
                )
            raise RuntimeError(f"S3 refused part {number} of {key}: {response.status_code} {code}")
        return response.headers["etag"].strip('"')

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        await self._call(
            self.client._complete_multipart_upload,
            self.bucket,
            key,
            upload_id,
            [Part(number, etag) for number, etag in parts],
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call(self.client._abort_multipart_upload, self.bucket, key, upload_id)
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    async def list_multipart(self, prefix: str) -> list[tuple[str, str, datetime | None]]:
        """(key, upload id, started) of unfinished multipart uploads under ``prefix``;
        at most 1000 a call (the SDK's paging marker is broken), the next GC run goes on."""
        result = await self._call(
            lambda: self.client._list_multipart_uploads(
                self.bucket, prefix=prefix, max_uploads=1000
            )
        )
        return [(u.object_name, u.upload_id, u.initiated_time) for u in result.uploads]

    async def delete(self, key: str) -> None:
        await self._call(self.client.remove_object, self.bucket, key)

    async def exists(self, key: str) -> bool:
        try:
            await self._call(self.client.stat_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    async def list_objects(self, prefix: str) -> list[tuple[str, datetime]]:
        """(key, last modified) of every object under ``prefix``."""

        def collect() -> list[tuple[str, datetime]]:
            objs = self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [(o.object_name, o.last_modified) for o in objs]

        return await self._call(collect)

    async def open_range(
        self, key: str, start: int, end: int, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Open a byte range [start, end] before the response starts, so a dead S3
        becomes a 503 instead of a truncated body; then yield its chunks."""
        url = await self._call(
            self.client.get_presigned_url, "GET", self.bucket, key, timedelta(hours=1)
        )
        request = self.http.build_request("GET", url, headers={"Range": f"bytes={start}-{end}"})
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Unavailable("object storage (S3) is unreachable; retry shortly") from exc
        if response.status_code not in (200, 206):
            await response.aclose()
            if response.status_code == 404:
                # The database says the blob exists; S3 lost it. Not the client's fault, not transient.
                log.error("blob object %s is missing from S3", key)
                raise StorageInconsistent(
                    "this model's file is missing from object storage; the operator has been alerted "
                    "(the server log names the object)"
                )
            raise Unavailable(f"object storage answered {response.status_code} for a blob read")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw(chunk_size):
                    yield chunk
            finally:
                await response.aclose()

        return chunks()
