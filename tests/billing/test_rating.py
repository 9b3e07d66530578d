"""Exact-penny invoices for scripted months, placed in time with the import endpoint."""

from __future__ import annotations

from datetime import date, datetime

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
    nodes = [
        "00000000-0000-0000-0000-00000000000a",
        "00000000-0000-0000-0000-00000000000b",
        "00000000-0000-0000-0000-00000000000c",
    ]
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


async def test_leap_year_february_has_29_days_and_696_hours(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2024-02-01"))
    node = "00000000-0000-0000-0000-0000000000f1"
    events = device_days(t.id, node, date(2024, 2, 1), date(2024, 2, 14))  # 14 of 29 days
    events += storage_hours(t.id, 10 * GB, at("2024-02-01"), at("2024-02-15"))  # 336 of 696 hours
    events += [egress(t.id, GB, at("2024-02-29", 23))]
    await operator.imported(events)
    await _close(hangar, at("2024-03-02", 1))
    invoice = await _invoice(t, "2024-02")
    amounts = {line["meter"]: line["amount_pence"] for line in invoice["lines"]}
    # 14/29 x £5 = 241.38p; 3360/696 GB-months x 5p = 24.14p; 1 GB x 14p
    assert amounts == {"device_day": 241, "storage_sample": 24, "egress": 14}
    assert invoice["total_pence"] == 279


async def test_each_line_is_rounded_once_half_up(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2026-04-01"))
    events = storage_hours(
        t.id, GB, at("2026-04-01"), at("2026-04-16")
    )  # 360 GB-hours = 0.5 GB-month
    events += [egress(t.id, 250_000_000, at("2026-04-20"))]  # 0.25 GB x 14p = 3.5p
    await operator.imported(events)
    await _close(hangar, at("2026-05-02", 1))
    invoice = await _invoice(t, "2026-04")
    amounts = {line["meter"]: line["amount_pence"] for line in invoice["lines"]}
    # 2.5p -> 3p (half-even would give 2p); the total is the sum of rounded lines, not 6p
    # No device-days were recorded, so there is no devices line.
    assert amounts == {"storage_sample": 3, "egress": 4}
    assert invoice["total_pence"] == 7


async def test_plan_change_mid_month_prorates_the_fee_and_rates_usage_under_each_plan(
    tenants, operator, hangar
):
    t = await tenants.create()
    await operator.set_plan(t.name, "starter", at("2026-04-01"))
    await operator.set_plan(t.name, "payg", at("2026-04-16", 12))
    node = "00000000-0000-0000-0000-0000000000c1"
    events = device_days(t.id, node, date(2026, 4, 1), date(2026, 4, 30))
    events += storage_hours(t.id, 30 * GB, at("2026-04-01"), at("2026-05-01"))
    events += [egress(t.id, 10 * GB, at("2026-04-10")), egress(t.id, 5 * GB, at("2026-04-20"))]
    await operator.imported(events)
    await _close(hangar, at("2026-05-02", 1))
    invoice = await _invoice(t, "2026-04")
    lines = [
        (line["kind"], line["plan"], line["meter"], line["amount_pence"])
        for line in invoice["lines"]
    ]
    assert lines == [
        # The 16th began under Starter: Starter owns 16 days of the fee and that day's device-day.
        ("proration", "starter", None, 1867),  # 3500 x 16/30 = 1866.67
        ("usage", "starter", "device_day", 0),
        ("usage", "starter", "storage_sample", 0),
        ("usage", "starter", "egress", 0),  # the 10 GB on the 10th: included in Starter
        ("usage", "payg", "device_day", 233),  # 14/30 x 500 = 233.33
        ("usage", "payg", "storage_sample", 73),  # 30 GB x 348 h / 720 = 14.5 GB-months x 5p = 72.5
        ("usage", "payg", "egress", 70),  # 5 GB x 14p
    ]
    assert invoice["total_pence"] == 1867 + 233 + 73 + 70
    assert "16–30" not in invoice["lines"][0]["description"]
    assert invoice["lines"][0]["description"] == "Starter plan, 1–16 April 2026 (16 of 30 days)"


async def test_enterprise_contract_rates_fee_included_usage_and_terms(tenants, operator, hangar):
    t = await tenants.create()
    resp = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/contract",
        json={
            "monthly_fee_pence": 100000,
            "device_month_pence": "400",
            "storage_gb_month_pence": "4",
            "egress_gb_pence": "10",
            "included_device_months": "5",
            "included_storage_gb_months": "100",
            "included_egress_gb": "500",
            "payment_terms_days": 45,
            "effective_at": "2026-04-01T00:00:00Z",
        },
    )
    assert resp.status_code == 200, resp.text
    events = []
    for n in range(8):
        events += device_days(
            t.id, f"00000000-0000-0000-0000-0000000000e{n}", date(2026, 4, 1), date(2026, 4, 30)
        )
    events += storage_hours(t.id, 150 * GB, at("2026-04-01"), at("2026-05-01"))
    events += [egress(t.id, 100 * GB, at("2026-04-10", h)) for h in range(6)]
    await operator.imported(events)
    await _close(hangar, at("2026-05-02", 1))
    invoice = await _invoice(t, "2026-04")
    lines = {line["meter"] or line["kind"]: line for line in invoice["lines"]}
    assert lines["flat_fee"]["amount_pence"] == 100000
    assert (lines["device_day"]["quantity"], lines["device_day"]["amount_pence"]) == (
        "3.000000000",
        1200,
    )
    assert (lines["storage_sample"]["quantity"], lines["storage_sample"]["amount_pence"]) == (
        "50.000000000",
        200,
    )
    assert (lines["egress"]["quantity"], lines["egress"]["amount_pence"]) == ("100.000000000", 1000)
    assert "5.00 device-month included" in lines["device_day"]["description"]
    assert invoice["total"] == "£1,024.00"
    due = datetime.fromisoformat(invoice["due_at"]) - datetime.fromisoformat(
        invoice["finalized_at"]
    )
    assert due.days == 45


async def test_no_lines_for_meters_without_usage_or_a_plan_held_for_hours(
    tenants, operator, hangar
):
    t = await tenants.create()
    await operator.set_plan(t.name, "starter", at("2023-09-01"))
    # Two changes within one day: Starter from 10:00, pay-as-you-go from 11:00 on the 10th.
    await operator.set_plan(t.name, "payg", at("2023-09-10", 10))
    await operator.set_plan(t.name, "starter", at("2023-09-10", 11))
    await operator.imported([egress(t.id, 200 * GB, at("2023-09-20"))])
    await _close(hangar, at("2023-10-02", 1))
    invoice = await _invoice(t, "2023-09")
    lines = [
        (line["kind"], line["plan"], line["meter"], line["amount_pence"])
        for line in invoice["lines"]
    ]
    assert lines == [
        ("proration", "starter", None, 1167),  # 1-10 Sep: 3500 x 10/30 = 1166.67
        ("proration", "starter", None, 2333),  # 11-30 Sep: 3500 x 20/30 = 2333.33
        (
            "usage",
            "starter",
            "egress",
            0,
        ),  # 200 GB on the 20th (a download past 100 GB is refused live)
    ]
