"""HTTP client for the control plane: the only remote the node talks to in air-gapped mode."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from node_runtime.errors import ControlPlaneRefused, ControlPlaneUnreachable
from wire.contract import (
    DesiredState,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatReply,
    PeerList,
    ReportBatch,
    ReportBatchReply,
)


def _message(resp: httpx.Response) -> str:
    try:
        return resp.json().get("error") or resp.text
    except ValueError:
        return resp.text or resp.reason_phrase


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 500:
        raise ControlPlaneUnreachable(
            f"control plane answered {resp.status_code}: {_message(resp)}"
        )
    if resp.status_code >= 400:
        raise ControlPlaneRefused(resp.status_code, _message(resp))
    return resp


def enroll(server: str, request: EnrollRequest) -> EnrollResponse:
    try:
        resp = httpx.post(
            f"{server.rstrip('/')}/v1/fleet/enroll",
            json=request.model_dump(mode="json"),
            timeout=30,
        )
    except httpx.TransportError as exc:
        raise ControlPlaneUnreachable(f"cannot reach {server}: {exc}") from exc
    return EnrollResponse.model_validate(_check(resp).json())


class ControlPlane:
    def __init__(self, server: str, credential: str, *, timeout: float = 15):
        self.server = server.rstrip("/")
        self.auth = {"Authorization": f"Bearer {credential}"}
        self.http = httpx.AsyncClient(base_url=self.server, headers=self.auth, timeout=timeout)

    async def _call(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        if not self.server:  # an offline node (`hangar node init-offline`): never dial out
            raise ControlPlaneUnreachable(
                "no control plane: this node is offline (bundles in, report files out)"
            )
        try:
            resp = await self.http.request(
                method, path, json=body.model_dump(mode="json") if body is not None else None
            )
        except httpx.TransportError as exc:
            raise ControlPlaneUnreachable(f"cannot reach {self.server}: {exc!r}") from exc
        return _check(resp)

    async def heartbeat(self, beat: Heartbeat) -> HeartbeatReply:
        return HeartbeatReply.model_validate(
            (await self._call("POST", "/v1/fleet/heartbeat", beat)).json()
        )

    async def reports(self, batch: ReportBatch) -> ReportBatchReply:
        return ReportBatchReply.model_validate(
            (await self._call("POST", "/v1/fleet/reports", batch)).json()
        )

    async def desired(self) -> DesiredState:
        return DesiredState.model_validate((await self._call("GET", "/v1/fleet/desired")).json())

    async def peers(self, digest: str, *, pull: bool = False) -> PeerList:
        """Peers holding ``digest``; with ``pull``, of this node's site, and whether to
        wait for the node fetching it for the site (``PeerList.wait``)."""
        query = f"digest={digest}" + ("&pull=true" if pull else "")
        return PeerList.model_validate((await self._call("GET", f"/v1/fleet/peers?{query}")).json())

    async def close(self) -> None:
        await self.http.aclose()
