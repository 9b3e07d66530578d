"""Tenants and their API keys. Services flush; the caller's transaction commits."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import Conflict, NotFound, Unauthorized
from core.secrets import hash_secret
from tenants.models import ApiKey, Tenant
from tenants.schemas import ApiKeyCreated, ApiKeyOut, Scope

KEY_PREFIX = "hgr_"


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


async def create_tenant(session: AsyncSession, *, name: str) -> Tenant:
    """The tenant row only. Create tenants with ``billing.accounts.open_tenant``, which
    opens the billing account (and first plan) in the same transaction."""
    if await session.scalar(select(Tenant.id).where(Tenant.name == name)):
        raise Conflict(f"a tenant named {name!r} already exists; pick another name")
    tenant = Tenant(name=name)
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"a tenant named {name!r} already exists; pick another name") from exc
    return tenant


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list(await session.scalars(select(Tenant).order_by(Tenant.created_at)))


async def create_key(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, scopes: list[Scope]
) -> ApiKeyCreated:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=tenant_id,
        name=name,
        scopes=sorted({s.value for s in scopes}),
        secret_hash=hash_secret(secret),
        prefix=secret[:10],
    )
    session.add(key)
    await session.flush()
    return ApiKeyCreated(**key_out(key).model_dump(), secret=secret)


async def list_keys(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
    return list(await session.scalars(stmt))


async def revoke_key(session: AsyncSession, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
    )
    if key is None:
        raise NotFound(f"no API key {key_id} in this tenant")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    await session.flush()
    return key


async def authenticate(session: AsyncSession, *, secret: str) -> ApiKey:
    key = await session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
    if key is None or key.revoked_at is not None:
        raise Unauthorized(
            "this API key is unknown or revoked; create one with `hangar keys create`"
        )
    # At most one write a minute per key: busy keys (CI, fleets) must not contend on their row.
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return key
