"""A closed month takes no new usage: the import, the samplers and plan changes all ask
metering's rule (``metering.closing``), not billing's invoices. Here the month is
closed by metering alone, with no invoice anywhere, so only that rule can refuse."""

from __future__ import annotations

import uuid

from metering.closing import close_months
from metering.periods import Period
from services.scheduler import run_job
from tests.billing.scripts import GB, add_node, at, egress
from tests.factories import write_gguf


async def _close(hangar, tenant_id: str, period: str, reference: str) -> None:
    async with hangar.sessions() as session, session.begin():
        await close_months(session, [(uuid.UUID(tenant_id), Period.parse(period), reference)])


async def _usage(t, period: str) -> dict:
    resp = await t.request("GET", "/v1/usage/", params={"period": period})
    assert resp.status_code == 200, resp.text
    return resp.json()["totals"]


async def test_an_import_into_a_closed_month_is_refused_and_writes_nothing(
    tenants, operator, hangar
):
    t = await tenants.create(plan="payg")
    await _close(hangar, t.id, "2021-03", "REF-CLOSED-1")
    resp = await operator.import_events(
        [egress(t.id, GB, at("2021-04-02")), egress(t.id, GB, at("2021-03-31", 23))]
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error.startswith("event 1") and "falls in March 2021, which is already invoiced" in error
    assert "(REF-CLOSED-1)" in error and "credit note" in error
    assert (await _usage(t, "2021-04"))["egress_bytes"] == 0  # all or nothing
    # The month next to it is open.
    assert (await operator.imported([egress(t.id, GB, at("2021-04-02"))]))["written"] == 1


async def test_samplers_skip_a_closed_month(tenants, hangar, tmp_path):
    t = await tenants.create(plan="payg")
    assert (await t.push(write_gguf(tmp_path / "m.gguf"), "m")).status_code == 201
    await add_node(hangar, t.id, enrolled_at=at("2021-05-30"))
    await _close(hangar, t.id, "2021-05", "REF-CLOSED-2")
    await run_job(hangar, "device-count", now=at("2021-06-01", 12))  # 29 May .. 1 June
    await run_job(hangar, "storage-sample", now=at("2021-05-31", 5))
    await run_job(hangar, "storage-sample", now=at("2021-06-01", 5))
    may, june = await _usage(t, "2021-05"), await _usage(t, "2021-06")
    assert (may["device_days"], may["storage_samples"]) == (0, 0)
    assert (june["device_days"], june["storage_samples"]) == (1, 1)


async def test_a_plan_change_into_a_closed_month_is_refused(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await _close(hangar, t.id, "2021-07", "REF-CLOSED-3")
    moved = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/plan",
        json={"plan": "starter", "effective_at": "2021-07-15T00:00:00Z"},
    )
    assert moved.status_code == 409, moved.text
    assert moved.json()["error"] == (
        "July 2021 is already invoiced for this tenant (REF-CLOSED-3); a plan change can take "
        "effect only after the last finalized period. Correct past invoices with a credit note."
    )
    # Earlier than the closed month is refused too (it would rewrite July); after it is fine.
    assert (
        await operator.request(
            "PUT",
            f"/v1/tenants/{t.name}/plan",
            json={"plan": "starter", "effective_at": "2021-06-01T00:00:00Z"},
        )
    ).status_code == 409
    after = await operator.set_plan(t.name, "payg", at("2021-08-01"))
    assert after["plan"] == "payg"


async def test_period_close_closes_the_month_in_metering(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2021-09-01"))
    await operator.imported([egress(t.id, 10 * GB, at("2021-09-10"))])
    await run_job(hangar, "period-close", now=at("2021-10-02"))
    invoice = (await t.request("GET", "/v1/invoices/", params={"period": "2021-09"})).json()[0]
    late = await operator.import_events([egress(t.id, GB, at("2021-09-20"))])
    assert late.status_code == 400 and f"({invoice['number']})" in late.json()["error"]
