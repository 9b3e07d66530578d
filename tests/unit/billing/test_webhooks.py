"""Stripe webhook signatures: what we sign is what we verify, and every way a
request can be wrong is refused with a message that says which."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from billing.webhooks import sign, verify
from core.errors import BadRequest, Unavailable

SECRET = "whsec_unit"
NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)
STAMP = int(NOW.timestamp())
EVENT = json.dumps({"id": "evt_1", "type": "invoice.paid", "data": {"object": {}}}).encode()


def check(payload: bytes, header: str | None, *, secret: str = SECRET, now: datetime = NOW):
    return verify(payload, header, secret=secret, now=now, tolerance_seconds=300)


def test_a_signed_event_verifies_and_is_parsed():
    assert check(EVENT, sign(EVENT, SECRET, STAMP))["id"] == "evt_1"


def test_the_signature_is_stripes_scheme():
    # Stripe-Signature: t=TIMESTAMP,v1=HMAC-SHA256(secret, "TIMESTAMP.BODY") in hex.
    mac = hmac.new(SECRET.encode(), f"{STAMP}.".encode() + EVENT, hashlib.sha256)
    assert sign(EVENT, SECRET, STAMP) == f"t={STAMP},v1={mac.hexdigest()}"


def test_one_matching_signature_among_several_is_enough():
    good = sign(EVENT, SECRET, STAMP).split("v1=")[1]
    assert check(EVENT, f"t={STAMP},v1={'0' * 64},v1={good}")["type"] == "invoice.paid"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Stripe-Signature"),
        ("", "missing Stripe-Signature"),
        ("v1=abc", "malformed"),
        (f"t={STAMP}", "malformed"),
        (f"t=soon,v1={'0' * 64}", "malformed"),
        (f"t={STAMP},t={STAMP},v1={'0' * 64}", "malformed"),
        (f"t={STAMP},v1={'0' * 64}", "does not match"),
    ],
)
def test_a_bad_header_is_refused_saying_why(header, message):
    with pytest.raises(BadRequest, match=message):
        check(EVENT, header)


def test_a_changed_body_or_another_secret_does_not_verify():
    header = sign(EVENT, SECRET, STAMP)
    with pytest.raises(BadRequest, match="does not match"):
        check(EVENT.replace(b"paid", b"void"), header)
    with pytest.raises(BadRequest, match="does not match"):
        check(EVENT, header, secret="whsec_other")


def test_an_old_signature_is_a_replay():
    header = sign(EVENT, SECRET, STAMP - 301)
    with pytest.raises(BadRequest, match="more than 300s"):
        check(EVENT, header)


def test_a_signed_body_that_is_not_a_stripe_event_is_refused():
    for body, message in ((b"not json", "not JSON"), (b'{"id": "evt_1"}', "not a Stripe event")):
        with pytest.raises(BadRequest, match=message):
            check(body, sign(body, SECRET, STAMP))


def test_without_a_secret_webhooks_are_unavailable_not_accepted():
    with pytest.raises(Unavailable, match="HANGAR_STRIPE_WEBHOOK_SECRET"):
        check(EVENT, sign(EVENT, "", STAMP), secret="")


def test_payment_intents_are_read_in_basils_shape_and_the_older_one():
    from billing.stripe_sync import payment_intents

    basil = {
        "id": "in_1",
        "payments": {
            "object": "list",
            "data": [
                {
                    "id": "inpay_2",
                    "status": "open",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_2"},
                },
                {
                    "id": "inpay_1",
                    "status": "canceled",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_1"},
                },
            ],
        },
    }
    assert payment_intents(basil) == ["pi_2", "pi_1"]
    assert payment_intents({"id": "in_1", "payment_intent": "pi_9"}) == ["pi_9"]
    assert payment_intents({"id": "in_1", "payments": {"data": []}}) == []
