"""Invoice and Stripe-push states move only as ``billing.states`` declares: the\nmachines themselves (unit tier), and what a user sees when a move is not allowed."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from billing.states import (
    INVOICE,
    STRIPE_PUSH,
    IllegalTransition,
    InvoiceStatus,
    StripeState,
)
from billing.webhooks import sign
from tests.billing.test_stripe import invoiced
from tests.conftest import WEBHOOK_SECRET

Status, Push = InvoiceStatus, StripeState


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (Status.paid, Status.void),
        (Status.void, Status.paid),
        (Status.void, Status.open),
        (Status.paid, Status.payment_failed),
    ],
)
def test_an_illegal_invoice_transition_is_refused_with_a_409_naming_the_moves(current, target):
    with pytest.raises(IllegalTransition) as refused:
        INVOICE.check(current, target)
    assert refused.value.status == 409
    assert f"an invoice cannot go from {current} to {target}" in refused.value.message


def test_allowed_invoice_transitions():
    assert INVOICE.check(Status.draft, Status.open) is Status.open
    assert INVOICE.check("open", Status.void) is Status.void  # as read from the database
    assert INVOICE.check(Status.payment_failed, Status.paid) is Status.paid
    assert INVOICE.check(Status.paid, Status.paid) is Status.paid  # staying put is not a move
    assert sorted(INVOICE.sources(Status.paid)) == sorted(
        [Status.draft, Status.open, Status.payment_failed, Status.paid]
    )


def test_stripe_push_states():
    assert STRIPE_PUSH.allows(Push.none, Push.invoiced) and STRIPE_PUSH.allows(
        Push.collected, Push.voided
    )
    assert not STRIPE_PUSH.allows(Push.skipped, Push.invoiced)
    assert not STRIPE_PUSH.allows(Push.voided, Push.collected)
    with pytest.raises(IllegalTransition, match="a Stripe push cannot go from voided to invoiced"):
        STRIPE_PUSH.check(Push.voided, Push.invoiced)


async def test_a_payment_webhook_for_a_void_invoice_leaves_it_void(tenants, operator, hangar, http):
    t, summary = await invoiced(tenants, operator, hangar, "2024-06", card=None)
    voided = await operator.request("POST", f"/v1/operator/invoices/{summary['number']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "invoice.payment_succeeded",
        "data": {"object": {"id": "in_late", "metadata": {"hangar_invoice_id": summary["id"]}}},
    }
    payload = json.dumps(event).encode()
    signed = {"Stripe-Signature": sign(payload, WEBHOOK_SECRET, int(time.time()))}
    applied = await http.post("/v1/stripe/webhook", content=payload, headers=signed)
    # Accepted (Stripe must not retry it forever), but void -> paid is not a move.
    assert applied.status_code == 200 and applied.json()["result"] == f"{summary['number']} is void"
    shown = (await t.request("GET", f"/v1/invoices/{summary['number']}")).json()
    assert shown["status"] == "void" and shown["paid_at"] is None
    # And a void invoice cannot be paid by hand either: nothing is left to credit.
    credit = await operator.request(
        "POST",
        f"/v1/operator/invoices/{summary['number']}/credit-notes",
        json={"amount_pence": 1, "reason": "late payment"},
    )
    assert credit.status_code == 409 and "is void" in credit.json()["error"]
