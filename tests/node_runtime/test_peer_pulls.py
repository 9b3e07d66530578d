"""Pulls from same-site peers: real node processes; the first node pulls from the control
plane, the others from it; egress is billed once, also when the whole site starts at the
same moment; a peer serving corrupted bytes is detected and the node falls back to the
control plane."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from metering.models import UsageEvent
from tests.node_runtime.conftest import sha256, wait_for
from tests.node_runtime.test_sync import egress

# Sync only: these nodes never load the model (no inference is involved here).
NO_LOAD = {"HANGAR_NODE_MAX_LOADED_MODELS": "0"}


async def _peer_bytes(hangar, tenant_id: str) -> int:
    async with hangar.sessions() as s:
        rows = await s.scalars(
            select(UsageEvent.quantity).where(
                UsageEvent.tenant_id == tenant_id, UsageEvent.meter == "peer_transfer"
            )
        )
        return sum(rows)


async def _ready(node, digest: str):
    async def check():
        m = await node.model_state(digest)
        assert not m or m["state"] not in ("does_not_fit",), m
        return m if m and m["state"] == "ready" else None

    return await wait_for(f"{digest} ready on node {node.id} (log: {node.log})", check)


async def test_a_site_pulls_once_and_a_lying_peer_is_caught(nodes, smollm2_tenant, smollm2, hangar):
    t, version = smollm2_tenant
    digest, size = version["digest"], smollm2.stat().st_size
    first, second, third = [await nodes(t, **NO_LOAD) for _ in range(3)]
    for node in (first, second, third):
        await t.request("POST", f"/v1/nodes/{node.id}/labels", json={"set": {"site": "ldn"}})
    await t.request(
        "POST", "/v1/deployments/", json={"model": "smollm2:prod", "selector": {"site": "ldn"}}
    )

    await first.start()
    await _ready(first, digest)
    await second.start()
    await third.start()
    await _ready(second, digest)
    await _ready(third, digest)
    for node in (second, third):
        assert sha256(node.data_dir / "blobs" / f"sha256-{digest[7:]}") == digest
    # The control plane sent the model once; the two peer pulls are usage, not egress.
    assert await egress(hangar, t.id) == [size]
    await wait_for(
        "peer bytes reported by heartbeats",
        lambda: _equal(_peer_bytes(hangar, t.id), 2 * size),
    )

    # Without a ticket from the control plane, a peer gives nothing away.
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{first.url}/v1/peer/blobs/{digest}")
        assert resp.status_code == 404
        resp = await http.get(
            f"{first.url}/v1/peer/blobs/{digest}", headers={"Authorization": f"Bearer {t.key}"}
        )
        assert resp.status_code == 404

    # Every peer now serves damaged bytes: the new node notices and uses the control plane.
    for node in (first, second, third):
        blob = node.data_dir / "blobs" / f"sha256-{digest[7:]}"
        with blob.open("r+b") as f:
            f.seek(size // 2)
            f.write(b"\x00" * 4096)
    fourth = await nodes(t, **NO_LOAD)
    await t.request("POST", f"/v1/nodes/{fourth.id}/labels", json={"set": {"site": "ldn"}})
    await fourth.start()
    await _ready(fourth, digest)
    assert sha256(fourth.data_dir / "blobs" / f"sha256-{digest[7:]}") == digest
    assert "trying the next source" in fourth.log.read_text()
    await wait_for("the fallback billed", lambda: _equal(egress(hangar, t.id), [size, size]))


async def _equal(value, expected):
    return (await value) == expected


async def test_a_site_started_at_once_downloads_the_model_once(
    nodes, smollm2_tenant, smollm2, hangar
):
    t, version = smollm2_tenant
    digest, size = version["digest"], smollm2.stat().st_size
    site = [await nodes(t, **NO_LOAD) for _ in range(3)]
    for node in site:
        await t.request("POST", f"/v1/nodes/{node.id}/labels", json={"set": {"site": "ldn"}})
    await t.request(
        "POST", "/v1/deployments/", json={"model": "smollm2:prod", "selector": {"site": "ldn"}}
    )

    # Every node asks for the model at the same moment; none holds it yet.
    await asyncio.gather(*(node.start() for node in site))
    for node in site:
        await _ready(node, digest)
        assert sha256(node.data_dir / "blobs" / f"sha256-{digest[7:]}") == digest
    # One of them fetched it for the site; the two others waited and copied it.
    assert await egress(hangar, t.id) == [size]
    waited = [n for n in site if "which fetches it for this site" in n.log.read_text()]
    assert len(waited) == 2, [n.log.read_text()[-2000:] for n in site]
    await wait_for(
        "peer bytes reported by heartbeats",
        lambda: _equal(_peer_bytes(hangar, t.id), 2 * size),
    )
