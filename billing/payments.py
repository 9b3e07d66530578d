"""Payment methods: attached to the tenant's Stripe customer and recorded here."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.accounts import standing
from billing.models import BillingAccount, Invoice
from billing.states import StripeState
from billing.stripe import StripeClient, StripeError, StripeUnavailable
from billing.stripe_sync import StripeSync
from core.db import transaction
from core.errors import BadRequest, PaymentRequired, Unavailable


async def set_payment_method(
    sessions: async_sessionmaker[AsyncSession],
    *,
    stripe: StripeClient,
    tenant_id: uuid.UUID,
    payment_method: str,
    now: datetime,
) -> str:
    """Attach ``payment_method`` (a Stripe ``pm_...`` id, e.g. from Stripe Elements) as the
    default for invoices; returns the id Stripe keeps it under. Without Stripe
    configured the id is only recorded (self-hosted installs billed by hand)."""
    async with transaction(sessions) as session:
        state = await standing(session, tenant_id=tenant_id)
    method = payment_method
    if stripe.enabled:
        sync = StripeSync(sessions=sessions, client=stripe, now=now)
        try:
            async with sync.tenant_lock(tenant_id):
                customer = await sync.ensure_customer(state.tenant)
                attached = await stripe.post(
                    f"/v1/payment_methods/{payment_method}/attach",
                    {"customer": customer},
                    idempotency_key=f"hangar:attach:{tenant_id}:{payment_method}",
                )
                method = attached["id"]
                await stripe.post(
                    f"/v1/customers/{customer}",
                    {"invoice_settings": {"default_payment_method": method}},
                    idempotency_key=f"hangar:default-pm:{tenant_id}:{method}",
                )
        except StripeError as exc:
            if exc.status == 402:
                raise PaymentRequired(
                    f"Stripe declined this payment method: {exc.message}"
                ) from exc
            raise BadRequest(
                f"Stripe refused payment method {payment_method!r}: {exc.message}"
            ) from exc
        except StripeUnavailable as exc:
            raise Unavailable(
                f"Stripe is unreachable, nothing was changed; try again shortly ({exc})"
            ) from exc
    async with transaction(sessions) as session:
        await session.execute(
            update(BillingAccount)
            .where(BillingAccount.tenant_id == tenant_id)
            .values(payment_method=method, payment_method_at=now)
        )
        # Invoices waiting for a card are pushed on the next sync run, not tomorrow.
        await session.execute(
            update(Invoice)
            .where(Invoice.tenant_id == tenant_id, Invoice.stripe_state == StripeState.invoiced)
            .values(stripe_next_attempt_at=None)
        )
    return method
