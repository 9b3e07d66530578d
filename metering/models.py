from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, CreatedAt


class UsageEvent(CreatedAt, Base):
    """Append-only, idempotent on (tenant, event id): the source of every invoice line.

    (tenant, event id) is the primary key itself: a surrogate id would cost a second
    unique index on every insert, and bulk imports are dominated by index upkeep."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_tenant_meter_time", "tenant_id", "meter", "occurred_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    meter: Mapped[str] = mapped_column(String(32))
    # Bytes for egress and storage samples, 1 for a device-day, tokens for inference.
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    node_id: Mapped[uuid.UUID | None] = mapped_column()
    model_version_id: Mapped[uuid.UUID | None] = mapped_column()
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ClosedPeriod(CreatedAt, Base):
    """A (tenant, month) that takes no more usage: billing finalized its invoice.

    Metering owns the rule ("a closed month takes no new usage"), billing only says when
    a month closes (``metering.closing.close_months``, in the invoice's own transaction);
    ``reference`` is what closed it (the invoice number), quoted back in refusals."""

    __tablename__ = "closed_periods"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # The first day of the month (UTC).
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32))


class UsageIssuer(CreatedAt, Base):
    """An on-premise installation whose signed monthly statements a tenant accepts."""

    __tablename__ = "usage_issuers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "key_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(16))


class UsageStatement(Base):
    """A statement imported from an issuer: one per issuer and month."""

    __tablename__ = "usage_statements"
    __table_args__ = (UniqueConstraint("issuer_id", "period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    issuer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("usage_issuers.id", ondelete="CASCADE"))
    statement_id: Mapped[uuid.UUID] = mapped_column()
    period: Mapped[date] = mapped_column(Date)
    quantities: Mapped[dict[str, Any]] = mapped_column(JSONB)
    imported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
