"""Operator routes (tenants) and tenant-admin routes (API keys)."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth import Principal, provide_operator
from tenants import service
from tenants.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Scope,
    TenantCreate,
    TenantCreated,
    TenantOut,
)


class TenantController(Controller):
    path = "/v1/tenants"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post("/")
    async def create(self, db: AsyncSession, data: TenantCreate, operator: None) -> TenantCreated:
        tenant = await service.create_tenant(db, name=data.name, plan=data.plan)
        key = await service.create_key(db, tenant_id=tenant.id, name="admin", scopes=[Scope.admin])
        return TenantCreated(
            **TenantOut.model_validate(tenant, from_attributes=True).model_dump(), admin_key=key
        )

    @get("/")
    async def list(self, db: AsyncSession, operator: None) -> list[TenantOut]:
        return [
            TenantOut.model_validate(t, from_attributes=True)
            for t in await service.list_tenants(db)
        ]


class KeyController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post("/")
    async def create(
        self, db: AsyncSession, principal: Principal, data: ApiKeyCreate
    ) -> ApiKeyCreated:
        principal.require_admin()
        return await service.create_key(
            db, tenant_id=principal.tenant_id, name=data.name, scopes=data.scopes
        )

    @get("/")
    async def list(self, db: AsyncSession, principal: Principal) -> list[ApiKeyOut]:
        principal.require_admin()
        return [
            service.key_out(k) for k in await service.list_keys(db, tenant_id=principal.tenant_id)
        ]

    @delete("/{key_id:uuid}", status_code=200)
    async def revoke(self, db: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKeyOut:
        principal.require_admin()
        return service.key_out(
            await service.revoke_key(db, tenant_id=principal.tenant_id, key_id=key_id)
        )
