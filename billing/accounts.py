"""Billing accounts and plan history: the terms in force for a tenant at any time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import BillingAccount, Contract, Invoice, PlanPeriod, SpendCap
from billing.plans import PUBLIC_PLAN, PlanName
from billing.timeline import Segment, build, in_force
from core.db import utcnow
from core.errors import BadRequest, Conflict, NotFound
from metering.periods import Period
from tenants.models import Tenant

# Tenants predating billing (or created by code that does not know about it) get an
# account on first use: Starter starts as a trial from the tenant's creation.
_ENSURE_ACCOUNTS = text(
    """
    insert into billing_accounts (tenant_id, created_at)
    select t.id, now() from tenants t
    where (cast(:ids as uuid[]) is null or t.id = any(cast(:ids as uuid[])))
    on conflict (tenant_id) do nothing
    """
)
_ENSURE_PERIODS = text(
    """
    insert into plan_periods (id, tenant_id, plan, starts_at, trial_ends_at, created_at)
    select gen_random_uuid(), t.id,
           case when t.plan = 'starter' then 'trial' else t.plan end,
           t.created_at,
           case when t.plan = 'starter' then t.created_at + make_interval(days => :trial_days) end,
           now()
    from tenants t
    where (cast(:ids as uuid[]) is null or t.id = any(cast(:ids as uuid[])))
      and not exists (select 1 from plan_periods p where p.tenant_id = t.id)
    on conflict (tenant_id, starts_at) do nothing
    """
)


async def ensure_accounts(
    session: AsyncSession, *, trial_days: int, tenant_ids: list[uuid.UUID] | None = None
) -> None:
    params = {"ids": tenant_ids, "trial_days": trial_days}
    await session.execute(_ENSURE_ACCOUNTS, params)
    await session.execute(_ENSURE_PERIODS, params)


@dataclass
class Standing:
    """Everything billing knows about one tenant."""

    tenant: Tenant
    account: BillingAccount
    segments: list[Segment]

    def at(self, moment: datetime) -> Segment:
        segment = in_force(self.segments, moment)
        assert segment is not None, "every tenant has at least one plan period"
        return segment


async def standing(
    session: AsyncSession, *, tenant_id: uuid.UUID, trial_days: int, lock: bool = False
) -> Standing:
    """The tenant's account and plan segments. ``lock`` takes the account row FOR
    UPDATE, serializing checks that must not race (the 15th node)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    stmt = select(BillingAccount).where(BillingAccount.tenant_id == tenant_id)
    account = await session.scalar(stmt.with_for_update() if lock else stmt)
    if account is None:
        await ensure_accounts(session, trial_days=trial_days, tenant_ids=[tenant_id])
        account = await session.scalar(stmt.with_for_update() if lock else stmt)
    loaded = await load_segments(session, accounts={tenant_id: account})
    return Standing(tenant, account, loaded[tenant_id])


async def load_segments(
    session: AsyncSession, *, accounts: dict[uuid.UUID, BillingAccount]
) -> dict[uuid.UUID, list[Segment]]:
    """Segments of many tenants with three queries, whatever their number."""
    ids = list(accounts)
    periods = list(await session.scalars(select(PlanPeriod).where(PlanPeriod.tenant_id.in_(ids))))
    contract_ids = {p.contract_id for p in periods if p.contract_id}
    contracts = {}
    if contract_ids:
        rows = await session.scalars(select(Contract).where(Contract.id.in_(contract_ids)))
        contracts = {c.id: c for c in rows}
    by_tenant: dict[uuid.UUID, list[PlanPeriod]] = {tid: [] for tid in ids}
    for period in periods:
        by_tenant[period.tenant_id].append(period)
    caps: dict[uuid.UUID, list[tuple[datetime, int | None]]] = {tid: [] for tid in ids}
    for cap in await session.scalars(select(SpendCap).where(SpendCap.tenant_id.in_(ids))):
        caps[cap.tenant_id].append((cap.effective_at, cap.cap_pence))
    return {
        tid: build(by_tenant[tid], account=accounts[tid], contracts=contracts, caps=caps[tid])
        for tid in ids
    }


async def resolve_tenant(session: AsyncSession, ref: str) -> Tenant:
    """A tenant by id or by name (what operators type)."""
    try:
        tenant = await session.get(Tenant, uuid.UUID(ref))
    except ValueError:
        tenant = await session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFound(f"no tenant {ref!r}; `hangar tenants ls` lists them")
    return tenant


async def _refuse_if_invoiced(
    session: AsyncSession, *, tenant_id: uuid.UUID, moment: datetime
) -> None:
    invoiced = await session.scalar(
        select(Invoice.number)
        .where(
            Invoice.tenant_id == tenant_id, Invoice.period >= Period.containing(moment).first_day
        )
        .order_by(Invoice.period)
        .limit(1)
    )
    if invoiced:
        raise Conflict(
            f"{Period.containing(moment).label} is already invoiced for this tenant ({invoiced}); "
            "a plan change can take effect only after the last finalized period. "
            "Correct past invoices with a credit note."
        )


# The earliest month billing knows (``Period.parse`` accepts 2000-01 to 9998-12).
EARLIEST_EFFECTIVE_AT = datetime(2000, 1, 1, tzinfo=UTC)


def check_effective_at(effective_at: datetime, *, now: datetime) -> None:
    """A plan or contract may be backdated (migrations) or scheduled, within bounds."""
    if effective_at < EARLIEST_EFFECTIVE_AT:
        raise BadRequest(
            f"effective_at {effective_at.isoformat()} is too early: "
            "plans and contracts can start on 2000-01-01 at the earliest"
        )
    if effective_at > now + timedelta(days=365):
        raise BadRequest(
            f"effective_at {effective_at.isoformat()} is more than a year ahead; "
            "schedule a plan or contract at most one year from now"
        )


async def set_plan(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    plan: PlanName,
    effective_at: datetime,
    trial_days: int,
    contract_id: uuid.UUID | None = None,
) -> PlanPeriod:
    """From ``effective_at`` on, ``plan`` is in force; later scheduled changes are dropped."""
    check_effective_at(effective_at, now=utcnow())
    if plan is PlanName.lapsed:
        raise BadRequest("'lapsed' is not a plan to choose; pick starter, payg or enterprise")
    if plan is PlanName.enterprise and contract_id is None:
        contract_id = await session.scalar(
            select(Contract.id)
            .where(Contract.tenant_id == tenant_id)
            .order_by(Contract.created_at.desc())
            .limit(1)
        )
        if contract_id is None:
            raise BadRequest(
                "this tenant has no enterprise contract yet; set one with "
                "`hangar contracts set TENANT --monthly-fee ...` "
                "(which also moves it to enterprise)"
            )
    await standing(session, tenant_id=tenant_id, trial_days=trial_days, lock=True)
    await _refuse_if_invoiced(session, tenant_id=tenant_id, moment=effective_at)
    await session.execute(
        delete(PlanPeriod).where(
            PlanPeriod.tenant_id == tenant_id, PlanPeriod.starts_at >= effective_at
        )
    )
    period = PlanPeriod(
        tenant_id=tenant_id,
        plan=plan.value,
        contract_id=contract_id if plan is PlanName.enterprise else None,
        starts_at=effective_at,
        trial_ends_at=effective_at + timedelta(days=trial_days) if plan is PlanName.trial else None,
    )
    session.add(period)
    await session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(plan=PUBLIC_PLAN[plan])
    )
    await session.flush()
    return period


async def set_spend_cap(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    cap_pence: int | None,
    trial_days: int,
    now: datetime | None = None,
) -> BillingAccount:
    """The cap applies from ``now`` on: the month in progress and later ones, never a
    month that has already ended."""
    if cap_pence is not None and cap_pence < 0:
        raise BadRequest("a spend cap cannot be negative; send null to remove the cap")
    state = await standing(session, tenant_id=tenant_id, trial_days=trial_days, lock=True)
    state.account.spend_cap_pence = cap_pence
    await session.execute(
        pg_insert(SpendCap)
        .values(tenant_id=tenant_id, effective_at=now or utcnow(), cap_pence=cap_pence)
        .on_conflict_do_update(
            index_elements=["tenant_id", "effective_at"], set_={"cap_pence": cap_pence}
        )
    )
    await session.flush()
    return state.account
