"""Rating from the database, for one tenant (preview) or thousands (period close).

Usage is aggregated per plan window in one query per batch of tenants: the windows
are computed in Python (they include trial expiry, which has no row of its own) and
joined against ``usage_events`` through ``unnest``, so the work is a handful of
statements per batch, never per tenant.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.accounts import load_segments
from billing.models import BillingAccount, Invoice, InvoiceLine, NumberSeries, PlanPeriod
from billing.rating import RatedLine, rate, windows
from billing.states import INVOICE, InvoiceStatus, StripeState
from billing.timeline import Segment
from core.db import transaction
from core.settings import BillingSettings
from metering.closing import close_months
from metering.meters import BILLED
from metering.periods import Period
from tenants.models import Tenant

log = logging.getLogger(__name__)

_USAGE_BY_WINDOW = text(
    """
    select w.tenant_id, w.idx, e.meter, sum(e.quantity), count(*)
    from unnest(cast(:tenants as uuid[]), cast(:idx as int[]),
                cast(:lo as timestamptz[]), cast(:hi as timestamptz[])) as w(tenant_id, idx, lo, hi)
    join usage_events e
      on e.tenant_id = w.tenant_id and e.meter = any(cast(:meters as text[]))
     and e.occurred_at >= w.lo and e.occurred_at < w.hi
    group by w.tenant_id, w.idx, e.meter
    """
)


async def rate_tenants(
    session: AsyncSession,
    *,
    period: Period,
    segments: dict[uuid.UUID, list[Segment]],
    draft: bool = False,
) -> dict[uuid.UUID, list[RatedLine]]:
    params: dict[str, list] = {"tenants": [], "idx": [], "lo": [], "hi": [], "meters": list(BILLED)}
    for tenant_id, segs in segments.items():
        for index, window in enumerate(windows(period, segs)):
            params["tenants"].append(tenant_id)
            params["idx"].append(index)
            params["lo"].append(window.usage_from)
            params["hi"].append(window.usage_to)
    usage: dict[uuid.UUID, dict[tuple[int, str], tuple[int, int]]] = {tid: {} for tid in segments}
    if params["tenants"]:
        for tenant_id, index, meter, total, count in await session.execute(
            _USAGE_BY_WINDOW, params
        ):
            usage[tenant_id][(index, meter)] = (int(total), int(count))
    return {tid: rate(period, segs, usage[tid], draft=draft) for tid, segs in segments.items()}


async def next_numbers(session: AsyncSession, *, series: str, count: int) -> list[int]:
    """Take ``count`` consecutive numbers. The row lock is held until the caller's
    transaction ends: numbers are consumed only if the invoices are committed."""
    await session.execute(
        text("insert into number_series (name, next_value) values (:n, 1) on conflict do nothing"),
        {"n": series},
    )
    row = await session.scalar(
        select(NumberSeries).where(NumberSeries.name == series).with_for_update()
    )
    assert row is not None
    first = row.next_value
    row.next_value = first + count
    return list(range(first, first + count))


@dataclass
class CloseResult:
    period: str
    invoices: int
    numbers: list[str]
    # Tenants whose invoice could not be made: "tenant id: error". The others are closed.
    failed: list[str] = field(default_factory=list)


def _due_days(segs: list[Segment], period: Period, default: int) -> int:
    in_force = [s for s in segs if s.starts_at < period.end]
    terms = in_force[-1].terms if in_force else segs[0].terms
    return terms.payment_terms_days if terms.payment_terms_days is not None else default


async def _candidates(
    sessions: async_sessionmaker[AsyncSession], period: Period
) -> list[uuid.UUID]:
    """Tenants that existed during the period (by their first plan) and lack its invoice."""
    async with sessions() as session:
        first_plan = (
            select(PlanPeriod.tenant_id)
            .group_by(PlanPeriod.tenant_id)
            .having(func.min(PlanPeriod.starts_at) < period.end)
        )
        invoiced = select(Invoice.tenant_id).where(Invoice.period == period.first_day)
        rows = await session.scalars(
            select(Tenant.id)
            .where(Tenant.id.in_(first_plan), Tenant.id.not_in(invoiced))
            .order_by(Tenant.name)
        )
        return list(rows)


async def close_period(
    sessions: async_sessionmaker[AsyncSession],
    *,
    period: Period,
    now: datetime,
    settings: BillingSettings,
) -> CloseResult:
    """Finalize every tenant's invoice for ``period``. Safe to run again or concurrently:
    each batch takes the number series lock first and then skips tenants already invoiced."""
    result = CloseResult(str(period), 0, [])
    candidates = await _candidates(sessions, period)
    size = settings.close_batch_size
    for start in range(0, len(candidates), size):
        batch = candidates[start : start + size]
        try:
            async with transaction(sessions) as session:
                numbers = await _close_batch(
                    session, period=period, now=now, settings=settings, tenant_ids=batch
                )
        except Exception:
            # One tenant's bad data must not stop everyone's invoices: retry one by one.
            numbers = []
            for tenant_id in batch:
                try:
                    async with transaction(sessions) as session:
                        numbers += await _close_batch(
                            session,
                            period=period,
                            now=now,
                            settings=settings,
                            tenant_ids=[tenant_id],
                        )
                except Exception as exc:
                    log.exception("period close %s failed for tenant %s", period, tenant_id)
                    result.failed.append(f"{tenant_id}: {type(exc).__name__}: {exc}")
        result.invoices += len(numbers)
        result.numbers += numbers
    return result


async def _close_batch(
    session: AsyncSession,
    *,
    period: Period,
    now: datetime,
    settings: BillingSettings,
    tenant_ids: list[uuid.UUID],
) -> list[str]:
    # Lock first, then look: a concurrent closer that got here earlier has committed.
    await next_numbers(session, series="invoice", count=0)
    done = set(
        await session.scalars(
            select(Invoice.tenant_id).where(
                Invoice.tenant_id.in_(tenant_ids), Invoice.period == period.first_day
            )
        )
    )
    todo = [t for t in tenant_ids if t not in done]
    if not todo:
        return []
    accounts = {
        a.tenant_id: a
        for a in await session.scalars(
            select(BillingAccount).where(BillingAccount.tenant_id.in_(todo))
        )
    }
    segments = await load_segments(session, accounts=accounts)
    rated = await rate_tenants(session, period=period, segments=segments)
    numbers = await next_numbers(session, series="invoice", count=len(todo))
    invoices, lines, labels = [], [], []
    for tenant_id, number in zip(todo, numbers, strict=True):
        invoice_id = uuid.uuid4()
        label = f"{settings.invoice_prefix}-{number:06d}"
        total = sum(line.amount_pence for line in rated[tenant_id])
        invoices.append(
            {
                "id": invoice_id,
                "tenant_id": tenant_id,
                "number": label,
                "period": period.first_day,
                # Finalizing the draft: due if something is, else settled at once.
                "status": INVOICE.check(
                    InvoiceStatus.draft, InvoiceStatus.open if total > 0 else InvoiceStatus.paid
                ),
                "currency": "gbp",
                "total_pence": total,
                "finalized_at": now,
                "paid_at": None if total > 0 else now,
                "due_at": now
                + timedelta(
                    days=_due_days(segments[tenant_id], period, settings.payment_terms_days)
                ),
                "stripe_state": StripeState.none if total > 0 else StripeState.skipped,
                "stripe_attempts": 0,
                "created_at": now,
            }
        )
        lines += [
            {"id": uuid.uuid4(), "invoice_id": invoice_id, "position": pos, **vars(line)}
            for pos, line in enumerate(rated[tenant_id], start=1)
        ]
        labels.append(label)
    await session.execute(insert(Invoice), invoices)
    if lines:
        await session.execute(insert(InvoiceLine), lines)
    # Same transaction as the invoices: a month is closed to usage exactly when its
    # invoice exists.
    await close_months(
        session, [(tenant_id, period, label) for tenant_id, label in zip(todo, labels, strict=True)]
    )
    return labels


def closable_periods(now: datetime, settings: BillingSettings) -> list[Period]:
    """Periods whose end plus the grace days has passed, newest ``close_lookback_months``."""
    latest = Period.containing(now - timedelta(days=settings.grace_days))
    latest = latest.previous()
    out = [latest]
    for _ in range(settings.close_lookback_months - 1):
        out.append(out[-1].previous())
    return sorted(out)
