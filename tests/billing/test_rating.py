"""Exact-penny invoices for scripted months, placed in time with the import endpoint."""

from __future__ import annotations

from datetime import date

from services.scheduler import run_job
from tests.billing.scripts import GB, at, device_days, egress, storage_hours


async def _close(hangar, now):
    return await run_job(hangar, "period-close", now=now)


async def _invoice(tenant, period):
    listed = (await tenant.request("GET", "/v1/invoices/", params={"period": period})).json()
    assert len(listed) == 1, listed
    return (await tenant.request("GET", f"/v1/invoices/{listed[0]['number']}")).json()


async def test_worked_example_payg_april_2026(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2026-04-01"))
    nodes = ["00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b",
             "00000000-0000-0000-0000-00000000000c"]
    events = device_days(t.id, nodes[0], date(2026, 4, 1), date(2026, 4, 30))
    events += device_days(t.id, nodes[1], date(2026, 4, 1), date(2026, 4, 30))
    events += device_days(t.id, nodes[2], date(2026, 4, 16), date(2026, 4, 30))
    events += storage_hours(t.id, 40 * GB, at("2026-04-01"), at("2026-05-01"))
    events += [egress(t.id, 33_300_000_000, at("2026-04-20", 9))]
    result = await operator.imported(events)
    assert result == {"received": len(events), "written": len(events), "duplicates": 0}

    preview = (await t.request("GET", "/v1/invoices/preview", params={"period": "2026-04"})).json()
    assert preview["status"] == "draft" and preview["total_pence"] == 1916

    await _close(hangar, at("2026-05-02", 1))
    invoice = await _invoice(t, "2026-04")
    amounts = {line["meter"]: line["amount_pence"] for line in invoice["lines"]}
    assert amounts == {"device_day": 1250, "storage_sample": 200, "egress": 466}
    assert invoice["total_pence"] == 1916 and invoice["total"] == "£19.16"
    devices = next(line for line in invoice["lines"] if line["meter"] == "device_day")
    assert devices["usage_total"] == 75 and devices["quantity"].startswith("2.5")
