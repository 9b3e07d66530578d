"""The Starter trial: 30 days free with Starter's limits, then paid Starter if a
payment method is on file, else writes and downloads paused until a plan is chosen."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from billing.models import BillingAccount
from billing.quotas import check_node_limit
from core.db import utcnow
from core.errors import PaymentRequired
from services.scheduler import run_job
from tests.billing.scripts import at
from tests.factories import write_gguf


async def _billing(t) -> dict:
    resp = await t.request("GET", "/v1/billing/")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_new_starter_tenant_is_on_a_30_day_trial(tenants):
    t = await tenants.create(plan="starter")
    account = await _billing(t)
    assert account["plan"] == "trial" and account["plan_title"] == "Starter trial"
    ends = datetime.fromisoformat(account["trial_ends_at"])
    assert timedelta(days=29, hours=23) < ends - utcnow() <= timedelta(days=30)
    assert account["payment_method"] is None and account["blocked"] is False
    refused = await t.request("POST", "/v1/uploads/", json={"model": "m", "size": 51 * 10**9})
    assert refused.status_code == 402 and refused.json()["error"].startswith(
        "Starter trial allows 50.00 GB"
    )


async def test_trial_end_without_a_payment_method_pauses_writes_and_downloads(
    tenants, operator, hangar, tmp_path
):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf")
    await t.push(path, "m")
    await operator.set_plan(t.name, "trial", utcnow() - timedelta(days=31))
    # Refused from the moment the trial ends, even before the job records it.
    for resp in [
        await t.push(path, "again"),
        await t.request("GET", "/v1/models/m/versions/1/blob"),
    ]:
        assert resp.status_code == 402
        assert resp.json()["error"].startswith(
            "The Starter trial has ended and no payment method is on file"
        )
        assert "`hangar billing payment-method pm_...`" in resp.json()["error"]
    async with hangar.sessions() as session, session.begin():
        with pytest.raises(PaymentRequired):
            await check_node_limit(session, tenant_id=uuid.UUID(t.id))
    # Reading the registry still works: nodes keep what they hold, people can look.
    assert (await t.request("GET", "/v1/models/m")).status_code == 200

    report = await run_job(hangar, "trial-expiry")
    assert report["lapsed"] >= 1
    assert (await run_job(hangar, "trial-expiry")) == {"to_starter": 0, "lapsed": 0}
    account = await _billing(t)
    assert account["plan"] == "lapsed" and account["blocked"] is True

    chosen = await t.request("PUT", "/v1/billing/plan", json={"plan": "starter"})
    assert chosen.status_code == 402 and "no payment method is on file" in chosen.json()["error"]
    added = await t.request(
        "PUT", "/v1/billing/payment-method", json={"payment_method": "pm_card_visa"}
    )
    assert added.status_code == 200, added.text
    assert added.json()["payment_method"].startswith("pm_") and added.json()[
        "stripe_customer_id"
    ].startswith("cus_")
    assert (await t.request("PUT", "/v1/billing/plan", json={"plan": "starter"})).json()[
        "plan"
    ] == "starter"
    assert (await t.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200


async def test_trial_end_with_a_payment_method_becomes_paid_starter(tenants, operator, hangar):
    t = await tenants.create()
    await operator.set_plan(t.name, "trial", at("2026-04-10", 10))  # ends 10 May, 10:00
    added = await t.request(
        "PUT", "/v1/billing/payment-method", json={"payment_method": "pm_card_visa"}
    )
    assert added.status_code == 200, added.text
    # The card was on file before the trial ended (the trial itself is backdated).
    async with hangar.sessions() as session, session.begin():
        await session.execute(
            update(BillingAccount)
            .where(BillingAccount.tenant_id == uuid.UUID(t.id))
            .values(payment_method_at=at("2026-05-01"))
        )
    report = await run_job(hangar, "trial-expiry", now=at("2026-05-10", 11))
    assert report["to_starter"] >= 1
    assert (await _billing(t))["plan"] == "starter"

    await run_job(hangar, "period-close", now=at("2026-06-02", 2))
    invoices = {i["period"]: i for i in (await t.request("GET", "/v1/invoices/")).json()}
    april = (await t.request("GET", f"/v1/invoices/{invoices['2026-04']['number']}")).json()
    assert [(line["kind"], line["amount_pence"]) for line in april["lines"]] == [("trial", 0)]
    assert (
        april["lines"][0]["description"] == "Starter trial, 10–30 April 2026 (21 of 30 days), free"
    )
    assert april["status"] == "paid"  # nothing due
    may = (await t.request("GET", f"/v1/invoices/{invoices['2026-05']['number']}")).json()
    # The trial owns 1-10 May (it was in force when the 10th began); Starter 11-31 May.
    assert [(line["kind"], line["amount_pence"]) for line in may["lines"]] == [
        ("trial", 0),
        ("proration", 2371),
    ]
    assert may["total"] == "£23.71"  # 3500 x 21/31 = 2370.97


async def test_a_card_added_after_the_trial_ended_does_not_make_it_paid_starter(
    tenants, operator, hangar
):
    t = await tenants.create()
    await operator.set_plan(t.name, "trial", at("2024-04-10", 10))  # ended 10 May 2024
    added = await t.request(
        "PUT", "/v1/billing/payment-method", json={"payment_method": "pm_card_visa"}
    )
    assert added.status_code == 200, added.text
    # The trial ended without a card: lapsed (blocked, no Starter fee) until a plan is chosen.
    assert (await _billing(t))["plan"] == "lapsed"
    june = (await t.request("GET", "/v1/invoices/preview", params={"period": "2024-06"})).json()
    assert june["total_pence"] == 0
    assert all(line["kind"] != "flat_fee" for line in june["lines"])
