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
    assert [(r["meter"], r["amount_gbp"]) for r in rows] == [
        ("device_day", "0.00"),
        ("storage_sample", "2.00"),
        ("egress", "4.66"),
    ]
    listed = json.loads(
        await cli(base_url, "invoices", "ls", "--period", "2026-04", "--json", token=finance)
    )
    assert [(i["number"], i["total"]) for i in listed] == [(rows[0]["invoice"], "£6.66")]
