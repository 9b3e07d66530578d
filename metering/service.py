"""Recording usage. Every write is idempotent on (tenant, event id)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from metering.models import UsageEvent


async def record_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    event_id: str,
    meter: str,
    quantity: int,
    occurred_at: datetime,
    node_id: uuid.UUID | None = None,
    model_version_id: uuid.UUID | None = None,
    attrs: dict[str, Any] | None = None,
) -> bool:
    """Append one event; returns False when that event id was already recorded."""
    stmt = (
        insert(UsageEvent)
        .values(
            tenant_id=tenant_id,
            event_id=event_id,
            meter=meter,
            quantity=quantity,
            occurred_at=occurred_at,
            node_id=node_id,
            model_version_id=model_version_id,
            attrs=attrs or {},
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
    )
    result = await session.execute(stmt)
    return result.rowcount == 1
