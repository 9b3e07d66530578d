"""Signatures of model versions (format: ``wire.signing``), checked against the
tenant's trusted keys (``registry.trust``) when they arrive and stored per version.

A signature arrives with an upload (checked at its start, before the first byte, and
again when it is published) or later for an existing version (``hangar models sign``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, CreatedAt, new_id, utcnow
from core.errors import BadRequest
from registry import trust
from registry.events import ModelChanged
from registry.models import Model, ModelVersion
from registry.schemas import ModelOut, SignatureOut, VersionOut
from registry.service import resolve, version_out
from wire.contract import DesiredState
from wire.signing import Signature, SigningError, check_shape, verify


class ModelSignature(CreatedAt, Base):
    __tablename__ = "model_signatures"
    __table_args__ = (UniqueConstraint("version_id", "key_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    # The key's id, not its name: a key removed and added again under another name
    # still vouches for what it signed.
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


def _wire(row: ModelSignature) -> Signature:
    return Signature(key_id=row.key_id, signature=row.signature)


async def check(
    session: AsyncSession, *, tenant_id: uuid.UUID, digest: str, signature: Signature
) -> trust.TrustedKey:
    """The trusted key that made ``signature`` of ``digest``; else a 400 saying why."""
    try:
        check_shape(signature)
    except SigningError as exc:
        raise BadRequest(f"malformed signature: {exc}") from None
    key = (await trust.keys_by_id(session, tenant_id=tenant_id)).get(signature.key_id)
    if key is None:
        raise BadRequest(
            f"signed by key {signature.key_id}, which this tenant does not trust; "
            "`hangar trust add NAME KEY.pub` adds its public half (`hangar trust ls` lists them)",
            detail={"key_id": signature.key_id},
        )
    if not verify(key.public_key, signature, digest):
        raise BadRequest(
            f"the signature by key {key.name!r} ({key.key_id}) does not verify for {digest}: "
            "it was made for other bytes or with another key; sign this file again",
            detail={"key_id": key.key_id, "digest": digest},
        )
    return key


async def check_upload_start(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    digest: str | None,
    signature: Signature | None,
) -> None:
    """Before the first byte: a required signature is there and verifies for the
    declared digest."""
    if signature is None:
        if await trust.requires_signatures(session, tenant_id=tenant_id):
            raise BadRequest(
                "this tenant requires signed models: push with "
                "`hangar push FILE NAME:TAG --sign-key KEY.pem` (a key in `hangar trust ls`)",
                detail={"require_signatures": True},
            )
        return
    if digest is None:
        raise BadRequest(
            "a signed upload must declare its digest ('sha256:<hex>'): the signature binds it"
        )
    await check(session, tenant_id=tenant_id, digest=digest, signature=signature)


async def attach(session: AsyncSession, *, version: ModelVersion, signature: Signature) -> None:
    """Store a checked signature on ``version`` (once per key)."""
    await session.execute(
        insert(ModelSignature)
        .values(
            id=uuid.uuid4(),
            tenant_id=version.tenant_id,
            version_id=version.id,
            key_id=signature.key_id,
            signature=signature.signature,
            created_at=utcnow(),
        )
        .on_conflict_do_update(
            index_elements=["version_id", "key_id"], set_={"signature": signature.signature}
        )
    )


async def sign_version(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    ref: str,
    signature: Signature,
    on_change: ModelChanged,
) -> VersionOut:
    model, version = await resolve(session, tenant_id=tenant_id, name=name, ref=ref)
    await check(session, tenant_id=tenant_id, digest=version.digest, signature=signature)
    await attach(session, version=version, signature=signature)
    await on_change(session, model_id=model.id)  # nodes get the signature at next sync
    tags = [t.name for t in model.tags if t.version_id == version.id]
    out = version_out(version, tags)
    return (await annotate(session, tenant_id=tenant_id, versions={version.id: out}))[version.id]


async def _rows(
    session: AsyncSession, version_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[ModelSignature]]:
    ids = list(version_ids)
    out: dict[uuid.UUID, list[ModelSignature]] = {}
    if not ids:
        return out
    rows = await session.scalars(
        select(ModelSignature)
        .where(ModelSignature.version_id.in_(ids))
        .order_by(ModelSignature.created_at)
    )
    for row in rows:
        out.setdefault(row.version_id, []).append(row)
    return out


async def annotate(
    session: AsyncSession, *, tenant_id: uuid.UUID, versions: dict[uuid.UUID, VersionOut]
) -> dict[uuid.UUID, VersionOut]:
    """Fill each version's ``signatures`` (with the key's name while it is trusted)."""
    keys = await trust.keys_by_id(session, tenant_id=tenant_id)
    rows = await _rows(session, versions)
    for vid, out in versions.items():
        out.signatures = [
            SignatureOut(
                key_id=r.key_id,
                key_name=keys[r.key_id].name if r.key_id in keys else None,
                trusted=r.key_id in keys
                and verify(keys[r.key_id].public_key, _wire(r), out.digest),
                created_at=r.created_at,
            )
            for r in rows.get(vid, [])
        ]
    return versions


async def model_with_signatures(session: AsyncSession, *, model: Model, out: ModelOut) -> ModelOut:
    by_number = {v.number: v.id for v in model.versions}
    await annotate(
        session,
        tenant_id=model.tenant_id,
        versions={by_number[v.number]: v for v in out.versions},
    )
    return out


async def add_to_desired(
    session: AsyncSession, *, tenant_id: uuid.UUID, state: DesiredState
) -> DesiredState:
    """The tenant's trust policy and each model's signatures, for a node."""
    state.trusted_keys, state.require_signatures = await trust.wire_policy(
        session, tenant_id=tenant_id
    )
    digests = {m.digest for m in state.models}
    if not digests:
        return state
    rows = await session.execute(
        select(Model.name, ModelVersion.digest, ModelSignature)
        .join(ModelVersion, ModelVersion.model_id == Model.id)
        .join(ModelSignature, ModelSignature.version_id == ModelVersion.id)
        .where(Model.tenant_id == tenant_id, ModelVersion.digest.in_(digests))
        .order_by(ModelSignature.created_at)
    )
    found: dict[tuple[str, str], list[Signature]] = {}
    for name, digest, row in rows:
        found.setdefault((name, digest), []).append(_wire(row))
    for m in state.models:
        m.signatures = found.get((m.name, m.digest), [])
    return state
