"""Billing account routes: the tenant admin's own, the operator's per tenant, and
the Stripe webhook."""

from __future__ import annotations

import logging

from litestar import Controller, Request, get, post, put
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from billing import service, webhooks
from billing.accounts import resolve_tenant, set_plan, set_spend_cap
from billing.payments import set_payment_method
from billing.plans import PlanName
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
from services.components import Components

log = logging.getLogger("hangar.api")


class AccountController(Controller):
    path = "/v1/billing"
    tags = ["billing"]

    @get("/")
    async def show(self, db: AsyncSession, principal: Principal, hangar: Components) -> AccountOut:
        principal.require_admin()
        return await service.account(
            db,
            tenant_id=principal.tenant_id,
            now=utcnow(),
            trial_days=hangar.settings.billing.trial_days,
        )

    @put("/plan")
    async def choose_plan(
        self, db: AsyncSession, principal: Principal, hangar: Components, data: TenantPlanChoice
    ) -> AccountOut:
        """Starter or pay-as-you-go, from now; needs a payment method on file."""
        principal.require_admin()
        return await service.choose_plan(
            db,
            tenant_id=principal.tenant_id,
            plan=PlanName(data.plan),
            now=utcnow(),
            trial_days=hangar.settings.billing.trial_days,
        )

    @put("/spend-cap")
    async def spend_cap(
        self, db: AsyncSession, principal: Principal, hangar: Components, data: SpendCap
    ) -> AccountOut:
        """Monthly spend cap in pence (null removes it), in force while on
        pay-as-you-go: past it, uploads and downloads are refused with 402 and the
        invoice never exceeds it. Enterprise caps come from the contract."""
        principal.require_admin()
        trial_days = hangar.settings.billing.trial_days
        await set_spend_cap(
            db, tenant_id=principal.tenant_id, cap_pence=data.cap_pence, trial_days=trial_days
        )
        return await service.account(
            db, tenant_id=principal.tenant_id, now=utcnow(), trial_days=trial_days
        )

    @put("/payment-method")
    async def payment_method(
        self, db: AsyncSession, principal: Principal, hangar: Components, data: PaymentMethodIn
    ) -> AccountOut:
        """Attach a Stripe payment method (``pm_...``) as the default for invoices."""
        principal.require_admin()
        trial_days = hangar.settings.billing.trial_days
        await set_payment_method(
            hangar.sessions,
            stripe=hangar.stripe,
            tenant_id=principal.tenant_id,
            payment_method=data.payment_method,
            trial_days=trial_days,
            now=utcnow(),
        )
        return await service.account(
            db, tenant_id=principal.tenant_id, now=utcnow(), trial_days=trial_days
        )


class TenantBillingController(Controller):
    path = "/v1/tenants/{tenant:str}"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @get("/billing")
    async def show(
        self, db: AsyncSession, hangar: Components, operator: None, tenant: str
    ) -> AccountOut:
        found = await resolve_tenant(db, tenant)
        return await service.account(
            db, tenant_id=found.id, now=utcnow(), trial_days=hangar.settings.billing.trial_days
        )

    @put("/plan")
    async def set_plan(
        self, db: AsyncSession, hangar: Components, operator: None, tenant: str, data: PlanChange
    ) -> AccountOut:
        """Any plan, from ``effective_at`` (default now; it may be backdated for
        migrations, but not into an invoiced month)."""
        found = await resolve_tenant(db, tenant)
        now, trial_days = utcnow(), hangar.settings.billing.trial_days
        await set_plan(
            db,
            tenant_id=found.id,
            plan=PlanName(data.plan),
            effective_at=data.effective_at or now,
            trial_days=trial_days,
        )
        return await service.account(db, tenant_id=found.id, now=now, trial_days=trial_days)

    @put("/contract")
    async def set_contract(
        self, db: AsyncSession, hangar: Components, operator: None, tenant: str, data: ContractIn
    ) -> ContractOut:
        """A new enterprise contract; the tenant is on it from ``effective_at`` (default now)."""
        found = await resolve_tenant(db, tenant)
        return await service.set_contract(
            db,
            tenant_id=found.id,
            terms=data,
            now=utcnow(),
            trial_days=hangar.settings.billing.trial_days,
        )

    @get("/contract")
    async def contract(self, db: AsyncSession, operator: None, tenant: str) -> ContractOut:
        return await service.get_contract(db, tenant_id=(await resolve_tenant(db, tenant)).id)


@post("/v1/stripe/webhook", tags=["stripe"], status_code=200, security=[])
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
