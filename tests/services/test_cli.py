"""The `hangar` CLI as a user runs it: a real process against the real API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import uuid

from sqlalchemy import func, select

from metering.models import UsageEvent
from tests.factories import write_gguf


async def hangar_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


def cli_env(base_url: str, tenant, tmp_path) -> dict[str, str]:
    return {"HANGAR_URL": base_url, "HANGAR_TOKEN": tenant.key, "HOME": str(tmp_path)}


async def test_push_ls_show_pull(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    path = write_gguf(tmp_path / "m.gguf", megabytes=3, seed=20)
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()

    code, out = await hangar_cli("push", str(path), "demo:prod", env=env)
    assert code == 0, out
    assert digest in out and "demo:prod -> version 1" in out

    code, out = await hangar_cli("models", "ls", "--json", env=env)
    listed = json.loads(out)
    assert [(m["name"], m["tags"]) for m in listed] == [("demo", {"prod": 1})]

    code, out = await hangar_cli("models", "show", "demo", env=env)
    assert code == 0 and "llama" in out and "F32" in out

    dest = tmp_path / "back.gguf"
    code, out = await hangar_cli("pull", "demo:prod", "-o", str(dest), env=env)
    assert code == 0, out
    assert dest.read_bytes() == path.read_bytes()


async def test_push_killed_midway_resumes_on_rerun(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    path = write_gguf(tmp_path / "big.gguf", megabytes=60, seed=21)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "push",
        str(path),
        "big",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    committed = 0
    for _ in range(600):  # until at least one part has landed
        uploads = (await t.request("GET", "/v1/uploads/")).json()
        if uploads and uploads[0]["committed"] > 0:
            committed = uploads[0]["committed"]
            break
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert 0 < committed < path.stat().st_size

    code, out = await hangar_cli("push", str(path), "big", env=env)
    assert code == 0, out
    assert f"resuming upload {uploads[0]['id']}" in out
    assert (await t.request("GET", "/v1/uploads/")).json() == []
    blob = await t.request("GET", "/v1/models/big/versions/latest/blob")
    assert blob.content == path.read_bytes()


async def test_pull_resumes_a_partial_file_and_meters_only_the_rest(
    tenants, base_url, tmp_path, hangar
):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    data = write_gguf(tmp_path / "m.gguf", megabytes=4, seed=22).read_bytes()
    await t.push(tmp_path / "m.gguf", "m")
    dest = tmp_path / "out.gguf"
    half = len(data) // 2
    (tmp_path / "out.gguf.partial").write_bytes(data[:half])

    code, out = await hangar_cli("pull", "m", "-o", str(dest), env=env)
    assert code == 0, out
    assert dest.read_bytes() == data
    await hangar.downloads.drain()
    async with hangar.sessions() as s:
        egress = await s.scalar(
            select(func.sum(UsageEvent.quantity)).where(
                UsageEvent.tenant_id == uuid.UUID(t.id), UsageEvent.meter == "egress"
            )
        )
    assert egress == len(data) - half


async def test_pull_refuses_a_corrupted_partial(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    await t.push(write_gguf(tmp_path / "m.gguf", megabytes=1, seed=23), "m")
    (tmp_path / "out.gguf.partial").write_bytes(b"X" * 1000)
    code, out = await hangar_cli("pull", "m", "-o", str(tmp_path / "out.gguf"), env=env)
    assert code == 1
    assert "hash to" in out and "pull again" in out
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.partial").exists()


async def test_cli_errors_are_actionable(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    code, out = await hangar_cli("models", "show", "nope", env=env)
    assert code == 3 and "404" in out and "hangar models ls" in out  # 3: not found
    code, out = await hangar_cli("models", "ls", env={**env, "HANGAR_URL": "http://127.0.0.1:1"})
    assert code == 5 and "server unreachable at http://127.0.0.1:1" in out  # 5: unreachable
    code, out = await hangar_cli("models", "ls", env={**env, "HANGAR_TOKEN": ""})
    assert code == 6 and "HANGAR_TOKEN" in out and "hangar login" in out  # 6: no token


async def test_push_refuses_a_numeric_tag_before_uploading(tenants, base_url, tmp_path):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=71)
    code, out = await hangar_cli("push", str(path), "demo:1", env=cli_env(base_url, t, tmp_path))
    assert code != 0
    assert "cannot look like a version number" in out
    assert (await t.request("GET", "/v1/uploads/")).json() == []


async def test_push_of_a_refused_file_stops_at_once_and_leaves_nothing(
    tenants, base_url, tmp_path, hangar
):
    """The server refuses the header with a 400 while the client is still sending: the
    CLI says why and does not retry (each retry used to leave an S3 part behind)."""
    import struct

    t = await tenants.create()
    path = tmp_path / "nested.gguf"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
    path.write_bytes(header + struct.pack("<IIQ", 9, 9, 1) * 5000 + bytes(12 * 1024 * 1024))
    code, out = await hangar_cli("push", str(path), "demo:prod", env=cli_env(base_url, t, tmp_path))
    assert code != 0, out
    assert "resuming" not in out
    assert "array of arrays" in out, out
    assert await hangar.store.list_multipart(f"tenants/{t.id}/") == []
