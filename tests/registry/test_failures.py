"""Failures in the middle: races, a flaky S3, a lost object, hostile input."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta

import pytest

from core.errors import Unavailable
from registry import gc
from registry.uploads import Uploads
from tests.factories import write_gguf


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_two_completes_racing_publish_once_and_keep_the_file(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=50).read_bytes()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()
    await t.request(
        "PATCH", f"/v1/uploads/{upload['id']}", content=data, headers={"Upload-Offset": "0"}
    )
    # A second replica: same database and bucket, but no shared lock or running hash.
    replica = Uploads(
        sessions=hangar.sessions, store=hangar.store, settings=hangar.settings.registry
    )
    tenant_id, upload_id = uuid.UUID(t.id), uuid.UUID(upload["id"])
    first, second = await asyncio.gather(
        hangar.uploads.complete(tenant_id=tenant_id, upload_id=upload_id, digest=None),
        replica.complete(tenant_id=tenant_id, upload_id=upload_id, digest=None),
        return_exceptions=True,
    )
    outcomes = sorted(type(r).__name__ for r in (first, second))
    assert outcomes in (["Conflict", "PushResult"], ["NotFound", "PushResult"])
    blob = await t.request("GET", "/v1/models/m/versions/latest/blob")
    assert blob.status_code == 200 and blob.content == data


async def test_a_part_that_fails_in_s3_is_resent_and_the_digest_stays_right(
    tenants, tmp_path, hangar, monkeypatch
):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=16, seed=51).read_bytes()
    start = await t.request(
        "POST", "/v1/uploads/", json={"model": "m", "size": len(data), "digest": sha(data)}
    )
    upload_id = start.json()["id"]
    real, calls = hangar.store.upload_part, []

    async def flaky(key, upload, number, part):  # S3 fails once, on the second part
        calls.append(number)
        if len(calls) == 2:
            raise Unavailable("object storage (S3) is failing (InternalError); retry shortly")
        return await real(key, upload, number, part)

    monkeypatch.setattr(hangar.store, "upload_part", flaky)
    failed = await t.request(
        "PATCH", f"/v1/uploads/{upload_id}", content=data, headers={"Upload-Offset": "0"}
    )
    assert failed.status_code == 503
    committed = (await t.request("GET", f"/v1/uploads/{upload_id}")).json()["committed"]
    assert committed == 5 * 1024 * 1024  # the first part only
    rest = await t.request(
        "PATCH",
        f"/v1/uploads/{upload_id}",
        content=data[committed:],
        headers={"Upload-Offset": str(committed)},
    )
    assert rest.status_code == 200, rest.text
    done = await t.request("POST", f"/v1/uploads/{upload_id}/complete", json={})
    assert done.status_code == 201, done.text
    assert done.json()["version"]["digest"] == sha(data)


async def test_a_blob_lost_by_s3_is_a_clear_server_error(tenants, tmp_path, hangar):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf", seed=52), "m")
    [(key, _)] = await hangar.store.list_objects(f"tenants/{t.id}/")
    await hangar.store.delete(key)
    resp = await t.request("GET", "/v1/models/m/versions/latest/blob")
    assert resp.status_code == 500
    assert "missing from object storage" in resp.json()["error"]


async def test_gc_aborts_multipart_uploads_no_session_knows(tenants, hangar, monkeypatch):
    t = await tenants.create()
    known = (await t.request("POST", "/v1/uploads/", json={"model": "m", "size": 10})).json()
    orphan_key = f"tenants/{t.id}/blobs/orphan"
    orphan = await hangar.store.create_multipart(orphan_key)
    monkeypatch.setattr(gc, "ORPHAN_GRACE", timedelta(0))
    await gc.collect_garbage(hangar.sessions, hangar.store, stale_after=timedelta(hours=1))
    left = {upload_id for _, upload_id, _ in await hangar.store.list_multipart(f"tenants/{t.id}/")}
    assert orphan not in left
    assert len(left) == 1  # the session's own multipart upload survives
    assert (await t.request("GET", f"/v1/uploads/{known['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/v1/models/m/versions/²", {}),
        ("GET", "/v1/models/m/versions/" + "9" * 5000, {}),
        ("POST", "/v1/uploads/", {"json": {"model": "m", "size": 2**63}}),
        ("POST", "/v1/uploads/", {"json": {"model": "m\x00", "size": 10}}),
        ("POST", "/v1/keys/", {"json": {"name": "a\x00b", "scopes": ["read"]}}),
        ("POST", "/v1/keys/", {"json": {"scopes": ["root"]}}),
        ("POST", "/v1/models/m/versions", {"params": {"digest": "sha256:xyz"}, "content": b"GGUF"}),
        ("PUT", "/v1/models/m/tags/latest", {"json": {"version": "one"}}),
        (
            "POST",
            "/v1/uploads/",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
    ],
)
async def test_hostile_input_is_a_4xx_never_a_500(tenants, tmp_path, method, path, kwargs):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf", seed=53), "m")
    resp = await t.request(method, path, **kwargs)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.json()["error"]


@pytest.mark.parametrize("offset", ["1.5", "9" * 5000, "-1", ""])
async def test_bad_upload_offsets_are_400(tenants, offset):
    t = await tenants.create()
    upload = (await t.request("POST", "/v1/uploads/", json={"model": "m", "size": 10})).json()
    resp = await t.request(
        "PATCH", f"/v1/uploads/{upload['id']}", content=b"GGUF", headers={"Upload-Offset": offset}
    )
    assert resp.status_code == 400
    assert "Upload-Offset" in resp.json()["error"]


async def test_an_absurd_range_is_ignored_not_an_error(tenants, tmp_path):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", seed=54).read_bytes()
    await t.push(tmp_path / "m.gguf", "m")
    resp = await t.request(
        "GET", "/v1/models/m/versions/1/blob", headers={"Range": "bytes=-" + "9" * 5000}
    )
    assert resp.status_code == 200 and resp.content == data  # RFC 9110: serve the whole file


def _nested_array_gguf(path, megabytes: int) -> bytes:
    """A GGUF whose one metadata value is arrays nested thousands deep, then padding."""
    import struct

    key = struct.pack("<Q", 1) + b"k"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<IIQ", 9, 9, 1) * 5000
    path.write_bytes(header + bytes(megabytes * 1024 * 1024))
    return path.read_bytes()


async def test_nested_gguf_arrays_are_400_and_leave_no_s3_part(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = _nested_array_gguf(tmp_path / "nested.gguf", 1)
    resp = await t.request("POST", "/v1/models/m/versions", content=data)
    assert resp.status_code == 400, resp.text
    assert "array of arrays" in resp.json()["error"]
    assert await hangar.store.list_multipart(f"tenants/{t.id}/") == []
    assert (await t.request("GET", "/v1/uploads/")).json() == []


async def test_complete_with_an_empty_body_works(tenants, tmp_path):
    """The README's own command: ``curl -X POST .../complete`` with no body at all."""
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=61).read_bytes()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()
    await t.request(
        "PATCH", f"/v1/uploads/{upload['id']}", content=data, headers={"Upload-Offset": "0"}
    )
    resp = await t.request("POST", f"/v1/uploads/{upload['id']}/complete")
    assert resp.status_code == 201, resp.text
    assert resp.json()["version"]["digest"] == sha(data)


async def test_a_tag_that_would_be_refused_is_refused_before_the_first_byte(tenants):
    t = await tenants.create()
    for tag in ["1", "007", "sha256x"]:
        resp = await t.request("POST", "/v1/uploads/", json={"model": "m", "tag": tag, "size": 10})
        assert resp.status_code == 400, resp.text
        assert "cannot look like a version number" in resp.json()["error"]
    assert (await t.request("GET", "/v1/uploads/")).json() == []
