"""Enrollment tokens and node credentials through the real API."""

from __future__ import annotations

from sqlalchemy import update

from fleet.models import EnrollmentToken
from tests.factories import FACTS, enroll_node, enroll_token, write_gguf


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
            update(EnrollmentToken)
            .where(EnrollmentToken.prefix == expiring[:10])
            .values(expires_at=EnrollmentToken.created_at)
        )
    expired = await http.post("/v1/fleet/enroll", json={"token": expiring, "facts": FACTS})
    assert expired.status_code == 401
    assert "expired at" in expired.json()["error"]

    revoked = await enroll_token(t)
    token_id = next(
        x["id"]
        for x in (await t.request("GET", "/v1/enrollment-tokens/")).json()
        if x["prefix"] == revoked[:10]
    )
    assert (await t.request("DELETE", f"/v1/enrollment-tokens/{token_id}")).json()[
        "state"
    ] == "revoked"
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
    for method, path in [
        ("POST", "/v1/fleet/heartbeat"),
        ("GET", "/v1/fleet/desired"),
        ("GET", "/v1/fleet/peers"),
    ]:
        resp = await node.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.text)
        assert "revoked" in resp.json()["error"]


async def test_a_node_credential_cannot_do_admin_things(tenants, tmp_path):
    from tests.factories import write_gguf

    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf"), "m")
    secret = (await t.push(write_gguf(tmp_path / "s.gguf", seed=1), "secret")).json()["version"]
    node = await enroll_node(t)
    for method, path in [
        ("GET", "/v1/models/"),
        ("GET", "/v1/nodes/"),
        ("POST", "/v1/keys/"),
        ("GET", "/v1/enrollment-tokens/"),
        ("DELETE", "/v1/models/m/versions/1"),
    ]:
        resp = await node.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code in (400, 403), (path, resp.status_code)
        if resp.status_code == 403:
            assert "node credential may only" in resp.json()["error"]
    # A valid body: the refusal is the scope, not validation.
    deploy = {"model": "m:latest", "node_id": node.id}
    resp = await node.request("POST", "/v1/deployments/", json=deploy)
    assert resp.status_code == 403, resp.text
    assert "node credential may only" in resp.json()["error"]

    # A node fetches only what is assigned to it; the rest is a 404 like a missing model.
    for method in ("GET", "HEAD"):
        assert (await node.request(method, "/v1/models/m/versions/1/blob")).status_code == 404
        path = f"/v1/models/secret/versions/{secret['digest']}/blob"
        assert (await node.request(method, path)).status_code == 404
        assert (await node.request(method, "/v1/models/nope/versions/1/blob")).status_code == 404
    assert (await t.request("POST", "/v1/deployments/", json=deploy)).status_code == 201
    assert (await node.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200
    assert (await node.request("HEAD", "/v1/models/m/versions/latest/blob")).status_code == 200
    path = f"/v1/models/secret/versions/{secret['digest']}/blob"
    assert (await node.request("GET", path)).status_code == 404
    # An API key with read scope still downloads anything in its tenant.
    assert (await t.request("GET", path)).status_code == 200
    # API keys are not nodes.
    assert (
        await t.request(
            "POST", "/v1/fleet/heartbeat", json={"sent_at": "2026-01-01T00:00:00Z", "facts": FACTS}
        )
    ).status_code == 403


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


async def test_starter_refuses_the_16th_node_with_402_and_keeps_nothing(tenants):
    t = await tenants.create(plan="starter")
    token = await enroll_token(t, max_uses=20)
    for _ in range(15):
        await enroll_node(t, token=token)
    refused = await t.http.post("/v1/fleet/enroll", json={"token": token, "facts": FACTS})
    assert refused.status_code == 402, refused.text
    message = refused.json()["error"]
    assert "15 nodes" in message and "has 15" in message
    nodes = (await t.request("GET", "/v1/nodes/")).json()
    assert len(nodes) == 15
    # The refused attempt did not use up the token either.
    listed = (await t.request("GET", "/v1/enrollment-tokens/")).json()
    assert listed[0]["uses"] == 15


async def test_served_tokens_from_heartbeats_show_in_usage_but_are_not_billed(tenants):
    t = await tenants.create(plan="payg")
    node = await enroll_node(t)
    await node.heartbeat(counters={"requests": 2, "prompt_tokens": 30, "completion_tokens": 12})
    await node.heartbeat(
        counters={"requests": 2, "prompt_tokens": 30, "completion_tokens": 12}
    )  # idle
    await node.heartbeat(counters={"requests": 3, "prompt_tokens": 40, "completion_tokens": 20})
    await node.heartbeat(
        counters={"requests": 1, "prompt_tokens": 5, "completion_tokens": 5}
    )  # restarted
    usage = (await t.request("GET", "/v1/usage/")).json()
    assert usage["totals"]["inference"] == 42 + 18 + 10
    preview = (await t.request("GET", "/v1/invoices/preview")).json()
    meters = {line["meter"] for line in preview["lines"]}
    assert "inference" not in meters and "device_day" in meters


async def test_nul_characters_and_huge_counters_are_400s_naming_the_field(tenants):
    t = await tenants.create()
    resp = await t.request("POST", "/v1/enrollment-tokens/", json={"name": "a\x00b"})
    assert resp.status_code == 400 and "name" in resp.text, resp.text
    token = await enroll_token(t)
    for field in ("hostname", "os", "arch", "runtime_version"):
        resp = await t.http.post(
            "/v1/fleet/enroll", json={"token": token, "facts": FACTS | {field: "x\x00y"}}
        )
        assert resp.status_code == 400 and field in resp.text, (field, resp.text)
    node = await enroll_node(t, token=token)
    status = {"name": "m\x00", "ref": "latest", "digest": "sha256:" + "0" * 64, "state": "ready"}
    resp = await node.heartbeat(models=[status])
    assert resp.status_code == 400 and "name" in resp.text, resp.text
    resp = await node.heartbeat(counters={"requests": 2**63})
    assert resp.status_code == 400 and "requests" in resp.text, resp.text
    assert (await node.heartbeat(counters={"requests": 2**63 - 1})).status_code == 200
    for digest in ("sha256:\x00", "nope", "sha256:" + "A" * 64):
        resp = await node.request("GET", "/v1/fleet/peers", params={"digest": digest})
        assert resp.status_code == 400 and "digest" in resp.text, (digest, resp.text)
    ok = await node.request("GET", "/v1/fleet/peers", params={"digest": "sha256:" + "0" * 64})
    assert ok.status_code == 200, ok.text


async def test_fleet_writes_cannot_reach_another_tenant(tenants, tmp_path):
    owner, other = await tenants.create(), await tenants.create()
    await owner.push(write_gguf(tmp_path / "m.gguf"), "m")
    await other.push(write_gguf(tmp_path / "o.gguf", seed=1), "m")
    node = await enroll_node(owner)
    deployed = await owner.request(
        "POST", "/v1/deployments/", json={"model": "m:latest", "node_id": node.id}
    )
    assert deployed.status_code == 201, deployed.text
    token_id = (await owner.request("GET", "/v1/enrollment-tokens/")).json()[0]["id"]

    gone = await other.request("DELETE", f"/v1/deployments/{deployed.json()['id']}")
    assert gone.status_code == 404, gone.text
    gone = await other.request("DELETE", f"/v1/enrollment-tokens/{token_id}")
    assert gone.status_code == 404, gone.text
    # Deploying to another tenant's node looks exactly like deploying to no node at all.
    theirs = await other.request(
        "POST", "/v1/deployments/", json={"model": "m:latest", "node_id": node.id}
    )
    missing = await other.request(
        "POST",
        "/v1/deployments/",
        json={"model": "m:latest", "node_id": "00000000-0000-0000-0000-000000000000"},
    )
    assert theirs.status_code in (400, 404), theirs.text
    assert (theirs.status_code, theirs.json()["error"].replace(node.id, "X")) == (
        missing.status_code,
        missing.json()["error"].replace("00000000-0000-0000-0000-000000000000", "X"),
    )
    assert [d["id"] for d in (await owner.request("GET", "/v1/deployments/")).json()] == [
        deployed.json()["id"]
    ]
    listed = (await owner.request("GET", "/v1/enrollment-tokens/")).json()
    assert [(x["id"], x["state"]) for x in listed] == [(token_id, "active")]
    assert (await other.request("GET", "/v1/deployments/")).json() == []


async def test_api_url_must_be_http_and_is_fixed_at_enrollment(tenants):
    t = await tenants.create()
    token = await enroll_token(t)
    for bad in ("file:///etc/passwd", "ftp://peer/", "javascript:alert(1)", "http://"):
        resp = await t.http.post(
            "/v1/fleet/enroll", json={"token": token, "facts": FACTS | {"api_url": bad}}
        )
        assert resp.status_code == 400 and "api_url" in resp.text, (bad, resp.text)
    node = await enroll_node(t, token=token, api_url="http://10.0.0.5:8000")
    beat = await node.heartbeat(facts=FACTS | {"api_url": "https://attacker.example"})
    assert beat.status_code == 200, beat.text
    assert (await node.heartbeat(facts=FACTS | {"api_url": "gopher://x"})).status_code == 400
    shown = (await t.request("GET", f"/v1/nodes/{node.id}")).json()
    assert shown["facts"]["api_url"] == "http://10.0.0.5:8000"
    assert shown["facts"]["hostname"] == FACTS["hostname"]
