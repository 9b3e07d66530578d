"""The console's server time against the JSON API returning the same data, same run.

A tenant with --nodes nodes (rows inserted directly with SQL, as enrollment would
write them: labels, facts and a heartbeat report with two models) and a year of usage
(imported through the operator's import endpoint: daily device counts, hourly storage
samples, egress per node).

1. Overview page vs the API calls that return what it shows: GET /v1/nodes (states),
   /v1/models, /v1/invoices/preview (spend so far) and /v1/usage (plan limits).
2. Nodes page (first and last page of 50, with the state counts) vs GET /v1/nodes,
   the API's node list (it has no pagination: every node in one response).
3. Page weight: the overview's HTML plus every asset it loads (CSS, JS), uncompressed.

Targets: ratio (console / API) <= 1.5; page weight < 300 kB.

    uv run --all-extras python -m bench.console [--nodes 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.common import NODE_COLUMNS, hangar_api


def _report(i: int) -> dict:
    return {
        "applied_revision": 1,
        "models": [
            {
                "name": "smollm2",
                "ref": "prod",
                "digest": "sha256:" + "a" * 64,
                "state": "ready",
                "bytes_done": 100,
                "bytes_total": 100,
                "loaded": True,
            },
            {
                "name": "qwen",
                "ref": "latest",
                "digest": "sha256:" + "b" * 64,
                "state": "downloading",
                "bytes_done": i % 100,
                "bytes_total": 100,
            },
        ],
        "resources": {},
        "counters": {"requests": i},
    }


async def seed_nodes(url: str, tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    rows = [
        (
            node_id,
            tenant_id,
            f"node-{i:05d}",
            json.dumps({"site": ("london", "paris", "leeds")[i % 3], "rack": str(i % 40)}),
            json.dumps(
                {
                    "hostname": f"host-{i}",
                    "os": "Linux",
                    "arch": "x86_64",
                    "cpu_cores": 16,
                    "memory_bytes": 64 * 1024**3,
                }
            ),
            secrets.token_hex(32),
            "hgn_bench",
            now - timedelta(days=400),
            # A mix of states: most online, some long silent.
            now - timedelta(seconds=5 if i % 10 else 3600),
            json.dumps(_report(i)),
            1,
            "online",
        )
        for i, node_id in enumerate(ids)
    ]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        cols = ", ".join(NODE_COLUMNS)
        params = ", ".join(
            f"${i}::jsonb" if c in ("labels", "facts", "report") else f"${i}"
            for i, c in enumerate(NODE_COLUMNS, start=1)
        )
        await conn.executemany(f"insert into nodes ({cols}) values ({params})", rows)
    finally:
        await conn.close()
    return ids


def year_of_usage(tenant_id: str, nodes: list[uuid.UUID]) -> list[dict]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for day in range(365):
        start = today - timedelta(days=day)
        events.append(
            {
                "tenant_id": tenant_id,
                "id": f"d:{day}",
                "meter": "device_day",
                "quantity": len(nodes),
                "occurred_at": start.isoformat(),
            }
        )
        for hour in range(24):
            events.append(
                {
                    "tenant_id": tenant_id,
                    "id": f"s:{day}:{hour}",
                    "meter": "storage_sample",
                    "quantity": 40 * 10**9,
                    "occurred_at": (start + timedelta(hours=hour)).isoformat(),
                }
            )
        for n in range(20):
            events.append(
                {
                    "tenant_id": tenant_id,
                    "id": f"e:{day}:{n}",
                    "meter": "egress",
                    "quantity": 10**8,
                    "node_id": str(nodes[(day * 20 + n) % len(nodes)]),
                    "occurred_at": (start + timedelta(minutes=n)).isoformat(),
                }
            )
    # Imports refuse events in the future: today stops at the current hour.
    now = datetime.now(UTC).isoformat()
    return [e for e in events if e["occurred_at"] < now]


async def timed(http: httpx.AsyncClient, paths: list[str], rounds: int) -> tuple[float, int]:
    """Median seconds for the whole list of GETs, and the bytes they returned."""
    samples, size = [], 0
    for _ in range(rounds + 1):  # the first round warms caches and is dropped
        start, size = time.perf_counter(), 0
        for path in paths:
            resp = await http.get(path)
            resp.raise_for_status()
            size += len(resp.content)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:]), size


async def sign_in(http: httpx.AsyncClient, key: str) -> None:
    page = await http.get("/console/login")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
    resp = await http.post("/console/login", data={"key": key, "_csrf_token": token})
    assert resp.status_code == 303, resp.text


async def run(args, stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=600) as http:
        op = {"Authorization": f"Bearer {stack.operator_token}"}
        created = await http.post(
            "/v1/tenants/",
            json={"name": f"bench-{secrets.token_hex(3)}", "plan": "payg"},
            headers=op,
        )
        created.raise_for_status()
        tenant_id, key = created.json()["id"], created.json()["admin_key"]["secret"]
        seeded = time.perf_counter()
        nodes = await seed_nodes(stack.database_url, uuid.UUID(tenant_id), args.nodes)
        events = year_of_usage(tenant_id, nodes)
        for i in range(0, len(events), 20_000):
            resp = await http.post(
                "/v1/usage/import", json={"events": events[i : i + 20_000]}, headers=op
            )
            resp.raise_for_status()
        print(
            f"seeded {args.nodes:,} nodes and {len(events):,} usage events "
            f"in {time.perf_counter() - seeded:.1f} s"
        )

    api = httpx.AsyncClient(
        base_url=stack.base, timeout=600, headers={"Authorization": f"Bearer {key}"}
    )
    console = httpx.AsyncClient(base_url=stack.base, timeout=600)
    async with api, console:
        await sign_in(console, key)
        last = -(-args.nodes // 50)
        cases = [
            (
                "overview",
                ["/console/"],
                ["/v1/nodes/", "/v1/models/", "/v1/invoices/preview", "/v1/usage/"],
            ),
            ("nodes p.1", ["/console/nodes"], ["/v1/nodes/"]),
            (f"nodes p.{last}", [f"/console/nodes?page_no={last}"], ["/v1/nodes/"]),
        ]
        print(
            f"\n{'':<12}{'console ms':>12}{'API ms':>10}{'ratio':>8}{'console kB':>12}{'API kB':>10}"
        )
        for label, ours, theirs in cases:
            c_time, c_size = await timed(console, ours, args.rounds)
            a_time, a_size = await timed(api, theirs, args.rounds)
            print(
                f"{label:<12}{c_time * 1000:>12.0f}{a_time * 1000:>10.0f}{c_time / a_time:>8.2f}"
                f"{c_size / 1000:>12.1f}{a_size / 1000:>10.1f}"
            )

        page = await console.get("/console/")
        assets = re.findall(r'(?:href|src)="(/console/static/[^"]+)"', page.text)
        weights = {"overview HTML": len(page.content)}
        for asset in assets:
            weights[asset] = len((await console.get(asset)).content)
        total = sum(weights.values())
        print("\npage weight (uncompressed):")
        for name, size in weights.items():
            print(f"  {name:<34}{size / 1000:>8.1f} kB")
        print(f"  {'total':<34}{total / 1000:>8.1f} kB  (target < 300 kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp, hangar_api(Path(tmp) / "stack") as stack:
        asyncio.run(run(args, stack))


if __name__ == "__main__":
    main()
