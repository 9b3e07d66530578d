"""Factories: tenants with keys, and GGUF files written with the ``gguf`` package."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from gguf import GGUFWriter


@dataclass
class Tenant:
    id: str
    name: str
    key: str
    http: httpx.AsyncClient

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def key_with(self, *scopes: str) -> str:
        resp = await self.request(
            "POST", "/v1/keys/", json={"name": "scoped", "scopes": list(scopes)}
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["secret"]

    async def push(self, path: Path, name: str, tag: str = "latest") -> httpx.Response:
        return await self.request(
            "POST", f"/v1/models/{name}/versions", params={"tag": tag}, content=path.read_bytes()
        )


class Tenants:
    def __init__(self, http: httpx.AsyncClient, operator_token: str):
        self.http = http
        self.operator = {"Authorization": f"Bearer {operator_token}"}

    async def create(self, plan: str = "starter") -> Tenant:
        name = f"t-{secrets.token_hex(5)}"
        resp = await self.http.post(
            "/v1/tenants/", json={"name": name, "plan": plan}, headers=self.operator
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Tenant(id=body["id"], name=name, key=body["admin_key"]["secret"], http=self.http)


def write_gguf(
    path: Path, *, megabytes: float = 1, seed: int = 0, arch: str = "llama", context: int = 2048
) -> Path:
    """A small but valid GGUF model file: real header, random F32 tensors."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"test-{seed}")
    writer.add_context_length(context)
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_file_type(0)  # all F32
    floats = int(megabytes * 1024 * 1024 / 4)
    writer.add_tensor(
        "token_embd.weight", rng.standard_normal((floats // 64, 64), dtype=np.float32)
    )
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


FACTS = {
    "hostname": "box",
    "os": "Linux",
    "arch": "x86_64",
    "cpu_cores": 2,
    "memory_bytes": 8 * 1024**3,
}


@dataclass
class EnrolledNode:
    """A node as the control plane sees it, driven over HTTP like the runtime does."""

    id: str
    credential: str
    http: httpx.AsyncClient

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return await self.http.request(method, path, headers=self.auth, **kwargs)

    async def heartbeat(self, **body) -> httpx.Response:
        beat = {"sent_at": datetime.now(UTC).isoformat(), "facts": FACTS} | body
        return await self.request("POST", "/v1/fleet/heartbeat", json=beat)


async def enroll_token(tenant: Tenant, **body) -> str:
    resp = await tenant.request("POST", "/v1/enrollment-tokens/", json={"max_uses": 10} | body)
    assert resp.status_code == 201, resp.text
    return resp.json()["secret"]


async def enroll_node(
    tenant: Tenant, *, token: str | None = None, name: str | None = None, **facts
) -> EnrolledNode:
    token = token or await enroll_token(tenant)
    resp = await tenant.http.post(
        "/v1/fleet/enroll", json={"token": token, "name": name, "facts": FACTS | facts}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return EnrolledNode(id=body["node_id"], credential=body["credential"], http=tenant.http)
