"""Usage sums per tenant, meter and month stay within ``meters.MONTH_LIMITS``, so a
month can always be invoiced.

A per-event limit alone is not enough: two events at the event maximum overflowed a
line's total and period close failed for that tenant every night after. So the sums
are checked, after the batch is written and inside its transaction, against what the
database then holds; a batch that would pass a bound is refused as a whole.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metering.ingest import EventColumns, event_error, refuse
from metering.meters import MONTH_LIMITS

_SUMS_PAST_LIMITS = text(
    """
    with batch as (
        select distinct t as tenant_id, m as meter,
               date_trunc('month', o at time zone 'UTC') as month
        from unnest(cast(:t as uuid[]), cast(:m as text[]), cast(:o as timestamptz[]))
             as b(t, m, o)
    )
    select b.tenant_id, b.meter, to_char(b.month, 'YYYY-MM') as period, sums.total
    from batch b
    cross join lateral (
        select sum(e.quantity) as total from usage_events e
        where e.tenant_id = b.tenant_id and e.meter = b.meter
          and e.occurred_at >= b.month at time zone 'UTC'
          and e.occurred_at < (b.month + interval '1 month') at time zone 'UTC'
    ) sums
    where sums.total > case b.meter {cases} end
    """.format(
        cases=" ".join(f"when '{meter}' then {limit}" for meter, limit in MONTH_LIMITS.items())
    )
)


async def refuse_sums_past_limits(session: AsyncSession, cols: EventColumns) -> None:
    """Call after the batch is written (same transaction): raise if any tenant's month
    now holds more of a meter than ``MONTH_LIMITS`` allows, so the caller rolls back."""
    rows = (
        await session.execute(
            _SUMS_PAST_LIMITS, {"t": cols.tenant_ids, "m": cols.meters, "o": cols.occurred_at}
        )
    ).all()
    if not rows:
        return
    errors: list[dict[str, Any]] = []
    for tenant_id, meter, period, total in rows[:20]:
        index = next(
            i
            for i, (t, m) in enumerate(zip(cols.tenant_ids, cols.meters, strict=True))
            if t == tenant_id and m == meter
        )
        errors.append(
            event_error(
                index,
                cols.event_ids[index],
                "quantity",
                f"{meter} for tenant {tenant_id} in {period} would total {total}, past the "
                f"monthly limit of {MONTH_LIMITS[meter]} (a month must stay invoiceable); "
                "check the units of the import",
            )
        )
    raise refuse(errors)
