"""Real node runtimes as separate processes (``hangar node enroll`` / ``hangar node run``)
against the real control plane served by the test session."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import Tenant, enroll_token
from tests.node_runtime.proxy import Proxy, free_port

DEADLINE = 180  # seconds any wait_for may take before the test fails with its message


async def wait_for(
    what: str, check: Callable[[], Awaitable[Any]], *, timeout: float = DEADLINE
) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying what never happened."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last = None
    while loop.time() < end:
        try:
            if result := await check():
                return result
        except (httpx.HTTPError, OSError, KeyError, IndexError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


async def chat_once_loaded(client: Any, model: str, **kwargs: Any) -> Any:
    """The first chat completion on a node that lists ``model`` but may still be loading
    it: a 503 "still loading" is retried until the deadline, anything else fails."""
    from openai import APIStatusError

    async def answered():
        try:
            return await client.chat.completions.create(model=model, **kwargs)
        except APIStatusError as exc:
            assert exc.status_code == 503, exc
            return None

    return await wait_for(f"{model} loaded and answering", answered)


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class NodeProcess:
    def __init__(self, data_dir: Path, tenant: Tenant, server: str, env: dict[str, str]):
        self.data_dir = data_dir
        self.tenant = tenant
        self.server = server
        self.env = env
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.id: str = ""
        self.log = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HANGAR_NODE_HEARTBEAT_SECONDS": "0.3",
            "HANGAR_NODE_N_CTX": "512",
            "HANGAR_NODE_N_THREADS": "2",
            "HANGAR_NODE_RETRY_SECONDS": "0.5",
            "HANGAR_NODE_PEERS_SECONDS": "1",
            "HANGAR_NODE_ADVERTISE_URL": self.url,
            **self.env,
        }

    async def enroll(self, token: str | None = None, name: str | None = None, *extra: str) -> str:
        token = token or await enroll_token(self.tenant)
        args = [
            "-m",
            "services.cli.main",
            "node",
            "enroll",
            "--server",
            self.server,
            "--token",
            token,
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]
        if name:
            args += ["--name", name]
        args += extra
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await proc.communicate())[0].decode()
        assert proc.returncode == 0, output
        self.id = output.split("enrolled as node ")[1].split()[0]
        return output

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "node_runtime.cli",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                env=self._env(),
                stdout=log,
                stderr=log,
            )
        await wait_for(f"node API on {self.url} (log: {self.log})", self._up, timeout=60)

    async def _up(self) -> bool:
        assert self.proc is not None and self.proc.returncode is None, self.log.read_text()[-3000:]
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{self.url}/healthz")).status_code == 200

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def shown(self) -> dict:
        resp = await self.tenant.request("GET", f"/v1/nodes/{self.id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def model_state(self, digest: str) -> dict | None:
        return next((m for m in (await self.shown())["models"] if m["digest"] == digest), None)

    async def wait_loaded(self, digest: str) -> dict:
        async def loaded():
            m = await self.model_state(digest)
            assert not m or m["state"] not in ("failed", "does_not_fit"), m
            return m if m and m["state"] == "ready" and m["loaded"] else None

        return await wait_for(
            f"{digest} ready and loaded on node {self.id} (log: {self.log})", loaded
        )

    def blobs(self) -> set[str]:
        return {p.name for p in (self.data_dir / "blobs").iterdir()}


@pytest.fixture
async def nodes(tmp_path, base_url) -> AsyncIterator[Callable[..., Awaitable[NodeProcess]]]:
    started: list[NodeProcess] = []

    async def make(
        tenant: Tenant, *, server: str | None = None, enroll: bool = True, **env: str
    ) -> NodeProcess:
        node = NodeProcess(tmp_path / f"node{len(started)}", tenant, server or base_url, env)
        started.append(node)
        if enroll:
            await node.enroll()
        return node

    yield make
    for node in started:
        await node.stop()


@pytest.fixture
async def proxy(base_url) -> AsyncIterator[Proxy]:
    p = Proxy(int(base_url.rsplit(":", 1)[1]))
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def smollm2_tenant(tenants, smollm2) -> tuple[Tenant, dict]:
    t = await tenants.create()
    resp = await t.push(smollm2, "smollm2", tag="prod")
    assert resp.status_code == 201, resp.text
    return t, resp.json()["version"]
