from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.db import Base, CreatedAt, new_id


class UsageEvent(CreatedAt, Base):
    """Append-only, idempotent on (tenant, event id): the source of every invoice line."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id"),
        Index("ix_usage_events_tenant_meter_time", "tenant_id", "meter", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    meter: Mapped[str] = mapped_column(String(32))
    # Bytes for egress and storage samples, 1 for a device-day, tokens for inference.
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    node_id: Mapped[uuid.UUID | None] = mapped_column()
    model_version_id: Mapped[uuid.UUID | None] = mapped_column()
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
