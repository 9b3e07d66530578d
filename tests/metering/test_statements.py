"""Monthly statements: an on-premise installation signs its billed quantities, the
vendor's Hangar imports them for the enterprise tenant, and that tenant is invoiced
exactly as a tenant metered online. (One test stack plays both installations: the
statement's key is this installation's own, registered as a trusted issuer.)"""

from __future__ import annotations

import json
from datetime import date

from services.scheduler import run_job
from tests.billing.scripts import GB, at, device_days, egress, storage_hours
from tests.factories import Tenant

PERIOD = "2022-02"
CONTRACT = {
    "monthly_fee_pence": 50000,
    "device_month_pence": "400",
    "storage_gb_month_pence": "4",
    "egress_gb_pence": "10",
    "included_device_months": "1",
    "included_storage_gb_months": "5",
    "included_egress_gb": "50",
    "payment_terms_days": 30,
    "effective_at": "2022-02-01T00:00:00Z",
}


def usage_of(tenant_id: str) -> list[dict]:
    events = []
    for n in range(3):
        events += device_days(
            tenant_id,
            f"00000000-0000-0000-0000-0000000002f{n}",
            date(2022, 2, 1),
            date(2022, 2, 28),
        )
    events += storage_hours(tenant_id, 20 * GB, at("2022-02-01"), at("2022-03-01"))
    events += [egress(tenant_id, 50 * GB, at("2022-02-10", h)) for h in range(3)]
    return events


async def contract(operator, t: Tenant) -> None:
    resp = await operator.request("PUT", f"/v1/tenants/{t.name}/contract", json=CONTRACT)
    assert resp.status_code == 200, resp.text


async def statement(operator, period: str, *tenants: Tenant):
    return await operator.request(
        "GET",
        "/v1/usage/statements/",
        params={"period": period, "tenant": [t.name for t in tenants]},
    )


async def import_statement(operator, data: bytes, tenant: Tenant):
    return await operator.http.post(
        "/v1/usage/statements/import",
        params={"tenant": tenant.name},
        content=data,
        headers=operator.auth | {"Content-Type": "application/octet-stream"},
    )


async def totals(t: Tenant) -> dict:
    resp = await t.request("GET", "/v1/usage/", params={"period": PERIOD})
    assert resp.status_code == 200, resp.text
    return resp.json()["totals"]


async def invoice(t: Tenant) -> dict:
    listed = (await t.request("GET", "/v1/invoices/", params={"period": PERIOD})).json()
    assert len(listed) == 1, listed
    return (await t.request("GET", f"/v1/invoices/{listed[0]['number']}")).json()


async def test_a_statement_is_invoiced_exactly_as_usage_metered_online(tenants, operator, hangar):
    onprem = await tenants.create()  # a tenant of the on-premise installation
    await operator.imported(usage_of(onprem.id))
    written = await statement(operator, PERIOD, onprem)
    assert written.status_code == 200, written.text
    data = written.content

    billed, online = await tenants.create(), await tenants.create()
    for t in (billed, online):
        await contract(operator, t)
    await operator.imported(usage_of(online.id))

    key = (await operator.request("GET", "/v1/installation/key")).json()
    untrusted = await import_statement(operator, data, billed)
    assert untrusted.status_code == 400 and "trust-installation" in untrusted.json()["error"]
    trusted = await operator.request(
        "POST",
        "/v1/usage/statements/issuers",
        json={"tenant": billed.name, "name": "hospital-dc", "public_key": key["public_key"]},
    )
    assert trusted.status_code == 201, trusted.text
    assert trusted.json()["key_id"] == key["key_id"]

    got = await import_statement(operator, data, billed)
    assert got.status_code == 200, got.text
    assert got.json() | {"statement_id": None} == {
        "statement_id": None,
        "issuer": "hospital-dc",
        "period": PERIOD,
        "tenants": 1,
        "written": 3,
        "duplicates": 0,
    }
    again = await import_statement(operator, data, billed)
    assert (again.json()["written"], again.json()["duplicates"]) == (0, 3)
    # What rating uses is the same; a statement carries the month's sum of hourly
    # storage samples as one event, so only the count of sample events differs.
    stated, metered = await totals(billed), await totals(online)
    assert (stated.pop("storage_samples"), metered.pop("storage_samples")) == (1, 28 * 24)
    assert stated == metered

    # Another statement for the same month (re-issued) is refused: a month is stated once.
    reissued = (await statement(operator, PERIOD, onprem)).content
    conflict = await import_statement(operator, reissued, billed)
    assert conflict.status_code == 409 and "stated once" in conflict.json()["error"]

    await run_job(hangar, "period-close", now=at("2022-03-02", 1))
    a, b = await invoice(billed), await invoice(online)
    assert [(x["meter"], x["quantity"], x["amount_pence"]) for x in a["lines"]] == [
        (x["meter"], x["quantity"], x["amount_pence"]) for x in b["lines"]
    ]
    assert a["total"] == b["total"] and len(a["lines"]) == 4

    # Invoiced: the month takes no statement any more, as it takes no usage.
    late = await import_statement(operator, data, billed)
    assert late.status_code == 400 and "already invoiced" in late.json()["error"]


async def test_bad_statements_are_refused_and_import_nothing(tenants, operator):
    onprem = await tenants.create()
    await operator.imported([egress(onprem.id, 7 * GB, at("2022-01-15"))])
    data = (await statement(operator, "2022-01", onprem)).content
    billed, other = await tenants.create(), await tenants.create()
    key = (await operator.request("GET", "/v1/installation/key")).json()["public_key"]
    resp = await operator.request(
        "POST",
        "/v1/usage/statements/issuers",
        json={"tenant": billed.name, "name": "plant", "public_key": key},
    )
    assert resp.status_code == 201, resp.text

    async def refused(content: bytes, *needles: str, tenant: Tenant = billed, status=400):
        resp = await import_statement(operator, content, tenant)
        assert resp.status_code == status, resp.text
        for needle in needles:
            assert needle in resp.json()["error"], resp.json()
        assert (await totals_of(tenant, "2022-01"))["egress_bytes"] == 0

    await refused(data[:-5], "truncated", "Nothing was imported")
    await refused(data + b"more", "unexpected bytes")
    await refused(data.replace(b'"egress":7000000000', b'"egress":1000000000'), "signature")
    await refused(b"\x00" * 100, "not a Hangar signed file")
    await refused(b"x" * (9 * 1024 * 1024), status=413)
    # Trusted for one tenant only: another tenant's import of it is refused.
    await refused(data, "does not trust", tenant=other)
    # A bad key, a month not over yet.
    bad_key = await operator.request(
        "POST",
        "/v1/usage/statements/issuers",
        json={"tenant": billed.name, "name": "x", "public_key": "ed25519:abc"},
    )
    assert bad_key.status_code == 400 and "32 bytes" in bad_key.json()["error"]
    early = await statement(operator, "2999-01", onprem)
    assert early.status_code == 400 and "not over yet" in early.json()["error"]
    # The good file still imports.
    ok = await import_statement(operator, data, billed)
    assert ok.status_code == 200 and ok.json()["written"] == 1, ok.text


async def totals_of(t: Tenant, period: str) -> dict:
    resp = await t.request("GET", "/v1/usage/", params={"period": period})
    assert resp.status_code == 200, resp.text
    return resp.json()["totals"]


async def test_statements_from_the_cli(tenants, operator, base_url, tmp_path):
    from tests.node_runtime.test_offline import cli

    onprem, billed = await tenants.create(), await tenants.create()
    await operator.imported([egress(onprem.id, 3 * GB, at("2021-11-20"))])
    env = {"HANGAR_URL": base_url, "HANGAR_OPERATOR_TOKEN": operator.token, "HANGAR_TOKEN": ""}
    key = (await cli(env, "installation", "key")).split()[0]
    assert key.startswith("ed25519:")
    file = tmp_path / "statement.hangar"
    out = await cli(
        env,
        "usage",
        "statement",
        "--period",
        "2021-11",
        "--tenant",
        onprem.name,
        "-o",
        str(file),
        "--json",
    )
    written = json.loads(out)
    assert written == {"period": "2021-11", "output": str(file), "bytes": file.stat().st_size}
    out = await cli(env, "usage", "trust-installation", "plant", key, "--tenant", billed.name)
    assert "accepts statements from plant" in out
    out = await cli(env, "usage", "import-statement", str(file), "--tenant", billed.name)
    assert "1 quantities written" in out
    assert (await totals_of(billed, "2021-11"))["egress_bytes"] == 3 * GB


async def test_a_statement_past_the_monthly_bound_is_refused_whole(tenants, operator):
    """A statement is usage like any other: it may not take a month's sum past
    ``MONTH_LIMITS`` (the month could no longer be invoiced), and nothing of it stays."""
    from metering.meters import MONTH_LIMITS

    onprem, billed = await tenants.create(), await tenants.create()
    await operator.imported([egress(onprem.id, 7 * GB, at("2021-09-15"))])
    data = (await statement(operator, "2021-09", onprem)).content
    # The billed tenant already used all but one byte of the month's bound online.
    await operator.imported([egress(billed.id, MONTH_LIMITS["egress"] - 1, at("2021-09-02"))])
    key = (await operator.request("GET", "/v1/installation/key")).json()["public_key"]
    trusted = await operator.request(
        "POST",
        "/v1/usage/statements/issuers",
        json={"tenant": billed.name, "name": "plant", "public_key": key},
    )
    assert trusted.status_code == 201, trusted.text

    resp = await import_statement(operator, data, billed)
    assert resp.status_code == 400, resp.text
    assert "monthly limit" in resp.text and "egress" in resp.text
    assert (await totals_of(billed, "2021-09"))["egress_bytes"] == MONTH_LIMITS["egress"] - 1
