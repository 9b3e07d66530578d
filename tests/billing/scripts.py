"""Scripted months: usage placed in time through the operator's import endpoint."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from fleet.models import Node

GB = 10**9


def at(day: str, hour: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def device_days(tenant_id: str, node_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """One device-day per day, first..last inclusive, as the daily job would record it."""
    out, day = [], first
    while day <= last:
        out.append(
            {
                "tenant_id": tenant_id,
                "id": f"device_day:{node_id}:{day}",
                "meter": "device_day",
                "quantity": 1,
                "occurred_at": f"{day}T00:00:00Z",
                "node_id": node_id,
            }
        )
        day += timedelta(days=1)
    return out


def storage_hours(
    tenant_id: str, nbytes: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Hourly samples of ``nbytes`` for every hour in [start, end)."""
    out, hour = [], start
    while hour < end:
        out.append(
            {
                "tenant_id": tenant_id,
                "id": f"storage:{tenant_id}:{hour:%Y-%m-%dT%H}",
                "meter": "storage_sample",
                "quantity": nbytes,
                "occurred_at": hour.isoformat(),
            }
        )
        hour += timedelta(hours=1)
    return out


def egress(tenant_id: str, nbytes: int, when: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "id": f"egress:{secrets.token_hex(8)}",
        "meter": "egress",
        "quantity": nbytes,
        "occurred_at": when.isoformat(),
        **extra,
    }


@dataclass
class Operator:
    http: httpx.AsyncClient
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.auth, **kwargs)

    async def import_events(self, events: list[dict[str, Any]]) -> httpx.Response:
        return await self.request("POST", "/v1/usage/import", json={"events": events})

    async def imported(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        resp = await self.import_events(events)
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def set_plan(
        self, tenant: str, plan: str, effective_at: datetime | None = None
    ) -> dict[str, Any]:
        body = {"plan": plan, "effective_at": effective_at.isoformat() if effective_at else None}
        resp = await self.request("PUT", f"/v1/tenants/{tenant}/plan", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()


async def add_node(
    hangar, tenant_id: str, *, enrolled_at: datetime, revoked_at: datetime | None = None
) -> Node:
    """A node row, as the fleet's enrollment would write it."""
    node = Node(
        tenant_id=uuid.UUID(tenant_id),
        name=f"node-{secrets.token_hex(3)}",
        labels={},
        facts={},
        credential_hash=secrets.token_hex(32),
        credential_prefix="hgn_test",
        enrolled_at=enrolled_at,
        revoked_at=revoked_at,
        report={},
        desired_revision=0,
    )
    async with hangar.sessions() as session, session.begin():
        session.add(node)
    return node
