"""A hung object store and a stalled client: answers within seconds, never a hang.

The store is the session's own SeaweedFS, stopped with SIGSTOP (alive, connections
accepted, nothing answered) and always resumed with SIGCONT. The API here is served
with short idle limits, as an operator would set them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn

from core.settings import RegistrySettings, S3Settings, Settings
from services.api.app import create_app
from services.api.guards import SERVER_LIMITS
from services.components import Components
from services.embedded import free_port
from tests.factories import Tenants, write_gguf


@pytest.fixture
async def quick(settings) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    quick = settings.model_copy(
        update={
            "s3": S3Settings(**settings.s3.model_dump() | {"timeout_seconds": 2}),
            "registry": RegistrySettings(
                **settings.registry.model_dump() | {"body_idle_seconds": 2}
            ),
        }
    )
    components = Components.build(quick)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(quick, components), port=port, log_level="warning", **SERVER_LIMITS
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        # The client waits far longer than the server should: a hang shows as a timeout.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield quick, http
    finally:
        server.should_exit = True
        await task
        await components.close()


@asynccontextmanager
async def stopped(s3) -> AsyncIterator[None]:
    os.kill(s3.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(s3.proc.pid, signal.SIGCONT)


async def test_a_hung_store_is_a_503_with_retry_after_not_a_hang(quick, stack, tmp_path):
    settings, http = quick
    _, s3 = stack
    t = await Tenants(http, settings.operator_token.get_secret_value()).create()
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=90)
    assert (await t.push(path, "m")).status_code == 201

    async with stopped(s3):
        for method, url, kwargs in [
            ("GET", "/v1/models/m/versions/latest/blob", {}),
            ("POST", "/v1/models/n/versions", {"content": path.read_bytes()}),
            ("POST", "/v1/uploads/", {"json": {"model": "o", "size": 10}}),
        ]:
            resp = await t.request(method, url, **kwargs)
            assert resp.status_code == 503, (url, resp.text)
            assert resp.headers["retry-after"]
            assert "S3" in resp.json()["error"]
        health = await http.get("/healthz")
        assert health.status_code == 503

    got = await t.request("GET", "/v1/models/m/versions/latest/blob")
    assert got.status_code == 200 and got.content == path.read_bytes()


async def test_a_stalled_upload_body_is_dropped_and_the_client_can_resume(quick, tmp_path):
    settings, http = quick
    t = await Tenants(http, settings.operator_token.get_secret_value()).create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=91).read_bytes()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()
    url = f"/v1/uploads/{upload['id']}"

    port = http.base_url.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t.key}\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:8]
    )
    await writer.drain()
    try:
        # While the stalled request holds the upload, the client is told so at once.
        await asyncio.sleep(0.3)
        busy = await t.request("PATCH", url, content=data, headers={"Upload-Offset": "0"})
        assert busy.status_code == 409, busy.text
        assert "still writing" in busy.json()["error"]
        # The stalled body is dropped with a 408 that says how to go on...
        answer = await asyncio.wait_for(reader.read(4096), timeout=30)
        assert b" 408 " in answer.split(b"\r\n")[0], answer[:200]
        assert b"send the rest" in answer
        # ...and the resume goes through.
        assert (await t.request("GET", url)).json()["committed"] == 0
        resumed = await t.request("PATCH", url, content=data, headers={"Upload-Offset": "0"})
        assert resumed.status_code == 200, resumed.text
        assert (await t.request("POST", f"{url}/complete")).status_code == 201
    finally:
        writer.close()
