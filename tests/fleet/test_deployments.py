"""Deployments, desired state and revisions, offline detection."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core.db import transaction, utcnow
from fleet.models import Node
from services.scheduler import run_job
from tests.factories import FACTS, enroll_node, write_gguf


async def desired(node) -> dict:
    resp = await node.request("GET", "/v1/fleet/desired")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def revision(node) -> int:
    resp = await node.heartbeat()
    assert resp.status_code == 200, resp.text
    return resp.json()["desired_revision"]


async def test_label_selector_and_node_deployments_add_up(tenants, tmp_path):
    t = await tenants.create()
    a = (await t.push(write_gguf(tmp_path / "a.gguf", seed=1), "alpha", tag="prod")).json()[
        "version"
    ]
    b = (await t.push(write_gguf(tmp_path / "b.gguf", seed=2), "beta")).json()["version"]
    london = await enroll_node(t, name="london-1")
    paris = await enroll_node(t, name="paris-1")
    labelled = await t.request(
        "POST", f"/v1/nodes/{london.id}/labels", json={"set": {"site": "london"}}
    )
    assert labelled.json()["labels"] == {"site": "london"}
    before = await revision(london), await revision(paris)

    by_label = await t.request(
        "POST", "/v1/deployments/", json={"model": "alpha:prod", "selector": {"site": "london"}}
    )
    assert by_label.status_code == 201, by_label.text
    assert by_label.json()["nodes"] == 1 and by_label.json()["version"] == 1
    by_node = await t.request(
        "POST", "/v1/deployments/", json={"model": f"beta@{b['digest']}", "node_id": paris.id}
    )
    assert by_node.status_code == 201, by_node.text
    both = await t.request(
        "POST", "/v1/deployments/", json={"model": "beta:latest", "node_id": london.id}
    )
    assert both.status_code == 201

    assert await revision(london) > before[0] and await revision(paris) > before[1]
    got = await desired(london)
    assert [(m["name"], m["digest"]) for m in got["models"]] == [
        ("alpha", a["digest"]),
        ("beta", b["digest"]),
    ]
    alpha = got["models"][0]
    assert alpha["download_path"] == f"/v1/models/alpha/versions/{a['digest']}/blob"
    assert alpha["estimated_memory_bytes"] == a["gguf"]["estimated_memory_bytes"]
    assert [m["name"] for m in (await desired(paris))["models"]] == ["beta"]

    # Removing the label takes the label deployment away; removing a deployment too.
    rev = await revision(london)
    await t.request("POST", f"/v1/nodes/{london.id}/labels", json={"remove": ["site"]})
    assert await revision(london) > rev
    assert [m["name"] for m in (await desired(london))["models"]] == ["beta"]
    assert (await t.request("DELETE", f"/v1/deployments/{both.json()['id']}")).status_code == 204
    assert (await desired(london))["models"] == []
    assert len((await t.request("GET", "/v1/deployments/")).json()) == 2


async def test_moving_a_tag_retargets_followers_only(tenants, tmp_path):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "1.gguf", seed=1), "m", tag="prod")
    v2 = (await t.push(write_gguf(tmp_path / "2.gguf", seed=2), "m", tag="next")).json()["version"]
    follower, pinned = await enroll_node(t), await enroll_node(t)
    v1 = (await t.request("GET", "/v1/models/m/versions/1")).json()
    await t.request("POST", "/v1/deployments/", json={"model": "m:prod", "node_id": follower.id})
    await t.request(
        "POST", "/v1/deployments/", json={"model": f"m@{v1['digest']}", "node_id": pinned.id}
    )
    revs = await revision(follower), await revision(pinned)

    await t.request("PUT", "/v1/models/m/tags/prod", json={"version": 2})
    assert await revision(follower) > revs[0]
    assert (await desired(follower))["models"][0]["digest"] == v2["digest"]
    assert (await desired(pinned))["models"][0]["digest"] == v1["digest"]


async def test_deploy_refuses_unknown_models_and_bad_targets(tenants, tmp_path):
    t, other = await tenants.create(), await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf"), "m")
    foreign = await enroll_node(other)
    cases = [
        ({"model": "nope:latest", "selector": {"a": "b"}}, 404, "no model named 'nope'"),
        ({"model": "m:nope", "selector": {"a": "b"}}, 404, "no version, tag or digest 'nope'"),
        ({"model": "m:latest"}, 400, "exactly one target"),
        ({"model": "m:1", "selector": {"a": "b"}}, 400, "not a version number"),
        ({"model": "m:latest", "node_id": foreign.id}, 404, "no node"),
        ({"model": "m:latest", "selector": {"bad key": "x"}}, 400, "invalid label key"),
    ]
    for body, status, message in cases:
        resp = await t.request("POST", "/v1/deployments/", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert message in resp.json()["error"], (body, resp.text)


async def test_offline_job_records_the_transition_once(tenants, hangar):
    t = await tenants.create()
    node = await enroll_node(t)
    await node.heartbeat()
    async with transaction(hangar.sessions) as s:
        await s.execute(
            update(Node)
            .where(Node.id == node.id)
            .values(last_seen_at=utcnow() - timedelta(hours=1))
        )
    first = await run_job(hangar, "offline")
    assert node.id in first["went_offline"]
    assert node.id not in (await run_job(hangar, "offline"))["went_offline"]
    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["state"] == "offline"
    await node.heartbeat()
    assert (await t.request("GET", f"/v1/nodes/{node.id}")).json()["state"] == "online"


async def test_peers_are_same_tenant_nodes_holding_the_digest(tenants):
    t, other = await tenants.create(), await tenants.create()
    # Where a peer is reached is recorded at enrollment; heartbeats cannot move it.
    url = "http://peer:8000"
    asking = await enroll_node(t)
    holder, idle = await enroll_node(t, api_url=url), await enroll_node(t, api_url=url)
    stranger = await enroll_node(other, api_url=url)
    digest = "sha256:" + "a" * 64
    ready = [{"name": "m", "ref": "prod", "digest": digest, "state": "ready"}]
    facts = FACTS | {"api_url": "http://elsewhere:8000"}
    for node, models in [(holder, ready), (idle, []), (stranger, ready)]:
        assert (await node.heartbeat(facts=facts, models=models)).status_code == 200

    found = (await asking.request("GET", "/v1/fleet/peers", params={"digest": digest})).json()[
        "peers"
    ]
    assert [(p["node_id"], p["api_url"], p["models"]) for p in found] == [
        (holder.id, "http://peer:8000", [digest])
    ]
    none = (
        await asking.request("GET", "/v1/fleet/peers", params={"digest": "sha256:" + "b" * 64})
    ).json()
    assert none["peers"] == []
