"""One node per site fetches a digest from the control plane; the rest of the site waits
for it and copies it from that node (GET /v1/fleet/peers?digest=…&pull=true)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core.db import transaction, utcnow
from fleet.models import Node
from tests.factories import enroll_node, enroll_token, write_gguf


async def pull(node, digest: str) -> dict:
    resp = await node.request("GET", "/v1/fleet/peers", params={"digest": digest, "pull": "true"})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_site_fetches_once_and_a_gone_fetcher_is_replaced(tenants, hangar, tmp_path):
    t = await tenants.create()
    version = (await t.push(write_gguf(tmp_path / "m.gguf", seed=3), "m", tag="prod")).json()[
        "version"
    ]
    digest = version["digest"]
    ldn_token = await enroll_token(t, labels={"site": "ldn"})
    a, b, c = [
        await enroll_node(t, token=ldn_token, name=f"ldn-{i}", api_url=f"http://ldn-{i}:8000")
        for i in range(3)
    ]
    paris = await enroll_node(
        t,
        token=await enroll_token(t, labels={"site": "par"}),
        name="par-0",
        api_url="http://par-0:8000",
    )
    quiet = await enroll_node(t, token=ldn_token, name="ldn-no-url")  # advertises no API
    for node in (a, b, c, paris, quiet):
        assert (await node.heartbeat()).status_code == 200
    for site in ("ldn", "par"):
        deployed = await t.request(
            "POST", "/v1/deployments/", json={"model": "m:prod", "selector": {"site": site}}
        )
        assert deployed.status_code == 201, deployed.text

    # The first to ask fetches for the site; the next is told to wait for it.
    assert await pull(a, digest) == {"peers": [], "wait": None}
    wait = (await pull(b, digest))["wait"]
    assert wait["node_id"] == a.id and wait["name"] == "ldn-0"
    assert 2 <= wait["retry_after_seconds"] <= 30
    assert wait["give_up_seconds"] > 120
    # A retry by the fetcher keeps it the fetcher; another site and a node no peer
    # can reach fetch for themselves.
    assert (await pull(a, digest))["wait"] is None
    assert (await pull(paris, digest))["wait"] is None
    assert (await pull(quiet, digest))["wait"] is None

    # The fetcher goes silent: the next node to ask takes over, and the others wait for it.
    async with transaction(hangar.sessions) as s:
        await s.execute(
            update(Node).where(Node.id == a.id).values(last_seen_at=utcnow() - timedelta(hours=1))
        )
    assert (await pull(b, digest))["wait"] is None
    assert (await pull(c, digest))["wait"]["name"] == "ldn-1"

    # Once it holds the digest ready, the site copies it from it, with a ticket.
    ready = [{"name": "m", "ref": "prod", "digest": digest, "state": "ready"}]
    assert (await b.heartbeat(models=ready)).status_code == 200
    found = await pull(c, digest)
    assert found["wait"] is None
    assert [(p["name"], p["api_url"], bool(p["ticket"])) for p in found["peers"]] == [
        ("ldn-1", "http://ldn-1:8000", True)
    ]
    # Pulls stay on the site: Paris does not copy from London.
    assert (await pull(paris, digest))["peers"] == []


async def test_a_revoked_fetcher_is_replaced_and_bad_asks_are_explained(tenants, tmp_path):
    t = await tenants.create()
    version = (await t.push(write_gguf(tmp_path / "m.gguf", seed=4), "m", tag="prod")).json()[
        "version"
    ]
    digest = version["digest"]
    a, b = [await enroll_node(t, api_url=f"http://n{i}:8000") for i in range(2)]
    for node in (a, b):
        await node.heartbeat()
    await t.request("POST", "/v1/deployments/", json={"model": "m:prod", "node_id": a.id})

    # Not assigned to b: no lease for it, so it makes nobody wait.
    assert await pull(b, digest) == {"peers": [], "wait": None}
    await t.request("POST", "/v1/deployments/", json={"model": "m:prod", "node_id": b.id})
    assert (await pull(a, digest))["wait"] is None
    assert (await pull(b, digest))["wait"]["node_id"] == a.id
    revoked = await t.request("POST", f"/v1/nodes/{a.id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert (await pull(b, digest))["wait"] is None

    resp = await b.request("GET", "/v1/fleet/peers", params={"pull": "true"})
    assert resp.status_code == 400
    assert "digest" in resp.json()["error"]
