"""The finance and operator commands, run as a person would, against the test server."""

from __future__ import annotations

import asyncio
import csv
import io
import json

from typer.testing import CliRunner

from services.cli.main import app
from services.scheduler import run_job
from tests.billing.scripts import GB, at, egress, storage_hours


async def cli(base_url: str, *args: str, token: str = "", operator: str = "") -> str:
    # The server runs on this event loop; the (synchronous) CLI runs beside it.
    env = {"HANGAR_URL": base_url, "HANGAR_TOKEN": token, "HANGAR_OPERATOR_TOKEN": operator}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def test_operator_scripts_a_month_and_finance_exports_it(
    tenants, settings, base_url, hangar, tmp_path
):
    op = settings.operator_token.get_secret_value()
    t = await tenants.create()
    finance = await t.key_with("finance")
    await cli(
        base_url, "tenants", "plan", t.name, "payg", "--from", "2026-04-01T00:00:00Z", operator=op
    )

    events = storage_hours(t.id, 40 * GB, at("2026-04-01"), at("2026-05-01")) + [
        egress(t.id, 33_300_000_000, at("2026-04-20"))
    ]
    path = tmp_path / "april.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["tenant_id", "id", "meter", "quantity", "occurred_at"]
        )
        writer.writeheader()
        writer.writerows(events)
    output = await cli(base_url, "usage", "import", str(path), "--batch", "500", operator=op)
    assert f"{len(events)} events: {len(events)} written, 0 already recorded" in output
    again = await cli(base_url, "usage", "import", str(path), operator=op)
    assert f"0 written, {len(events)} already recorded" in again

    usage = json.loads(await cli(base_url, "usage", "--period", "2026-04", "--json", token=finance))
    assert usage["totals"]["storage_gb_months"] == "40.000000"

    await run_job(hangar, "period-close", now=at("2026-05-02", 1))
    exported = await cli(
        base_url, "invoices", "export", "--format", "csv", "--period", "2026-04", token=finance
    )
    rows = list(csv.DictReader(io.StringIO(exported)))
    # No device-days were recorded, so there is no devices line.
    assert [(r["meter"], r["amount_gbp"]) for r in rows] == [
        ("storage_sample", "2.00"),
        ("egress", "4.66"),
    ]
    listed = json.loads(
        await cli(base_url, "invoices", "ls", "--period", "2026-04", "--json", token=finance)
    )
    assert [(i["number"], i["total"]) for i in listed] == [(rows[0]["invoice"], "£6.66")]


async def test_contracts_credit_notes_and_the_spend_cap_from_the_cli(
    tenants, settings, base_url, hangar
):
    op = settings.operator_token.get_secret_value()
    t = await tenants.create()
    await cli(
        base_url,
        "contracts",
        "set",
        t.name,
        "--monthly-fee",
        "1000",
        "--device-month",
        "4.50",
        "--storage-gb-month",
        "0.04",
        "--egress-gb",
        "0.10",
        "--included-egress-gb",
        "500",
        "--max-nodes",
        "40",
        "--payment-terms",
        "45",
        "--from",
        "2025-01-01T00:00:00Z",
        operator=op,
    )
    contract = json.loads(await cli(base_url, "contracts", "show", t.name, "--json", operator=op))
    assert (contract["monthly_fee_pence"], contract["device_month_pence"]) == (100000, "450.0000")
    assert contract["max_nodes"] == 40 and contract["payment_terms_days"] == 45

    await run_job(hangar, "period-close", now=at("2025-02-02", 1))
    invoice = json.loads(
        await cli(base_url, "invoices", "ls", "--period", "2025-01", "--json", token=t.key)
    )[0]
    assert invoice["total"] == "£1,000.00"
    note = await cli(
        base_url,
        "invoices",
        "credit",
        invoice["number"],
        "--amount",
        "12.50",
        "--reason",
        "SLA credit",
        operator=op,
    )
    assert "£12.50 against" in note
    shown = json.loads(
        await cli(base_url, "invoices", "show", invoice["number"], "--json", token=t.key)
    )
    assert shown["credited_pence"] == 1250

    assert (
        json.loads(await cli(base_url, "billing", "show", "--json", token=t.key))["plan"]
        == "enterprise"
    )
    await cli(base_url, "tenants", "plan", t.name, "payg", operator=op)
    capped = await cli(base_url, "billing", "cap", "20", token=t.key)
    assert "Pay-as-you-go" in capped and "spend cap: £20.00" in capped
