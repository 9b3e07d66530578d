"""Billing accounts: opened with the tenant, and the terms in force at any time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import BillingAccount, Contract, PlanPeriod, SpendCap
from billing.schemas import AccountOut
from billing.timeline import Segment, build, in_force
from core.db import utcnow
from core.errors import BadRequest, NotFound
from tenants.models import Tenant
from tenants.plans import OPENING_PLANS, Plan
from tenants.service import create_tenant


async def open_account(
    session: AsyncSession, *, tenant: Tenant, plan: Plan, trial_days: int
) -> PlanPeriod:
    """The tenant's billing account and first plan period, from the tenant's creation.
    Call it in the transaction that creates the tenant: no tenant ever exists without
    an account, so nothing has to be inserted later on a read. Starter starts as its
    free trial."""
    if plan not in OPENING_PLANS:
        raise BadRequest(f"a tenant is opened on {', '.join(OPENING_PLANS)}, not {plan}")
    first = Plan.trial if plan is Plan.starter else plan
    session.add(BillingAccount(tenant_id=tenant.id, created_at=tenant.created_at))
    period = PlanPeriod(
        tenant_id=tenant.id,
        plan=first.value,
        starts_at=tenant.created_at,
        trial_ends_at=tenant.created_at + timedelta(days=trial_days)
        if first is Plan.trial
        else None,
    )
    session.add(period)
    await session.flush()
    return period


async def open_tenant(
    session: AsyncSession, *, name: str, plan: Plan, trial_days: int
) -> tuple[Tenant, Plan]:
    """A new tenant and its billing account, in the caller's transaction, and the plan
    it is on now. Every way of creating a tenant (API, console) goes through here."""
    tenant = await create_tenant(session, name=name)
    first = await open_account(session, tenant=tenant, plan=plan, trial_days=trial_days)
    return tenant, Plan(first.plan)


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


async def standing(session: AsyncSession, *, tenant_id: uuid.UUID, lock: bool = False) -> Standing:
    """The tenant's account and plan segments. ``lock`` takes the account row FOR
    UPDATE, serializing checks that must not race (the 15th node)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    stmt = select(BillingAccount).where(BillingAccount.tenant_id == tenant_id)
    account = await session.scalar(stmt.with_for_update() if lock else stmt)
    if account is None:
        # Accounts are opened with their tenant, and migration 0006 opened the older ones.
        raise NotFound(f"tenant {tenant_id} has no billing account; run `hangar migrate`")
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


async def plans_now(
    session: AsyncSession, *, tenant_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Plan]:
    """The plan each tenant is on at ``now`` (for tenant listings)."""
    accounts = {
        a.tenant_id: a
        for a in await session.scalars(
            select(BillingAccount).where(BillingAccount.tenant_id.in_(tenant_ids))
        )
    }
    segments = await load_segments(session, accounts=accounts)
    out = {}
    for tenant_id, segs in segments.items():
        segment = in_force(segs, now)
        if segment is not None:
            out[tenant_id] = segment.terms.plan
    return out


async def account_out(session: AsyncSession, *, tenant_id: uuid.UUID, now: datetime) -> AccountOut:
    state = await standing(session, tenant_id=tenant_id)
    segment = state.at(now)
    trial_ends = segment.ends_at if segment.terms.plan is Plan.trial else None
    return AccountOut(
        tenant_id=tenant_id,
        tenant=state.tenant.name,
        plan=segment.terms.plan,
        plan_title=segment.terms.title,
        trial_ends_at=trial_ends,
        payment_method=state.account.payment_method,
        spend_cap_pence=state.account.spend_cap_pence,
        stripe_customer_id=state.account.stripe_customer_id,
        blocked=segment.terms.blocked,
    )


async def resolve_tenant(session: AsyncSession, ref: str) -> Tenant:
    """A tenant by id or by name (what operators type)."""
    try:
        tenant = await session.get(Tenant, uuid.UUID(ref))
    except ValueError:
        tenant = await session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFound(f"no tenant {ref!r}; `hangar tenants ls` lists them")
    return tenant


async def set_spend_cap(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    cap_pence: int | None,
    now: datetime | None = None,
) -> BillingAccount:
    """The cap applies from ``now`` on: the month in progress and later ones, never a
    month that has already ended."""
    if cap_pence is not None and cap_pence < 0:
        raise BadRequest("a spend cap cannot be negative; send null to remove the cap")
    state = await standing(session, tenant_id=tenant_id, lock=True)
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
