"""Blobs by digest: "do you already hold these bytes?" before a client sends them."""

from __future__ import annotations

from litestar import Controller, Response, get, head, post
from sqlalchemy.ext.asyncio import AsyncSession

from fleet.revisions import model_changed
from registry import held
from registry.schemas import HeldBlob, HeldVersionCreate, PushResult
from services.api.auth import Principal
from services.api.openapi import doc
from services.components import Components
from tenants.schemas import Scope


class BlobController(Controller):
    path = "/v1/blobs"
    tags = ["registry"]

    @get("/{digest:str}")
    async def show(self, db: AsyncSession, principal: Principal, digest: str) -> HeldBlob:
        """The blob with this ``sha256:`` digest if this tenant holds it (in some
        version), else 404."""
        principal.require(Scope.read)
        return await held.get_held(db, tenant_id=principal.tenant_id, digest=digest)

    @head("/{digest:str}")
    async def exists(self, db: AsyncSession, principal: Principal, digest: str) -> Response[None]:
        """200 if this tenant holds the blob, else 404; no body."""
        principal.require(Scope.read)
        blob = await held.get_held(db, tenant_id=principal.tenant_id, digest=digest)
        return Response(b"", headers={"Content-Length": str(blob.size)})

    @post("/{digest:str}/versions", status_code=201, opt=doc(402, 404, 409))
    async def publish(
        self,
        db: AsyncSession,
        hangar: Components,
        principal: Principal,
        digest: str,
        data: HeldVersionCreate,
    ) -> PushResult:
        """Publish ``model:tag`` from a blob this tenant already holds: no bytes
        are sent, nothing more is stored (404 if the blob is not held)."""
        principal.require_admin()
        blob = await held.get_held(db, tenant_id=principal.tenant_id, digest=digest)
        # A paused tenant (trial over, no plan) may not publish, even without bytes.
        await hangar.quotas.check_upload_complete(
            tenant_id=principal.tenant_id, digest=blob.digest, size=blob.size
        )
        return await held.publish_held(
            db,
            tenant_id=principal.tenant_id,
            digest=digest,
            name=data.model,
            tag=data.tag,
            signature=data.signature,
            on_change=model_changed,
        )
