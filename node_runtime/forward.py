"""Where a request goes when this node cannot serve it: a peer node of the same
tenant that holds the model (the list comes from the control plane), and — only
when air-gapped mode is off — a configured upstream as the last resort."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from node_runtime.control import ControlPlane
from node_runtime.errors import ControlPlaneRefused, ControlPlaneUnreachable
from node_runtime.settings import NodeSettings
from wire.contract import Peer, is_http_url

log = logging.getLogger("hangar.node.forward")

# Set on forwarded requests: a forwarded request is never forwarded again (no loops).
FORWARDED = "x-hangar-forwarded-by"


class Forwarded:
    def __init__(
        self, status: int, headers: dict[str, str], body: AsyncIterator[bytes], target: str
    ):
        self.status, self.headers, self.body, self.target = status, headers, body, target


class Forwarder:
    def __init__(self, settings: NodeSettings, *, node_id: str, control: ControlPlane):
        self.settings = settings
        self.node_id = node_id
        self.control = control
        # digest -> (when fetched, peers holding it); asked only when a request needs it.
        self.peers: dict[str, tuple[float, list[Peer]]] = {}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=5))

    async def peers_for(self, digest: str) -> list[Peer]:
        fetched, peers = self.peers.get(digest, (0.0, []))
        # An empty answer is asked again sooner: a peer may be finishing its download.
        ttl = self.settings.peers_seconds if peers else min(5.0, self.settings.peers_seconds)
        if time.monotonic() - fetched > ttl:
            try:
                peers = (await self.control.peers(digest)).peers
                self.peers[digest] = (time.monotonic(), peers)
            except (ControlPlaneUnreachable, ControlPlaneRefused) as exc:
                log.warning("cannot refresh peers (%s); using the last list", exc)
        return [p for p in peers if digest in p.models]

    async def _targets(self, digest: str) -> list[tuple[str, str]]:
        peers = await self.peers_for(digest)
        random.shuffle(peers)  # spread load over the peers that hold the model
        out = [
            (p.api_url.rstrip("/") + "/v1", f"peer {p.name}")
            for p in peers
            if is_http_url(p.api_url)
        ]
        if not self.settings.air_gapped and self.settings.upstream_url:
            out.append((self.settings.upstream_url.rstrip("/"), "upstream"))
        return out

    async def forward(
        self, path: str, body: dict[str, Any], *, name: str, digest: str
    ) -> Forwarded | None:
        for base, label in await self._targets(digest):
            headers = {FORWARDED: self.node_id}
            # Only the upstream gets a key (its own). This node's HANGAR_NODE_API_KEY never
            # leaves it: a peer's address comes from the control plane and is not a secret
            # holder we can verify.
            key = self.settings.upstream_api_key
            if label == "upstream" and key.get_secret_value():
                headers["Authorization"] = f"Bearer {key.get_secret_value()}"
            # A peer is asked for exactly this version; an upstream gets the client's own name.
            payload = body if label == "upstream" else body | {"model": f"{name}@{digest}"}
            try:
                req = self.http.build_request("POST", base + path, json=payload, headers=headers)
                resp = await self.http.send(req, stream=True)
            except httpx.HTTPError as exc:
                log.warning("forwarding to %s failed: %s", label, exc)
                continue
            if resp.status_code >= 500 or resp.status_code in (401, 403, 404, 429):
                await resp.aclose()
                continue
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("content-type", "retry-after")
            }
            return Forwarded(
                resp.status_code, keep | {"X-Hangar-Served-By": label}, _relay(resp), label
            )
        return None

    async def close(self) -> None:
        await self.http.aclose()


async def _relay(resp: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    finally:
        await resp.aclose()
