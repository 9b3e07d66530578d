"""Blobs by digest: a client asks before sending bytes the tenant already holds."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from core.db import utcnow
from tests.factories import write_gguf


async def test_publishing_a_held_blob_stores_nothing_new(tenants, hangar, tmp_path):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=95)
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert (await t.push(path, "a", tag="prod")).status_code == 201
    objects = await hangar.store.list_objects(f"tenants/{t.id}/")

    resp = await t.request("POST", f"/v1/blobs/{digest}/versions", json={"model": "b"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["model"], body["tag"], body["deduplicated"]) == ("b", "latest", True)
    assert body["version"]["gguf"]["architecture"] == "llama"
    assert await hangar.store.list_objects(f"tenants/{t.id}/") == objects
    blob = await t.request("GET", "/v1/models/b/versions/latest/blob")
    assert blob.content == path.read_bytes()

    # Again: the same version, the tag unchanged.
    again = await t.request("POST", f"/v1/blobs/{digest}/versions", json={"model": "b"})
    assert again.json()["version"]["number"] == 1


async def test_unknown_malformed_and_refused(tenants, operator, tmp_path):
    t = await tenants.create()
    unknown = "sha256:" + "0" * 64
    resp = await t.request("POST", f"/v1/blobs/{unknown}/versions", json={"model": "b"})
    assert resp.status_code == 404 and "hangar push" in resp.json()["error"]
    resp = await t.request("GET", "/v1/blobs/sha256:xyz")
    assert resp.status_code == 400 and resp.json()["code"] == "bad_request"
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=96)
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    await t.push(path, "a")
    resp = await t.request("POST", f"/v1/blobs/{digest}/versions", json={"model": "Bad Name"})
    assert resp.status_code == 400

    # A tenant whose trial ended without a card publishes nothing, even without bytes.
    await operator.set_plan(t.name, "trial", utcnow() - timedelta(days=31))
    resp = await t.request("POST", f"/v1/blobs/{digest}/versions", json={"model": "c"})
    assert resp.status_code == 402
    # Reading stays allowed.
    assert (await t.request("GET", f"/v1/blobs/{digest}")).status_code == 200
