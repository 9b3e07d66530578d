"""The operator's usage import (backfills, migrations): checks, then one write."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from metering.bounds import refuse_sums_past_limits
from metering.closing import refuse_events_in_closed_months
from metering.ingest import event_error, insert_events, parse_events, refuse, refuse_conflicts
from metering.schemas import ImportResult
from tenants.models import Tenant


async def import_usage(
    session: AsyncSession, *, payload: Any, now: datetime, max_events: int
) -> ImportResult:
    """All or nothing, idempotent on (tenant, event id). Events for unknown tenants, or
    for a month already closed (invoiced), refuse the whole batch."""
    cols = parse_events(payload, now=now, max_events=max_events)
    named = set(cols.tenant_ids)
    known = set(await session.scalars(select(Tenant.id).where(Tenant.id.in_(list(named)))))
    if named - known:
        first_use: dict[uuid.UUID, int] = {}
        for index, tenant_id in enumerate(cols.tenant_ids):
            if tenant_id not in known:
                first_use.setdefault(tenant_id, index)
        raise refuse(
            [
                event_error(
                    i,
                    cols.event_ids[i],
                    "tenant_id",
                    f"{t} is not a tenant; `hangar tenants ls` lists them",
                )
                for t, i in first_use.items()
            ]
        )
    await refuse_events_in_closed_months(session, cols)
    await refuse_conflicts(session, cols)
    written = await insert_events(session, cols)
    await refuse_sums_past_limits(session, cols)  # raising rolls the write back
    return ImportResult(received=len(cols), written=written, duplicates=len(cols) - written)
