"""Billing account routes: the tenant admin's own, the operator's per tenant, and
the Stripe webhook."""

from __future__ import annotations

import logging

from litestar import Controller, Request, get, post, put
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from billing import webhooks
from billing.accounts import account_out, resolve_tenant, set_spend_cap
from billing.contracts import get_contract, set_contract
from billing.payments import set_payment_method
from billing.plan_changes import choose_plan, set_plan
from billing.schemas import (
    AccountOut,
    ContractIn,
    ContractOut,
    PaymentMethodIn,
    PlanChange,
    SpendCap,
    TenantPlanChoice,
)
from core.db import utcnow
from services.api.auth import Principal, provide_operator
from services.api.openapi import doc
from services.components import Components
from tenants.plans import Plan

log = logging.getLogger("hangar.api")


class AccountController(Controller):
    path = "/v1/billing"
    tags = ["billing"]

    @get("/")
    async def show(self, db: AsyncSession, principal: Principal) -> AccountOut:
        principal.require_admin()
        return await account_out(db, tenant_id=principal.tenant_id, now=utcnow())

    @put("/plan", opt=doc(402, 409))
    async def choose_plan(
        self, db: AsyncSession, principal: Principal, data: TenantPlanChoice
    ) -> AccountOut:
        """Starter or pay-as-you-go, from now; needs a payment method on file."""
        principal.require_admin()
        return await choose_plan(
            db, tenant_id=principal.tenant_id, plan=Plan(data.plan), now=utcnow()
        )

    @put("/spend-cap")
    async def spend_cap(self, db: AsyncSession, principal: Principal, data: SpendCap) -> AccountOut:
        """Monthly spend cap in pence (null removes it), in force while on
        pay-as-you-go: past it, uploads and downloads are refused with 402 and the
        invoice never exceeds it. Enterprise caps come from the contract."""
        principal.require_admin()
        await set_spend_cap(db, tenant_id=principal.tenant_id, cap_pence=data.cap_pence)
        return await account_out(db, tenant_id=principal.tenant_id, now=utcnow())

    @put("/payment-method", opt=doc(402))
    async def payment_method(
        self, db: AsyncSession, principal: Principal, hangar: Components, data: PaymentMethodIn
    ) -> AccountOut:
        """Attach a Stripe payment method (``pm_...``) as the default for invoices."""
        principal.require_admin()
        await set_payment_method(
            hangar.sessions,
            stripe=hangar.stripe,
            tenant_id=principal.tenant_id,
            payment_method=data.payment_method,
            now=utcnow(),
        )
        return await account_out(db, tenant_id=principal.tenant_id, now=utcnow())


class TenantBillingController(Controller):
    path = "/v1/tenants/{tenant:str}"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @get("/billing")
    async def show(self, db: AsyncSession, operator: None, tenant: str) -> AccountOut:
        found = await resolve_tenant(db, tenant)
        return await account_out(db, tenant_id=found.id, now=utcnow())

    @put("/plan", opt=doc(409))
    async def set_plan(
        self, db: AsyncSession, hangar: Components, operator: None, tenant: str, data: PlanChange
    ) -> AccountOut:
        """Any plan, from ``effective_at`` (default now; it may be backdated for
        migrations, but not into an invoiced month)."""
        found = await resolve_tenant(db, tenant)
        now = utcnow()
        await set_plan(
            db,
            tenant_id=found.id,
            plan=Plan(data.plan),
            effective_at=data.effective_at or now,
            trial_days=hangar.settings.billing.trial_days,
        )
        return await account_out(db, tenant_id=found.id, now=now)

    @put("/contract", opt=doc(409))
    async def set_contract(
        self, db: AsyncSession, operator: None, tenant: str, data: ContractIn
    ) -> ContractOut:
        """A new enterprise contract; the tenant is on it from ``effective_at`` (default now)."""
        found = await resolve_tenant(db, tenant)
        return await set_contract(db, tenant_id=found.id, terms=data, now=utcnow())

    @get("/contract")
    async def contract(self, db: AsyncSession, operator: None, tenant: str) -> ContractOut:
        return await get_contract(db, tenant_id=(await resolve_tenant(db, tenant)).id)


@post(
    "/v1/stripe/webhook",
    tags=["stripe"],
    status_code=200,
    security=[],
    # JSON checked by services.api.guards before the signature.
    opt={**doc(400, 409), "json_body": True},
)
async def stripe_webhook(request: Request, db: AsyncSession, hangar: Components) -> dict[str, str]:
    """Stripe's events, signature-checked before anything is read or changed."""
    settings = hangar.settings.stripe
    now = utcnow()
    event = webhooks.verify(
        await request.body(),
        request.headers.get("stripe-signature"),
        secret=settings.webhook_secret.get_secret_value(),
        now=now,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    result = await webhooks.apply_event(db, event=event, now=now)
    log.info("stripe webhook %s %s: %s", event["type"], event["id"], result)
    return {"received": event["id"], "result": result}
