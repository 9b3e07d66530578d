"""Bad input is a 400 that names what is wrong, never a 500."""

from __future__ import annotations

from services.scheduler import run_job
from tests.billing.scripts import GB, at, egress


async def test_malformed_stripe_signature_timestamps_are_400(http):
    for stamp in ["²", "1" * 5000, "١٢٣"]:
        resp = await http.post(
            "/v1/stripe/webhook",
            content=b"{}",
            headers={"Stripe-Signature": f"t={stamp},v1=abc".encode()},
        )
        assert resp.status_code == 400, (stamp[:10], resp.status_code)
        assert "malformed Stripe-Signature" in resp.json()["error"]


async def test_periods_outside_2000_to_9998_are_400(tenants):
    t = await tenants.create()
    for path in ["/v1/usage/", "/v1/invoices/preview"]:
        for period in ["0000-01", "1999-12", "9999-12"]:
            resp = await t.request("GET", path, params={"period": period})
            assert resp.status_code == 400, (path, period, resp.text)
            assert "year must be from 2000 to 9998" in resp.json()["error"]
        assert (await t.request("GET", path, params={"period": "2000-01"})).status_code == 200


async def test_nul_characters_in_notes_and_reasons_are_400(tenants, operator, hangar):
    t = await tenants.create()
    contract = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/contract",
        json={
            "monthly_fee_pence": 100,
            "device_month_pence": "1",
            "storage_gb_month_pence": "1",
            "egress_gb_pence": "1",
            "note": "net 30\x00",
        },
    )
    assert contract.status_code == 400 and "note" in contract.text, contract.text
    await operator.set_plan(t.name, "payg", at("2023-05-01"))
    await operator.imported([egress(t.id, 10 * GB, at("2023-05-03"))])
    await run_job(hangar, "period-close", now=at("2023-06-02"))
    (invoice,) = (await t.request("GET", "/v1/invoices/", params={"period": "2023-05"})).json()
    note = await operator.request(
        "POST",
        f"/v1/operator/invoices/{invoice['number']}/credit-notes",
        json={"amount_pence": 5, "reason": "outage\x00"},
    )
    assert note.status_code == 400 and "reason" in note.text, note.text


async def test_signed_webhooks_with_a_nul_or_huge_event_id_are_400(http):
    import json
    import time

    from billing.webhooks import sign
    from tests.conftest import WEBHOOK_SECRET

    for field, value in [("id", "evt_\x00"), ("id", "e" * 5000), ("type", "invoice.\x00paid")]:
        event = {"id": "evt_fine", "type": "invoice.paid", "data": {"object": {}}}
        payload = json.dumps(event | {field: value}).encode()
        resp = await http.post(
            "/v1/stripe/webhook",
            content=payload,
            headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET, int(time.time()))},
        )
        assert resp.status_code == 400, (field, resp.text)
        assert f"event's {field}" in resp.json()["error"]


async def test_usage_at_the_monthly_bounds_is_still_invoiced(tenants, operator, hangar):
    """Two egress events at the per-event maximum used to overflow the invoice line's
    total, and period close failed for that tenant every night after. Sums are bounded
    per tenant, meter and month: at the bound the month closes; past it, the batch
    that would cross it is refused whole."""
    from metering.meters import MONTH_LIMITS

    limit = MONTH_LIMITS["egress"]
    t = await tenants.create()
    await operator.set_plan(t.name, "payg", at("2023-03-01"))
    two_at_max = [egress(t.id, limit, at("2023-03-03")), egress(t.id, limit, at("2023-03-04"))]
    resp = await operator.import_events(two_at_max)
    assert resp.status_code == 400, resp.text
    assert "monthly limit" in resp.text and "egress" in resp.text
    over = await operator.import_events([egress(t.id, limit + 1, at("2023-03-03"))])
    assert over.status_code == 400 and "at most" in over.text, over.text

    await operator.imported([egress(t.id, limit - 5, at("2023-03-03"))])
    await operator.imported([egress(t.id, 5, at("2023-03-20"))])  # exactly at the bound
    one_more = await operator.import_events([egress(t.id, 1, at("2023-03-21"))])
    assert one_more.status_code == 400, one_more.text
    # A device-day month at its bound, in the same invoice.
    days = MONTH_LIMITS["device_day"]
    await operator.imported(
        [egress(t.id, days, at("2023-03-05")) | {"meter": "device_day", "id": "devices"}]
    )

    await run_job(hangar, "period-close", now=at("2023-04-02"))
    (invoice,) = (await t.request("GET", "/v1/invoices/", params={"period": "2023-03"})).json()
    assert invoice["status"] == "open"
    lines = (await t.request("GET", f"/v1/invoices/{invoice['number']}")).json()["lines"]
    egress_line = next(line for line in lines if line["meter"] == "egress")
    assert egress_line["usage_total"] == limit
    assert invoice["total_pence"] == sum(line["amount_pence"] for line in lines)
