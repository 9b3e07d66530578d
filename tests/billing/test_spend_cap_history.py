"""A spend cap applies from when it is set: never to a month that has already ended."""

from __future__ import annotations

import uuid

from billing.accounts import set_spend_cap
from services.scheduler import run_job
from tests.billing.scripts import GB, at, egress


async def _january_invoice(t) -> dict:
    invoices = {i["period"]: i for i in (await t.request("GET", "/v1/invoices/")).json()}
    resp = await t.request("GET", f"/v1/invoices/{invoices['2024-01']['number']}")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_cap_set_after_the_month_ended_does_not_zero_its_invoice(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2024-01-01"))
    await operator.imported([egress(t.id, 10 * GB, at("2024-01-15"))])  # 140p
    # Between period end and close, the tenant sets a cap of zero (takes effect now).
    capped = await t.request("PUT", "/v1/billing/spend-cap", json={"cap_pence": 0})
    assert capped.status_code == 200, capped.text
    await run_job(hangar, "period-close", now=at("2024-02-02"))
    january = await _january_invoice(t)
    assert january["total_pence"] == 140
    assert all(line["kind"] != "spend_cap" for line in january["lines"])


async def test_removing_a_cap_does_not_uncap_a_month_it_capped(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2024-01-01"))
    async with hangar.sessions() as session, session.begin():
        await set_spend_cap(
            session,
            tenant_id=uuid.UUID(t.id),
            cap_pence=100,
            now=at("2024-01-02"),
        )
    await operator.imported([egress(t.id, 10 * GB, at("2024-01-15"))])  # 140p
    removed = await t.request("PUT", "/v1/billing/spend-cap", json={"cap_pence": None})
    assert removed.status_code == 200 and removed.json()["spend_cap_pence"] is None
    await run_job(hangar, "period-close", now=at("2024-02-02"))
    january = await _january_invoice(t)
    assert january["total_pence"] == 100
    assert january["lines"][-1]["kind"] == "spend_cap"
