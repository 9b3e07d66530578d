"""Migration 0006 on a database written by the code before it: tenants whose billing
account was never read get one (as the lazy insert would have made it), finalized
invoices close their months in metering, and the way back restores ``tenants.plan``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from services.migrate import alembic_config

CREATED = datetime(2025, 1, 10, 12, tzinfo=UTC)


def _run(url: str, sql: str, *args) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def empty_database(stack) -> Iterator[str]:
    """A database of its own, so migrations can run from an older revision."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    _run(stack[0], f"create database {name}")
    try:
        yield make_url(stack[0]).set(database=name).render_as_string(hide_password=False)
    finally:
        _run(stack[0], f"drop database {name}")


def test_0006_opens_missing_accounts_and_closes_invoiced_months(empty_database):
    url = empty_database
    config = alembic_config(url)
    command.upgrade(config, "0005")
    starter, payg, billed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for tenant_id, name, plan in [
        (starter, "old-starter", "starter"),
        (payg, "old-payg", "payg"),
        (billed, "old-billed", "payg"),
    ]:
        _run(
            url,
            "insert into tenants (id, name, plan, created_at) values ($1, $2, $3, $4)",
            tenant_id,
            name,
            plan,
            CREATED,
        )
    # One tenant's account was read (so inserted) before, and it has an invoice.
    _run(url, "insert into billing_accounts (tenant_id, created_at) values ($1, now())", billed)
    _run(
        url,
        "insert into plan_periods (id, tenant_id, plan, starts_at, created_at) "
        "values ($1, $2, 'payg', $3, now())",
        uuid.uuid4(),
        billed,
        CREATED,
    )
    _run(
        url,
        "insert into invoices (id, tenant_id, number, period, status, currency, total_pence, "
        "finalized_at, due_at, stripe_state, stripe_attempts, created_at) values "
        "($1, $2, 'HGR-000042', $3, 'open', 'gbp', 140, now(), now(), 'none', 0, now())",
        uuid.uuid4(),
        billed,
        date(2025, 1, 1),
    )

    command.upgrade(config, "head")
    accounts = {r["tenant_id"] for r in _run(url, "select tenant_id from billing_accounts")}
    assert accounts == {starter, payg, billed}
    periods = {
        r["tenant_id"]: (r["plan"], r["starts_at"], r["trial_ends_at"])
        for r in _run(url, "select tenant_id, plan, starts_at, trial_ends_at from plan_periods")
    }
    assert periods[starter] == ("trial", CREATED, CREATED + timedelta(days=30))
    assert periods[payg] == ("payg", CREATED, None)
    assert [
        tuple(r) for r in _run(url, "select tenant_id, period, reference from closed_periods")
    ] == [(billed, date(2025, 1, 1), "HGR-000042")]
    columns = _run(
        url, "select column_name from information_schema.columns where table_name = 'tenants'"
    )
    assert "plan" not in {r["column_name"] for r in columns}

    command.downgrade(config, "0005")
    plans = {r["id"]: r["plan"] for r in _run(url, "select id, plan from tenants")}
    assert plans == {starter: "starter", payg: "payg", billed: "payg"}
