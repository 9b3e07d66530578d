"""Health-gated rollouts: nodes report health through real heartbeats over the API; the
scheduler job advances the rollout. Each job run is repeated to show it is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler import run_job
from tests.factories import EnrolledNode, Tenant, enroll_node, write_gguf

BAKE = 600


async def _setup(tenants, tmp_path, count: int = 4) -> tuple[Tenant, dict, dict, list]:
    t = await tenants.create(plan="enterprise")
    v1 = (await t.push(write_gguf(tmp_path / "a.gguf", seed=1), "m", tag="prod")).json()["version"]
    v2 = (await t.push(write_gguf(tmp_path / "b.gguf", seed=2), "m", tag="next")).json()["version"]
    nodes = []
    for i in range(count):
        node = await enroll_node(t, name=f"n{i}")
        await t.request("POST", f"/v1/nodes/{node.id}/labels", json={"set": {"site": "ldn"}})
        nodes.append(node)
    resp = await t.request(
        "POST", "/v1/deployments/", json={"model": "m:prod", "selector": {"site": "ldn"}}
    )
    assert resp.status_code == 201, resp.text
    return t, v1, v2, nodes


async def _desired(node: EnrolledNode) -> dict[str, str]:
    """ref -> digest the node is told to hold."""
    body = (await node.request("GET", "/v1/fleet/desired")).json()
    return {m["ref"]: m["digest"] for m in body["models"]}


async def _report(
    node: EnrolledNode, digest: str, *, state="ready", errors=0, requests=0, others=None
):
    """A heartbeat as the runtime sends it: node-wide counters and, per version served,
    that version's own (``others``: digest -> (requests, errors) of other versions)."""
    models = [{"name": "m", "ref": "prod", "digest": digest, "state": state, "loaded": True}]
    by_model = {digest: {"requests": requests, "errors": errors}}
    for other, (r, e) in (others or {}).items():
        by_model[other] = {"requests": r, "errors": e}
    counters = {
        "requests": sum(c["requests"] for c in by_model.values()),
        "errors": sum(c["errors"] for c in by_model.values()),
        "by_model": by_model,
    }
    resp = await node.heartbeat(models=models, counters=counters)
    assert resp.status_code == 200, resp.text


CLOCK = [datetime.now(UTC)]


@pytest.fixture(autouse=True)
def _clock_now():
    """Each test's job runs start from now (the clock only moves forward within a test)."""
    CLOCK[0] = datetime.now(UTC)


async def _step(hangar, t: Tenant, rollout_id: str, *, later: bool = True) -> dict:
    """One job run, then the same again at the same moment; each step is a bake later
    (unless ``later`` is false: still within the bake time)."""
    CLOCK[0] += timedelta(seconds=BAKE + 1 if later else 1)
    await run_job(hangar, "rollouts", now=CLOCK[0])
    first = (await t.request("GET", f"/v1/rollouts/{rollout_id}")).json()
    # A second run (a restart, a retry) changes nothing.
    await run_job(hangar, "rollouts", now=CLOCK[0])
    again = (await t.request("GET", f"/v1/rollouts/{rollout_id}")).json()
    assert again == first, (_moved(first), first["wave"], _moved(again), again["wave"])
    return first


def _moved(rollout: dict) -> dict[str, str]:
    return {n["name"]: n["state"] for w in rollout["waves"] for n in w["nodes"]}


async def test_a_rollout_moves_waves_on_health_then_the_tag(tenants, hangar, tmp_path):
    t, v1, v2, nodes = await _setup(tenants, tmp_path)
    resp = await t.request(
        "POST",
        "/v1/rollouts/",
        json={"model": "m:prod", "to": "2", "steps": ["1", "50%", "100%"], "bake_seconds": BAKE},
    )
    assert resp.status_code == 201, resp.text
    rollout = resp.json()
    assert rollout["state"] == "running" and rollout["wave"] == 1
    first = next(iter(_moved(rollout)))
    assert _moved(rollout) == {first: "moving"}
    by_name = {f"n{i}": n for i, n in enumerate(nodes)}
    moved = by_name[first]
    # The moved node fetches the new version beside the old, which keeps serving the tag.
    assert await _desired(moved) == {"prod": v1["digest"], v2["digest"]: v2["digest"]}
    for name, node in by_name.items():
        if name != first:
            assert await _desired(node) == {"prod": v1["digest"]}

    # Not ready yet: nothing moves.
    await _report(moved, v2["digest"], state="downloading")
    assert _moved(await _step(hangar, t, rollout["id"])) == {first: "moving"}
    # Ready: the tag switches to the new version on that node, the old one goes.
    await _report(moved, v2["digest"])
    assert _moved(await _step(hangar, t, rollout["id"])) == {first: "serving"}
    assert await _desired(moved) == {"prod": v2["digest"]}
    # Served without errors for the bake time: healthy, and wave 2 (50 % = 2 nodes) moves.
    await _report(moved, v2["digest"], requests=20)
    rollout = await _step(hangar, t, rollout["id"])
    states = _moved(rollout)
    assert rollout["wave"] == 2 and states[first] == "healthy" and len(states) == 2
    for name, state in states.items():
        if state == "moving":
            await _report(by_name[name], v2["digest"])
    await _step(hangar, t, rollout["id"])
    for name in _moved(rollout):
        await _report(by_name[name], v2["digest"], requests=5)
    rollout = await _step(hangar, t, rollout["id"])
    assert rollout["wave"] == 3 and len(_moved(rollout)) == 4
    for _ in range(2):
        for node in nodes:
            await _report(node, v2["digest"], requests=5)
        rollout = await _step(hangar, t, rollout["id"])
    assert rollout["state"] == "succeeded", rollout
    assert set(_moved(rollout).values()) == {"healthy"}
    tags = (await t.request("GET", "/v1/models/m")).json()
    assert any(v["number"] == 2 and "prod" in v["tags"] for v in tags["versions"]), tags
    for node in nodes:
        assert await _desired(node) == {"prod": v2["digest"]}


async def test_past_max_unhealthy_the_rollout_rolls_back_by_itself(tenants, hangar, tmp_path):
    t, v1, v2, nodes = await _setup(tenants, tmp_path, count=3)
    resp = await t.request(
        "POST",
        "/v1/rollouts/",
        json={"model": "m:prod", "to": "2", "steps": ["2", "100%"], "max_unhealthy": 1},
    )
    rollout = resp.json()
    names = list(_moved(rollout))
    by_name = {f"n{i}": n for i, n in enumerate(nodes)}
    for name in names:
        await _report(by_name[name], v2["digest"], errors=3, requests=10)
    assert set(_moved(await _step(hangar, t, rollout["id"], later=False)).values()) == {"serving"}
    # One node fails to load the new version: unhealthy, back on the old one; within budget.
    await _report(by_name[names[0]], v2["digest"], state="failed", errors=3, requests=10)
    rollout = await _step(hangar, t, rollout["id"], later=False)
    assert _moved(rollout)[names[0]] == "unhealthy" and rollout["state"] == "running"
    assert await _desired(by_name[names[0]]) == {"prod": v1["digest"]}
    # The other one serves errors: a second unhealthy node is past --max-unhealthy 1.
    await _report(by_name[names[1]], v2["digest"], errors=9, requests=30)
    rollout = await _step(hangar, t, rollout["id"], later=False)
    assert rollout["state"] == "rolled_back", rollout
    assert "more than --max-unhealthy 1" in rollout["reason"]
    assert set(_moved(rollout).values()) == {"rolled_back"}
    for node in nodes:
        assert await _desired(node) == {"prod": v1["digest"]}
    tags = (await t.request("GET", "/v1/models/m")).json()
    assert any(v["number"] == 1 and "prod" in v["tags"] for v in tags["versions"]), tags
    # Finished: a new rollout of the tag may start again.
    again = await t.request("POST", "/v1/rollouts/", json={"model": "m:prod", "to": "2"})
    assert again.status_code == 201, again.text


async def test_pause_resume_abort(tenants, hangar, tmp_path):
    t, v1, v2, nodes = await _setup(tenants, tmp_path, count=2)
    rollout = (await t.request("POST", "/v1/rollouts/", json={"model": "m:prod", "to": "2"})).json()
    paused = await t.request("POST", f"/v1/rollouts/{rollout['id']}/pause")
    assert paused.json()["state"] == "paused"
    for node in nodes:
        await _report(node, v2["digest"])
    assert _moved(await _step(hangar, t, rollout["id"])) == _moved(rollout)  # paused: still
    resumed = await t.request("POST", f"/v1/rollouts/{rollout['id']}/resume")
    assert resumed.json()["state"] == "running"
    assert set(_moved(await _step(hangar, t, rollout["id"])).values()) == {"serving"}
    aborted = (await t.request("POST", f"/v1/rollouts/{rollout['id']}/abort")).json()
    assert aborted["state"] == "aborted" and set(_moved(aborted).values()) == {"rolled_back"}
    for node in nodes:
        assert await _desired(node) == {"prod": v1["digest"]}
    late = await t.request("POST", f"/v1/rollouts/{rollout['id']}/resume")
    assert late.status_code == 409 and "aborted" in late.json()["error"]


async def test_bad_rollouts_say_what_is_wrong(tenants, tmp_path):
    t, v1, v2, _ = await _setup(tenants, tmp_path, count=1)
    other = await tenants.create()
    theirs = (await other.push(write_gguf(tmp_path / "o.gguf", seed=9), "m")).json()["version"]

    async def start(**body):
        return await t.request("POST", "/v1/rollouts/", json={"model": "m:prod", "to": "2"} | body)

    resp = await start(to=theirs["digest"])
    assert resp.status_code == 404 and theirs["digest"] in resp.json()["error"]
    resp = await start(model="m:nope")
    assert resp.status_code == 404 and "'nope'" in resp.json()["error"]
    resp = await start(steps=["1", "50%"])
    assert resp.status_code == 400 and "end at 100%" in resp.json()["error"]
    resp = await start(steps=["ten"])
    assert resp.status_code == 400 and "'ten'" in resp.json()["error"]
    resp = await start(to="1")
    assert resp.status_code == 400 and "already at version 1" in resp.json()["error"]
    assert (await start()).status_code == 201
    resp = await start()
    assert resp.status_code == 409 and "already in progress" in resp.json()["error"]


async def test_errors_of_another_model_on_the_node_do_not_fail_the_new_version(
    tenants, hangar, tmp_path
):
    t, v1, v2, nodes = await _setup(tenants, tmp_path, count=1)
    body = {"model": "m:prod", "to": "2", "steps": ["100%"], "bake_seconds": 60}
    rollout = (await t.request("POST", "/v1/rollouts/", json=body)).json()
    await _report(nodes[0], v2["digest"])
    assert _moved(await _step(hangar, t, rollout["id"], later=False)) == {"n0": "serving"}
    # The old version, still held for another tag, fails every request; the new one is fine.
    await _report(nodes[0], v2["digest"], requests=10, others={v1["digest"]: (50, 50)})
    rollout = await _step(hangar, t, rollout["id"])
    assert rollout["state"] == "succeeded", rollout
    assert _moved(rollout) == {"n0": "healthy"}


async def test_a_node_offline_or_never_ready_mid_wave_counts_as_unhealthy(
    tenants, hangar, settings, tmp_path
):
    """A machine switched off during its wave, or one that never gets the version ready,
    is unhealthy after a timeout: the rollout goes on (or rolls back), never waits."""
    t, v1, v2, nodes = await _setup(tenants, tmp_path, count=3)
    body = {
        "model": "m:prod",
        "to": "2",
        "steps": ["2", "100%"],
        "bake_seconds": 60,
        "max_unhealthy": 1,
    }
    rollout = (await t.request("POST", "/v1/rollouts/", json=body)).json()
    by_name = {f"n{i}": n for i, n in enumerate(nodes)}
    up, silent = (by_name[name] for name in _moved(rollout))
    await _report(up, v2["digest"])
    await _report(silent, v2["digest"], state="downloading")
    rollout = await _step(hangar, t, rollout["id"], later=False)
    assert sorted(_moved(rollout).values()) == ["moving", "serving"]

    # The offline job sees every node quiet; all but the silent one heartbeat again.
    fleet = settings.fleet
    CLOCK[0] += timedelta(seconds=fleet.offline_after_seconds + 1)
    await run_job(hangar, "offline", now=CLOCK[0])
    for node in nodes:
        if node is not silent:
            await _report(node, v1["digest"] if node not in (up, silent) else v2["digest"])
    # Offline, but not for long yet: the rollout still waits for it.
    rollout = await _step(hangar, t, rollout["id"], later=False)
    assert sorted(_moved(rollout).values()) == ["healthy", "moving"] and rollout["wave"] == 1
    CLOCK[0] += timedelta(seconds=fleet.rollout_offline_seconds)
    rollout = await _step(hangar, t, rollout["id"], later=False)
    states = {n["node_id"]: n for w in rollout["waves"] for n in w["nodes"]}
    assert states[silent.id]["state"] == "unhealthy", rollout
    assert "offline for more than" in states[silent.id]["reason"]
    assert await _desired(silent) == {"prod": v1["digest"]}
    # One unhealthy node is within --max-unhealthy 1: the healthy one baked, wave 2 moves.
    assert states[up.id]["state"] == "healthy" and rollout["wave"] == 2
    last = next(n for n in nodes if n is not up and n is not silent)
    assert states[last.id]["state"] == "moving"
    assert (await _desired(last))[v2["digest"]] == v2["digest"]

    # The last node stays online but never gets the version ready: unhealthy after the
    # ready timeout, the second unhealthy node, so everything goes back.
    for _ in range(2):
        CLOCK[0] += timedelta(seconds=fleet.rollout_ready_seconds // 2 + 1)
        await _report(last, v2["digest"], state="downloading")
        await _report(up, v2["digest"])
        rollout = await _step(hangar, t, rollout["id"], later=False)
    assert rollout["state"] == "rolled_back", rollout
    reasons = {n["node_id"]: n["reason"] for w in rollout["waves"] for n in w["nodes"]}
    assert "not ready within" in reasons[last.id]
    for node in nodes:
        assert await _desired(node) == {"prod": v1["digest"]}
