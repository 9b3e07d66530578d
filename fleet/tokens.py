"""Enrollment tokens, and enrolling a machine with one."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import Forbidden, NotFound, Unauthorized
from core.secrets import hash_secret
from fleet.limits import NodeLimit
from fleet.models import EnrollmentToken, Node
from fleet.schemas import (
    EnrollmentTokenCreated,
    EnrollmentTokenOut,
    TokenState,
    check_labels,
)
from wire.contract import (
    ENROLLMENT_TOKEN_PREFIX,
    NODE_CREDENTIAL_PREFIX,
    EnrollRequest,
    EnrollResponse,
)

NEW_TOKEN = "ask a tenant admin for a new one (`hangar enroll-tokens create`)"


def token_state(token: EnrollmentToken, now: datetime) -> TokenState:
    if token.revoked_at is not None:
        return TokenState.revoked
    if token.expires_at <= now:
        return TokenState.expired
    if token.uses >= token.max_uses:
        return TokenState.used_up
    return TokenState.active


def token_out(token: EnrollmentToken) -> EnrollmentTokenOut:
    return EnrollmentTokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        state=token_state(token, utcnow()),
        expires_at=token.expires_at,
        max_uses=token.max_uses,
        uses=token.uses,
        labels=token.labels,
        created_at=token.created_at,
        revoked_at=token.revoked_at,
    )


async def create_token(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    expires_in: timedelta,
    max_uses: int,
    labels: dict[str, str],
) -> EnrollmentTokenCreated:
    secret = ENROLLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = EnrollmentToken(
        tenant_id=tenant_id,
        name=name,
        secret_hash=hash_secret(secret),
        prefix=secret[:10],
        expires_at=utcnow() + expires_in,
        max_uses=max_uses,
        uses=0,
        labels=check_labels(labels),
        created_at=utcnow(),
    )
    session.add(token)
    await session.flush()
    return EnrollmentTokenCreated(**token_out(token).model_dump(), secret=secret)


async def list_tokens(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[EnrollmentToken]:
    stmt = (
        select(EnrollmentToken)
        .where(EnrollmentToken.tenant_id == tenant_id)
        .order_by(EnrollmentToken.created_at)
    )
    return list(await session.scalars(stmt))


async def revoke_token(
    session: AsyncSession, *, tenant_id: uuid.UUID, token_id: uuid.UUID
) -> EnrollmentToken:
    token = await session.scalar(
        select(EnrollmentToken).where(
            EnrollmentToken.id == token_id, EnrollmentToken.tenant_id == tenant_id
        )
    )
    if token is None:
        raise NotFound(
            f"no enrollment token {token_id} in this tenant; `hangar enroll-tokens ls` lists them"
        )
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    await session.flush()
    return token


async def _usable_token(session: AsyncSession, secret: str) -> EnrollmentToken:
    # Row lock: two machines racing for the last use cannot both get it.
    token = await session.scalar(
        select(EnrollmentToken)
        .where(EnrollmentToken.secret_hash == hash_secret(secret))
        .with_for_update()
    )
    if token is None:
        raise Unauthorized(
            f"this enrollment token is unknown (check it was copied whole); {NEW_TOKEN}"
        )
    state = token_state(token, utcnow())
    if state is TokenState.revoked:
        raise Unauthorized(
            f"this enrollment token was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC; {NEW_TOKEN}"
        )
    if state is TokenState.expired:
        raise Unauthorized(
            f"this enrollment token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; {NEW_TOKEN}"
        )
    if state is TokenState.used_up:
        raise Forbidden(
            f"this enrollment token is used up ({token.uses} of {token.max_uses} uses); {NEW_TOKEN} "
            "or create one with more --uses"
        )
    return token


async def enroll(
    session: AsyncSession,
    *,
    request: EnrollRequest,
    heartbeat_seconds: float,
    node_limit: NodeLimit,
) -> EnrollResponse:
    token = await _usable_token(session, request.token)
    await node_limit.check_node_limit(session, tenant_id=token.tenant_id)
    credential = NODE_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    node = Node(
        tenant_id=token.tenant_id,
        name=request.name or request.facts.hostname,
        labels=dict(token.labels),
        facts=request.facts.model_dump(mode="json"),
        credential_hash=hash_secret(credential),
        credential_prefix=credential[:10],
        enrollment_token_id=token.id,
        enrolled_at=now,
        report={},
        desired_revision=1,
        status="online",
        status_changed_at=now,
        last_seen_at=now,
    )
    session.add(node)
    token.uses += 1
    await session.flush()
    return EnrollResponse(
        node_id=node.id,
        tenant_id=node.tenant_id,
        name=node.name,
        credential=credential,
        labels=node.labels,
        heartbeat_seconds=heartbeat_seconds,
    )
