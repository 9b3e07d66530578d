"""Heartbeats at scale: light heartbeats keep the node's state, the control plane asks for
a full one when it does not hold the node's hash, and `nodes ls` pages by cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.factories import FACTS, enroll_node
from wire.contract import Heartbeat, NodeFacts, state_hash

MODELS = [{"name": "m", "ref": "prod", "digest": "sha256:" + "c" * 64, "state": "ready"}]


def _hash(**body) -> str:
    beat = Heartbeat(sent_at=datetime.now(UTC), facts=NodeFacts(**FACTS), **body)
    return state_hash(beat)


async def test_light_heartbeats_keep_the_state_and_move_counters(tenants):
    t = await tenants.create()
    node = await enroll_node(t)
    digest = _hash(models=MODELS)

    # A light heartbeat the control plane cannot match: it asks for the full state.
    light = {"sent_at": datetime.now(UTC).isoformat(), "state_hash": digest}
    resp = await node.request("POST", "/v1/fleet/heartbeat", json=light)
    assert resp.status_code == 200 and resp.json()["send_state"] is True

    full = await node.heartbeat(models=MODELS, state_hash=digest)
    assert full.json()["send_state"] is False
    counters = {"requests": 7, "completed": 6, "errors": 1}
    resp = await node.request("POST", "/v1/fleet/heartbeat", json=light | {"counters": counters})
    assert resp.json()["send_state"] is False
    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["state"] == "online"
    assert [m["state"] for m in shown["models"]] == ["ready"]  # kept from the full one
    assert shown["counters"]["requests"] == 7 and shown["counters"]["errors"] == 1
    assert shown["facts"]["hostname"] == FACTS["hostname"]

    # The node's state changed (another hash): the light heartbeat is not enough.
    other = {"sent_at": datetime.now(UTC).isoformat(), "state_hash": _hash()}
    resp = await node.request("POST", "/v1/fleet/heartbeat", json=other)
    assert resp.json()["send_state"] is True


async def test_nodes_ls_pages_by_cursor(tenants):
    t = await tenants.create(plan="enterprise")
    names = [f"node-{i}" for i in range(5)]
    for name in names:
        await enroll_node(t, name=name)
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        resp = await t.request("GET", "/v1/nodes/", params=params)
        assert resp.status_code == 200, resp.text
        seen += [n["name"] for n in resp.json()]
        pages += 1
        if not (after := resp.headers.get("x-next-after")):
            break
    assert seen == names and pages == 3
    bad = await t.request("GET", "/v1/nodes/", params={"after": "nonsense!"})
    assert bad.status_code == 400 and "X-Next-After" in bad.json()["error"]


async def test_idle_and_serving_light_heartbeats_through_the_fast_lane(tenants, hangar):
    """Light heartbeats are answered in front of the framework when there is nothing to
    meter; one with tokens served, a revoked node or a bad body gets what the route says."""
    from services.api.metrics import REQUESTS

    t = await tenants.create(plan="payg")
    node = await enroll_node(t)
    digest = _hash(models=MODELS)
    assert (await node.heartbeat(models=MODELS, state_hash=digest)).status_code == 200
    light = {"sent_at": datetime.now(UTC).isoformat(), "state_hash": digest}

    def answered() -> float:
        return REQUESTS.labels("POST", "/v1/fleet/heartbeat", "200")._value.get()

    before = answered()
    for _ in range(3):
        resp = await node.request("POST", "/v1/fleet/heartbeat", json=light)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["send_state"] is False and body["heartbeat_seconds"] > 0
        assert body["desired_revision"] >= 0 and body["server_time"]
    assert answered() - before == 3

    # Tokens served since the last beat: metered (the beat goes through the route).
    served = {"requests": 2, "prompt_tokens": 30, "completion_tokens": 12}
    for _ in range(2):  # the second is idle again: nothing more to meter
        resp = await node.request("POST", "/v1/fleet/heartbeat", json=light | {"counters": served})
        assert resp.status_code == 200 and resp.json()["send_state"] is False
    usage = (await t.request("GET", "/v1/usage/")).json()
    assert usage["totals"]["inference"] == 42
    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["counters"]["requests"] == 2 and shown["state"] == "online"

    bad = await node.request(
        "POST", "/v1/fleet/heartbeat", json=light | {"counters": {"errors": -1}}
    )
    assert bad.status_code == 400 and "errors" in bad.text
    stranger = await t.http.post(
        "/v1/fleet/heartbeat", json=light, headers={"Authorization": "Bearer hgn_nobody"}
    )
    assert stranger.status_code == 401 and stranger.json()["error"]
    await t.request("POST", f"/v1/nodes/{node.id}/revoke")
    gone = await node.request("POST", "/v1/fleet/heartbeat", json=light)
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]
