"""Operator routes (tenants) and tenant-admin routes (API keys)."""

from __future__ import annotations

import uuid

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import open_tenant, plans_now
from core.db import utcnow
from services.api.auth import Principal, provide_operator
from services.api.openapi import IDEMPOTENCY_KEY, doc
from services.api.paging import After, Limit, paged
from services.components import Components
from tenants import service
from tenants.models import Tenant
from tenants.plans import Plan
from tenants.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Scope,
    TenantCreate,
    TenantCreated,
    TenantOut,
)


def _out(tenant: Tenant, plan: Plan) -> TenantOut:
    return TenantOut(id=tenant.id, name=tenant.name, plan=plan, created_at=tenant.created_at)


class TenantController(Controller):
    path = "/v1/tenants"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post("/", opt=doc(409, headers=(IDEMPOTENCY_KEY,)))
    async def create(
        self, db: AsyncSession, hangar: Components, data: TenantCreate, operator: None
    ) -> TenantCreated:
        """The tenant, its billing account on ``plan`` and its first admin key, in one
        transaction: a tenant never exists without an account."""
        tenant, plan = await open_tenant(
            db, name=data.name, plan=Plan(data.plan), trial_days=hangar.settings.billing.trial_days
        )
        key = await service.create_key(db, tenant_id=tenant.id, name="admin", scopes=[Scope.admin])
        return TenantCreated(**_out(tenant, plan).model_dump(), admin_key=key)

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        operator: None,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[TenantOut]]:
        found = await service.list_tenants(db)
        plans = await plans_now(db, tenant_ids=[t.id for t in found], now=utcnow())
        out = [_out(t, plans[t.id]) for t in found]
        return paged(request, out, key=lambda t: t.id, after=after, limit=limit)


class KeyController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post("/", opt=doc(409, headers=(IDEMPOTENCY_KEY,)))
    async def create(
        self, db: AsyncSession, principal: Principal, data: ApiKeyCreate
    ) -> ApiKeyCreated:
        principal.require_admin()
        return await service.create_key(
            db, tenant_id=principal.tenant_id, name=data.name, scopes=data.scopes
        )

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[ApiKeyOut]]:
        principal.require_admin()
        found = await service.list_keys(db, tenant_id=principal.tenant_id)
        out = [service.key_out(k) for k in found]
        return paged(request, out, key=lambda k: k.id, after=after, limit=limit)

    @delete("/{key_id:uuid}", status_code=200)
    async def revoke(self, db: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKeyOut:
        principal.require_admin()
        return service.key_out(
            await service.revoke_key(db, tenant_id=principal.tenant_id, key_id=key_id)
        )
