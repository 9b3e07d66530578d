"""Garbage collection removes exactly what nothing uses, and is idempotent."""

from __future__ import annotations

import uuid
from datetime import timedelta

from registry.gc import collect_garbage
from registry.service import storage_bytes
from tests.factories import write_gguf


async def test_gc_removes_only_unreferenced_blobs(tenants, tmp_path, hangar):
    t = await tenants.create()
    keep = write_gguf(tmp_path / "keep.gguf", seed=10)
    drop = write_gguf(tmp_path / "drop.gguf", seed=11)
    await t.push(keep, "keep")
    await t.push(keep, "keep-too")  # same blob, second model
    await t.push(drop, "drop")
    assert (await t.request("DELETE", "/v1/models/keep-too/versions/1")).status_code == 204
    assert (await t.request("DELETE", "/v1/models/drop/versions/1")).status_code == 204
    async with hangar.sessions() as s:
        # Freed for billing at once, before GC runs.
        assert await storage_bytes(s, tenant_id=uuid.UUID(t.id)) == keep.stat().st_size
    assert (await t.request("GET", "/v1/models/drop")).status_code == 404

    report = await collect_garbage(hangar.sessions, hangar.store, stale_after=timedelta(hours=24))
    assert report.blobs >= 1
    keys = [k for k, _ in await hangar.store.list_objects(f"tenants/{t.id}/")]
    assert len(keys) == 1
    assert (await t.request("GET", "/v1/models/keep/versions/1/blob")).content == keep.read_bytes()

    again = await collect_garbage(hangar.sessions, hangar.store, stale_after=timedelta(hours=24))
    assert [k for k, _ in await hangar.store.list_objects(f"tenants/{t.id}/")] == keys
    assert again.blobs == 0 and again.bytes_freed == 0


async def test_gc_aborts_stale_upload_sessions(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=6).read_bytes()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()
    await t.request(
        "PATCH",
        f"/v1/uploads/{upload['id']}",
        content=data[: 5 * 1024 * 1024],
        headers={"Upload-Offset": "0"},
    )
    parts_in_s3 = await hangar.store.list_multipart(f"tenants/{t.id}/")
    assert len(parts_in_s3) == 1

    await collect_garbage(hangar.sessions, hangar.store, stale_after=timedelta(hours=1))
    assert (await t.request("GET", f"/v1/uploads/{upload['id']}")).status_code == 200  # fresh: kept
    assert await hangar.store.list_multipart(f"tenants/{t.id}/") == parts_in_s3

    await collect_garbage(hangar.sessions, hangar.store, stale_after=timedelta(seconds=0))
    gone = await t.request("GET", f"/v1/uploads/{upload['id']}")
    assert gone.status_code == 404
    assert "start a new push" in gone.json()["error"]
    assert await hangar.store.list_multipart(f"tenants/{t.id}/") == []  # its parts are gone from S3
