"""Invoice and Stripe-push states move only as ``billing.states`` declares (unit tier)."""

from __future__ import annotations

import pytest

from billing.states import (
    INVOICE,
    STRIPE_PUSH,
    IllegalTransition,
    InvoiceStatus,
    StripeState,
)

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
