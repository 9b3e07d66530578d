"""Nodes for machines that never reach the control plane: issued here, served by signed
bundles, metered like any node (a device-day for every day it is not revoked)."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.secrets import hash_secret
from fleet.limits import NodeLimit
from fleet.models import Node
from fleet.schemas import check_labels
from wire.contract import NODE_CREDENTIAL_PREFIX
from wire.offline import OfflineIdentity


async def create_offline_node(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    labels: dict[str, str],
    control_plane_key: str,
    node_limit: NodeLimit,
) -> OfflineIdentity:
    """A node row (counted against the plan's node limit like an enrollment) and the
    identity file for the machine. The credential is shown once, in that file."""
    check_labels(labels)
    await node_limit.check_node_limit(session, tenant_id=tenant_id)
    credential = NODE_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    node = Node(
        tenant_id=tenant_id,
        name=name,
        labels=labels,
        facts={},
        credential_hash=hash_secret(credential),
        credential_prefix=credential[:10],
        enrolled_at=now,
        report={},
        desired_revision=1,
        # Never seen until its first report file is imported.
        status="offline",
        status_changed_at=now,
        offline=True,
    )
    session.add(node)
    await session.flush()
    return OfflineIdentity(
        node_id=node.id,
        tenant_id=tenant_id,
        name=name,
        credential=credential,
        control_plane_key=control_plane_key,
    )
