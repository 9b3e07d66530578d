"""The periodic meters: device-days and hourly storage samples.

Each writes events whose ids are derived from what they measure
(``device_day:{node}:{date}``, ``storage:{tenant}:{hour}``), so running a sampler
twice, or on two schedulers at once, writes each event exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metering.closing import open_month_sql
from metering.periods import day_start, hour_start

# A closed month (its invoice is final) takes no more usage: ``metering.closing``.
_DEVICE_DAYS = text(
    """
    insert into usage_events
        (tenant_id, event_id, meter, quantity, occurred_at, node_id, attrs, created_at)
    select n.tenant_id,
           'device_day:' || n.id || ':' || to_char(d at time zone 'UTC', 'YYYY-MM-DD'),
           'device_day', 1, d, n.id, '{}'::jsonb, now()
    from nodes n
    cross join generate_series(
        cast(:first as timestamptz), cast(:last as timestamptz), interval '1 day'
    ) as d
    where n.enrolled_at < d + interval '1 day'
      and (n.revoked_at is null or n.revoked_at > d)
      and {open_month}
    on conflict (tenant_id, event_id) do nothing
    """.replace("{open_month}", open_month_sql(tenant="n.tenant_id", moment="d"))
)

# Distinct blobs that some version uses: the same bytes pushed twice count once,
# and a deleted version stops counting at once (before GC removes the object).
_STORAGE = text(
    """
    insert into usage_events (tenant_id, event_id, meter, quantity, occurred_at, attrs, created_at)
    select b.tenant_id, 'storage:' || b.tenant_id || ':' || :label,
           'storage_sample', sum(b.size), cast(:hour as timestamptz), '{}'::jsonb, now()
    from blobs b
    where exists (select 1 from model_versions v where v.blob_id = b.id)
      and {open_month}
    group by b.tenant_id
    on conflict (tenant_id, event_id) do nothing
    """.replace(
        "{open_month}", open_month_sql(tenant="b.tenant_id", moment="cast(:hour as timestamptz)")
    )
)


@dataclass
class SampleReport:
    written: int
    covering: str


async def count_device_days(
    session: AsyncSession, *, now: datetime, lookback_days: int
) -> SampleReport:
    """One ``device_day`` per node per UTC day on which it was enrolled and not revoked,
    for today and the ``lookback_days`` before it. Today is counted at once because a
    node active at any moment of a day counts for that day."""
    last = day_start(now)
    first = last - timedelta(days=lookback_days)
    result = await session.execute(_DEVICE_DAYS, {"first": first, "last": last})
    return SampleReport(result.rowcount, f"{first.date()}..{last.date()}")


async def sample_storage(session: AsyncSession, *, now: datetime) -> SampleReport:
    """The bytes each tenant stores now, as this hour's sample. Tenants storing
    nothing get no event: a missing sample and a zero sample bill the same."""
    hour = hour_start(now)
    label = hour.strftime("%Y-%m-%dT%H")
    result = await session.execute(_STORAGE, {"hour": hour, "label": label})
    return SampleReport(result.rowcount, label)
