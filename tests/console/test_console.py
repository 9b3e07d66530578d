"""The console in a real browser against the real stack: a node enrolled by a token
made on the Nodes page goes online, a model deployed by label through the form reaches
ready on it, usage draws, invoice lines open their usage, CSV downloads, and the scopes,
CSRF and escaping hold."""

from __future__ import annotations

import csv
import io
import re
import secrets
from datetime import UTC, date, datetime

import httpx
from playwright.async_api import expect

from services.scheduler import run_job
from tests.billing.scripts import GB, at, device_days, egress
from tests.factories import enroll_node

READY_TIMEOUT = 180_000  # ms: the node pulls the model, verifies it and loads it


async def test_admin_enrolls_a_node_and_deploys_by_label(console, nodes, smollm2_tenant):
    t, version = smollm2_tenant
    c = await console(t.key)
    await expect(c.page).to_have_title("Overview · Hangar console")
    await c.shot("overview-empty")

    # An enrollment token made on the Nodes page, shown once with the command to paste.
    await c.goto("/console/nodes")
    await c.page.get_by_label("Labels for its nodes").fill("site=paris")
    await c.page.get_by_role("button", name="Create enrollment token").click()
    secret = await c.page.get_by_label("Token", exact=True).input_value()
    assert secret.startswith("hgt_")
    await expect(c.page.locator("#enroll-command")).to_contain_text(f"--token {secret}")
    await c.shot("token-created")

    node = await nodes(t, enroll=False)
    await node.enroll(secret, "edge-1")
    await node.start()
    await c.goto("/console/nodes")
    row = c.page.locator("tr", has_text="edge-1")
    await expect(row.locator(".state")).to_have_text("online", timeout=30_000)
    await expect(row).to_contain_text("site=paris")
    await c.shot("nodes")

    # Relabel it, then deploy by label through the form.
    await row.get_by_role("link", name="edge-1").click()
    await c.page.get_by_label("Set labels").fill("site=london")
    await c.page.get_by_label("Remove label keys").fill("")
    await c.page.get_by_role("button", name="Save labels").click()
    await expect(c.page.locator("main")).to_contain_text("site=london")

    await c.goto("/console/deployments")
    await c.page.get_by_label("Model (NAME:TAG or NAME@sha256:…)").fill("smollm2:prod")
    await c.page.get_by_label("To nodes with labels").fill("site=london")
    await c.page.get_by_role("button", name="Deploy").click()
    listed = c.page.locator("tbody tr", has_text="smollm2:prod")
    await expect(listed).to_contain_text(f"v{version['number']}")
    await expect(listed.locator("td.num")).to_have_text("1")
    await c.shot("deployments")

    # The node page updates itself (htmx polling) until the model is ready and loaded.
    await c.goto(f"/console/nodes/{node.id}")
    models = c.page.locator("#node-models")
    await expect(models.locator(".state-ready")).to_have_text("ready", timeout=READY_TIMEOUT)
    await expect(models).to_contain_text("smollm2:prod")
    await c.shot("node-ready")

    await c.goto("/console/models/smollm2")
    await expect(c.page.locator("tbody")).to_contain_text("llama")
    await c.shot("model")
    await c.goto("/console/")
    await expect(c.page.locator('[data-state="online"]')).to_have_text("1")
    await expect(c.page.locator("#spend")).to_contain_text("£")
    await c.shot("overview")


async def _invoiced_tenant(tenants, operator, hangar):
    """A pay-as-you-go tenant with a finalized November 2024 invoice, and device usage
    on every day of this month so far."""
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2024-11-01"))
    node = "00000000-0000-0000-0000-00000000c0de"
    today = datetime.now(UTC).date()
    await operator.imported(
        device_days(t.id, node, date(2024, 11, 1), date(2024, 11, 5))
        + [egress(t.id, 3 * GB, at("2024-11-03"))]
        + device_days(t.id, node, today.replace(day=1), today)
    )
    await run_job(hangar, "period-close", now=at("2024-12-02"))
    return t, today


async def test_finance_sees_usage_and_invoices_only(console, tenants, operator, hangar):
    t, today = await _invoiced_tenant(tenants, operator, hangar)
    c = await console(await t.key_with("finance"))
    nav = c.page.get_by_role("navigation", name="Console")
    await expect(nav.get_by_role("link")).to_have_text(["Overview", "Usage", "Invoices"])
    await c.shot("finance-overview")

    # One point per day of the month so far, each above the axis (a node every day).
    await c.goto("/console/usage")
    devices = c.page.get_by_role("img", name="Devices per day")
    points = devices.locator("circle")
    assert await points.count() == today.day
    baseline = float(await devices.locator("line.axis").first.get_attribute("y1"))
    heights = [float(await points.nth(i).get_attribute("cy")) for i in range(today.day)]
    assert all(y < baseline for y in heights), heights
    await expect(points.first.locator("title")).to_contain_text("1 devices")
    await c.shot("usage")

    async with c.page.expect_download() as usage_csv:
        await c.page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO((await (await usage_csv.value).path()).read_text())))
    assert sum(int(r["quantity"]) for r in rows if r["meter"] == "device_day") == today.day

    # The invoice, a line, and the usage events behind it.
    await c.goto("/console/invoices")
    await c.shot("invoices")
    await c.page.locator("tbody tr", has_text="2024-11").get_by_role("link").first.click()
    await expect(c.page).to_have_title(re.compile(r"Invoice HGR-\d+"))
    await c.shot("invoice")
    await c.page.get_by_role("link", name="5 events").click()
    events = c.page.locator("tbody tr")
    await expect(events).to_have_count(5)
    await expect(events.first).to_contain_text("2024-11-01")
    await c.shot("line-usage")

    await c.page.get_by_role("link", name=re.compile(r"Back to HGR-")).click()
    async with c.page.expect_download() as invoice_csv:
        await c.page.get_by_role("link", name="Download CSV").click()
    download = await invoice_csv.value
    assert download.suggested_filename == "invoices-2024-11.csv"
    lines = list(csv.DictReader(io.StringIO((await download.path()).read_text())))
    assert lines and all(r["period"] == "2024-11" for r in lines), lines

    # No deploy button anywhere it can reach; a forged deploy with its cookie (and even a
    # valid CSRF token) is refused by the server with the API's message.
    await c.goto("/console/deployments")
    await expect(c.page.locator("#deploy-form")).to_have_count(0)
    await expect(c.page.get_by_role("alert")).to_contain_text("do not allow this")
    await c.goto("/console/invoices")
    token = await c.csrf()
    forged = await c.context.request.post(
        c.base_url + "/console/deployments",
        form={"model": "x:latest", "selector": "site=london", "_csrf_token": token},
        max_redirects=0,
    )
    assert forged.status == 403, await forged.text()
    assert "scopes (finance) do not allow this" in await forged.text()
    await c.shot("finance-refused")


async def test_read_key_changes_nothing(console, tenants):
    t = await tenants.create()
    await enroll_node(t, name="ro-1")
    c = await console(await t.key_with("read"))
    await c.goto("/console/nodes")
    await expect(c.page.locator("tbody tr", has_text="ro-1")).to_have_count(1)
    await expect(c.page.get_by_role("button", name="Create enrollment token")).to_have_count(0)
    await c.goto("/console/deployments")
    await expect(c.page.get_by_role("button", name="Deploy")).to_have_count(0)
    await c.shot("read-deployments")
    forged = await c.context.request.post(
        c.base_url + "/console/enroll-tokens",
        form={"name": "sneaky", "_csrf_token": await c.csrf()},
        max_redirects=0,
    )
    assert forged.status == 403, await forged.text()
    resp = await t.request("GET", "/v1/enrollment-tokens/")
    assert [tok["name"] for tok in resp.json()] == ["default"]


async def test_forms_need_the_csrf_token_and_names_render_as_text(console, tenants):
    t = await tenants.create()
    hostile = "<script>window.pwned=1</script>"
    await enroll_node(t, name=hostile)
    c = await console(t.key)

    no_token = await c.context.request.post(
        c.base_url + "/console/keys", form={"name": "no-csrf", "scope": "read"}, max_redirects=0
    )
    assert no_token.status == 403 and "CSRF" in await no_token.text()
    wrong = await c.context.request.post(
        c.base_url + "/console/keys",
        form={"name": "no-csrf", "scope": "read", "_csrf_token": "0" * 80},
        max_redirects=0,
    )
    assert wrong.status == 403
    keys = (await t.request("GET", "/v1/keys/")).json()
    assert "no-csrf" not in [k["name"] for k in keys]

    await c.goto("/console/keys")
    await c.page.get_by_label("Name", exact=True).fill(hostile)
    await c.page.get_by_role("button", name="Create key").click()
    await expect(c.page.locator("table")).to_contain_text(hostile)
    await c.goto("/console/nodes")
    await expect(c.page.locator("tbody tr", has_text=hostile)).to_have_count(1)
    assert await c.page.evaluate("window.pwned") is None
    await c.shot("escaped")

    # A ref the API refuses: the same message, as text, and nothing deployed.
    await c.goto("/console/deployments")
    await c.page.get_by_label("Model (NAME:TAG or NAME@sha256:…)").fill("<script>:latest")
    await c.page.get_by_label("To nodes with labels").fill("site=x")
    await c.page.get_by_role("button", name="Deploy").click()
    await expect(c.page.get_by_role("alert")).to_contain_text("invalid model name '<script>'")
    assert await c.page.evaluate("window.pwned") is None
    await c.shot("refused-ref")

    # Signing out ends the session: the pages send you back to sign in.
    await c.goto("/console/")
    await c.page.get_by_role("button", name="Sign out").click()
    await c.goto("/console/nodes")
    await expect(c.page).to_have_title("Sign in · Hangar console")


async def test_cookie_is_httponly_strict_and_holds_no_key(console, tenants):
    t = await tenants.create()
    c = await console(t.key)
    (session,) = [k for k in await c.context.cookies() if k["name"] == "hangar_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["expires"] > 0
    assert t.key not in session["value"]
    # Revoking the key ends its console sessions at once: the open Nodes page's next
    # live update takes the browser to the sign-in page, which leads back here.
    await c.goto("/console/nodes")
    keys = (await t.request("GET", "/v1/keys/")).json()
    admin = next(k for k in keys if k["name"] == "admin")
    other = await t.key_with("admin")
    await t.http.delete(f"/v1/keys/{admin['id']}", headers={"Authorization": f"Bearer {other}"})
    await expect(c.page).to_have_title("Sign in · Hangar console", timeout=20_000)
    assert "next=/console/nodes" in c.page.url


async def test_operator_creates_a_tenant_and_runs_a_job(console, settings):
    c = await console(settings.operator_token.get_secret_value())
    await expect(c.page).to_have_title("Operator · Hangar console")
    await c.page.get_by_label("Name", exact=True).fill(f"console-{secrets.token_hex(3)}")
    await c.page.get_by_role("button", name="Create tenant").click()
    assert (await c.page.get_by_label("Admin key").input_value()).startswith("hgr_")
    name = await c.page.locator(".notice strong").first.inner_text()
    await c.page.locator("#ctenant").select_option(label=name)
    await c.page.locator("#cfee").fill("1000")
    await c.page.locator("#cdev").fill("4.50")
    await c.page.locator("#cmax").fill("40")
    await c.page.get_by_role("button", name="Set contract").click()
    await expect(c.page.locator("#contract-result")).to_contain_text(name)
    op = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=c.base_url, headers=op) as api:
        terms = (await api.get(f"/v1/tenants/{name}/contract")).json()
    # Typed in pounds, stored in pence, exactly as `hangar contracts set` would.
    assert (terms["monthly_fee_pence"], terms["device_month_pence"], terms["max_nodes"]) == (
        100000,
        "450.0000",
        40,
    )
    await c.page.get_by_label("Job").select_option("device-count")
    await c.page.get_by_role("button", name="Run now").click()
    await expect(c.page.locator("#job-result")).to_contain_text("device-count")
    await c.shot("operator")


async def test_disable_asks_first_and_revoke_can_be_cancelled(console, tenants):
    t = await tenants.create()
    node = await enroll_node(t, name="edge-9")
    c = await console(t.key)
    await c.goto(f"/console/nodes/{node.id}")
    state = c.page.locator("main p .state").first
    before = await state.inner_text()
    assert before in ("online", "offline")

    c.page.once("dialog", lambda dialog: dialog.dismiss())
    await c.page.get_by_role("button", name="Revoke").click()
    await expect(state).to_have_text(before)

    c.page.once("dialog", lambda dialog: dialog.accept())
    await c.page.get_by_role("button", name="Disable").click()
    await expect(state).to_have_text("disabled")
    await c.shot("node-disabled")
    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["state"] == "disabled"
    await c.page.get_by_role("button", name="Enable").click()
    await expect(state).to_have_text(before)


async def test_the_contract_form_refuses_amounts_that_are_not_pence(console, settings, tenants):
    """NaN and Infinity parse as decimals and used to end in a 500; a fee with a
    fraction of a penny was cut off (35.999 became 3599 pence). Each is the form's
    ordinary error, naming the field, and no contract is set."""
    t = await tenants.create()
    c = await console(settings.operator_token.get_secret_value())
    await c.page.locator("#ctenant").select_option(label=t.name)
    await c.page.locator("#cfee").fill("NaN")
    await c.page.get_by_role("button", name="Set contract").click()
    await expect(c.page.get_by_role("alert")).to_contain_text("the monthly fee must be an amount")

    await c.goto("/console/operator")
    token = await c.csrf()
    cases = [
        ({"monthly_fee": "Infinity"}, "the monthly fee must be an amount in pounds"),
        ({"monthly_fee": "-inf"}, "the monthly fee must be an amount in pounds"),
        ({"monthly_fee": "1e999999"}, "the monthly fee must be an amount in pounds"),
        ({"monthly_fee": "35.999"}, "whole pence"),
        ({"device_month": "sNaN"}, "the device-month price must be an amount"),
    ]
    for fields, message in cases:
        resp = await c.context.request.post(
            c.base_url + "/console/operator/contracts",
            form={"tenant": t.id, "_csrf_token": token, **fields},
            max_redirects=0,
        )
        assert resp.status == 400, (fields, await resp.text())
        assert message in await resp.text(), fields
    op = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=c.base_url, headers=op) as api:
        none = await api.get(f"/v1/tenants/{t.name}/contract")
    assert none.status_code == 400 and "no enterprise contract" in none.json()["error"]
