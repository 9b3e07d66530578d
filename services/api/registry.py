"""Model registry routes: thin wrappers over ``registry`` services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, Response, delete, get, head, patch, post, put
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadRequest, RequestTimeout
from fleet import deployments as fleet_deployments
from fleet.revisions import model_changed
from registry import service, signing
from registry.downloads import Download
from registry.schemas import (
    ModelOut,
    ModelSummary,
    PushResult,
    TagMove,
    UploadComplete,
    UploadCreate,
    UploadOut,
    VersionOut,
)
from services.api.auth import Principal
from services.api.openapi import (
    BINARY,
    IDEMPOTENCY_KEY,
    IF_RANGE,
    RANGE,
    UPLOAD_OFFSET,
    blob_responses,
    doc,
)
from services.api.paging import After, Limit, paged
from services.components import Components
from tenants.schemas import Scope
from wire.refs import is_plain_number


def upload_out(upload) -> UploadOut:
    return UploadOut(
        id=upload.id,
        model=upload.model_name,
        tag=upload.tag,
        size=upload.declared_size,
        committed=upload.committed,
        created_at=upload.created_at,
    )


def _offset(request: Request) -> int:
    raw = request.headers.get("upload-offset", "")
    if not is_plain_number(raw, max_digits=19):
        raise BadRequest(
            "send the byte offset this body starts at in the 'Upload-Offset' header "
            "(GET /v1/uploads/{id} tells how many bytes are committed)"
        )
    return int(raw)


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length", "")
    return int(raw) if is_plain_number(raw, max_digits=19) else None


async def _body(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The request body; a client silent for ``idle_seconds`` mid-body is dropped, so
    the upload's lock is released and the parts it committed stay for a resume."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), idle_seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"no body bytes arrived for {idle_seconds:g}s; the connection was dropped. "
                "GET the upload for its committed bytes and send the rest from there"
            ) from None
        if chunk:
            yield chunk


async def _open_blob(
    request: Request,
    hangar: Components,
    principal: Principal,
    name: str,
    ref: str,
    *,
    send_body: bool,
) -> Download:
    principal.require(Scope.read, node=True)
    if principal.node_id is not None:  # a node fetches only what is assigned to it
        await fleet_deployments.check_node_download(
            hangar.sessions,
            tenant_id=principal.tenant_id,
            node_id=principal.node_id,
            name=name,
            ref=ref,
        )
    return await hangar.downloads.open(
        tenant_id=principal.tenant_id,
        name=name,
        ref=ref,
        range_header=request.headers.get("range"),
        if_range=request.headers.get("if-range"),
        node_id=principal.node_id,
        send_body=send_body,
    )


def _blob_response(dl: Download) -> dict[str, Any]:
    """Status, headers and type shared by GET and HEAD of a blob."""
    headers = {
        "ETag": dl.etag,
        "Accept-Ranges": "bytes",
        "Content-Length": str(dl.range.length),
        "X-Hangar-Digest": dl.digest,
    }
    if dl.range.partial:
        headers["Content-Range"] = f"bytes {dl.range.start}-{dl.range.end}/{dl.size}"
    return {
        "status_code": 206 if dl.range.partial else 200,
        "headers": headers,
        "media_type": "application/octet-stream",
    }


class ModelController(Controller):
    path = "/v1/models"
    tags = ["registry"]

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[ModelSummary]]:
        principal.require(Scope.read)
        found = await service.list_models(db, tenant_id=principal.tenant_id)
        return paged(request, found, key=lambda m: m.name, after=after, limit=limit)

    @get("/{name:str}")
    async def show(self, db: AsyncSession, principal: Principal, name: str) -> ModelOut:
        principal.require(Scope.read)
        model = await service.get_model(db, tenant_id=principal.tenant_id, name=name)
        return await signing.model_with_signatures(db, model=model, out=service.model_out(model))

    @get("/{name:str}/versions/{ref:str}")
    async def version(
        self, db: AsyncSession, principal: Principal, name: str, ref: str
    ) -> VersionOut:
        principal.require(Scope.read)
        model, version = await service.resolve(
            db, tenant_id=principal.tenant_id, name=name, ref=ref
        )
        tags = [t.name for t in model.tags if t.version_id == version.id]
        out = {version.id: service.version_out(version, tags)}
        return (await signing.annotate(db, tenant_id=principal.tenant_id, versions=out))[version.id]

    @delete("/{name:str}/versions/{ref:str}", opt=doc(409))
    async def delete_version(
        self, db: AsyncSession, principal: Principal, name: str, ref: str
    ) -> None:
        principal.require_admin()
        await service.delete_version(
            db, tenant_id=principal.tenant_id, name=name, ref=ref, on_change=model_changed
        )

    @put("/{name:str}/tags/{tag:str}")
    async def move_tag(
        self, db: AsyncSession, principal: Principal, name: str, tag: str, data: TagMove
    ) -> ModelOut:
        principal.require_admin()
        return await service.move_tag(
            db,
            tenant_id=principal.tenant_id,
            name=name,
            tag=tag,
            number=data.version,
            on_change=model_changed,
        )

    @delete("/{name:str}/tags/{tag:str}")
    async def delete_tag(self, db: AsyncSession, principal: Principal, name: str, tag: str) -> None:
        principal.require_admin()
        await service.delete_tag(
            db, tenant_id=principal.tenant_id, name=name, tag=tag, on_change=model_changed
        )

    @post(
        "/{name:str}/versions",
        status_code=201,
        request_max_body_size=None,
        opt=doc(402, 409, 413, body=BINARY),
    )
    async def push(
        self,
        request: Request,
        hangar: Components,
        principal: Principal,
        name: str,
        tag: str = "latest",
        digest: str | None = None,
    ) -> PushResult:
        """Upload a whole GGUF file in one request body (``curl -T``). For large
        files prefer an upload session, which resumes after a dropped connection."""
        principal.require_admin()
        return await hangar.uploads.push(
            tenant_id=principal.tenant_id,
            model=name,
            tag=tag,
            size=_content_length(request),
            digest=digest,
            body=_body(request, hangar.settings.registry.body_idle_seconds),
        )

    @get(
        "/{name:str}/versions/{ref:str}/blob",
        opt=doc(402, 416, headers=(RANGE, IF_RANGE), responses=blob_responses()),
    )
    async def download(
        self, request: Request, hangar: Components, principal: Principal, name: str, ref: str
    ) -> Response:
        dl = await _open_blob(request, hangar, principal, name, ref, send_body=True)
        return Stream(dl.body, **_blob_response(dl))

    @head(
        "/{name:str}/versions/{ref:str}/blob",
        opt=doc(402, 416, headers=(RANGE, IF_RANGE), responses=blob_responses()),
    )
    async def download_head(
        self, request: Request, hangar: Components, principal: Principal, name: str, ref: str
    ) -> Response[None]:
        """The headers the GET would send (size, digest, range), and no body."""
        dl = await _open_blob(request, hangar, principal, name, ref, send_body=False)
        return Response(b"", **_blob_response(dl))


class UploadController(Controller):
    path = "/v1/uploads"
    tags = ["registry"]

    @post("/", opt=doc(402, 409, headers=(IDEMPOTENCY_KEY,)))
    async def start(
        self, hangar: Components, principal: Principal, data: UploadCreate
    ) -> UploadOut:
        principal.require_admin()
        upload = await hangar.uploads.start(
            tenant_id=principal.tenant_id,
            model=data.model,
            tag=data.tag,
            size=data.size,
            digest=data.digest,
            signature=data.signature,
        )
        return upload_out(upload)

    @get("/")
    async def list(
        self,
        request: Request,
        hangar: Components,
        principal: Principal,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[UploadOut]]:
        """Upload sessions still open (interrupted pushes that can be resumed)."""
        principal.require_admin()
        found = [upload_out(u) for u in await hangar.uploads.list(tenant_id=principal.tenant_id)]
        return paged(request, found, key=lambda u: u.id, after=after, limit=limit)

    @get("/{upload_id:uuid}")
    async def status(
        self, hangar: Components, principal: Principal, upload_id: uuid.UUID
    ) -> UploadOut:
        principal.require_admin()
        return upload_out(
            await hangar.uploads.get(tenant_id=principal.tenant_id, upload_id=upload_id)
        )

    @patch(
        "/{upload_id:uuid}",
        request_max_body_size=None,
        opt=doc(402, 409, 413, body=BINARY, headers=(UPLOAD_OFFSET,)),
    )
    async def append(
        self, request: Request, hangar: Components, principal: Principal, upload_id: uuid.UUID
    ) -> UploadOut:
        """Append the body at ``Upload-Offset``. If the connection drops, GET the
        session and send again from ``committed``."""
        principal.require_admin()
        upload = await hangar.uploads.append(
            tenant_id=principal.tenant_id,
            upload_id=upload_id,
            offset=_offset(request),
            body=_body(request, hangar.settings.registry.body_idle_seconds),
        )
        return upload_out(upload)

    @post("/{upload_id:uuid}/complete", status_code=201, opt=doc(402, 409))
    async def complete(
        self,
        hangar: Components,
        principal: Principal,
        upload_id: uuid.UUID,
        data: UploadComplete | None = None,
    ) -> PushResult:
        """The body is optional: without a digest the one computed from the bytes is used."""
        principal.require_admin()
        return await hangar.uploads.complete(
            tenant_id=principal.tenant_id,
            upload_id=upload_id,
            digest=data.digest if data else None,
        )

    @delete("/{upload_id:uuid}")
    async def cancel(self, hangar: Components, principal: Principal, upload_id: uuid.UUID) -> None:
        principal.require_admin()
        await hangar.uploads.cancel(tenant_id=principal.tenant_id, upload_id=upload_id)
