"""The bounded queue and the local API key, with the node runtime in this process,
the real control plane and registry, and a controllable engine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from node_runtime.api import create_node_app
from node_runtime.identity import Identity
from node_runtime.runtime import NodeRuntime
from node_runtime.settings import NodeSettings
from tests.factories import enroll_node, write_gguf
from tests.node_runtime.conftest import sha256, wait_for
from tests.node_runtime.fake_engine import FakeEngine
from tests.node_runtime.proxy import free_port

CHAT = {"model": "tiny:latest", "messages": [{"role": "user", "content": "hi"}]}


@asynccontextmanager
async def in_process_node(
    tenants, base_url, tmp_path, models: list[str], engine: FakeEngine, tenant=None, **settings
):
    """The node runtime in this process with the real control plane, registry and cache."""
    t = tenant or await tenants.create()
    digests = []
    for i, name in enumerate(models):
        digests.append(
            (await t.push(write_gguf(tmp_path / f"{name}.gguf", seed=i), name)).json()["version"][
                "digest"
            ]
        )
    enrolled = await enroll_node(t)
    for name in models:
        await t.request(
            "POST", "/v1/deployments/", json={"model": f"{name}:latest", "node_id": enrolled.id}
        )
    port = free_port()
    settings = NodeSettings(
        data_dir=tmp_path / "node", port=port, heartbeat_seconds=0.2, **settings
    )
    identity = Identity(
        server=base_url,
        node_id=uuid.UUID(enrolled.id),
        tenant_id=uuid.UUID(t.id),
        name="n",
        credential=enrolled.credential,
    )
    runtime = NodeRuntime(settings, identity, engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(create_node_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    key = settings.api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/v1", timeout=60, headers=headers
        ) as http:
            yield runtime, http, digests
    finally:
        engine.release.set()
        engine.loadable.set()
        server.should_exit = True
        await task


@pytest.fixture
async def node(
    tenants, base_url, tmp_path
) -> AsyncIterator[tuple[NodeRuntime, FakeEngine, httpx.AsyncClient, str]]:
    engine = FakeEngine()
    engine.loadable.clear()
    async with in_process_node(
        tenants, base_url, tmp_path, ["tiny"], engine, queue_size=1, api_key=SecretStr("local-key")
    ) as (runtime, http, digests):
        yield runtime, engine, http, digests[0]


async def test_loading_then_full_queue_answer_503_with_retry_after_and_nothing_is_cancelled(node):
    runtime, engine, http, digest = node
    await wait_for("the model downloaded", lambda: _async(digest in runtime.serving.runners))

    loading = await http.post("/chat/completions", json=CHAT)
    assert loading.status_code == 503
    assert loading.headers["retry-after"]
    assert "still loading" in loading.json()["error"]["message"]

    engine.loadable.set()
    await wait_for("the model loaded", lambda: _async(runtime.serving.loaded(digest)))
    running = asyncio.create_task(http.post("/chat/completions", json=CHAT))
    await wait_for("one request running", lambda: _async(engine.running == 1))
    queued = asyncio.create_task(http.post("/chat/completions", json=CHAT))
    await wait_for(
        "one request queued", lambda: _async(runtime.serving.runners[digest].admitted == 2)
    )

    full = await http.post("/chat/completions", json=CHAT)
    assert full.status_code == 503
    assert int(full.headers["retry-after"]) >= 1
    error = full.json()["error"]
    assert error["code"] == "unavailable" and "saturated" in error["message"]

    engine.release.set()
    for done in await asyncio.gather(running, queued):
        assert done.status_code == 200, done.text
        assert done.json()["usage"]["total_tokens"] == 4
    assert runtime.counters.completed == 2 and runtime.counters.rejected == 2
    # Per version, for rollouts' health gates: a 503 (loading, full) is not the model's error.
    counted = runtime.counters.by_model[digest]
    assert counted.requests == 4 and counted.errors == 0


async def test_the_local_api_key_is_checked(node):
    _, _, http, _ = node
    refused = await http.get("/models", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert "HANGAR_NODE_API_KEY" in refused.json()["error"]["message"]
    assert (await http.get("/models")).status_code == 200

    async def listed():
        return (await http.get("/models")).json()["data"]

    await wait_for("the desired state applied", listed)  # the 404 names what is here
    unknown = await http.post("/chat/completions", json=CHAT | {"model": "nope"})
    assert unknown.status_code == 404
    assert "tiny:latest" in unknown.json()["error"]["message"]


async def test_idle_models_unload_and_the_loaded_limit_holds(tenants, base_url, tmp_path):
    engine = FakeEngine()
    engine.release.set()
    async with in_process_node(
        tenants,
        base_url,
        tmp_path,
        ["one", "two"],
        engine,
        max_loaded_models=1,
        keep_alive_seconds=1,
    ) as (runtime, http, (one, two)):
        await wait_for("both models downloaded", lambda: _async(len(runtime.syncer.ready()) == 2))
        for name, digest in (("one", one), ("two", two)):

            async def answered(name=name):
                return (
                    await http.post("/chat/completions", json=CHAT | {"model": name})
                ).status_code == 200

            await wait_for(f"{name} answering", answered)
            assert list(runtime.serving.runners) == [
                digest
            ]  # the other one was unloaded to make room
        await wait_for(
            "the idle model unloaded after its keep-alive",
            lambda: _async(not runtime.serving.runners),
        )


async def test_unassigning_a_busy_model_lets_its_running_and_queued_requests_finish(
    tenants, base_url, tmp_path
):
    engine = FakeEngine()
    t = await tenants.create()
    async with in_process_node(
        tenants, base_url, tmp_path, ["tiny"], engine, tenant=t, queue_size=1
    ) as (runtime, http, (digest,)):
        await wait_for("the model loaded", lambda: _async(runtime.serving.loaded(digest)))
        running = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        await wait_for("one request running", lambda: _async(engine.running == 1))
        queued = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        runner = runtime.serving.runners[digest]
        await wait_for("one request queued", lambda: _async(runner.admitted == 2))

        (deployment,) = (await t.request("GET", "/v1/deployments/")).json()
        assert (await t.request("DELETE", f"/v1/deployments/{deployment['id']}")).status_code in (
            200,
            204,
        )
        await wait_for("the runner draining", lambda: _async(runner.draining))
        refused = await http.post("/chat/completions", json=CHAT)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "model_not_found"

        engine.release.set()
        for done in await asyncio.gather(running, queued):
            assert done.status_code == 200, done.text
            assert done.json()["choices"][0]["message"]["content"] == "ok"
        await wait_for("the model closed", lambda: _async(runner.model is None))


async def test_the_local_api_key_is_never_sent_to_a_peer(tenants, base_url, tmp_path):
    """The peer's address comes from the control plane; this node's key stays here."""
    seen: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                (
                    ln.split(b":")[1]
                    for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length")
                ),
                b"0",
            )
        )
        await reader.readexactly(length)
        seen.append(head)
        body = b'{"from": "peer"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    peer_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    t = await tenants.create()
    digest = sha256(write_gguf(tmp_path / "tiny.gguf", seed=0))
    other = await enroll_node(t, api_url=peer_url)
    status = {"name": "tiny", "ref": "latest", "digest": digest, "state": "ready"}
    assert (await other.heartbeat(models=[status])).status_code == 200
    engine = FakeEngine()
    engine.loadable.clear()  # this node answers 503 "loading": the request goes to the peer
    try:
        async with in_process_node(
            tenants, base_url, tmp_path, ["tiny"], engine, tenant=t, api_key=SecretStr("local-key")
        ) as (runtime, http, _):

            async def forwarded():
                resp = await http.post("/chat/completions", json=CHAT)
                return resp if resp.status_code == 200 else None

            resp = await wait_for("the peer answering", forwarded)
            assert resp.json() == {"from": "peer"}
            assert resp.headers["x-hangar-served-by"].startswith("peer")
    finally:
        server.close()
    assert seen and all(b"local-key" not in h and b"authorization" not in h.lower() for h in seen)


async def _async(value):
    return value
