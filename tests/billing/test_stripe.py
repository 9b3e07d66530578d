"""Stripe sync and webhooks against localstripe, the Stripe fake, in its own process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from billing.stripe import StripeClient
from billing.stripe_sync import sync_invoices
from billing.webhooks import sign
from core.db import utcnow
from services.scheduler import run_job
from tests.billing.scripts import GB, at, device_days, egress
from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET


class FlakyTransport(httpx.AsyncBaseTransport):
    """Stripe going away in the middle of a sync: ``after`` requests go through, the
    next one reaches Stripe but its answer is lost, and nothing connects after that."""

    def __init__(self, after: int):
        self.real = httpx.AsyncHTTPTransport()
        self.after = after
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if self.count <= self.after:
            return await self.real.handle_async_request(request)
        if self.count == self.after + 1:
            response = await self.real.handle_async_request(request)
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection reset before the answer arrived", request=request)
        raise httpx.ConnectError("connection refused", request=request)

    async def aclose(self) -> None:
        await self.real.aclose()


@pytest.fixture(scope="session")
async def stripe_webhooks(localstripe, base_url) -> None:
    """localstripe delivers its events, signed, to our webhook endpoint."""
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{localstripe}/_config/webhooks/hangar",
            json={"url": f"{base_url}/v1/stripe/webhook", "secret": WEBHOOK_SECRET},
        )
        resp.raise_for_status()


async def stripe_get(localstripe: str, path: str, **params) -> dict:
    async with httpx.AsyncClient(base_url=localstripe, auth=(STRIPE_KEY, "")) as client:
        resp = await client.get(path, params=params)
        resp.raise_for_status()
        return resp.json()


async def invoiced(tenants, operator, hangar, month: str, card: str | None = "pm_card_visa"):
    """A pay-as-you-go tenant with a finalized invoice for ``month`` (two priced lines)."""
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at(f"{month}-01"))
    first = date.fromisoformat(f"{month}-01")
    await operator.imported(
        device_days(t.id, str(uuid.uuid4()), first, first + timedelta(days=9))
        + [egress(t.id, 3 * GB, at(f"{month}-05"))]
    )
    if card:
        assert (
            await t.request("PUT", "/v1/billing/payment-method", json={"payment_method": card})
        ).status_code == 200
    next_month = (first + timedelta(days=32)).replace(day=2)
    await run_job(hangar, "period-close", now=at(str(next_month), 1))
    (summary,) = (await t.request("GET", "/v1/invoices/", params={"period": month})).json()
    return t, summary


async def _ours(t, number: str) -> dict:
    return (await t.request("GET", f"/v1/invoices/{number}")).json()


async def _customer(t) -> str:
    return (await t.request("GET", "/v1/billing/")).json()["stripe_customer_id"]


async def test_a_finalized_invoice_becomes_one_paid_stripe_invoice(
    tenants, operator, hangar, localstripe
):
    t, summary = await invoiced(tenants, operator, hangar, "2024-11")
    report = await sync_invoices(
        hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id)
    )
    assert report.invoices == 1 and report.failed == 0
    ours = await _ours(t, summary["number"])
    assert ours["status"] == "paid" and ours["stripe_state"] == "collected"
    theirs = (await stripe_get(localstripe, "/v1/invoices", customer=await _customer(t)))["data"]
    assert len(theirs) == 1 and theirs[0]["id"] == ours["stripe_invoice_id"]
    assert theirs[0]["subtotal"] == ours["total_pence"] and theirs[0]["status"] == "paid"
    assert theirs[0]["metadata"]["hangar_number"] == summary["number"]
    # Running the sync again sends nothing new.
    assert (
        await sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id))
    ).invoices == 0


@pytest.mark.parametrize(
    ("card", "after"),
    [
        (None, 0),  # the customer is created, its id lost
        ("pm_card_visa", 0),  # first invoice item
        ("pm_card_visa", 1),  # second invoice item
        ("pm_card_visa", 2),  # the invoice
        ("pm_card_visa", 3),  # reading the invoice back
        ("pm_card_visa", 4),  # paying it
    ],
)
async def test_a_sync_retried_after_failing_midway_creates_exactly_one_stripe_invoice(
    tenants, operator, hangar, settings, localstripe, card, after
):
    t, summary = await invoiced(tenants, operator, hangar, "2024-10", card=card)
    flaky = StripeClient(settings.stripe, transport=FlakyTransport(after))
    try:
        failed = await sync_invoices(
            hangar.sessions, flaky, now=utcnow(), tenant_id=uuid.UUID(t.id)
        )
    finally:
        await flaky.close()
    assert failed.failed == 1 and failed.invoices == 0
    assert (await _ours(t, summary["number"]))["stripe_state"] in ("none", "invoiced")

    # The retry job, later, with Stripe back.
    await run_job(hangar, "stripe-sync", now=utcnow() + timedelta(hours=2))
    ours = await _ours(t, summary["number"])
    customers = [
        c
        for c in (await stripe_get(localstripe, "/v1/customers", limit=100))["data"]
        if c["metadata"].get("hangar_tenant_id") == t.id
    ]
    assert len(customers) == 1
    theirs = (await stripe_get(localstripe, "/v1/invoices", customer=customers[0]["id"]))["data"]
    assert len(theirs) == 1, theirs
    assert theirs[0]["subtotal"] == ours["total_pence"] == summary["total_pence"]
    assert len(theirs[0]["lines"]["data"]) == 2
    assert (await stripe_get(localstripe, "/v1/invoiceitems", customer=customers[0]["id"]))[
        "data"
    ] == []
    assert ours["stripe_invoice_id"] == theirs[0]["id"]
    if card:
        assert ours["status"] == "paid" and theirs[0]["status"] == "paid"
    else:  # nothing to charge yet: the Stripe invoice waits as a draft
        assert ours["status"] == "open" and theirs[0]["status"] == "draft"


async def test_a_declined_card_marks_the_invoice_and_void_follows_to_stripe(
    tenants, operator, hangar, localstripe
):
    t, summary = await invoiced(
        tenants, operator, hangar, "2024-09", card="pm_card_chargeCustomerFail"
    )
    await sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id))
    ours = await _ours(t, summary["number"])
    assert ours["status"] == "payment_failed"
    voided = await operator.request("POST", f"/v1/operator/invoices/{summary['number']}/void")
    assert voided.json()["status"] == "void"
    await sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id))
    theirs = await stripe_get(localstripe, f"/v1/invoices/{ours['stripe_invoice_id']}")
    assert theirs["status"] == "void"
    assert (await _ours(t, summary["number"]))["stripe_state"] == "voided"


async def test_payment_made_in_stripe_arrives_by_signed_webhook(
    tenants, operator, hangar, localstripe, stripe_webhooks
):
    t, summary = await invoiced(tenants, operator, hangar, "2024-08", card=None)
    await sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id))
    ours = await _ours(t, summary["number"])
    assert ours["status"] == "open"
    # The customer pays on Stripe's side (a card saved there, then Stripe collects).
    async with httpx.AsyncClient(base_url=localstripe, auth=(STRIPE_KEY, "")) as stripe:
        customer = await _customer(t)
        pm = (
            await stripe.post(
                "/v1/payment_methods/pm_card_visa/attach", data={"customer": customer}
            )
        ).json()
        await stripe.post(
            f"/v1/customers/{customer}", data={"invoice_settings[default_payment_method]": pm["id"]}
        )
        assert (
            await stripe.post(f"/v1/invoices/{ours['stripe_invoice_id']}/pay")
        ).status_code == 200
    for _ in range(200):  # localstripe posts its events a second later
        if (await _ours(t, summary["number"]))["status"] == "paid":
            break
        await asyncio.sleep(0.1)
    assert (await _ours(t, summary["number"]))["status"] == "paid"
    assert (await t.request("GET", "/v1/billing/")).json()["payment_method"] == pm["id"]


async def test_webhook_signature_is_checked_and_a_bad_one_changes_nothing(
    tenants, operator, hangar, http
):
    t, summary = await invoiced(tenants, operator, hangar, "2024-07", card=None)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "invoice.payment_succeeded",
        "data": {
            "object": {"id": "in_elsewhere", "metadata": {"hangar_invoice_id": summary["id"]}}
        },
    }
    payload = json.dumps(event).encode()
    now = int(time.time())
    for header, words in [
        (sign(payload, "whsec_wrong", now), "does not match"),
        (sign(payload, WEBHOOK_SECRET, now - 3600), "more than 300s"),
        (None, "missing Stripe-Signature"),
        ("v1=abc", "malformed"),
    ]:
        headers = {"Stripe-Signature": header} if header else {}
        resp = await http.post("/v1/stripe/webhook", content=payload, headers=headers)
        assert resp.status_code == 400 and words in resp.json()["error"], resp.text
        assert (await _ours(t, summary["number"]))["status"] == "open"
    # Tampering with a correctly signed body breaks the signature too.
    good = sign(payload, WEBHOOK_SECRET, now)
    tampered = payload.replace(b"payment_succeeded", b"payment_failed__")
    assert (
        await http.post("/v1/stripe/webhook", content=tampered, headers={"Stripe-Signature": good})
    ).status_code == 400

    ok = await http.post("/v1/stripe/webhook", content=payload, headers={"Stripe-Signature": good})
    assert ok.status_code == 200 and ok.json()["result"] == f"{summary['number']} is paid"
    again = await http.post(
        "/v1/stripe/webhook", content=payload, headers={"Stripe-Signature": good}
    )
    assert again.json()["result"] == "already applied"
    assert (await _ours(t, summary["number"]))["status"] == "paid"


async def test_a_failed_push_holds_back_the_tenants_later_invoices(
    tenants, operator, hangar, settings, localstripe
):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2024-05-01"))
    node = str(uuid.uuid4())
    await operator.imported(
        device_days(t.id, node, date(2024, 5, 1), date(2024, 6, 30))
        + [egress(t.id, GB, at("2024-05-05")), egress(t.id, 2 * GB, at("2024-06-05"))]
    )
    assert (
        await t.request(
            "PUT", "/v1/billing/payment-method", json={"payment_method": "pm_card_visa"}
        )
    ).status_code == 200
    await run_job(hangar, "period-close", now=at("2024-07-02"))
    mine = {i["period"]: i for i in (await t.request("GET", "/v1/invoices/")).json()}
    tenant_id = uuid.UUID(t.id)

    flaky = StripeClient(settings.stripe, transport=FlakyTransport(1))  # May's 2nd item is lost
    try:
        await sync_invoices(hangar.sessions, flaky, now=utcnow(), tenant_id=tenant_id)
    finally:
        await flaky.close()
    # May waits for its retry; June must not go first (it would take May's pending item).
    waiting = await sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=tenant_id)
    assert waiting.invoices == 0
    later = await sync_invoices(
        hangar.sessions, hangar.stripe, now=utcnow() + timedelta(hours=1), tenant_id=tenant_id
    )
    assert later.invoices == 2
    theirs = (await stripe_get(localstripe, "/v1/invoices", customer=await _customer(t)))["data"]
    by_number = {i["metadata"]["hangar_number"]: i["subtotal"] for i in theirs}
    assert by_number == {i["number"]: i["total_pence"] for i in mine.values()}


async def test_two_syncs_at_once_create_one_stripe_invoice(
    tenants, operator, hangar, settings, localstripe
):
    t, summary = await invoiced(tenants, operator, hangar, "2024-06")
    other = StripeClient(settings.stripe)  # as if on a second scheduler, without the job lock
    try:
        await asyncio.gather(
            sync_invoices(hangar.sessions, hangar.stripe, now=utcnow(), tenant_id=uuid.UUID(t.id)),
            sync_invoices(hangar.sessions, other, now=utcnow(), tenant_id=uuid.UUID(t.id)),
        )
    finally:
        await other.close()
    theirs = (await stripe_get(localstripe, "/v1/invoices", customer=await _customer(t)))["data"]
    assert len(theirs) == 1 and theirs[0]["subtotal"] == summary["total_pence"]
    assert (await _ours(t, summary["number"]))["status"] == "paid"


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes every request to localstripe and keeps its headers."""

    def __init__(self):
        self.real = httpx.AsyncHTTPTransport()
        self.headers: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_every_stripe_request_pins_the_api_version(
    tenants, operator, hangar, settings, localstripe
):
    from billing.stripe import STRIPE_API_VERSION

    t, summary = await invoiced(
        tenants, operator, hangar, "2024-04", card="pm_card_chargeCustomerFail"
    )
    recording = RecordingTransport()
    client = StripeClient(settings.stripe, transport=recording)
    try:
        await sync_invoices(hangar.sessions, client, now=utcnow(), tenant_id=uuid.UUID(t.id))
    finally:
        await client.close()
    assert len(recording.headers) >= 5
    assert {h.get("stripe-version") for h in recording.headers} == {STRIPE_API_VERSION}
    # The decline is still seen (read through the shape the fake serves).
    assert (await _ours(t, summary["number"]))["status"] == "payment_failed"
