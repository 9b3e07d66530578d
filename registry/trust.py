"""A tenant's trusted signing keys and whether it requires signed models.

Every change here can change which models a node may load, so each one calls
``on_change`` (the fleet bumps the tenant's nodes; they re-check at their next sync)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field
from sqlalchemy import Boolean, DateTime, ForeignKey, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, CreatedAt, new_id, utcnow
from core.errors import BadRequest, Conflict, NotFound
from wire.contract import TrustedKey as WireTrustedKey
from wire.refs import InvalidRef, check_name
from wire.signing import SigningError, key_id, parse_public_key, public_pem


class TrustedKey(CreatedAt, Base):
    __tablename__ = "trusted_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "key_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # raw 32-byte Ed25519 key


class SigningPolicy(Base):
    """One row per tenant that ever set the flag; no row means signatures are optional."""

    __tablename__ = "signing_policies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    require_signatures: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrustChanged(Protocol):
    """The fleet's answer to a trust change (``fleet.revisions.tenant_changed``), passed
    in by ``services`` so the registry does not depend on the fleet."""

    async def __call__(self, session: AsyncSession, *, tenant_id: uuid.UUID) -> None: ...


class TrustedKeyIn(BaseModel):
    name: str = Field(description="a name for the key, unique in the tenant")
    public_key: str = Field(
        max_length=16 * 1024,
        description="the Ed25519 public key: PEM (`openssl pkey -pubout`) or one OpenSSH line",
    )


class TrustedKeyOut(BaseModel):
    name: str
    key_id: str
    public_key: str = Field(description="PEM")
    created_at: datetime


class TrustPolicyOut(BaseModel):
    require_signatures: bool
    keys: list[TrustedKeyOut]


class RequireIn(BaseModel):
    require_signatures: bool


def key_out(key: TrustedKey) -> TrustedKeyOut:
    return TrustedKeyOut(
        name=key.name,
        key_id=key.key_id,
        public_key=public_pem(key.public_key),
        created_at=key.created_at,
    )


async def list_keys(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[TrustedKey]:
    return list(
        await session.scalars(
            select(TrustedKey).where(TrustedKey.tenant_id == tenant_id).order_by(TrustedKey.name)
        )
    )


async def keys_by_id(session: AsyncSession, *, tenant_id: uuid.UUID) -> dict[str, TrustedKey]:
    return {k.key_id: k for k in await list_keys(session, tenant_id=tenant_id)}


async def requires_signatures(session: AsyncSession, *, tenant_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(SigningPolicy.require_signatures).where(SigningPolicy.tenant_id == tenant_id)
    )
    return bool(found)


async def policy(session: AsyncSession, *, tenant_id: uuid.UUID) -> TrustPolicyOut:
    return TrustPolicyOut(
        require_signatures=await requires_signatures(session, tenant_id=tenant_id),
        keys=[key_out(k) for k in await list_keys(session, tenant_id=tenant_id)],
    )


async def wire_policy(
    session: AsyncSession, *, tenant_id: uuid.UUID
) -> tuple[list[WireTrustedKey], bool]:
    """What a node gets with its desired state."""
    keys = [
        WireTrustedKey(
            name=k.name, key_id=k.key_id, public_key=base64.b64encode(k.public_key).decode()
        )
        for k in await list_keys(session, tenant_id=tenant_id)
    ]
    return keys, await requires_signatures(session, tenant_id=tenant_id)


async def add_key(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    public_key: str,
    on_change: TrustChanged,
) -> TrustedKey:
    try:
        check_name(name, what="key name")
        raw = parse_public_key(public_key)
    except (InvalidRef, SigningError) as exc:
        raise BadRequest(str(exc)) from None
    kid = key_id(raw)
    for existing in await list_keys(session, tenant_id=tenant_id):
        if existing.name == name:
            raise Conflict(
                f"a trusted key named {name!r} exists already ({existing.key_id}); "
                f"pick another name or `hangar trust rm {name}` first"
            )
        if existing.key_id == kid:
            raise Conflict(f"this key is trusted already, as {existing.name!r} ({kid})")
    key = TrustedKey(tenant_id=tenant_id, name=name, key_id=kid, public_key=raw)
    session.add(key)
    await session.flush()
    await on_change(session, tenant_id=tenant_id)
    return key


async def remove_key(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, on_change: TrustChanged
) -> None:
    # Locked, so two removals at once cannot each leave the other's key as "the last".
    keys = list(
        await session.scalars(
            select(TrustedKey).where(TrustedKey.tenant_id == tenant_id).with_for_update()
        )
    )
    key = next((k for k in keys if k.name == name), None)
    if key is None:
        raise NotFound(f"no trusted key named {name!r}; `hangar trust ls` lists them")
    if len(keys) == 1 and await requires_signatures(session, tenant_id=tenant_id):
        # Every node would unload every model: no version could be trusted any more.
        raise Conflict(
            "signatures are required and this is the last trusted key: add another key "
            "or turn `hangar trust require off` first"
        )
    await session.delete(key)
    await session.flush()
    # Nodes drop the key at their next sync and unload what only it had signed.
    await on_change(session, tenant_id=tenant_id)


async def set_required(
    session: AsyncSession, *, tenant_id: uuid.UUID, required: bool, on_change: TrustChanged
) -> None:
    # The keys locked as in remove_key: a removal running now cannot empty them under us.
    locked = select(TrustedKey.id).where(TrustedKey.tenant_id == tenant_id).with_for_update()
    if required and not list(await session.scalars(locked)):
        raise BadRequest(
            "no trusted keys yet: with signatures required no model could load; "
            "`hangar trust add NAME KEY.pub` first"
        )
    stmt = insert(SigningPolicy).values(
        tenant_id=tenant_id, require_signatures=required, updated_at=utcnow()
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id"],
            set_={"require_signatures": required, "updated_at": stmt.excluded.updated_at},
        )
    )
    await on_change(session, tenant_id=tenant_id)
