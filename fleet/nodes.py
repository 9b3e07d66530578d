"""Nodes as a tenant admin sees them, and node credentials."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import BadRequest, NotFound, Unauthorized
from core.secrets import hash_secret
from fleet.models import Node, NodeReport
from fleet.revisions import bump_nodes
from fleet.schemas import NodeOut, NodeReportOut, NodeState, check_labels
from wire.contract import Counters, ModelStatus, Resources


def node_state(node: Node, *, now: datetime, offline_after: timedelta) -> NodeState:
    if node.revoked_at is not None:
        return NodeState.revoked
    if node.disabled_at is not None:
        return NodeState.disabled
    # Computed on read as well, so the view is right even between runs of the offline job.
    if (
        node.last_seen_at is None
        or now - node.last_seen_at > offline_after
        or node.status == "offline"
    ):
        return NodeState.offline
    return NodeState.online


def node_out(node: Node, *, offline_after: timedelta) -> NodeOut:
    report = node.report or {}
    return NodeOut(
        id=node.id,
        name=node.name,
        state=node_state(node, now=utcnow(), offline_after=offline_after),
        labels=node.labels,
        facts=node.facts,
        enrolled_at=node.enrolled_at,
        last_seen_at=node.last_seen_at,
        status_changed_at=node.status_changed_at,
        disabled_at=node.disabled_at,
        revoked_at=node.revoked_at,
        desired_revision=node.desired_revision,
        applied_revision=report.get("applied_revision", 0),
        models=[ModelStatus.model_validate(m) for m in report.get("models", [])],
        resources=Resources.model_validate(report.get("resources", {})),
        counters=Counters.model_validate(report.get("counters", {})),
    )


async def authenticate(session: AsyncSession, *, secret: str):
    """Runs on every node request (heartbeats of a whole fleet): four columns by a
    unique index, not the node's facts and report."""
    node = (
        await session.execute(
            select(Node.id, Node.tenant_id, Node.revoked_at, Node.disabled_at).where(
                Node.credential_hash == hash_secret(secret)
            )
        )
    ).one_or_none()
    if node is None:
        raise Unauthorized(
            "this node credential is unknown; enroll the node again with `hangar node enroll`"
        )
    if node.revoked_at is not None:
        raise Unauthorized(
            f"node {node.id} was revoked at {node.revoked_at:%Y-%m-%d %H:%M} UTC; enroll it again with a new token"
        )
    if node.disabled_at is not None:
        raise Unauthorized(
            f"node {node.id} is disabled; a tenant admin can run `hangar nodes enable {node.id}`"
        )
    return node


async def list_nodes(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[Node]:
    return list(
        await session.scalars(
            select(Node).where(Node.tenant_id == tenant_id).order_by(Node.name, Node.id)
        )
    )


def _cursor(node: Node) -> str:
    raw = json.dumps([node.name, str(node.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[str, uuid.UUID]:
    try:
        name, node_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(name), uuid.UUID(node_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest(
            "invalid 'after': pass the X-Next-After value of the previous page"
        ) from exc


async def page_nodes(
    session: AsyncSession, *, tenant_id: uuid.UUID, after: str | None, limit: int
) -> tuple[list[Node], str | None]:
    """One page by (name, id) on the (tenant_id, name, id) index, and the next cursor."""
    stmt = select(Node).where(Node.tenant_id == tenant_id)
    if after:
        stmt = stmt.where(tuple_(Node.name, Node.id) > tuple_(*_after(after)))
    rows = list(await session.scalars(stmt.order_by(Node.name, Node.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, _cursor(rows[-1]) if more else None


async def names(session: AsyncSession, *, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Node id -> name, for usage reports (revoked nodes keep their name)."""
    if not ids:
        return {}
    return dict((await session.execute(select(Node.id, Node.name).where(Node.id.in_(ids)))).all())


async def get_node(session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID) -> Node:
    node = await session.scalar(select(Node).where(Node.id == node_id, Node.tenant_id == tenant_id))
    if node is None:
        raise NotFound(f"no node {node_id} in this tenant; `hangar nodes ls` lists them")
    return node


async def set_labels(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    set_: dict[str, str],
    remove: list[str],
) -> Node:
    node = await get_node(session, tenant_id=tenant_id, node_id=node_id)
    labels = {k: v for k, v in node.labels.items() if k not in remove} | check_labels(set_)
    if labels != node.labels:
        node.labels = labels
        await session.flush()
        # Label selectors may now pick this node, or stop picking it.
        await bump_nodes(session, node_ids=[node.id])
        await session.refresh(node)
    return node


async def set_disabled(
    session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID, disabled: bool
) -> Node:
    node = await get_node(session, tenant_id=tenant_id, node_id=node_id)
    if disabled and node.disabled_at is None:
        node.disabled_at = utcnow()
    elif not disabled:
        node.disabled_at = None
    await session.flush()
    return node


async def revoke(session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID) -> Node:
    """The credential stops working at the next request: auth reads the row every time."""
    node = await get_node(session, tenant_id=tenant_id, node_id=node_id)
    if node.revoked_at is None:
        node.revoked_at = utcnow()
        node.status_changed_at = node.revoked_at
    await session.flush()
    return node


async def list_reports(
    session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID, limit: int
) -> list[NodeReportOut]:
    await get_node(session, tenant_id=tenant_id, node_id=node_id)
    rows = await session.scalars(
        select(NodeReport)
        .where(NodeReport.node_id == node_id)
        .order_by(NodeReport.sent_at.desc())
        .limit(limit)
    )
    return [
        NodeReportOut(
            report_id=r.report_id, sent_at=r.sent_at, received_at=r.received_at, body=r.body
        )
        for r in rows
    ]


async def mark_offline(
    session: AsyncSession, *, offline_after: timedelta, now: datetime | None = None
) -> list[uuid.UUID]:
    """Record online -> offline for nodes silent too long. Idempotent: a node already
    marked offline is not matched again, so a second run changes nothing."""
    now = now or utcnow()
    cutoff = now - offline_after
    result = await session.execute(
        update(Node)
        .where(
            Node.status == "online",
            Node.revoked_at.is_(None),
            Node.disabled_at.is_(None),
            or_(
                Node.last_seen_at < cutoff,
                and_(Node.last_seen_at.is_(None), Node.enrolled_at < cutoff),
            ),
        )
        .values(status="offline", status_changed_at=now)
        .returning(Node.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())
