"""Bundles: the desired state of one or more nodes and the blobs it names, in one file
signed by this installation (``wire.signed_files``), for sites with no link at all.

The file is built while it streams: this module plans it (which nodes, their desired
state exactly as an online node fetches it, which blobs) and writes the signed
header; the blobs follow through the registry's metered downloads, so bundle bytes are
control-plane egress to the tenant like any download (and refused past the plan's
egress limit before a byte is sent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadRequest, NotFound
from fleet.deployments import desired_state
from fleet.models import Node
from fleet.schemas import check_labels
from wire import signed_files
from wire.offline import BUNDLE, BundleBody, model_body

# One bundle may serve a whole site, not a whole fleet.
MAX_NODES = 1000


@dataclass(frozen=True)
class BundleBlob:
    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class BundlePlan:
    header: bytes
    blobs: list[BundleBlob]
    node_ids: list[uuid.UUID]

    @property
    def size(self) -> int:
        return len(self.header) + sum(b.size for b in self.blobs)


async def _targets(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID | None,
    selector: dict[str, str] | None,
) -> list[Node]:
    if (node_id is None) == (not selector):
        raise BadRequest(
            "give exactly one target: a node id (--node ID) or a label selector (--label k=v)"
        )
    stmt = select(Node).where(Node.tenant_id == tenant_id, Node.revoked_at.is_(None))
    if node_id is not None:
        found = list(await session.scalars(stmt.where(Node.id == node_id)))
        if not found:
            raise NotFound(
                f"no node {node_id} in this tenant, or it was revoked; `hangar nodes ls` lists them"
            )
        return found
    check_labels(selector or {})
    found = list(
        await session.scalars(
            stmt.where(Node.labels.contains(selector)).order_by(Node.name).limit(MAX_NODES + 1)
        )
    )
    if not found:
        labels = ",".join(f"{k}={v}" for k, v in (selector or {}).items())
        raise BadRequest(f"no node of this tenant carries the labels {labels}; nothing to bundle")
    if len(found) > MAX_NODES:
        raise BadRequest(f"more than {MAX_NODES} nodes match; narrow the label selector")
    return found


async def plan_bundle(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID | None,
    selector: dict[str, str] | None,
    key: Ed25519PrivateKey,
) -> BundlePlan:
    nodes = await _targets(session, tenant_id=tenant_id, node_id=node_id, selector=selector)
    states = {n.id: await desired_state(session, node=n) for n in nodes}
    blobs: dict[str, BundleBlob] = {}
    for state in states.values():
        for m in state.models:
            blobs.setdefault(m.digest, BundleBlob(m.name, m.digest, m.size))
    body = BundleBody(tenant_id=tenant_id, nodes=states)
    header = signed_files.header(
        kind=BUNDLE,
        body=model_body(body),
        key=key,
        blobs=[(b.digest, b.size) for b in blobs.values()],
    )
    return BundlePlan(header=header, blobs=list(blobs.values()), node_ids=[n.id for n in nodes])
