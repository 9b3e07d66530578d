"""Billing operations the API and CLI call: accounts, plans, contracts, usage."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import set_plan, standing
from billing.models import Contract
from billing.plans import PlanName
from billing.quotas import limit_status
from billing.schemas import AccountOut, ContractIn, ContractOut, UsageOverview
from core.errors import BadRequest, Forbidden, PaymentRequired
from metering.ingest import (
    EventColumns,
    event_error,
    insert_events,
    parse_events,
    refuse,
    refuse_conflicts,
)
from metering.periods import Period
from metering.reports import UsageNames, usage_report
from metering.schemas import ImportResult
from tenants.models import Tenant


async def account(
    session: AsyncSession, *, tenant_id: uuid.UUID, now: datetime, trial_days: int
) -> AccountOut:
    state = await standing(session, tenant_id=tenant_id, trial_days=trial_days)
    segment = state.at(now)
    trial_ends = segment.ends_at if segment.terms.plan is PlanName.trial else None
    return AccountOut(
        tenant_id=tenant_id,
        tenant=state.tenant.name,
        plan=segment.terms.plan.value,
        plan_title=segment.terms.title,
        trial_ends_at=trial_ends,
        payment_method=state.account.payment_method,
        spend_cap_pence=state.account.spend_cap_pence,
        stripe_customer_id=state.account.stripe_customer_id,
        blocked=segment.terms.blocked,
    )


async def choose_plan(
    session: AsyncSession, *, tenant_id: uuid.UUID, plan: PlanName, now: datetime, trial_days: int
) -> AccountOut:
    """A tenant admin picks Starter or pay-as-you-go; both are paid, so a payment
    method must be on file first. Enterprise and trials are set by the operator."""
    if plan not in (PlanName.starter, PlanName.payg):
        raise BadRequest(
            "choose starter or payg; enterprise contracts are set by your Hangar operator"
        )
    state = await standing(session, tenant_id=tenant_id, trial_days=trial_days)
    current = state.at(now)
    scheduled = [s for s in state.segments if s.starts_at > now]
    if any(s.terms.plan is PlanName.enterprise for s in [current, *scheduled]):
        raise Forbidden(
            "this tenant is on (or scheduled for) an enterprise contract; enterprise plans "
            "are changed by the platform operator"
        )
    if not state.account.payment_method:
        raise PaymentRequired(
            f"{plan.value} is a paid plan and no payment method is on file; add one first with "
            "`hangar billing payment-method pm_...`"
        )
    await set_plan(session, tenant_id=tenant_id, plan=plan, effective_at=now, trial_days=trial_days)
    return await account(session, tenant_id=tenant_id, now=now, trial_days=trial_days)


def contract_out(contract: Contract, effective_at: datetime | None = None) -> ContractOut:
    data = {
        name: getattr(contract, name) for name in ContractOut.model_fields if name != "effective_at"
    }
    return ContractOut(**data, effective_at=effective_at)


async def set_contract(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    terms: ContractIn,
    now: datetime,
    trial_days: int,
) -> ContractOut:
    """A new contract and, from ``effective_at`` (default now), the enterprise plan under it."""
    effective_at = terms.effective_at or now
    contract = Contract(tenant_id=tenant_id, **terms.model_dump(exclude={"effective_at"}))
    session.add(contract)
    await session.flush()
    await set_plan(
        session,
        tenant_id=tenant_id,
        plan=PlanName.enterprise,
        effective_at=effective_at,
        trial_days=trial_days,
        contract_id=contract.id,
    )
    return contract_out(contract, effective_at)


async def get_contract(session: AsyncSession, *, tenant_id: uuid.UUID) -> ContractOut:
    contract = await session.scalar(
        select(Contract)
        .where(Contract.tenant_id == tenant_id)
        .order_by(Contract.created_at.desc())
        .limit(1)
    )
    if contract is None:
        raise BadRequest(
            "this tenant has no enterprise contract; set one with `hangar contracts set TENANT ...`"
        )
    return contract_out(contract)


async def usage_overview(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    period: Period,
    now: datetime,
    trial_days: int,
    names: UsageNames,
) -> UsageOverview:
    state = await standing(session, tenant_id=tenant_id, trial_days=trial_days)
    report = await usage_report(session, tenant_id=tenant_id, period=period, names=names)
    # The plan shown is the one in force now, or at the end of a past period.
    terms = state.at(min(now, period.end - timedelta(microseconds=1))).terms
    # Limits describe where the tenant stands now, so only the current period shows them.
    limits = await limit_status(session, state, now=now) if period == Period.containing(now) else []
    return UsageOverview(
        **report.model_dump(), plan=terms.plan.value, plan_title=terms.title, limits=limits
    )


_CLOSED = text(
    """
    select tenant_id, period, number from invoices
    where tenant_id = any(cast(:tenants as uuid[])) and period between :first and :last
    """
)


async def _refuse_closed_months(session: AsyncSession, cols: EventColumns) -> None:
    """Late usage cannot change a finalized invoice. One query over the batch's span;
    the events are only scanned (to name the first offender) if some month is closed."""
    first = Period.containing(min(cols.occurred_at)).first_day
    last = Period.containing(max(cols.occurred_at)).first_day
    rows = await session.execute(
        _CLOSED, {"tenants": list(set(cols.tenant_ids)), "first": first, "last": last}
    )
    closed = {(tenant_id, period): number for tenant_id, period, number in rows}
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


async def import_usage(
    session: AsyncSession, *, payload: Any, now: datetime, max_events: int
) -> ImportResult:
    """Operator backfill: all or nothing, idempotent on (tenant, event id). Events for
    unknown tenants, or for a month already invoiced, refuse the whole batch."""
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
    await _refuse_closed_months(session, cols)
    await refuse_conflicts(session, cols)
    written = await insert_events(session, cols)
    return ImportResult(received=len(cols), written=written, duplicates=len(cols) - written)
