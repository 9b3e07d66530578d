"""Stripe webhooks: verify the signature, then apply each event once.

``Stripe-Signature: t=TIMESTAMP,v1=HEX`` where HEX is HMAC-SHA256(secret,
f"{TIMESTAMP}.{raw body}"). Anything that does not verify is refused before the
body is even parsed, so a forged request changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import BillingAccount, Invoice, StripeEvent
from billing.states import INVOICE, STRIPE_PUSH, InvoiceStatus, StripeState
from core.errors import BadRequest, Unavailable


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    payload: bytes, header: str | None, *, secret: str, now: datetime, tolerance_seconds: int
) -> dict[str, Any]:
    """The parsed event, or a 400 that says what is wrong with the request."""
    if not secret:
        raise Unavailable(
            "Stripe webhooks are not configured on this server (HANGAR_STRIPE_WEBHOOK_SECRET)"
        )
    if not header:
        raise BadRequest("missing Stripe-Signature header")
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for name, value in parts if name.strip() == "t"]
    signatures = [value.strip() for name, value in parts if name.strip() == "v1"]
    stamp = timestamps[0].strip() if len(timestamps) == 1 else ""
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 19) or not signatures:
        raise BadRequest("malformed Stripe-Signature header: expected t=TIMESTAMP,v1=SIGNATURE")
    timestamp = int(stamp)
    expected = sign(payload, secret, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise BadRequest(
            "Stripe signature does not match the payload; check HANGAR_STRIPE_WEBHOOK_SECRET"
        )
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise BadRequest(
            f"Stripe signature timestamp is more than {tolerance_seconds}s from server time "
            "(a replay, or a clock that is off)"
        )
    try:
        event = json.loads(payload)
    except ValueError:
        raise BadRequest("the webhook body is not JSON") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise BadRequest("the webhook body is not a Stripe event (no id or type)")
    for field, longest in (("id", 255), ("type", 128)):  # the stripe_events columns
        value = event[field]
        if not value or len(value) > longest or "\x00" in value:
            raise BadRequest(
                f"the webhook event's {field} must be 1 to {longest} characters without NUL; "
                f"got {len(value)} characters"
            )
    return event


async def _our_invoice(session: AsyncSession, obj: dict[str, Any]) -> Invoice | None:
    ours = (obj.get("metadata") or {}).get("hangar_invoice_id")
    if ours:
        try:
            return await session.get(Invoice, uuid.UUID(ours), with_for_update=True)
        except ValueError:
            return None
    if obj.get("id"):
        return await session.scalar(
            select(Invoice).where(Invoice.stripe_invoice_id == obj["id"]).with_for_update()
        )
    return None


async def apply_event(session: AsyncSession, *, event: dict[str, Any], now: datetime) -> str:
    """Returns what happened, for the response and the logs."""
    fresh = await session.scalar(
        insert(StripeEvent)
        .values(id=event["id"], type=event["type"], received_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(StripeEvent.id)
    )
    if fresh is None:
        return "already applied"
    obj = (event.get("data") or {}).get("object") or {}
    kind = event["type"]
    if kind in ("invoice.payment_succeeded", "invoice.paid"):
        invoice = await _our_invoice(session, obj)
        if invoice is None:
            return "not a Hangar invoice"
        if invoice.status != InvoiceStatus.paid and INVOICE.allows(
            invoice.status, InvoiceStatus.paid
        ):
            invoice.status, invoice.paid_at = InvoiceStatus.paid, now
            if STRIPE_PUSH.allows(invoice.stripe_state, StripeState.collected):
                invoice.stripe_state = StripeState.collected
        return f"{invoice.number} is {invoice.status}"
    if kind == "invoice.payment_failed":
        invoice = await _our_invoice(session, obj)
        if invoice is None:
            return "not a Hangar invoice"
        if INVOICE.allows(invoice.status, InvoiceStatus.payment_failed):
            invoice.status = InvoiceStatus.payment_failed
        return f"{invoice.number} is {invoice.status}"
    if kind == "customer.updated":
        method = (obj.get("invoice_settings") or {}).get("default_payment_method")
        account = await session.scalar(
            select(BillingAccount)
            .where(BillingAccount.stripe_customer_id == obj.get("id"))
            .with_for_update()
        )
        if account is None:
            return "not a Hangar customer"
        if method and method != account.payment_method:
            account.payment_method = method
            account.payment_method_at = now
        return "payment method recorded" if method else "nothing to record"
    return "ignored"
