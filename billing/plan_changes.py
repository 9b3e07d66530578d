"""Plan changes: the operator's (any plan, backdated or scheduled) and the tenant
admin's own choice between the paid self-service plans."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import account_out, standing
from billing.models import Contract, PlanPeriod
from billing.schemas import AccountOut
from core.db import utcnow
from core.errors import BadRequest, Forbidden, PaymentRequired
from metering.closing import refuse_change_from
from tenants.plans import Plan

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
    plan: Plan,
    effective_at: datetime,
    trial_days: int | None = None,
    contract_id: uuid.UUID | None = None,
) -> PlanPeriod:
    """From ``effective_at`` on, ``plan`` is in force; later scheduled changes are dropped.
    ``trial_days`` is needed (only) to start a trial."""
    check_effective_at(effective_at, now=utcnow())
    if plan is Plan.lapsed:
        raise BadRequest("'lapsed' is not a plan to choose; pick starter, payg or enterprise")
    if plan is Plan.trial and trial_days is None:
        raise ValueError("starting a trial needs trial_days (HANGAR_BILLING_TRIAL_DAYS)")
    if plan is Plan.enterprise and contract_id is None:
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
    await standing(session, tenant_id=tenant_id, lock=True)
    await refuse_change_from(
        session, tenant_id=tenant_id, moment=effective_at, what="a plan change"
    )
    await session.execute(
        delete(PlanPeriod).where(
            PlanPeriod.tenant_id == tenant_id, PlanPeriod.starts_at >= effective_at
        )
    )
    period = PlanPeriod(
        tenant_id=tenant_id,
        plan=plan.value,
        contract_id=contract_id if plan is Plan.enterprise else None,
        starts_at=effective_at,
        trial_ends_at=effective_at + timedelta(days=trial_days)
        if plan is Plan.trial and trial_days is not None
        else None,
    )
    session.add(period)
    await session.flush()
    return period


async def choose_plan(
    session: AsyncSession, *, tenant_id: uuid.UUID, plan: Plan, now: datetime
) -> AccountOut:
    """A tenant admin picks Starter or pay-as-you-go; both are paid, so a payment
    method must be on file first. Enterprise and trials are set by the operator."""
    if plan not in (Plan.starter, Plan.payg):
        raise BadRequest(
            "choose starter or payg; enterprise contracts are set by your Hangar operator"
        )
    state = await standing(session, tenant_id=tenant_id)
    current = state.at(now)
    scheduled = [s for s in state.segments if s.starts_at > now]
    if any(s.terms.plan is Plan.enterprise for s in [current, *scheduled]):
        raise Forbidden(
            "this tenant is on (or scheduled for) an enterprise contract; enterprise plans "
            "are changed by the platform operator"
        )
    if not state.account.payment_method:
        raise PaymentRequired(
            f"{plan.value} is a paid plan and no payment method is on file; add one first with "
            "`hangar billing payment-method pm_...`"
        )
    await set_plan(session, tenant_id=tenant_id, plan=plan, effective_at=now)
    return await account_out(session, tenant_id=tenant_id, now=now)
