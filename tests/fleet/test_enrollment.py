"""Enrollment tokens and node credentials through the real API."""

from __future__ import annotations

from sqlalchemy import update

from services.fleet.models import EnrollmentToken
from tests.factories import FACTS, enroll_node, enroll_token


async def test_enroll_gives_a_credential_shown_once_and_labels_from_the_token(tenants):
    t = await tenants.create()
    token = await enroll_token(t, labels={"site": "london"}, max_uses=2)
    node = await enroll_node(t, token=token, name="gpu-1")
    assert node.credential.startswith("hgn_")

    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["name"] == "gpu-1"
    assert shown["labels"] == {"site": "london"}
    assert shown["facts"]["memory_bytes"] == FACTS["memory_bytes"]
    assert node.credential not in str(shown)
    listed = (await t.request("GET", "/v1/enrollment-tokens/")).json()
    assert [(x["uses"], x["max_uses"], x["state"]) for x in listed] == [(1, 2, "active")]
    assert token not in str(listed)

    beat = await node.heartbeat()
    assert beat.status_code == 200, beat.text
    assert beat.json()["desired_revision"] >= 1


async def test_used_up_expired_and_revoked_tokens_say_why(tenants, http, hangar):
    t = await tenants.create()
    once = await enroll_token(t, max_uses=1)
    await enroll_node(t, token=once)
    used = await http.post("/v1/fleet/enroll", json={"token": once, "facts": FACTS})
    assert used.status_code == 403
    assert "used up (1 of 1 uses)" in used.json()["error"]
    assert "hangar enroll-tokens create" in used.json()["error"]

    expiring = await enroll_token(t)
    async with hangar.sessions() as s, s.begin():
        await s.execute(
            update(EnrollmentToken).where(EnrollmentToken.prefix == expiring[:10])
            .values(expires_at=EnrollmentToken.created_at)
        )
    expired = await http.post("/v1/fleet/enroll", json={"token": expiring, "facts": FACTS})
    assert expired.status_code == 401
    assert "expired at" in expired.json()["error"]

    revoked = await enroll_token(t)
    token_id = next(x["id"] for x in (await t.request("GET", "/v1/enrollment-tokens/")).json() if x["prefix"] == revoked[:10])
    assert (await t.request("DELETE", f"/v1/enrollment-tokens/{token_id}")).json()["state"] == "revoked"
    refused = await http.post("/v1/fleet/enroll", json={"token": revoked, "facts": FACTS})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]

    unknown = await http.post("/v1/fleet/enroll", json={"token": "hgt_nope", "facts": FACTS})
    assert unknown.status_code == 401
    assert "unknown" in unknown.json()["error"]


async def test_revoked_or_disabled_node_is_refused_at_once(tenants):
    t = await tenants.create()
    node = await enroll_node(t)
    assert (await node.heartbeat()).status_code == 200

    assert (await t.request("POST", f"/v1/nodes/{node.id}/disable")).json()["state"] == "disabled"
    disabled = await node.heartbeat()
    assert disabled.status_code == 401
    assert f"hangar nodes enable {node.id}" in disabled.json()["error"]
    assert (await t.request("POST", f"/v1/nodes/{node.id}/enable")).status_code == 200
    assert (await node.heartbeat()).status_code == 200

    assert (await t.request("POST", f"/v1/nodes/{node.id}/revoke")).json()["state"] == "revoked"
    for method, path in [("POST", "/v1/fleet/heartbeat"), ("GET", "/v1/fleet/desired"), ("GET", "/v1/fleet/peers")]:
        resp = await node.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.text)
        assert "revoked" in resp.json()["error"]


async def test_a_node_credential_cannot_do_admin_things(tenants, tmp_path):
    from tests.factories import write_gguf

    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf"), "m")
    node = await enroll_node(t)
    for method, path in [
        ("GET", "/v1/models/"), ("GET", "/v1/nodes/"), ("POST", "/v1/keys/"), ("GET", "/v1/enrollment-tokens/"),
        ("POST", "/v1/deployments/"), ("DELETE", "/v1/models/m/versions/1"),
    ]:
        resp = await node.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code in (400, 403), (path, resp.status_code)
        if resp.status_code == 403:
            assert "node credential may only" in resp.json()["error"]
    assert (await node.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200
    # API keys are not nodes.
    assert (await t.request("POST", "/v1/fleet/heartbeat", json={"sent_at": "2026-01-01T00:00:00Z", "facts": FACTS})).status_code == 403


async def test_another_tenants_node_is_invisible(tenants):
    owner, other = await tenants.create(), await tenants.create()
    node = await enroll_node(owner)
    assert (await other.request("GET", "/v1/nodes/")).json() == []
    for method, path, body in [
        ("GET", f"/v1/nodes/{node.id}", None),
        ("GET", f"/v1/nodes/{node.id}/reports", None),
        ("POST", f"/v1/nodes/{node.id}/labels", {"set": {"a": "b"}}),
        ("POST", f"/v1/nodes/{node.id}/disable", None),
        ("POST", f"/v1/nodes/{node.id}/revoke", None),
    ]:
        resp = await other.request(method, path, json=body)
        assert resp.status_code == 404, (path, resp.text)
    assert (await owner.request("GET", f"/v1/nodes/{node.id}")).json()["state"] == "online"
