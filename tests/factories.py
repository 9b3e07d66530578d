"""Factories: tenants with keys, and GGUF files written with the ``gguf`` package."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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
        resp = await self.request("POST", "/v1/keys/", json={"name": "scoped", "scopes": list(scopes)})
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
        resp = await self.http.post("/v1/tenants/", json={"name": name, "plan": plan}, headers=self.operator)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Tenant(id=body["id"], name=name, key=body["admin_key"]["secret"], http=self.http)


def write_gguf(path: Path, *, megabytes: float = 1, seed: int = 0, arch: str = "llama", context: int = 2048) -> Path:
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
    writer.add_tensor("token_embd.weight", rng.standard_normal((floats // 64, 64), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
