"""Who may change a plan, and when a plan or contract may start."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete

from billing.models import PlanPeriod
from core.db import utcnow
from services.scheduler import run_job
from tests.billing.scripts import GB, at, egress

CONTRACT = {
    "monthly_fee_pence": 50000,
    "device_month_pence": "300",
    "storage_gb_month_pence": "3",
    "egress_gb_pence": "8",
}


async def _with_card(t) -> None:
    added = await t.request(
        "PUT", "/v1/billing/payment-method", json={"payment_method": "pm_card_visa"}
    )
    assert added.status_code == 200, added.text


async def test_a_tenant_admin_cannot_leave_an_enterprise_contract(tenants, operator):
    t = await tenants.create()
    await _with_card(t)
    contract = await operator.request("PUT", f"/v1/tenants/{t.name}/contract", json=CONTRACT)
    assert contract.status_code == 200, contract.text
    left = await t.request("PUT", "/v1/billing/plan", json={"plan": "payg"})
    assert left.status_code == 403
    assert "enterprise plans are changed by the platform operator" in left.json()["error"]
    assert (await t.request("GET", "/v1/billing/")).json()["plan"] == "enterprise"


async def test_a_tenant_admin_cannot_undo_a_scheduled_enterprise_contract(tenants, operator):
    t = await tenants.create()
    await _with_card(t)
    body = {**CONTRACT, "effective_at": (utcnow() + timedelta(days=10)).isoformat()}
    assert (
        await operator.request("PUT", f"/v1/tenants/{t.name}/contract", json=body)
    ).status_code == 200
    left = await t.request("PUT", "/v1/billing/plan", json={"plan": "starter"})
    assert left.status_code == 403
    assert "platform operator" in left.json()["error"]


async def test_plan_and_contract_start_times_are_bounded(tenants, operator):
    t = await tenants.create()
    for when in ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "9999-12-31T00:00:00Z"]:
        plan = await operator.request(
            "PUT", f"/v1/tenants/{t.name}/plan", json={"plan": "payg", "effective_at": when}
        )
        assert plan.status_code == 400, plan.text
        assert "effective_at" in plan.json()["error"]
        contract = await operator.request(
            "PUT", f"/v1/tenants/{t.name}/contract", json={**CONTRACT, "effective_at": when}
        )
        assert contract.status_code == 400, contract.text
        assert "effective_at" in contract.json()["error"]
    # The tenant is unharmed: its preview and account still answer.
    assert (await t.request("GET", "/v1/invoices/preview")).status_code == 200
    assert (await t.request("GET", "/v1/billing/")).json()["plan"] == "trial"


async def test_period_close_isolates_a_tenant_whose_invoice_fails(tenants, operator, hangar):
    good = await tenants.create(plan="payg")
    await operator.set_plan(good.name, "payg", at("2023-03-01"))
    await operator.imported([egress(good.id, 10 * GB, at("2023-03-15"))])
    bad = await tenants.create(plan="payg")
    await operator.set_plan(bad.name, "payg", at("2023-03-01"))
    # Data no API accepts any more (a plan from year 1) makes rating this tenant fail.
    async with hangar.sessions() as session, session.begin():
        session.add(
            PlanPeriod(
                tenant_id=uuid.UUID(bad.id),
                plan="payg",
                starts_at=at("0001-01-01"),
            )
        )
    try:
        report = await run_job(hangar, "period-close", now=at("2023-04-02"))
        assert any(bad.id in failure for failure in report["failed"]), report
        invoices = (await good.request("GET", "/v1/invoices/")).json()
        assert [(i["period"], i["total_pence"]) for i in invoices] == [("2023-03", 140)]
    finally:
        async with hangar.sessions() as session, session.begin():
            await session.execute(
                delete(PlanPeriod).where(
                    PlanPeriod.tenant_id == uuid.UUID(bad.id),
                    PlanPeriod.starts_at < at("2000-01-01"),
                )
            )
