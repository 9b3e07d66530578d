"""Heartbeats of a large fleet, against a baseline measured in the same run.

N node rows (default 100,000) in one tenant: --active of them enrolled through the API,
the rest inserted straight into Postgres (enrolling 100,000 machines over HTTP only
measures enrollment). The active nodes send one full heartbeat, then light ones
(state hash + counters, what an idle node sends) through the API with --clients in
flight; the baseline is the same statement sent straight to Postgres with asyncpg at the
same concurrency, over as many connections as the API's heartbeat pools hold. Prints
heartbeats/s for both and the ratio, then times, at N nodes: the first page of
`nodes ls`, the offline-detection job and the peers query.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams in its
own processes, so it takes as little of the shared CPU as it can.

Then (``bench.fleet_pulls``) --pull-nodes node processes pull one --blob-mib blob:
control-plane bytes sent and time to the last node ready, without peers (each node a
site of its own: the baseline) vs one site all at once vs first one node then the site.

    uv run --all-extras python -m bench.fleet [--part all|heartbeats|pulls] [--nodes 100000]
        [--active 3000] [--seconds 20] [--workers 2] [--pull-nodes 8] [--blob-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select

from bench import fleet_pulls
from bench.common import NODE_COLUMNS, hangar_api, new_tenant
from core.db import make_engine, make_sessionmaker, transaction
from core.secrets import hash_secret
from core.settings import DatabaseSettings
from fleet.heartbeats import IDLE_SQL
from fleet.models import Node
from fleet.nodes import mark_offline
from fleet.peers import peers
from wire.contract import NODE_CREDENTIAL_PREFIX, Heartbeat, NodeFacts, state_hash

FACTS = NodeFacts(hostname="bench", os="linux", arch="x86_64", cpu_cores=8, memory_bytes=16 * 10**9)
DIGEST = "sha256:" + "ab" * 32


def _pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def insert_nodes(url: str, tenant_id: str, count: int) -> None:
    """Silent nodes (enrolled, online once) filling the table to N rows."""
    conn = await asyncpg.connect(_pg(url))
    now = datetime.now(UTC)
    facts = json.dumps(FACTS.model_dump(mode="json") | {"api_url": "http://10.0.0.1:8000"})
    report = json.dumps(
        {"models": [{"name": "m", "ref": "prod", "digest": DIGEST, "state": "ready"}]}
    )
    rows = []
    for i in range(count):
        cred = NODE_CREDENTIAL_PREFIX + secrets.token_urlsafe(12)
        rows.append(
            (
                uuid.uuid4(),
                uuid.UUID(tenant_id),
                f"filler-{i:06d}",
                "{}",
                facts,
                hash_secret(cred),
                cred[:10],
                now,
                now - timedelta(seconds=i % 600),
                report,
                0,
                "online",
            )
        )
    await conn.copy_records_to_table(
        "nodes",
        records=rows,
        columns=NODE_COLUMNS,
    )
    # Every 1,000th filler node holds the digest ready (what the peers query looks for).
    await conn.execute(
        "insert into node_ready_blobs (tenant_id, digest, node_id) "
        "select tenant_id, $1, id from nodes where name like 'filler-%' and name like '%000'",
        DIGEST,
    )
    await conn.execute("analyze nodes; analyze node_ready_blobs")
    await conn.close()


def enroll(base: str, admin: str, count: int) -> tuple[str, list[str]]:
    # Generous timeouts: the machine is shared, a request may wait behind other work.
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=60
    ) as http:
        token = http.post("/v1/enrollment-tokens/", json={"max_uses": count}).json()["secret"]
        creds, tenant_id = [], ""
        for i in range(count):
            resp = http.post(
                "/v1/fleet/enroll",
                json={
                    "token": token,
                    "name": f"active-{i:05d}",
                    "facts": FACTS.model_dump(mode="json"),
                },
            )
            resp.raise_for_status()
            creds.append(resp.json()["credential"])
            tenant_id = resp.json()["tenant_id"]
        return tenant_id, creds


def _full(cred_index: int) -> Heartbeat:
    beat = Heartbeat(sent_at=datetime.now(UTC), facts=FACTS)
    beat.state_hash = state_hash(beat)
    return beat


def _light_body(full: Heartbeat) -> bytes:
    light = Heartbeat(sent_at=full.sent_at, state_hash=full.state_hash)
    return light.model_dump_json(exclude_defaults=False).encode()


async def _http_worker(host: str, port: int, requests: list[bytes], until: float) -> int:
    """Keep-alive HTTP/1.1 on raw streams: a few µs per request on the client side."""
    reader, writer = await asyncio.open_connection(host, port)
    done, i = 0, 0
    try:
        while time.perf_counter() < until:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"heartbeat answered {status}: {body[:300]!r}")
            done += 1
    finally:
        writer.close()
    return done


def _request(host: str, port: int, cred: str, body: bytes) -> bytes:
    return (
        f"POST /v1/fleet/heartbeat HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {cred}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _generator(base: str, creds: list[str], clients: int, seconds: float, start_at: float, out):
    host, port = base.removeprefix("http://").split(":")
    port_n = int(port)
    body = _light_body(_full(0))
    per = [creds[i::clients] for i in range(clients)]
    reqs = [[_request(host, port_n, c, body) for c in group] for group in per if group]

    async def main() -> int:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = time.perf_counter() + seconds
        return sum(await asyncio.gather(*(_http_worker(host, port_n, r, until) for r in reqs)))

    out.put(asyncio.run(main()))


def api_rate(base: str, creds: list[str], clients: int, seconds: float, procs: int) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 1.0
    workers = [
        multiprocessing.Process(
            target=_generator,
            args=(base, creds[i::procs], clients // procs, seconds, start_at, queue),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    total = sum(queue.get() for _ in workers)
    for w in workers:
        w.join()
    return total / seconds


async def full_beats(base: str, creds: list[str]) -> None:
    """Each active node's first heartbeat: the state the light ones then refer to."""
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def one(cred: str) -> None:
            async with sem:
                resp = await http.post(
                    "/v1/fleet/heartbeat",
                    content=_full(0).model_dump_json(),
                    headers={"Authorization": f"Bearer {cred}", "Content-Type": "application/json"},
                )
                resp.raise_for_status()

        await asyncio.gather(*(one(c) for c in creds))


async def _no_reset(conn) -> None:
    return None


async def direct_rate(
    url: str, creds: list[str], clients: int, seconds: float, connections: int
) -> float:
    """The same statement, ``clients`` in flight over ``connections`` database
    connections: what the API's heartbeat pools hold (one per worker)."""
    pool = await asyncpg.create_pool(
        _pg(url), min_size=connections, max_size=connections, reset=_no_reset
    )
    hashes = [hash_secret(c) for c in creds]
    # What the API stores for the same beat (an idle node's counters).
    counters = json.dumps(Heartbeat().counters.model_dump(mode="json"))
    until = time.perf_counter() + seconds

    async def worker(k: int) -> int:
        done, i = 0, k
        while time.perf_counter() < until:
            async with pool.acquire() as conn:
                await conn.fetchrow(IDLE_SQL, counters, hashes[i % len(hashes)], 0, 0, 0)
            i += clients
            done += 1
        return done

    total = sum(await asyncio.gather(*(worker(k) for k in range(clients))))
    await pool.close()
    return total / seconds


async def queries(base: str, admin: str, url: str, tenant_id: str) -> list[tuple[str, float]]:
    out = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=60
    ) as h:
        await h.get("/v1/nodes/", params={"limit": 100})  # warm
        start = time.perf_counter()
        resp = await h.get("/v1/nodes/", params={"limit": 100})
        out.append(("nodes ls, first page of 100 (API)", time.perf_counter() - start))
        resp.raise_for_status()
        cursor = resp.headers["x-next-after"]
        start = time.perf_counter()
        (await h.get("/v1/nodes/", params={"limit": 100, "after": cursor})).raise_for_status()
        out.append(("nodes ls, second page (API)", time.perf_counter() - start))
    engine = make_engine(DatabaseSettings(url=url))
    sessions = make_sessionmaker(engine)
    later = datetime.now(UTC) + timedelta(minutes=5)  # as if most of the fleet went quiet
    start = time.perf_counter()
    async with transaction(sessions) as session:
        gone = await mark_offline(session, offline_after=timedelta(seconds=90), now=later)
    out.append((f"offline detection ({len(gone)} nodes marked)", time.perf_counter() - start))
    start = time.perf_counter()
    async with transaction(sessions) as session:
        await mark_offline(session, offline_after=timedelta(seconds=90), now=later)
    out.append(("offline detection, second run (nothing to do)", time.perf_counter() - start))
    async with transaction(sessions) as session:
        # Asked as a node about to pull does: one of the fleet, its site only.
        asker = await session.scalar(
            select(Node.id).where(Node.tenant_id == uuid.UUID(tenant_id)).limit(1)
        )
        start = time.perf_counter()
        found = await peers(
            session,
            tenant_id=uuid.UUID(tenant_id),
            node_id=asker,
            offline_after=timedelta(days=1),
            digest=DIGEST,
            pull=True,
        )
        took = time.perf_counter() - start
        out.append((f"peers query by digest ({len(found.peers)} found)", took))
    await engine.dispose()
    return out


def heartbeats_part(stack, args) -> None:
    admin = new_tenant(stack.base, stack.operator_token)
    t0 = time.perf_counter()
    tenant_id, creds = enroll(stack.base, admin, args.active)
    print(f"enrolled {args.active} nodes through the API in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    asyncio.run(insert_nodes(stack.database_url, tenant_id, args.nodes - args.active))
    print(f"inserted {args.nodes - args.active} more rows in {time.perf_counter() - t0:.1f}s")
    asyncio.run(full_beats(stack.base, creds))
    ours = api_rate(stack.base, creds, args.clients, args.seconds, args.generators)
    connections = args.workers * DatabaseSettings().pool_size
    direct = asyncio.run(
        direct_rate(stack.database_url, creds, args.clients, args.seconds, connections)
    )
    print(
        f"\nlight heartbeats, {args.active} active senders of {args.nodes} nodes, "
        f"{args.clients} in flight, {args.seconds:.0f}s each, {os.cpu_count()} CPUs, "
        f"{args.workers} API process(es), {connections} database connections each side, "
        f"load average {os.getloadavg()[0]:.1f} "
        "(other work on the machine)"
    )
    print(f"{'':<28}{'Hangar API/s':>14}{'asyncpg/s':>12}{'ratio':>8}")
    print(f"{'heartbeats':<28}{ours:>14.0f}{direct:>12.0f}{ours / direct:>8.2f}")
    print(f"at 30 s per node, this control plane keeps {ours * 30:,.0f} nodes\n")
    for label, seconds in asyncio.run(queries(stack.base, admin, stack.database_url, tenant_id)):
        print(f"{label:<52}{seconds * 1000:>10.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["all", "heartbeats", "pulls"], default="all")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--workers", type=int, default=2, help="API processes (serve --workers)")
    parser.add_argument("--pull-nodes", type=int, default=8, help="node processes on one site")
    parser.add_argument("--blob-mib", type=int, default=1024, help="size of the pulled blob")
    parser.add_argument("--pull-timeout", type=float, default=1800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, hangar_api(Path(tmp), workers=args.workers) as stack:
        if args.part in ("all", "heartbeats"):
            heartbeats_part(stack, args)
        if args.part in ("all", "pulls"):
            fleet_pulls.run(
                Path(tmp),
                stack,
                nodes=args.pull_nodes,
                size_mib=args.blob_mib,
                timeout=args.pull_timeout,
            )


if __name__ == "__main__":
    main()
