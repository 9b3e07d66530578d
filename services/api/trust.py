"""Signed models: the tenant's trusted keys and signature rule (/v1/trust), and
signatures added to existing versions. Thin wrappers over ``registry.trust`` and
``registry.signing``; every change bumps the tenant's nodes so they re-check."""

from __future__ import annotations

from litestar import Controller, delete, get, post, put
from sqlalchemy.ext.asyncio import AsyncSession

from fleet.revisions import model_changed, tenant_changed
from registry import signing, trust
from registry.schemas import SignIn, VersionOut
from registry.trust import RequireIn, TrustedKeyIn, TrustedKeyOut, TrustPolicyOut
from services.api.auth import Principal
from services.api.openapi import doc
from tenants.schemas import Scope


class TrustController(Controller):
    path = "/v1/trust"
    tags = ["registry"]

    @get("/")
    async def show(self, db: AsyncSession, principal: Principal) -> TrustPolicyOut:
        """Whether signatures are required, and the trusted keys."""
        principal.require(Scope.read)
        return await trust.policy(db, tenant_id=principal.tenant_id)

    @get("/keys")
    async def list_keys(self, db: AsyncSession, principal: Principal) -> list[TrustedKeyOut]:
        principal.require(Scope.read)
        return [trust.key_out(k) for k in await trust.list_keys(db, tenant_id=principal.tenant_id)]

    @post("/keys", status_code=201, opt=doc(409))
    async def add_key(
        self, db: AsyncSession, principal: Principal, data: TrustedKeyIn
    ) -> TrustedKeyOut:
        """Trust an Ed25519 public key: versions it signs may load on this tenant's nodes."""
        principal.require_admin()
        key = await trust.add_key(
            db,
            tenant_id=principal.tenant_id,
            name=data.name,
            public_key=data.public_key,
            on_change=tenant_changed,
        )
        return trust.key_out(key)

    @delete("/keys/{name:str}", opt=doc(404, 409))
    async def remove_key(self, db: AsyncSession, principal: Principal, name: str) -> None:
        """Stop trusting a key; nodes unload what only it signed at their next sync.
        409 for the last key while signatures are required (nothing could load)."""
        principal.require_admin()
        await trust.remove_key(
            db, tenant_id=principal.tenant_id, name=name, on_change=tenant_changed
        )

    @put("/require", opt=doc(409))
    async def require(
        self, db: AsyncSession, principal: Principal, data: RequireIn
    ) -> TrustPolicyOut:
        """On: unsigned pushes are refused and nodes load only signed versions."""
        principal.require_admin()
        await trust.set_required(
            db,
            tenant_id=principal.tenant_id,
            required=data.require_signatures,
            on_change=tenant_changed,
        )
        return await trust.policy(db, tenant_id=principal.tenant_id)


class SignatureController(Controller):
    path = "/v1/models"
    tags = ["registry"]

    @post("/{name:str}/versions/{ref:str}/signatures", status_code=201, opt=doc(404))
    async def sign(
        self, db: AsyncSession, principal: Principal, name: str, ref: str, data: SignIn
    ) -> VersionOut:
        """Add a publisher's signature (made with `hangar models sign`) to a version."""
        principal.require_admin()
        return await signing.sign_version(
            db,
            tenant_id=principal.tenant_id,
            name=name,
            ref=ref,
            signature=data.signature,
            on_change=model_changed,
        )
