"""The platform operator's pages: tenants, their plans, and running a job by hand."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from litestar import Request, get, post
from litestar.response import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import open_tenant, plans_now, resolve_tenant
from billing.contracts import set_contract
from billing.plan_changes import set_plan
from billing.schemas import ContractIn
from core.db import utcnow
from core.errors import BadRequest
from services.components import Components
from services.console.render import back, form, page, required
from services.console.session import PATH, ConsoleUser
from services.scheduler import JOBS, run_job
from tenants import service as tenants
from tenants.plans import OPENING_PLANS, Plan
from tenants.schemas import Scope

# What the API's PlanChange accepts (lapsed is reached only by the trial ending).
PLANS = ["trial", "starter", "payg", "enterprise"]


async def _operator_page(db: AsyncSession, user: ConsoleUser, **context) -> Response:
    found = await tenants.list_tenants(db)
    current = await plans_now(db, tenant_ids=[t.id for t in found], now=utcnow())
    return page(
        "operator.html",
        user,
        "Operator",
        nav="operator",
        tenants=found,
        current={tid: plan.value for tid, plan in current.items()},
        plans=PLANS,
        jobs=list(JOBS.values()),
        **context,
    )


@get("/operator")
async def operator_page(db: AsyncSession, user: ConsoleUser) -> Response:
    user.require_operator()
    return await _operator_page(db, user)


@post("/operator/tenants")
async def create_tenant(
    request: Request, db: AsyncSession, hangar: Components, user: ConsoleUser
) -> Response:
    user.require_operator()
    data = await form(request)
    name = required(data, "name", "the tenant's name")
    plan = data.get("plan", "starter")
    choices = [p.value for p in OPENING_PLANS]
    if plan not in choices:
        raise BadRequest(f"unknown plan {plan!r}: choose one of {', '.join(choices)}")
    # The account opens with the tenant, in this request's transaction (as the API does).
    tenant, _ = await open_tenant(
        db, name=name, plan=Plan(plan), trial_days=hangar.settings.billing.trial_days
    )
    key = await tenants.create_key(db, tenant_id=tenant.id, name="admin", scopes=[Scope.admin])
    # The first admin key, shown once, as `hangar tenants create` prints it.
    return await _operator_page(db, user, created=tenant, admin_key=key)


@post("/operator/tenants/{tenant:str}/plan")
async def tenant_plan(
    request: Request, db: AsyncSession, hangar: Components, user: ConsoleUser, tenant: str
) -> Response:
    user.require_operator()
    data = await form(request)
    plan = required(data, "plan", "the plan")
    if plan not in PLANS:
        raise BadRequest(f"unknown plan {plan!r}: choose one of {', '.join(PLANS)}")
    found = await resolve_tenant(db, tenant)
    await set_plan(
        db,
        tenant_id=found.id,
        plan=Plan(plan),
        effective_at=utcnow(),
        trial_days=hangar.settings.billing.trial_days,
    )
    return back(f"{PATH}/operator")


def _pence(data: dict[str, str], name: str, label: str, *, whole: bool = False) -> Decimal:
    """Pounds as typed, in pence. ``whole``: the amount is stored in whole pence, so a
    fraction of a penny is refused rather than cut off (35.999 is not 3599)."""
    raw = data.get(name, "").strip() or "0"
    wrong = BadRequest(f"{label} must be an amount in pounds, like 4.50, not {raw[:40]!r}")
    try:
        pounds = Decimal(raw)
    except InvalidOperation:
        raise wrong from None
    # NaN and Infinity parse as Decimals but are no amount; past 10^15 pounds is past
    # any bound the contract takes (checked below), and not worth computing with.
    if not pounds.is_finite() or pounds.adjusted() > 15:
        raise wrong
    if whole and _sub_penny(pounds):
        raise BadRequest(
            f"{label} is charged in whole pence: give at most 2 decimal places, not {raw[:40]!r}"
        )
    return pounds * 100


def _sub_penny(pounds: Decimal) -> bool:
    # Exact, on the digits as typed (no rounding to the decimal context's precision).
    _, digits, exponent = pounds.as_tuple()
    past = -2 - int(exponent)  # digits after the second decimal place
    return past > 0 and any(digits[-past:])


@post("/operator/contracts")
async def contract(request: Request, db: AsyncSession, user: ConsoleUser) -> Response:
    """The same contract as `hangar contracts set`: fee and rates in pounds (as typed),
    stored in pence; the tenant moves to enterprise under it from now."""
    user.require_operator()
    data = await form(request)
    found = await resolve_tenant(db, required(data, "tenant", "the tenant"))
    try:
        terms = ContractIn(
            monthly_fee_pence=int(_pence(data, "monthly_fee", "the monthly fee", whole=True)),
            device_month_pence=_pence(data, "device_month", "the device-month price"),
            storage_gb_month_pence=_pence(data, "storage_gb_month", "the GB-month price"),
            egress_gb_pence=_pence(data, "egress_gb", "the egress GB price"),
            included_egress_gb=data.get("included_egress_gb", "").strip() or "0",
            max_nodes=data.get("max_nodes", "").strip() or None,
            payment_terms_days=data.get("payment_terms_days", "").strip() or 30,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadRequest(f"the contract is invalid: {first['loc'][0]}: {first['msg']}") from None
    await set_contract(db, tenant_id=found.id, terms=terms, now=utcnow())
    return await _operator_page(db, user, contract_for=found.name)


@post("/operator/jobs")
async def run(
    request: Request, db: AsyncSession, hangar: Components, user: ConsoleUser
) -> Response:
    user.require_operator()
    data = await form(request)
    name = required(data, "job", "the job")
    if name not in JOBS:
        raise BadRequest(f"unknown job {name!r}: choose one of {', '.join(JOBS)}")
    at = data.get("at", "").strip()
    try:
        now = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    except ValueError:
        raise BadRequest(
            f"'as of' must be an ISO time like 2026-05-02T01:00:00Z, not {at!r}"
        ) from None
    if now is not None and now.tzinfo is None:
        raise BadRequest("'as of' needs a time zone, like 2026-05-02T01:00:00Z")
    # The job owns its transactions (as `hangar jobs run` does); this request's only reads.
    report = await run_job(hangar, name, now=now)
    return await _operator_page(db, user, job=name, report=report, ran=report is not None)


HANDLERS = [operator_page, create_tenant, tenant_plan, contract, run]
