"""Metering and invoicing at scale, each against a baseline measured in the same run.

1. Usage ingestion through the API (the operator's import endpoint, batches of
   --batch events, --clients requests in flight) vs a raw asyncpg COPY of the same
   number of events into the same table. Target: >= 50,000 events/s through the API.
2. The period close (rating and finalizing invoices) for N and 2N tenants, each with a
   month of usage (3 nodes all month, hourly storage samples, a download a day):
   seconds for each and the growth from N to 2N (linear would be 2.0).

    uv run --all-extras python -m bench.metering [--events 500000] [--tenants 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.common import hangar_api
from billing.period_close import close_period
from core.db import make_engine, make_sessionmaker
from core.settings import BillingSettings, DatabaseSettings
from metering.periods import Period

COLUMNS = [
    "tenant_id",
    "event_id",
    "meter",
    "quantity",
    "occurred_at",
    "node_id",
    "model_version_id",
    "attrs",
    "created_at",
]


def _events(tenants: list[str], count: int, tag: str) -> list[dict]:
    base = datetime(2025, 6, 1, tzinfo=UTC)
    return [
        {
            "tenant_id": tenants[i % len(tenants)],
            "id": f"{tag}:{i}",
            "meter": "egress",
            "quantity": 1_000_000 + i,
            "occurred_at": (base + timedelta(seconds=i)).isoformat(),
        }
        for i in range(count)
    ]


async def ingest_api(base: str, token: str, bodies: list[bytes], clients: int) -> float:
    queue = list(bodies)

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            resp = await http.post(
                "/v1/usage/import", content=body, headers={"Content-Type": "application/json"}
            )
            resp.raise_for_status()

    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600
    ) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        return time.perf_counter() - start


async def ingest_copy(url: str, tenants: list[str], count: int) -> float:
    base = datetime(2025, 7, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    records = [
        (
            uuid.UUID(tenants[i % len(tenants)]),
            f"copy:{i}",
            "egress",
            1_000_000 + i,
            base + timedelta(seconds=i),
            None,
            None,
            "{}",
            now,
        )
        for i in range(count)
    ]
    conn = await asyncpg.connect(url)
    try:
        start = time.perf_counter()
        await conn.copy_records_to_table("usage_events", records=records, columns=COLUMNS)
        return time.perf_counter() - start
    finally:
        await conn.close()


async def seed_tenants(
    conn: asyncpg.Connection, count: int, plan_from: datetime
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    await conn.copy_records_to_table(
        "tenants",
        records=[(t, f"inv-{t.hex[:12]}", now) for t in ids],
        columns=["id", "name", "created_at"],
    )
    await conn.copy_records_to_table(
        "billing_accounts", records=[(t, now) for t in ids], columns=["tenant_id", "created_at"]
    )
    await conn.copy_records_to_table(
        "plan_periods",
        records=[(uuid.uuid4(), t, "payg", plan_from, now) for t in ids],
        columns=["id", "tenant_id", "plan", "starts_at", "created_at"],
    )
    return ids


async def seed_month(conn: asyncpg.Connection, tenants: list[uuid.UUID], period: Period) -> int:
    """A month of usage per tenant, written the way the jobs and downloads write it."""
    now = datetime.now(UTC)
    total = 0
    for start in range(0, len(tenants), 500):
        records = []
        for t in tenants[start : start + 500]:
            nodes = [uuid.uuid4() for _ in range(3)]
            for day in range(period.days):
                when = period.start + timedelta(days=day)
                for node in nodes:
                    records.append(
                        (
                            t,
                            f"device_day:{node}:{when.date()}",
                            "device_day",
                            1,
                            when,
                            node,
                            None,
                            "{}",
                            now,
                        )
                    )
                records.append(
                    (
                        t,
                        f"egress:{secrets.token_hex(8)}",
                        "egress",
                        2_000_000_000,
                        when + timedelta(hours=9),
                        nodes[0],
                        None,
                        "{}",
                        now,
                    )
                )
            for hour in range(period.hours):
                when = period.start + timedelta(hours=hour)
                records.append(
                    (
                        t,
                        f"storage:{t}:{when:%Y-%m-%dT%H}",
                        "storage_sample",
                        40 * 10**9,
                        when,
                        None,
                        None,
                        "{}",
                        now,
                    )
                )
        await conn.copy_records_to_table("usage_events", records=records, columns=COLUMNS)
        total += len(records)
    return total


async def invoice_run(url: str, tenants: int) -> list[tuple[int, float, int]]:
    conn = await asyncpg.connect(url)
    first, second = Period(2026, 1), Period(2026, 3)
    try:
        early = await seed_tenants(conn, tenants, datetime(2025, 12, 1, tzinfo=UTC))
        late = await seed_tenants(conn, tenants, datetime(2026, 2, 1, tzinfo=UTC))  # not in January
        seeded = time.perf_counter()
        rows = await seed_month(conn, early, first) + await seed_month(conn, early + late, second)
        print(f"seeded {rows:,} usage events in {time.perf_counter() - seeded:.0f} s")
        await conn.execute("analyze")
    finally:
        await conn.close()
    engine = make_engine(DatabaseSettings(url=url, pool_size=4))
    sessions = make_sessionmaker(engine)
    out = []
    try:
        for period in (first, second):
            start = time.perf_counter()
            result = await close_period(
                sessions, period=period, now=datetime.now(UTC), settings=BillingSettings()
            )
            out.append((result.invoices, time.perf_counter() - start, period.days))
    finally:
        await engine.dispose()
    return out


async def run(args: argparse.Namespace, stack) -> None:
    with httpx.Client(
        base_url=stack.base, headers={"Authorization": f"Bearer {stack.operator_token}"}
    ) as http:
        tenants = [
            http.post(
                "/v1/tenants/", json={"name": f"bench-{secrets.token_hex(4)}", "plan": "payg"}
            ).json()["id"]
            for _ in range(20)
        ]
    events = _events(tenants, args.events, "api")
    bodies = [
        json.dumps({"events": events[i : i + args.batch]}).encode()
        for i in range(0, len(events), args.batch)
    ]
    del events
    api_seconds = await ingest_api(stack.base, stack.operator_token, bodies, args.clients)
    copy_seconds = await ingest_copy(stack.database_url, tenants, args.events)
    api_rate, copy_rate = args.events / api_seconds, args.events / copy_seconds
    print(
        f"\nusage ingestion, {args.events:,} events "
        f"(API: batches of {args.batch:,}, {args.clients} in flight)"
    )
    print(f"{'':<14}{'events/s':>12}")
    print(f"{'API import':<14}{api_rate:>12,.0f}")
    print(f"{'asyncpg COPY':<14}{copy_rate:>12,.0f}")
    print(f"{'ratio':<14}{api_rate / copy_rate:>12.2f}")

    runs = await invoice_run(stack.database_url, args.tenants)
    print(
        "\nperiod close, a month of usage per tenant "
        "(3 nodes all month, hourly storage samples, a download a day: ~870 events)"
    )
    print(f"{'tenants (= invoices)':>20}{'seconds':>10}{'invoices/s':>12}")
    for invoices, seconds, _ in runs:
        print(f"{invoices:>20,}{seconds:>10.1f}{invoices / seconds:>12,.0f}")
    print(
        f"growth from {runs[0][0]:,} to {runs[1][0]:,} tenants: "
        f"{runs[1][1] / runs[0][1]:.2f}x (linear: 2.00x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument(
        "--tenants", type=int, default=5_000, help="N: the close runs for N, then 2N tenants"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp, hangar_api(Path(tmp) / "stack") as stack:
        asyncio.run(run(args, stack))


if __name__ == "__main__":
    main()
