"""What nodes send: heartbeats, queued reports, and what they ask: peers.

Built for thousands of nodes: a heartbeat is one UPDATE … RETURNING of the node's
row (the credential lookup before it is one indexed SELECT). A beat whose counters
show tokens served since the previous one also reads that previous report and
appends one ``inference`` usage event, idempotent on the beat's id; an idle beat
appends nothing. Reports a node queued while offline are appended to
``node_reports``, once each."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import case, cast, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import Unauthorized
from fleet.models import Node, NodeReport
from metering.meters import INFERENCE
from metering.service import record_event
from wire.contract import (
    Counters,
    Heartbeat,
    Peer,
    ReportBatch,
    ReportBatchReply,
    SyncState,
    is_http_url,
)


def _report(beat: Heartbeat) -> dict:
    return beat.model_dump(mode="json", exclude={"facts"})


async def heartbeat(session: AsyncSession, *, node_id: uuid.UUID, beat: Heartbeat) -> int:
    """Store the node's latest facts and report; return its desired-state revision."""
    if beat.counters.prompt_tokens or beat.counters.completion_tokens:
        await _record_inference(session, node_id=node_id, beat=beat)
    revision = await session.scalar(
        update(Node)
        .where(Node.id == node_id, Node.revoked_at.is_(None), Node.disabled_at.is_(None))
        .values(
            last_seen_at=func.now(),
            # Facts are refreshed, except api_url: where peers send this tenant's prompts
            # is recorded at enrollment, not re-announced by every heartbeat.
            facts=cast(beat.facts.model_dump(mode="json", exclude={"api_url"}), JSONB).op("||")(
                func.jsonb_build_object("api_url", Node.facts["api_url"])
            ),
            report=_report(beat),
            status="online",
            status_changed_at=case(
                (Node.status != "online", func.now()), else_=Node.status_changed_at
            ),
        )
        .returning(Node.desired_revision)
        .execution_options(synchronize_session=False)
    )
    if revision is None:  # revoked or disabled since the credential check
        raise Unauthorized(f"node {node_id} was revoked or disabled; it may not report any more")
    return revision


async def _record_inference(session: AsyncSession, *, node_id: uuid.UUID, beat: Heartbeat) -> None:
    """Tokens served since the previous heartbeat, as an informational ``inference``
    usage event (never billed). Counters restart with the runtime: a counter that
    went down means a restart, and then everything it shows is new."""
    row = (
        await session.execute(select(Node.tenant_id, Node.report).where(Node.id == node_id))
    ).one_or_none()
    if row is None:
        return
    before = Counters.model_validate((row.report or {}).get("counters") or {})
    now = beat.counters
    restarted = (
        now.prompt_tokens < before.prompt_tokens or now.completion_tokens < before.completion_tokens
    )
    base = Counters() if restarted else before
    prompt, completion = (
        now.prompt_tokens - base.prompt_tokens,
        now.completion_tokens - base.completion_tokens,
    )
    if prompt + completion <= 0:
        return
    await record_event(
        session,
        tenant_id=row.tenant_id,
        event_id=f"inference:{node_id}:{beat.id}",
        meter=INFERENCE,
        quantity=prompt + completion,
        occurred_at=beat.sent_at,
        node_id=node_id,
        attrs={
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "requests": max(now.requests - base.requests, 0),
        },
    )


async def store_reports(
    session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID, batch: ReportBatch
) -> ReportBatchReply:
    """Keep heartbeats a node queued while offline. Idempotent on the report id, so a
    flush retried after a lost reply stores nothing twice."""
    accepted = 0
    for beat in batch.reports:
        result = await session.execute(
            insert(NodeReport)
            .values(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                node_id=node_id,
                report_id=beat.id,
                sent_at=beat.sent_at,
                received_at=utcnow(),
                body=_report(beat),
            )
            .on_conflict_do_nothing(index_elements=["node_id", "report_id"])
        )
        accepted += result.rowcount
    revision = await session.scalar(select(Node.desired_revision).where(Node.id == node_id))
    return ReportBatchReply(
        accepted=accepted, duplicates=len(batch.reports) - accepted, desired_revision=revision or 0
    )


PEERS_LIMIT = 50


async def peers(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    offline_after: timedelta,
    digest: str | None = None,
) -> list[Peer]:
    """Online nodes of the same tenant that advertise an API, with the models they
    hold ready — the only places a node may forward a request to. Nodes ask for the
    digest they need, so the answer stays small in a fleet of thousands."""
    stmt = select(Node).where(
        Node.tenant_id == tenant_id,
        Node.id != node_id,
        Node.revoked_at.is_(None),
        Node.disabled_at.is_(None),
        Node.last_seen_at > utcnow() - offline_after,
    )
    if digest is not None:
        stmt = stmt.where(
            Node.report["models"].contains([{"digest": digest, "state": SyncState.ready.value}])
        )
    rows = await session.scalars(stmt.order_by(Node.last_seen_at.desc()).limit(PEERS_LIMIT))
    out = []
    for node in rows:
        url = (node.facts or {}).get("api_url")
        if not url or not is_http_url(url):
            continue
        ready = [
            m["digest"]
            for m in (node.report or {}).get("models", [])
            if m.get("state") == SyncState.ready
        ]
        out.append(Peer(node_id=node.id, name=node.name, api_url=url, models=ready))
    return out
