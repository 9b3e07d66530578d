"""Tenant isolation, scopes and name rules on every registry route."""

from __future__ import annotations

import pytest

from tests.factories import write_gguf

ZERO = "sha256:" + "0" * 64


async def test_another_tenants_objects_are_404_everywhere(tenants, tmp_path):
    owner, other = await tenants.create(), await tenants.create()
    await owner.push(write_gguf(tmp_path / "m.gguf"), "secret-model")
    upload = (await owner.request("POST", "/v1/uploads/", json={"model": "x", "size": 10})).json()
    key_id = (await owner.request("GET", "/v1/keys/")).json()[0]["id"]

    assert (await other.request("GET", "/v1/models/")).json() == []
    for method, path, kwargs in [
        ("GET", "/v1/models/secret-model", {}),
        ("GET", "/v1/models/secret-model/versions/1", {}),
        ("GET", "/v1/models/secret-model/versions/latest/blob", {}),
        ("HEAD", "/v1/models/secret-model/versions/latest/blob", {}),
        ("DELETE", "/v1/models/secret-model/versions/1", {}),
        ("PUT", "/v1/models/secret-model/tags/prod", {"json": {"version": 1}}),
        ("DELETE", "/v1/models/secret-model/tags/latest", {}),
        ("GET", f"/v1/uploads/{upload['id']}", {}),
        (
            "PATCH",
            f"/v1/uploads/{upload['id']}",
            {"content": b"GGUF", "headers": {"Upload-Offset": "0"}},
        ),
        ("POST", f"/v1/uploads/{upload['id']}/complete", {"json": {}}),
        ("DELETE", f"/v1/uploads/{upload['id']}", {}),
        ("DELETE", f"/v1/keys/{key_id}", {}),
    ]:
        resp = await other.request(method, path, **kwargs)
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
    # ...and the owner still has everything.
    assert (await owner.request("GET", "/v1/models/secret-model")).status_code == 200
    assert (await owner.request("GET", f"/v1/uploads/{upload['id']}")).status_code == 200


async def test_scopes(tenants, tmp_path, http):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf")
    await t.push(path, "m")
    read = {"Authorization": f"Bearer {await t.key_with('read')}"}
    finance = {"Authorization": f"Bearer {await t.key_with('finance')}"}

    assert (await http.get("/v1/models/", headers=read)).status_code == 200
    assert (await http.get("/v1/models/m/versions/latest/blob", headers=read)).status_code == 200
    refused = await http.post("/v1/models/m/versions", headers=read, content=path.read_bytes())
    assert refused.status_code == 403
    assert "needs one of: admin" in refused.json()["error"]
    assert (
        await http.post("/v1/keys/", headers=read, json={"scopes": ["admin"]})
    ).status_code == 403
    assert (await http.delete("/v1/models/m/versions/1", headers=read)).status_code == 403
    assert (await http.get("/v1/models/", headers=finance)).status_code == 403
    assert (await http.get("/v1/models/m/versions/latest/blob", headers=finance)).status_code == 403


async def test_keys_are_shown_once_and_revocation_is_immediate(tenants, http):
    t = await tenants.create()
    created = (await t.request("POST", "/v1/keys/", json={"name": "ci", "scopes": ["read"]})).json()
    listed = (await t.request("GET", "/v1/keys/")).json()
    assert all("secret" not in k for k in listed)
    assert created["secret"] not in str(listed)
    auth = {"Authorization": f"Bearer {created['secret']}"}
    assert (await http.get("/v1/models/", headers=auth)).status_code == 200
    assert (await t.request("DELETE", f"/v1/keys/{created['id']}")).status_code == 200
    refused = await http.get("/v1/models/", headers=auth)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]


async def test_missing_or_bad_credentials(http, tenants):
    assert (await http.get("/v1/models/")).status_code == 401
    assert (
        await http.get("/v1/models/", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    assert (
        await http.get("/v1/tenants/", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    t = await tenants.create()
    # A tenant key is not the operator token.
    assert (await http.get("/v1/tenants/", headers=t.auth)).status_code == 401


@pytest.mark.parametrize("name", ["Upper", "has space", "-leading", "a" * 129, "sl/ash", "ümlaut"])
async def test_bad_model_names_say_the_rule(tenants, tmp_path, name):
    t = await tenants.create()
    resp = await t.request("POST", "/v1/uploads/", json={"model": name, "size": 10})
    assert resp.status_code == 400
    assert "lowercase letters, digits" in resp.json()["error"]


async def test_tags_move_between_versions(tenants, tmp_path):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "a.gguf", seed=1), "m")
    await t.push(write_gguf(tmp_path / "b.gguf", seed=2), "m")
    model = (await t.request("GET", "/v1/models/m")).json()
    assert model["tags"] == {"latest": 2}
    moved = await t.request("PUT", "/v1/models/m/tags/latest", json={"version": 1})
    assert moved.json()["tags"] == {"latest": 1}
    blob = await t.request("GET", "/v1/models/m/versions/latest/blob")
    assert blob.content == (tmp_path / "a.gguf").read_bytes()
    missing = await t.request("PUT", "/v1/models/m/tags/latest", json={"version": 9})
    assert missing.status_code == 404
    bad = await t.request("PUT", "/v1/models/m/tags/Not%20Ok", json={"version": 1})
    assert bad.status_code == 400
