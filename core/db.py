"""Database engine, sessions, the declarative base shared by every domain, and
the advisory-lock keys.

The transaction rule: one session per request or job, committed at the edge and
rolled back on any error — ``services.api.deps.provide_db`` for a request,
``transaction`` for a job (a job that works in batches, like period close or GC,
opens one per batch so one failure does not undo the others). Services take
that session, flush, and never commit.

The few components that must commit step by step own their transactions and say
so in their docstring: registry uploads (the row must match S3 after every part),
registry downloads (egress is recorded after the response, retried on its own),
and the Stripe sync (what was sent to Stripe is recorded before and after each
call). They take a sessionmaker, never a request's session.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.settings import DatabaseSettings

# Stable constraint names so Alembic autogenerate and hand-written migrations agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs (what Postgres tools print) too."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        async_url(settings.url),
        pool_size=settings.pool_size,
        pool_pre_ping=True,
        echo=settings.echo,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessions() as session, session.begin():
        yield session


def advisory_lock_key(namespace: str, name: object) -> int:
    """The bigint key of a Postgres advisory lock on ``name`` in ``namespace``
    (``pg_advisory_lock`` and friends take one signed 64-bit number)."""
    digest = hashlib.sha256(f"{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
