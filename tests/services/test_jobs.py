"""`hangar jobs` runs through the API with the operator token, so it works against
`hangar up` without database or S3 settings on the operator's machine."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from services.cli.main import app


async def jobs_cli(base_url: str, *args: str, operator: str):
    # Only the URL and the token: no HANGAR_DATABASE_URL, no S3 settings.
    env = {"HANGAR_URL": base_url, "HANGAR_OPERATOR_TOKEN": operator}
    return await asyncio.to_thread(CliRunner().invoke, app, ["jobs", *args], env=env)


async def test_jobs_run_through_the_api_with_only_the_operator_token(base_url, settings):
    op = settings.operator_token.get_secret_value()
    listed = await jobs_cli(base_url, "ls", "--json", operator=op)
    assert listed.exit_code == 0, listed.output
    assert "period-close" in {j["name"] for j in json.loads(listed.output)}

    ran = await jobs_cli(
        base_url, "run", "period-close", "--at", "2026-05-02T01:00:00Z", operator=op
    )
    assert ran.exit_code == 0, ran.output
    assert "2026-04" in json.loads(ran.output)["periods"]  # the job's own report, as JSON

    again = await jobs_cli(
        base_url, "run", "period-close", "--at", "2026-05-02T01:00:00Z", operator=op
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["invoices"] == 0  # idempotent: nothing new the second time


async def test_jobs_refuse_unknown_names_bad_times_and_tenant_keys(base_url, settings, tenants):
    op = settings.operator_token.get_secret_value()
    unknown = await jobs_cli(base_url, "run", "nope", operator=op)
    assert unknown.exit_code != 0
    assert "no job 'nope'" in unknown.output and "period-close" in unknown.output

    naive = await jobs_cli(base_url, "run", "gc", "--at", "2026-05-02T01:00:00", operator=op)
    assert naive.exit_code != 0 and "time zone" in naive.output

    t = await tenants.create()
    refused = await jobs_cli(base_url, "run", "gc", operator=t.key)
    assert refused.exit_code != 0 and "operator token" in refused.output


async def test_tables_and_errors_print_brackets_as_text(base_url, settings):
    op = settings.operator_token.get_secret_value()
    listed = await jobs_cli(base_url, "ls", operator=op)
    assert listed.exit_code == 0, listed.output
    # A schedule is "cron[minute='17']": Rich markup would print it as "cron".
    assert "[minute='17']" in listed.output
