"""The billing side of the scheduled jobs. Each takes an explicit ``now`` (so tests and
operators can run a job "as of" any time) and is idempotent: a second run, or a
concurrent one on another scheduler, changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.period_close import closable_periods, close_period
from billing.stripe import StripeClient
from billing.stripe_sync import SyncReport, sync_invoices
from core.db import transaction
from core.settings import BillingSettings
from metering.samplers import SampleReport, count_device_days, sample_storage

_EXPIRE_TRIALS = text(
    """
    insert into plan_periods (id, tenant_id, plan, starts_at, created_at)
    select gen_random_uuid(), p.tenant_id,
           case when a.payment_method is not null
                and (a.payment_method_at is null or a.payment_method_at <= p.trial_ends_at)
               then 'starter' else 'lapsed' end,
           p.trial_ends_at, now()
    from plan_periods p
    join billing_accounts a on a.tenant_id = p.tenant_id
    where p.plan = 'trial' and p.trial_ends_at <= :now
      and not exists (
        select 1 from plan_periods q where q.tenant_id = p.tenant_id and q.starts_at > p.starts_at
      )
    on conflict (tenant_id, starts_at) do nothing
    returning plan
    """
)


@dataclass
class TrialReport:
    to_starter: int = 0
    lapsed: int = 0


@dataclass
class CloseReport:
    periods: list[str] = field(default_factory=list)
    invoices: int = 0
    numbers: list[str] = field(default_factory=list)
    # "period tenant-id: error" for each tenant whose invoice could not be made.
    failed: list[str] = field(default_factory=list)


async def expire_trials(session: AsyncSession, *, now: datetime) -> TrialReport:
    """Record each ended trial's successor: paid Starter with a payment method on file,
    else "lapsed" (writes and downloads refused until a plan is chosen)."""
    report = TrialReport()
    for (plan,) in await session.execute(_EXPIRE_TRIALS, {"now": now}):
        if plan == "starter":
            report.to_starter += 1
        else:
            report.lapsed += 1
    return report


async def run_storage_sample(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime
) -> SampleReport:
    async with transaction(sessions) as session:
        return await sample_storage(session, now=now)


async def run_device_count(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, settings: BillingSettings
) -> SampleReport:
    async with transaction(sessions) as session:
        return await count_device_days(
            session, now=now, lookback_days=settings.device_lookback_days
        )


async def run_trial_expiry(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime
) -> TrialReport:
    async with transaction(sessions) as session:
        return await expire_trials(session, now=now)


async def run_period_close(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, settings: BillingSettings
) -> CloseReport:
    # Trials that ended are recorded first, so invoices and the plan history agree.
    await run_trial_expiry(sessions, now=now)
    report = CloseReport()
    for period in closable_periods(now, settings):
        result = await close_period(sessions, period=period, now=now, settings=settings)
        report.periods.append(result.period)
        report.invoices += result.invoices
        report.numbers += result.numbers
        report.failed += [f"{result.period} {failure}" for failure in result.failed]
    return report


async def run_stripe_sync(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, client: StripeClient
) -> SyncReport:
    return await sync_invoices(sessions, client, now=now)
