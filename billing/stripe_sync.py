"""Pushing finalized invoices to Stripe: a customer per tenant, an invoice item per
line, one invoice, then payment; void when ours is voided.

Every object we create carries an idempotency key derived from our ids, sent as the
``Idempotency-Key`` header *and* stored as ``metadata[hangar_key]``, and is recorded in
``stripe_requests`` before the request (sent) and after it (its Stripe id). A retried
sync skips what is recorded as done and, for anything sent without a recorded answer,
looks for the key in Stripe before creating it again. That is what keeps a sync
retried after a failure in the middle from creating a second Stripe invoice, even
against a Stripe (like localstripe) that ignores idempotency keys.

Stripe sync owns its transactions (the exception to the request/job rule in
``core.db``): each record and state change is committed at once, in its own short
transaction, to remember what Stripe already has even if the next step fails.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.models import BillingAccount, Invoice, InvoiceLine, StripeRequest
from billing.states import INVOICE, STRIPE_PUSH, InvoiceStatus, StripeState
from billing.stripe import StripeClient, StripeError, StripeUnavailable, StripeUncertain
from core.db import advisory_lock_key, transaction
from metering.periods import Period
from tenants.models import Tenant

log = logging.getLogger("hangar.stripe")

Finder = Callable[[str], Awaitable[str | None]]


@dataclass
class SyncReport:
    invoices: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None


def retry_delay(attempts: int) -> timedelta:
    """The sync job retries a failed invoice after 10 min, 20, 40 ... at most a day."""
    return min(timedelta(minutes=10 * 2 ** max(attempts - 1, 0)), timedelta(days=1))


class StripeSync:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], client: StripeClient, now: datetime
    ):
        self.sessions = sessions
        self.client = client
        self.now = now

    @asynccontextmanager
    async def tenant_lock(self, tenant_id: uuid.UUID) -> AsyncIterator[None]:
        """One conversation with Stripe per tenant at a time, across processes: two
        syncs, or a sync and a payment-method change, must not both decide that the
        customer (or an item) does not exist yet and create it twice."""
        key = advisory_lock_key("hangar-stripe", tenant_id)
        async with self.sessions() as session, session.begin():
            await session.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})
            yield

    # --- our record of what was sent ---------------------------------------------

    async def _recorded(self, key: str) -> StripeRequest | None:
        async with self.sessions() as session:
            return await session.get(StripeRequest, key)

    async def _mark_sent(self, key: str, tenant_id: uuid.UUID) -> None:
        async with transaction(self.sessions) as session:
            await session.execute(
                insert(StripeRequest)
                .values(key=key, tenant_id=tenant_id, sent_at=self.now)
                .on_conflict_do_update(index_elements=["key"], set_={"sent_at": self.now})
            )

    async def _mark_done(self, key: str, tenant_id: uuid.UUID, stripe_id: str) -> None:
        async with transaction(self.sessions) as session:
            await session.execute(
                insert(StripeRequest)
                .values(
                    key=key,
                    tenant_id=tenant_id,
                    sent_at=self.now,
                    stripe_id=stripe_id,
                    done_at=self.now,
                )
                .on_conflict_do_update(
                    index_elements=["key"], set_={"stripe_id": stripe_id, "done_at": self.now}
                )
            )

    async def _once(
        self,
        *,
        key: str,
        tenant_id: uuid.UUID,
        path: str,
        params: dict[str, Any],
        find: Finder,
        tag: bool = True,
    ) -> str:
        """POST ``path`` at most once per ``key`` (creates carry the key in metadata)."""
        record = await self._recorded(key)
        if record is not None and record.stripe_id:
            return record.stripe_id
        if record is not None:  # sent before, answer unknown: did Stripe apply it?
            found = await find(key)
            if found:
                await self._mark_done(key, tenant_id, found)
                return found
        await self._mark_sent(key, tenant_id)
        if tag:
            params = {**params, "metadata": {**params.get("metadata", {}), "hangar_key": key}}
        try:
            obj = await self.client.post(path, params, idempotency_key=key)
            stripe_id = obj["id"]
        except StripeUncertain:
            found = await find(key)
            if not found:
                raise
            stripe_id = found
        await self._mark_done(key, tenant_id, stripe_id)
        return stripe_id

    async def _find_by_key(self, path: str, params: dict[str, Any], key: str) -> str | None:
        after = None
        while True:
            page = await self.client.get(path, {**params, "limit": 100, "starting_after": after})
            for obj in page.get("data", []):
                if (obj.get("metadata") or {}).get("hangar_key") == key:
                    return obj["id"]
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]

    # --- objects -----------------------------------------------------------------

    async def ensure_customer(self, tenant: Tenant) -> str:
        async with self.sessions() as session:
            account = await session.get(BillingAccount, tenant.id)
        if account is not None and account.stripe_customer_id:
            return account.stripe_customer_id
        customer = await self._once(
            key=f"hangar:customer:{tenant.id}",
            tenant_id=tenant.id,
            path="/v1/customers",
            params={"name": tenant.name, "metadata": {"hangar_tenant_id": str(tenant.id)}},
            find=lambda key: self._find_by_key("/v1/customers", {}, key),
        )
        async with transaction(self.sessions) as session:
            await session.execute(
                update(BillingAccount)
                .where(BillingAccount.tenant_id == tenant.id)
                .values(stripe_customer_id=customer)
            )
        return customer

    async def _set_invoice(self, invoice_id: uuid.UUID, **values: Any) -> None:
        """Bookkeeping that changes no state (errors, retry times)."""
        async with transaction(self.sessions) as session:
            await session.execute(update(Invoice).where(Invoice.id == invoice_id).values(**values))

    async def _advance(
        self,
        invoice_id: uuid.UUID,
        *,
        status: InvoiceStatus | None = None,
        stripe_state: StripeState | None = None,
        **values: Any,
    ) -> None:
        """Move the invoice's states, only along moves ``billing.states`` allows: a
        webhook or a void may have moved it since it was read, and wins."""
        stmt = update(Invoice).where(Invoice.id == invoice_id)
        if status is not None:
            stmt = stmt.where(Invoice.status.in_(INVOICE.sources(status)))
            values["status"] = status
        if stripe_state is not None:
            stmt = stmt.where(Invoice.stripe_state.in_(STRIPE_PUSH.sources(stripe_state)))
            values["stripe_state"] = stripe_state
        async with transaction(self.sessions) as session:
            await session.execute(stmt.values(**values))

    async def push(self, invoice: Invoice, tenant: Tenant, account: BillingAccount) -> None:
        if invoice.status == InvoiceStatus.void:
            await self._push_void(invoice, tenant)
            return
        customer = await self.ensure_customer(tenant)
        stripe_invoice = invoice.stripe_invoice_id or await self._create_invoice(
            invoice, tenant, customer
        )
        if not account.payment_method:
            # Adding a payment method brings this forward (``payments.set_payment_method``).
            await self._set_invoice(
                invoice.id,
                stripe_error=(
                    "no payment method on file: the Stripe invoice stays a draft until one is added"
                ),
                stripe_next_attempt_at=self.now + timedelta(days=1),
            )
            return
        try:
            await self._once(
                key=f"hangar:pay:{invoice.id}",
                tenant_id=tenant.id,
                path=f"/v1/invoices/{stripe_invoice}/pay",
                params={},
                tag=False,
                find=lambda key: self._pay_applied(stripe_invoice),
            )
        except StripeError as exc:
            if exc.status != 402:
                raise
            # The card was declined: Stripe's own dunning takes over; do not charge again.
            await self._mark_done(f"hangar:pay:{invoice.id}", tenant.id, stripe_invoice)
            await self._advance(
                invoice.id,
                status=InvoiceStatus.payment_failed,
                stripe_state=StripeState.collected,
                stripe_error=exc.message,
            )
            return
        collected = await self._with_payments(stripe_invoice)
        if collected.get("status") == "paid":
            await self._advance(
                invoice.id,
                status=InvoiceStatus.paid,
                stripe_state=StripeState.collected,
                stripe_error=None,
                paid_at=self.now,
            )
        elif failure := await self._payment_failure(collected):
            await self._advance(
                invoice.id,
                status=InvoiceStatus.payment_failed,
                stripe_state=StripeState.collected,
                stripe_error=failure,
            )
        else:  # still processing: the webhook will say how it ended
            await self._advance(
                invoice.id,
                status=InvoiceStatus(invoice.status),
                stripe_state=StripeState.collected,
                stripe_error=None,
            )

    async def _create_invoice(self, invoice: Invoice, tenant: Tenant, customer: str) -> str:
        async with self.sessions() as session:
            lines = list(
                await session.scalars(
                    select(InvoiceLine)
                    .where(InvoiceLine.invoice_id == invoice.id, InvoiceLine.amount_pence != 0)
                    .order_by(InvoiceLine.position)
                )
            )
        find_item = lambda key: self._find_by_key("/v1/invoiceitems", {"customer": customer}, key)  # noqa: E731
        for line in lines:
            await self._once(
                key=f"hangar:line:{line.id}",
                tenant_id=tenant.id,
                path="/v1/invoiceitems",
                find=find_item,
                params={
                    "customer": customer,
                    "amount": line.amount_pence,
                    "currency": invoice.currency,
                    "description": f"{invoice.number} · {line.description}",
                    "metadata": {
                        "hangar_invoice_id": str(invoice.id),
                        "hangar_line": str(line.position),
                    },
                },
            )
        stripe_invoice = await self._once(
            key=f"hangar:invoice:{invoice.id}",
            tenant_id=tenant.id,
            path="/v1/invoices",
            find=lambda key: self._find_by_key("/v1/invoices", {"customer": customer}, key),
            params={
                "customer": customer,
                "description": f"Hangar {invoice.number}, {Period.of_date(invoice.period).label}",
                # The items above are pending on the customer; this invoice takes them.
                "pending_invoice_items_behavior": "include",
                "metadata": {"hangar_invoice_id": str(invoice.id), "hangar_number": invoice.number},
            },
        )
        created = await self.client.get(f"/v1/invoices/{stripe_invoice}")
        if created.get("subtotal") != invoice.total_pence:
            # Never charge an amount finance cannot reconcile; stop and say why.
            raise StripeError(
                409,
                f"Stripe invoice {stripe_invoice} totals {created.get('subtotal')} but "
                f"{invoice.number} totals {invoice.total_pence} pence; "
                "check the customer's pending invoice items",
            )
        await self._advance(
            invoice.id, stripe_state=StripeState.invoiced, stripe_invoice_id=stripe_invoice
        )
        return stripe_invoice

    async def _with_payments(self, stripe_invoice: str) -> dict[str, Any]:
        """The invoice with its payments, as the pinned version (basil) has them: in
        ``invoice.payments``, which Stripe includes only when expanded."""
        try:
            return await self.client.get(f"/v1/invoices/{stripe_invoice}", {"expand": ["payments"]})
        except StripeError as exc:
            if exc.status != 400:
                raise
            # A Stripe without invoice payments (localstripe, the fake the tests run
            # against, predates basil) refuses the expansion: read the invoice as it is.
            return await self.client.get(f"/v1/invoices/{stripe_invoice}")

    async def _payment_failure(self, stripe_invoice: dict[str, Any]) -> str | None:
        """Why the charge failed, if it did. Stripe answers a declined ``pay`` with 402;
        a Stripe that accepts the call but leaves the payment intent wanting a new
        payment method has declined it just the same."""
        intents = payment_intents(stripe_invoice)
        if not intents:
            return None
        found = await self.client.get(f"/v1/payment_intents/{intents[0]}")
        if found.get("status") != "requires_payment_method":
            return None  # succeeded, or still processing: the webhook will tell
        return (found.get("last_payment_error") or {}).get("message") or "the payment was declined"

    async def _pay_applied(self, stripe_invoice: str) -> str | None:
        status = (await self.client.get(f"/v1/invoices/{stripe_invoice}")).get("status")
        return stripe_invoice if status != "draft" else None

    async def _push_void(self, invoice: Invoice, tenant: Tenant) -> None:
        if invoice.stripe_invoice_id:
            sid = invoice.stripe_invoice_id
            status = (await self.client.get(f"/v1/invoices/{sid}")).get("status")
            if status == "draft":  # Stripe deletes drafts; only finalized invoices are voided
                await self.client.delete(f"/v1/invoices/{sid}")
            elif status != "void":
                await self._once(
                    key=f"hangar:void:{invoice.id}",
                    tenant_id=tenant.id,
                    path=f"/v1/invoices/{sid}/void",
                    params={},
                    tag=False,
                    find=lambda key: self._void_applied(sid),
                )
        else:  # items may be pending on the customer: remove them, or the next invoice takes them
            async with self.sessions() as session:
                line_ids = await session.scalars(
                    select(InvoiceLine.id).where(InvoiceLine.invoice_id == invoice.id)
                )
                keys = [f"hangar:line:{line_id}" for line_id in line_ids]
                items = list(
                    await session.scalars(
                        select(StripeRequest.stripe_id).where(
                            StripeRequest.key.in_(keys), StripeRequest.stripe_id.is_not(None)
                        )
                    )
                )
            for item in items:
                try:
                    await self.client.delete(f"/v1/invoiceitems/{item}")
                except StripeError as exc:
                    if exc.status != 404:
                        raise
        await self._advance(invoice.id, stripe_state=StripeState.voided, stripe_error=None)

    async def _void_applied(self, sid: str) -> str | None:
        return (
            sid if (await self.client.get(f"/v1/invoices/{sid}")).get("status") == "void" else None
        )


def payment_intents(stripe_invoice: dict[str, Any]) -> list[str]:
    """The invoice's payment intents, newest first. Basil lists them as
    ``payments.data[].payment.payment_intent``; an invoice in an older shape (the
    localstripe fake) still has the one ``payment_intent`` field basil removed."""
    payments = (stripe_invoice.get("payments") or {}).get("data") or []
    found = [
        p["payment"]["payment_intent"]
        for p in payments
        if isinstance(p.get("payment"), dict)
        and isinstance(p["payment"].get("payment_intent"), str)
    ]
    legacy = stripe_invoice.get("payment_intent")
    if not found and isinstance(legacy, str):
        found = [legacy]
    return found


def _needs_push():
    """Unpaid invoices Stripe has not collected yet, and voids Stripe has not followed."""
    unpaid = (InvoiceStatus.open, InvoiceStatus.payment_failed)
    return or_(
        Invoice.status.in_(unpaid)
        & Invoice.stripe_state.in_((StripeState.none, StripeState.invoiced)),
        (Invoice.status == InvoiceStatus.void)
        & Invoice.stripe_state.not_in((StripeState.voided, StripeState.skipped)),
    )


async def sync_invoices(
    sessions: async_sessionmaker[AsyncSession],
    client: StripeClient,
    *,
    now: datetime,
    limit: int = 200,
    tenant_id: uuid.UUID | None = None,
) -> SyncReport:
    """Push what Stripe does not have yet, oldest first (one tenant's only, if given).

    Per tenant, an invoice whose push failed before its Stripe invoice existed holds
    back the tenant's later ones: its invoice items may be pending on the customer,
    and the next Stripe invoice created for that customer would take them."""
    report = SyncReport()
    if not client.enabled:
        report.skipped = "Stripe is not configured (HANGAR_STRIPE_API_KEY is empty)"
        return report
    async with sessions() as session:
        rows = list(
            await session.execute(
                select(Invoice, Tenant, BillingAccount)
                .join(Tenant, Tenant.id == Invoice.tenant_id)
                .join(BillingAccount, BillingAccount.tenant_id == Invoice.tenant_id)
                .where(_needs_push())
                .where(Invoice.tenant_id == tenant_id if tenant_id else true())
                .order_by(Invoice.period, Invoice.finalized_at, Invoice.number)
                .limit(limit)
            )
        )
    sync = StripeSync(sessions=sessions, client=client, now=now)
    held: set[uuid.UUID] = set()
    for invoice, tenant, account in rows:
        if tenant.id in held:
            continue
        if invoice.stripe_next_attempt_at is not None and invoice.stripe_next_attempt_at > now:
            if invoice.stripe_invoice_id is None:
                held.add(tenant.id)
            continue
        try:
            async with sync.tenant_lock(tenant.id):
                await sync.push(invoice, tenant, account)
            report.invoices += 1
        except (StripeError, StripeUnavailable) as exc:
            held.add(tenant.id)
            report.failed += 1
            report.errors.append(f"{invoice.number}: {exc}")
            log.warning("stripe sync of %s failed: %s", invoice.number, exc)
            attempts = invoice.stripe_attempts + 1
            await sync._set_invoice(
                invoice.id,
                stripe_error=str(exc),
                stripe_attempts=attempts,
                stripe_next_attempt_at=now + retry_delay(attempts),
            )
            if isinstance(exc, StripeUnavailable):
                break  # Stripe is down: the retry job comes back later for all of them
    return report
