"""Closed months: once billing finalizes a tenant's month, that month takes no new usage.

This is the one place the rule lives. Billing's period close calls ``close_months`` in
the transaction that writes the invoices (so a month is closed exactly when its invoice
exists); the usage import, the samplers and plan changes ask here, and never look at
billing's invoices.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from metering.ingest import EventColumns, event_error, refuse
from metering.models import ClosedPeriod
from metering.periods import Period


def open_month_sql(*, tenant: str, moment: str) -> str:
    """A SQL condition for set-based writers (the samplers): true when the month of
    ``moment`` (a timestamptz expression) is still open for ``tenant`` (a uuid one)."""
    return (
        "not exists (select 1 from closed_periods c "
        f"where c.tenant_id = {tenant} "
        f"and c.period = cast(date_trunc('month', {moment} at time zone 'UTC') as date))"
    )


_CLOSE = text(
    """
    insert into closed_periods (tenant_id, period, reference, created_at)
    select u.t, u.p, u.r, now()
    from unnest(cast(:t as uuid[]), cast(:p as date[]), cast(:r as text[])) as u(t, p, r)
    on conflict (tenant_id, period) do nothing
    """
)


async def close_months(
    session: AsyncSession, closing: Iterable[tuple[uuid.UUID, Period, str]]
) -> None:
    """Close each (tenant, month) for good; ``reference`` names what closed it (the
    invoice number). A month already closed stays as it was. One statement however many
    (a period close passes a whole batch); the caller's transaction decides."""
    rows = list(closing)
    if rows:
        await session.execute(
            _CLOSE,
            {
                "t": [tenant_id for tenant_id, _, _ in rows],
                "p": [period.first_day for _, period, _ in rows],
                "r": [reference for _, _, reference in rows],
            },
        )


_CLOSED_IN_SPAN = text(
    """
    select tenant_id, period, reference from closed_periods
    where tenant_id = any(cast(:tenants as uuid[])) and period between :first and :last
    """
)


async def closed_months(
    session: AsyncSession, *, tenant_ids: Iterable[uuid.UUID], first: Period, last: Period
) -> dict[tuple[uuid.UUID, date], str]:
    """(tenant, first day of month) -> reference, for the closed months in first..last."""
    rows = await session.execute(
        _CLOSED_IN_SPAN,
        {"tenants": list(set(tenant_ids)), "first": first.first_day, "last": last.first_day},
    )
    return {(tenant_id, period): reference for tenant_id, period, reference in rows}


async def refuse_events_in_closed_months(session: AsyncSession, cols: EventColumns) -> None:
    """Late usage cannot change a finalized invoice. One query over the batch's span;
    the events are only scanned (to name the first offender) if some month is closed."""
    closed = await closed_months(
        session,
        tenant_ids=cols.tenant_ids,
        first=Period.containing(min(cols.occurred_at)),
        last=Period.containing(max(cols.occurred_at)),
    )
    if not closed:
        return
    errors, seen = [], set()
    for index, (tenant_id, moment) in enumerate(
        zip(cols.tenant_ids, cols.occurred_at, strict=True)
    ):
        key = (tenant_id, Period.containing(moment).first_day)
        if key in closed and key not in seen:
            seen.add(key)
            errors.append(
                event_error(
                    index,
                    cols.event_ids[index],
                    "occurred_at",
                    f"falls in {Period.of_date(key[1]).label}, which is already invoiced "
                    f"for this tenant ({closed[key]}); late usage cannot change a finalized "
                    "invoice; correct it with a credit note",
                )
            )
    raise refuse(errors)


async def refuse_change_from(
    session: AsyncSession, *, tenant_id: uuid.UUID, moment: datetime, what: str
) -> None:
    """A change (``what``: "a plan change") that reaches back to ``moment`` may not touch
    a closed month: it may take effect only after the last closed one."""
    closed = (
        await session.execute(
            select(ClosedPeriod.period, ClosedPeriod.reference)
            .where(
                ClosedPeriod.tenant_id == tenant_id,
                ClosedPeriod.period >= Period.containing(moment).first_day,
            )
            .order_by(ClosedPeriod.period)
            .limit(1)
        )
    ).first()
    if closed is not None:
        raise Conflict(
            f"{Period.of_date(closed.period).label} is already invoiced for this tenant "
            f"({closed.reference}); "
            f"{what} can take effect only after the last finalized period. "
            "Correct past invoices with a credit note."
        )
