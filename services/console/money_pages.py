"""Usage, invoices, billing and API keys."""

from __future__ import annotations

import uuid

from litestar import Request, get, post
from litestar.response import Response
from sqlalchemy.ext.asyncio import AsyncSession

from billing import invoices
from billing.accounts import account_out, set_spend_cap
from billing.export import COLUMNS, export_rows
from billing.payments import set_payment_method
from billing.plan_changes import choose_plan
from billing.usage_overview import usage_overview
from core.db import utcnow
from core.errors import BadRequest
from metering.periods import Period
from metering.reports import EXPORT_COLUMNS, usage_export_rows
from services.api.exports import ExportFormat, export_response
from services.components import Components
from services.console.charts import line_chart
from services.console.render import back, form, page, required
from services.console.session import PATH, ConsoleUser
from tenants import service as tenants
from tenants.plans import Plan
from tenants.schemas import Scope


def _period(period: str | None) -> Period:
    return Period.parse(period) if period else Period.containing(utcnow())


@get("/usage")
async def usage_page(
    db: AsyncSession, hangar: Components, user: ConsoleUser, period: str | None = None
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    chosen = _period(period)
    usage = await usage_overview(
        db, tenant_id=principal.tenant_id, period=chosen, now=utcnow(), names=hangar.usage_names
    )
    days = [(d.date.strftime("%d"), d) for d in usage.daily]
    charts = [
        line_chart("Devices per day", "devices", [(k, d.device_days) for k, d in days]),
        line_chart("Storage per day", "GB (average)", [(k, d.storage_gb) for k, d in days]),
        line_chart("Egress per day", "GB", [(k, d.egress_bytes / 1e9) for k, d in days]),
    ]
    return page(
        "usage.html",
        user,
        f"Usage {chosen}",
        nav="usage",
        usage=usage,
        charts=charts,
        period=str(chosen),
    )


@get("/usage/export")
async def usage_export(
    db: AsyncSession,
    hangar: Components,
    user: ConsoleUser,
    period: str | None = None,
    format: ExportFormat = "csv",
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    chosen = _period(period)
    rows = await usage_export_rows(
        db, tenant_id=principal.tenant_id, period=chosen, names=hangar.usage_names
    )
    return export_response(rows, columns=EXPORT_COLUMNS, fmt=format, name=f"usage-{chosen}")


@get("/invoices")
async def invoices_page(
    db: AsyncSession, hangar: Components, user: ConsoleUser, status: str | None = None
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    found = await invoices.list_invoices(
        db, tenant_id=principal.tenant_id, period=None, status=status or None
    )
    draft = await invoices.preview(
        db, tenant_id=principal.tenant_id, period=Period.containing(utcnow())
    )
    return page(
        "invoices.html",
        user,
        "Invoices",
        nav="invoices",
        invoices=found,
        draft=draft,
        status=status or "",
    )


@get("/invoices/export")
async def invoices_export(
    db: AsyncSession, user: ConsoleUser, format: ExportFormat = "csv", period: str | None = None
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    rows = await export_rows(
        db,
        tenant_id=principal.tenant_id,
        period=Period.parse(period) if period else None,
        status=None,
    )
    return export_response(rows, columns=COLUMNS, fmt=format, name=f"invoices-{period or 'all'}")


@get("/invoices/draft")
async def draft_page(db: AsyncSession, hangar: Components, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    draft = await invoices.preview(
        db, tenant_id=principal.tenant_id, period=Period.containing(utcnow())
    )
    return page(
        "invoice.html", user, f"Draft invoice {draft.period}", nav="invoices", invoice=draft
    )


@get("/invoices/{ref:str}")
async def invoice_page(db: AsyncSession, user: ConsoleUser, ref: str) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    invoice = await invoices.get_invoice(db, tenant_id=principal.tenant_id, ref=ref)
    return page("invoice.html", user, f"Invoice {invoice.number}", nav="invoices", invoice=invoice)


@get("/invoices/{ref:str}/lines/{position:int}")
async def line_page(
    db: AsyncSession, user: ConsoleUser, ref: str, position: int, after: str | None = None
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.finance)
    usage = await invoices.line_usage(
        db, tenant_id=principal.tenant_id, ref=ref, position=position, after=after, limit=200
    )
    return page(
        "line_usage.html",
        user,
        f"Usage behind line {position} of {usage.invoice}",
        nav="invoices",
        usage=usage,
        ref=ref,
    )


@get("/billing")
async def billing_page(db: AsyncSession, hangar: Components, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    account = await account_out(db, tenant_id=principal.tenant_id, now=utcnow())
    return page("billing.html", user, "Billing", nav="billing", account=account)


@post("/billing/{what:str}")
async def billing_change(
    request: Request, db: AsyncSession, hangar: Components, user: ConsoleUser, what: str
) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data, now = await form(request), utcnow()
    if what == "plan":
        plan = required(data, "plan", "the plan")
        if plan not in ("starter", "payg"):
            raise BadRequest("choose starter or payg; enterprise plans are set by the operator")
        await choose_plan(db, tenant_id=principal.tenant_id, plan=Plan(plan), now=now)
    elif what == "spend-cap":
        raw = data.get("cap_pounds", "").strip()
        try:
            cap = None if not raw else int(round(float(raw) * 100))
        except ValueError:
            raise BadRequest(
                f"the spend cap must be an amount in pounds, like 250, not {raw!r}"
            ) from None
        if cap is not None and cap < 0:
            raise BadRequest("the spend cap cannot be negative; leave it empty to remove it")
        await set_spend_cap(db, tenant_id=principal.tenant_id, cap_pence=cap)
    elif what == "payment-method":
        method = required(data, "payment_method", "the payment method (pm_…)")
        if not method.startswith("pm_"):
            raise BadRequest(f"a Stripe payment method id starts with pm_, not {method[:8]!r}")
        await set_payment_method(
            hangar.sessions,
            stripe=hangar.stripe,
            tenant_id=principal.tenant_id,
            payment_method=method,
            now=now,
        )
    else:
        raise BadRequest(f"unknown billing setting {what!r}")
    return back(f"{PATH}/billing")


@get("/keys")
async def keys_page(db: AsyncSession, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    keys = [tenants.key_out(k) for k in await tenants.list_keys(db, tenant_id=principal.tenant_id)]
    return page("keys.html", user, "API keys", nav="keys", keys=keys)


@post("/keys")
async def create_key(request: Request, db: AsyncSession, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data = await form(request)
    name = required(data, "name", "the key's name")
    scope = data.get("scope", "read")
    if scope not in {s.value for s in Scope}:
        raise BadRequest(f"unknown scope {scope!r}: choose admin, finance or read")
    created = await tenants.create_key(
        db, tenant_id=principal.tenant_id, name=name, scopes=[Scope(scope)]
    )
    keys = [tenants.key_out(k) for k in await tenants.list_keys(db, tenant_id=principal.tenant_id)]
    # The secret is in this response only (shown once), as `hangar keys create` prints it once.
    return page("keys.html", user, "API keys", nav="keys", keys=keys, created=created)


@post("/keys/{key_id:uuid}/revoke")
async def revoke_key(db: AsyncSession, user: ConsoleUser, key_id: uuid.UUID) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    await tenants.revoke_key(db, tenant_id=principal.tenant_id, key_id=key_id)
    return back(f"{PATH}/keys")


HANDLERS = [
    usage_page,
    usage_export,
    invoices_page,
    invoices_export,
    draft_page,
    invoice_page,
    line_page,
    billing_page,
    billing_change,
    keys_page,
    create_key,
    revoke_key,
]
