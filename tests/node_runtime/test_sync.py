"""Sync behaviour a tenant admin would notice: resumed pulls, corrupted caches,
tag moves, unassigned models, and a control plane that goes away."""

from __future__ import annotations

import json
import signal

import httpx
from openai import AsyncOpenAI
from sqlalchemy import select

from metering.models import UsageEvent
from tests.factories import write_gguf
from tests.node_runtime.conftest import sha256, wait_for


async def egress(hangar, tenant_id: str) -> list[int]:
    await hangar.downloads.drain()
    async with hangar.sessions() as s:
        rows = await s.scalars(
            select(UsageEvent)
            .where(UsageEvent.tenant_id == tenant_id, UsageEvent.meter == "egress")
            .order_by(UsageEvent.created_at)
        )
        return [e.quantity for e in rows]


async def test_a_pull_killed_half_way_resumes_with_range(
    nodes, smollm2_tenant, smollm2, proxy, hangar
):
    t, version = smollm2_tenant
    size = smollm2.stat().st_size
    half = size // 2
    proxy.stall_blob_after = half
    node = await nodes(t, server=proxy.url)
    await node.start()
    await t.request("POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id})
    partial = node.data_dir / "blobs" / f"sha256-{version['digest'][7:]}.partial"

    async def half_on_disk():
        return proxy.stalled.is_set() and partial.exists() and partial.stat().st_size == half

    await wait_for("half the blob on disk", half_on_disk)
    await node.stop(signal.SIGKILL)

    proxy.stall_blob_after = None
    await node.start()
    await node.wait_loaded(version["digest"])
    assert sha256(node.data_dir / "blobs" / f"sha256-{version['digest'][7:]}") == version["digest"]
    assert not partial.exists()
    # The restarted node asked only for the bytes it did not have.
    assert (await egress(hangar, t.id))[-1] == size - half


async def test_a_corrupted_cache_file_is_fetched_again(nodes, smollm2_tenant, smollm2, hangar):
    t, version = smollm2_tenant
    node = await nodes(t)
    await node.start()
    await t.request("POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id})
    await node.wait_loaded(version["digest"])
    await node.stop()

    blob = node.data_dir / "blobs" / f"sha256-{version['digest'][7:]}"
    with blob.open("r+b") as f:
        f.seek(blob.stat().st_size // 2)
        f.write(b"\x00" * 4096)
    assert sha256(blob) != version["digest"]

    await node.start()
    size = smollm2.stat().st_size
    await wait_for(
        "the blob fetched a second time", lambda: _equal(egress(hangar, t.id), [size, size])
    )
    await wait_for("the blob back in the cache", lambda: _async(blob.exists()))
    await node.wait_loaded(version["digest"])
    assert sha256(blob) == version["digest"]
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)
    chat = await client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert chat.choices[0].message.content is not None


async def test_a_tag_move_retargets_the_node_and_unassigned_models_are_removed(
    nodes, tenants, tmp_path
):
    t = await tenants.create()
    one = (await t.push(write_gguf(tmp_path / "1.gguf", seed=1), "tiny", tag="prod")).json()[
        "version"
    ]
    two = (await t.push(write_gguf(tmp_path / "2.gguf", seed=2), "tiny", tag="next")).json()[
        "version"
    ]
    node = await nodes(t)
    await node.start()
    deployment = (
        await t.request("POST", "/v1/deployments/", json={"model": "tiny:prod", "node_id": node.id})
    ).json()

    async def holds(digest):
        m = await node.model_state(digest)
        return m and m["state"] == "ready" and node.blobs() == {f"sha256-{digest[7:]}"}

    await wait_for("version 1 on the node", lambda: holds(one["digest"]))
    assert (
        await t.request("PUT", "/v1/models/tiny/tags/prod", json={"version": 2})
    ).status_code == 200
    await wait_for("version 2 replacing version 1", lambda: holds(two["digest"]))
    shown = await node.shown()
    assert [m["digest"] for m in shown["models"]] == [two["digest"]]
    assert shown["applied_revision"] == shown["desired_revision"]

    assert (await t.request("DELETE", f"/v1/deployments/{deployment['id']}")).status_code == 204

    async def emptied():
        return not node.blobs() and (await node.shown())["models"] == []

    await wait_for("the unassigned model removed", emptied)


async def test_serving_goes_on_without_the_control_plane_and_reports_arrive_later(
    nodes, smollm2_tenant, proxy
):
    t, version = smollm2_tenant
    node = await nodes(t, server=proxy.url)
    await node.start()
    await t.request("POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id})
    await node.wait_loaded(version["digest"])

    await proxy.stop()
    outbox = node.data_dir / "outbox"
    await wait_for("a report queued on disk", lambda: _async(any(outbox.glob("*.json"))))
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)
    for prompt in ("Hello", "Goodbye"):
        chat = await client.chat.completions.create(
            model="smollm2:prod", messages=[{"role": "user", "content": prompt}], max_tokens=4
        )
        assert chat.choices[0].message.content is not None
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{node.url}/healthz")).json()
    assert health["control_plane"] is False

    async def queued_after_serving():
        beats = [json.loads(p.read_text()) for p in sorted(outbox.glob("*.json"))]
        return [b["id"] for b in beats if b["counters"]["completed"] >= 2]

    waiting = await wait_for(
        "a queued report counting what was served offline", queued_after_serving
    )
    await proxy.start()

    async def delivered():
        reports = (await t.request("GET", f"/v1/nodes/{node.id}/reports")).json()
        return {r["report_id"] for r in reports if r["body"]["queued"]} >= set(waiting)

    await wait_for("the queued reports at the control plane", delivered)
    await wait_for("the outbox flushed", lambda: _async(not any(outbox.glob("*.json"))))
    assert (await node.shown())["state"] == "online"


async def _async(value):
    return value


async def _equal(awaitable, expected):
    return await awaitable == expected


async def test_enroll_advertise_url_is_kept_for_node_run(nodes, tenants):
    t = await tenants.create()
    node = await nodes(t, enroll=False, HANGAR_NODE_ADVERTISE_URL="")
    await node.enroll(None, None, "--advertise-url", node.url)
    saved = json.loads((node.data_dir / "node.json").read_text())
    assert saved["advertise_url"] == node.url
    await node.start()

    async def reported():
        return (await node.shown())["facts"]["api_url"] == node.url

    await wait_for("the advertised URL in the fleet view", reported)
    printed = "".join(node.log.read_text().split())  # the console wraps long lines
    assert f"peersreachitat{node.url})" in printed
