"""Invoice lifecycle: draft preview, finalized after the grace day with gap-free
numbers, immutable (credit notes correct them), and what finance can read."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date

from sqlalchemy import select

from billing.models import Invoice
from billing.period_close import close_period
from metering.periods import Period
from services.components import Components
from services.scheduler import run_job
from tests.billing.scripts import GB, at, device_days, egress


async def _payg_in(tenants, operator, month: str, egress_gb: int = 10):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at(f"{month}-01"))
    node = "00000000-0000-0000-0000-00000000d001"
    await operator.imported(
        device_days(
            t.id, node, date.fromisoformat(f"{month}-01"), date.fromisoformat(f"{month}-05")
        )
        + [egress(t.id, egress_gb * GB, at(f"{month}-03"))]
    )
    return t


async def _numbers(hangar) -> list[int]:
    async with hangar.sessions() as session:
        return sorted(
            int(n.rsplit("-", 1)[1]) for n in await session.scalars(select(Invoice.number))
        )


async def _invoices(t, **params) -> list[dict]:
    resp = await t.request("GET", "/v1/invoices/", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_finalized_only_after_the_grace_day_then_immutable(tenants, operator, hangar):
    t = await _payg_in(tenants, operator, "2025-09")
    await run_job(hangar, "period-close", now=at("2025-10-01", 12))  # still in the grace day
    assert await _invoices(t) == []
    draft = (await t.request("GET", "/v1/invoices/preview", params={"period": "2025-09"})).json()
    assert draft["status"] == "draft" and draft["number"] is None

    report = await run_job(hangar, "period-close", now=at("2025-10-02"))
    assert "2025-09" in report["periods"]
    (summary,) = await _invoices(t, period="2025-09")
    assert summary["status"] == "open" and summary["number"].startswith("HGR-")
    assert summary["total_pence"] == draft["total_pence"] == 5 * 500 // 30 + 140  # 83p + 140p
    # The preview of a closed period is the invoice itself.
    closed = (await t.request("GET", "/v1/invoices/preview", params={"period": "2025-09"})).json()
    assert closed["number"] == summary["number"]

    late = await operator.import_events([egress(t.id, GB, at("2025-09-20"))])
    assert late.status_code == 400 and "already invoiced" in late.json()["error"]
    moved = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/plan",
        json={"plan": "starter", "effective_at": "2025-09-15T00:00:00Z"},
    )
    assert moved.status_code == 409 and "credit note" in moved.json()["error"]


async def test_period_close_twice_or_on_two_schedulers_numbers_each_invoice_once_without_gaps(
    tenants, operator, hangar, settings
):
    made = [await _payg_in(tenants, operator, "2025-08") for _ in range(4)]
    other = Components.build(settings)
    try:
        now = at("2025-09-02", 1)
        await asyncio.gather(
            run_job(hangar, "period-close", now=now), run_job(other, "period-close", now=now)
        )
        # Even bypassing the job lock, two closers at once cannot double-invoice or skip a number.
        period = Period(2025, 8)
        results = await asyncio.gather(
            close_period(hangar.sessions, period=period, now=now, settings=settings.billing),
            close_period(other.sessions, period=period, now=now, settings=settings.billing),
        )
        assert [r.invoices for r in results] == [0, 0]
        again = await run_job(hangar, "period-close", now=now)
        assert again["invoices"] == 0
    finally:
        await other.close()
    for t in made:
        assert len(await _invoices(t, period="2025-08")) == 1
    numbers = await _numbers(hangar)
    assert numbers == list(range(1, len(numbers) + 1))  # the whole series, no gaps


async def test_credit_notes_correct_a_finalized_invoice(tenants, operator, hangar):
    t = await _payg_in(tenants, operator, "2025-07")
    await run_job(hangar, "period-close", now=at("2025-08-02"))
    (invoice,) = await _invoices(t, period="2025-07")
    url = f"/v1/operator/invoices/{invoice['number']}"
    note = await operator.request(
        "POST", f"{url}/credit-notes", json={"amount_pence": 50, "reason": "outage on 3 July"}
    )
    assert note.status_code == 201, note.text
    assert note.json()["number"].startswith("HGR-CN-")
    too_much = await operator.request(
        "POST", f"{url}/credit-notes", json={"amount_pence": 10_000, "reason": "oops"}
    )
    # July: 5/31 x 500p = 81p, + 10 GB x 14p = 221p; 50p already credited
    assert (
        too_much.status_code == 400 and "at most £1.71 can be credited" in too_much.json()["error"]
    )
    shown = (await t.request("GET", f"/v1/invoices/{invoice['number']}")).json()
    assert shown["total_pence"] == invoice["total_pence"]  # the invoice itself never changes
    assert (
        shown["credited_pence"] == 50 and shown["credit_notes"][0]["reason"] == "outage on 3 July"
    )
    # Tenants cannot issue credit notes.
    assert (
        await t.request("POST", f"{url}/credit-notes", json={"amount_pence": 1, "reason": "mine"})
    ).status_code == 401


async def test_void_keeps_the_number_and_a_paid_invoice_cannot_be_voided(tenants, operator, hangar):
    t = await _payg_in(tenants, operator, "2025-06")
    zero = await tenants.create(plan="payg")
    await operator.set_plan(zero.name, "payg", at("2025-06-01"))
    await run_job(hangar, "period-close", now=at("2025-07-02"))
    (invoice,) = await _invoices(t, period="2025-06")
    voided = await operator.request("POST", f"/v1/operator/invoices/{invoice['number']}/void")
    assert voided.json()["status"] == "void" and voided.json()["number"] == invoice["number"]
    (nothing_due,) = await _invoices(zero, period="2025-06")
    assert nothing_due["total_pence"] == 0 and nothing_due["status"] == "paid"
    refused = await operator.request("POST", f"/v1/operator/invoices/{nothing_due['number']}/void")
    assert refused.status_code == 409 and "credit note" in refused.json()["error"]


async def test_finance_reads_usage_and_invoices_and_nothing_else(
    tenants, operator, hangar, http, tmp_path
):
    t = await _payg_in(tenants, operator, "2025-05")
    await run_job(hangar, "period-close", now=at("2025-06-02"))
    (invoice,) = await _invoices(t, period="2025-05")
    finance = {"Authorization": f"Bearer {await t.key_with('finance')}"}
    read = {"Authorization": f"Bearer {await t.key_with('read')}"}
    for path in [
        "/v1/usage/",
        "/v1/invoices/",
        f"/v1/invoices/{invoice['number']}",
        "/v1/invoices/preview",
        "/v1/invoices/export",
        f"/v1/invoices/{invoice['number']}/lines/1/usage",
    ]:
        assert (await http.get(path, headers=finance)).status_code == 200, path
        assert (await http.get(path, headers=read)).status_code == 403, path
    for method, path, body in [
        ("GET", "/v1/models/", None),
        ("GET", "/v1/billing/", None),
        ("GET", "/v1/keys/", None),
        ("PUT", "/v1/billing/spend-cap", {"cap_pence": 1}),
        ("PUT", "/v1/billing/plan", {"plan": "payg"}),
        ("POST", "/v1/keys/", {"scopes": ["admin"]}),
        ("POST", "/v1/uploads/", {"model": "m", "size": 10}),
    ]:
        resp = await http.request(method, path, headers=finance, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert "needs one of: admin" in resp.json()["error"]


async def test_another_tenants_invoice_is_404(tenants, operator, hangar):
    owner = await _payg_in(tenants, operator, "2025-04")
    other = await tenants.create()
    await run_job(hangar, "period-close", now=at("2025-05-02"))
    (invoice,) = await _invoices(owner, period="2025-04")
    for path in [
        f"/v1/invoices/{invoice['number']}",
        f"/v1/invoices/{invoice['id']}",
        f"/v1/invoices/{invoice['number']}/lines/1/usage",
    ]:
        assert (await other.request("GET", path)).status_code == 404
    assert await _invoices(other, period="2025-04") == []


async def test_export_has_one_row_per_line_and_lines_trace_to_their_usage(
    tenants, operator, hangar
):
    t = await _payg_in(tenants, operator, "2025-03", egress_gb=3)
    await run_job(hangar, "period-close", now=at("2025-04-02"))
    (invoice,) = await _invoices(t, period="2025-03")
    full = (await t.request("GET", f"/v1/invoices/{invoice['number']}")).json()

    exported = await t.request(
        "GET", "/v1/invoices/export", params={"format": "csv", "period": "2025-03"}
    )
    # A download with its name, and the charset said once (it was said twice).
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"] == 'attachment; filename="invoices-2025-03.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    # Devices and egress; no storage was sampled, so there is no storage line.
    assert len(rows) == len(full["lines"]) == 2
    assert sum(int(r["amount_pence"]) for r in rows) == invoice["total_pence"]
    assert {r["invoice"] for r in rows} == {invoice["number"]}
    as_json_response = await t.request("GET", "/v1/invoices/export", params={"format": "json"})
    assert as_json_response.headers["content-type"] == "application/json"
    assert as_json_response.headers["content-disposition"].endswith('filename="invoices-all.json"')
    as_json = as_json_response.json()
    assert [r["amount_gbp"] for r in as_json] == [r["amount_gbp"] for r in rows]

    devices = next(line for line in full["lines"] if line["meter"] == "device_day")
    page = (
        await t.request(
            "GET",
            f"/v1/invoices/{invoice['number']}/lines/{devices['position']}/usage",
            params={"limit": 3},
        )
    ).json()
    second = (
        await t.request(
            "GET",
            f"/v1/invoices/{invoice['number']}/lines/{devices['position']}/usage",
            params={"limit": 3, "after": page["next"]},
        )
    ).json()
    events = page["events"] + second["events"]
    assert len(events) == devices["usage_events"] == 5 and second["next"] is None
    assert sum(e["quantity"] for e in events) == devices["usage_total"]
    assert [e["event_id"] for e in events] == sorted(e["event_id"] for e in events)


async def test_operator_lists_and_exports_across_tenants(tenants, operator, hangar):
    a = await _payg_in(tenants, operator, "2025-02")
    await run_job(hangar, "period-close", now=at("2025-03-02"))
    listed = (
        await operator.request("GET", "/v1/operator/invoices/", params={"tenant": a.name})
    ).json()
    assert [i["tenant"] for i in listed] == [a.name]
    everyone = (
        await operator.request("GET", "/v1/operator/invoices/", params={"period": "2025-02"})
    ).json()
    assert a.name in {i["tenant"] for i in everyone}
    bad = await operator.request("GET", "/v1/operator/invoices/", params={"status": "pending"})
    assert bad.status_code == 400 and "use one of draft, open" in bad.json()["error"]


async def test_plan_changes_need_a_time_with_its_utc_offset(tenants, operator):
    t = await tenants.create()
    resp = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/plan",
        json={"plan": "payg", "effective_at": "2026-04-01T00:00:00"},
    )
    assert resp.status_code == 400 and "timezone" in resp.text
    unknown = await operator.request(
        "PUT", "/v1/tenants/no-such-tenant/plan", json={"plan": "payg"}
    )
    assert unknown.status_code == 404 and "hangar tenants ls" in unknown.json()["error"]
    enterprise = await operator.request(
        "PUT", f"/v1/tenants/{t.name}/plan", json={"plan": "enterprise"}
    )
    assert enterprise.status_code == 400 and "hangar contracts set" in enterprise.json()["error"]
