"""Uploads and downloads through the real API, S3 and Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from sqlalchemy import func, select

from metering.models import UsageEvent
from registry.models import UploadSession
from registry.service import storage_bytes
from tests.factories import write_gguf


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def tenant_objects(hangar, tenant_id: str) -> list[str]:
    return [key for key, _ in await hangar.store.list_objects(f"tenants/{tenant_id}/")]


async def test_round_trip_keeps_bytes_and_reports_gguf_facts(tenants, tmp_path):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=1, context=4096)
    data = path.read_bytes()

    pushed = await t.push(path, "tiny", tag="prod")
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    assert version["digest"] == sha(data)
    assert version["size"] == len(data)
    assert version["tags"] == ["prod"]
    gguf = version["gguf"]
    assert gguf["architecture"] == "llama"
    assert gguf["context_length"] == 4096
    assert gguf["file_type"] == "F32"
    assert gguf["tensor_count"] == 2
    assert gguf["parameter_count"] == (2 * 1024 * 1024 // 4 // 64) * 64 + 64
    assert gguf["estimated_memory_bytes"] > len(data)

    got = await t.request("GET", "/v1/models/tiny/versions/prod/blob")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["etag"] == f'"{sha(data)}"'


async def test_real_smollm2_metadata(tenants, smollm2):
    t = await tenants.create()
    resp = await t.push(smollm2, "smollm2")
    assert resp.status_code == 201, resp.text
    gguf = resp.json()["version"]["gguf"]
    assert gguf["architecture"] == "llama"
    assert gguf["file_type"] == "Q4_1"
    assert gguf["context_length"] == 8192
    assert gguf["tensor_count"] == 272
    assert 134_000_000 < gguf["parameter_count"] < 136_000_000
    # Weights + KV cache for 4096 tokens with SmolLM2's 3 of 9 heads for KV (GQA) + buffers.
    kv_cache = 2 * 30 * 4096 * (576 * 3 // 9) * 2
    size = smollm2.stat().st_size
    assert gguf["estimated_memory_bytes"] == size + kv_cache + max(size // 20, 32 * 1024 * 1024)


async def test_interrupted_upload_resumes_from_committed_bytes(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "big.gguf", megabytes=30, seed=2).read_bytes()
    start = await t.request(
        "POST", "/v1/uploads/", json={"model": "big", "size": len(data), "digest": sha(data)}
    )
    assert start.status_code == 201, start.text
    upload_id = start.json()["id"]

    cut = int(len(data) * 0.9)
    part = 5 * 1024 * 1024
    whole_parts = cut // part * part

    async def dies_at_90_percent():
        for i in range(0, cut, 1024 * 1024):
            yield data[i : min(i + 1024 * 1024, cut)]
        # Let the server take in what reached it, then drop the connection.
        for _ in range(300):
            if (await t.request("GET", f"/v1/uploads/{upload_id}")).json()[
                "committed"
            ] >= whole_parts:
                break
            await asyncio.sleep(0.1)
        raise ConnectionResetError("network dropped")

    with pytest.raises(ConnectionResetError):
        await t.request(
            "PATCH",
            f"/v1/uploads/{upload_id}",
            content=dies_at_90_percent(),
            headers={"Upload-Offset": "0"},
        )

    # Every whole part that arrived survived the drop; the partial part in flight did not.
    committed = (await t.request("GET", f"/v1/uploads/{upload_id}")).json()["committed"]
    assert committed == whole_parts

    rest = await t.request(
        "PATCH",
        f"/v1/uploads/{upload_id}",
        content=data[committed:],
        headers={"Upload-Offset": str(committed)},
    )
    assert rest.status_code == 200, rest.text
    assert rest.json()["committed"] == len(data)
    done = await t.request("POST", f"/v1/uploads/{upload_id}/complete", json={})
    assert done.status_code == 201, done.text
    assert done.json()["version"]["digest"] == sha(data)
    assert (await t.request("GET", "/v1/models/big/versions/latest/blob")).content == data


async def test_resume_at_wrong_offset_says_where_to_continue(tenants, tmp_path):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=1).read_bytes()
    upload_id = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()["id"]
    resp = await t.request(
        "PATCH", f"/v1/uploads/{upload_id}", content=data[100:], headers={"Upload-Offset": "100"}
    )
    assert resp.status_code == 409
    assert resp.json()["detail"] == {"committed": 0}
    assert "offset 0" in resp.json()["error"]


async def test_digest_mismatch_keeps_nothing(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=6, seed=3).read_bytes()
    wrong = sha(b"something else")
    resp = await t.request(
        "POST", "/v1/models/mismatch/versions", params={"digest": wrong}, content=data
    )
    assert resp.status_code == 400
    assert "digest mismatch" in resp.json()["error"]
    assert resp.json()["detail"] == {"expected": wrong, "actual": sha(data)}
    assert (await t.request("GET", "/v1/models/mismatch")).status_code == 404
    assert await tenant_objects(hangar, t.id) == []
    async with hangar.sessions() as s:
        assert (
            await s.scalar(
                select(func.count())
                .select_from(UploadSession)
                .where(UploadSession.tenant_id == t.id)
            )
            == 0
        )


async def test_not_gguf_is_refused_and_nothing_kept(tenants, tmp_path, hangar):
    t = await tenants.create()
    resp = await t.request(
        "POST", "/v1/models/notes/versions", content=b"PK\x03\x04 this is a zip, not a model" * 1000
    )
    assert resp.status_code == 400
    assert "not a GGUF file" in resp.json()["error"]
    assert (await t.request("GET", "/v1/models/notes")).status_code == 404
    assert await tenant_objects(hangar, t.id) == []


async def test_truncated_gguf_header_is_refused(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=1).read_bytes()
    resp = await t.request("POST", "/v1/models/cut/versions", content=data[:200])
    assert resp.status_code == 400
    assert "truncated" in resp.json()["error"]
    assert await tenant_objects(hangar, t.id) == []


async def test_same_bytes_twice_are_stored_and_counted_once(tenants, tmp_path, hangar):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=4)
    first = await t.push(path, "one")
    second = await t.push(path, "two")
    again = await t.push(path, "one")
    assert first.json()["deduplicated"] is False
    assert second.json()["deduplicated"] is True
    assert again.json()["version"]["number"] == 1  # same digest, same version
    assert len(await tenant_objects(hangar, t.id)) == 1
    async with hangar.sessions() as s:
        assert await storage_bytes(s, tenant_id=uuid.UUID(t.id)) == path.stat().st_size


async def test_range_requests(tenants, tmp_path):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=5).read_bytes()
    await t.push(tmp_path / "m.gguf", "r")
    url = "/v1/models/r/versions/1/blob"

    mid = await t.request("GET", url, headers={"Range": "bytes=100-199"})
    assert mid.status_code == 206
    assert mid.content == data[100:200]
    assert mid.headers["content-range"] == f"bytes 100-199/{len(data)}"

    tail = await t.request("GET", url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]

    open_ended = await t.request("GET", url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_ended.content == data[-5:]

    past_end = await t.request("GET", url, headers={"Range": f"bytes={len(data)}-"})
    assert past_end.status_code == 416
    assert past_end.headers["content-range"] == f"bytes */{len(data)}"

    stale = await t.request(
        "GET", url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:' + "0" * 64 + '"'}
    )
    assert stale.status_code == 200 and stale.content == data  # file changed: whole file

    head = await t.request("HEAD", url)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(data)

    # HEAD answers with the headers the same GET would send, If-Range included.
    for headers in ({"Range": "bytes=100-199"}, {"Range": "bytes=0-9", "If-Range": '"stale"'}):
        got = await t.request("GET", url, headers=headers)
        head = await t.request("HEAD", url, headers=headers)
        assert head.status_code == got.status_code and head.content == b""
        for name in ("content-length", "content-range", "etag", "x-hangar-digest"):
            assert head.headers.get(name) == got.headers.get(name)


async def test_resumed_download_is_metered_once(tenants, tmp_path, hangar):
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=3, seed=6).read_bytes()
    await t.push(tmp_path / "m.gguf", "e")
    half = len(data) // 2
    first = await t.request(
        "GET", "/v1/models/e/versions/1/blob", headers={"Range": f"bytes=0-{half - 1}"}
    )
    rest = await t.request(
        "GET", "/v1/models/e/versions/1/blob", headers={"Range": f"bytes={half}-"}
    )
    assert first.content + rest.content == data
    await hangar.downloads.drain()
    async with hangar.sessions() as s:
        rows = (
            await s.execute(
                select(UsageEvent.quantity, UsageEvent.attrs).where(
                    UsageEvent.tenant_id == uuid.UUID(t.id), UsageEvent.meter == "egress"
                )
            )
        ).all()
    assert sum(q for q, _ in rows) == len(data)
    assert all(attrs["digest"] == sha(data) for _, attrs in rows)
