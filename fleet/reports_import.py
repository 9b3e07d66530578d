"""Report files from nodes with no link (``hangar fleet import-reports``): verified,
stored once each by report id, metered, and the node's last-seen and model states
brought up to date. All in the caller's transaction: a refused file stores nothing.

Inference usage is counted the way online heartbeats count it, as counter deltas
between consecutive snapshots in time order, under the same event id
(``inference:{node}:{report id}``). Only reports newer than what the control plane
already accounted for (the node's last-seen) are metered: each stretch of time is
counted once, whether its heartbeat came online, queued, or in a file, and however
often a file is imported."""

from __future__ import annotations

import hmac
import io
import uuid
from datetime import datetime, timedelta

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import BadRequest
from fleet.heartbeats import _record_inference, _record_peer_bytes, _report
from fleet.models import Node, NodeReport
from wire import signed_files
from wire.contract import Counters, state_hash
from wire.offline import REPORTS, ReportsBody, credential_proof

# A node's clock may drift; a report from further ahead than this is refused.
CLOCK_SKEW = timedelta(days=1)


class ReportsImported(BaseModel):
    node_id: uuid.UUID
    received: int
    stored: int
    duplicates: int
    metered: int
    key_pinned: bool
    last_seen_at: datetime | None


def _refuse(problem: str) -> BadRequest:
    return BadRequest(f"reports file refused: {problem}. Nothing was stored.")


def parse_reports(data: bytes) -> ReportsBody:
    def node_key(manifest: dict) -> signed_files.Ed25519PublicKey:
        key = manifest.get("node_key")
        if not isinstance(key, str):
            raise signed_files.SignedFileError("the manifest names no node key")
        return signed_files.parse_key(key)

    try:
        manifest = signed_files.open_signed(
            io.BytesIO(data), kind=REPORTS, key_for=node_key, size=len(data)
        )
        return ReportsBody.model_validate(manifest)
    except signed_files.SignedFileError as exc:
        raise _refuse(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _refuse(f"{where}: {first['msg']}") from None


async def _node(session: AsyncSession, *, tenant_id: uuid.UUID, body: ReportsBody) -> Node:
    if body.tenant_id != tenant_id:
        raise _refuse(
            "these reports are from a node of another tenant; import them with that tenant's key"
        )
    node = await session.scalar(
        select(Node).where(Node.id == body.node_id, Node.tenant_id == tenant_id).with_for_update()
    )
    if node is None:
        raise _refuse(f"node {body.node_id} is not a node of this tenant")
    if node.revoked_at is not None:
        raise _refuse(f"node {node.id} was revoked; it may not report any more")
    proof = credential_proof(node.credential_hash, body.node_key)
    if not hmac.compare_digest(proof, body.credential_proof):
        raise _refuse(
            f"the key that signed this file is not vouched for by node {node.id}'s credential"
        )
    if node.report_key is not None and node.report_key != body.node_key:
        raise _refuse(
            f"signed by key {signed_files.key_id(body.node_key)}, but node {node.id} signs with "
            f"key {signed_files.key_id(node.report_key)} (pinned at its first import)"
        )
    return node


async def import_reports(
    session: AsyncSession, *, tenant_id: uuid.UUID, data: bytes
) -> ReportsImported:
    body = parse_reports(data)
    node = await _node(session, tenant_id=tenant_id, body=body)
    now = utcnow()
    ids = [r.id for r in body.reports]
    if len(set(ids)) != len(ids):
        raise _refuse("a report id appears twice in the file")
    for r in body.reports:
        if r.sent_at.tzinfo is None or r.sent_at > now + CLOCK_SKEW:
            raise _refuse(f"report {r.id} was sent at {r.sent_at.isoformat()}, in the future")
    pinned = node.report_key is None
    node.report_key = body.node_key
    reports = sorted(body.reports, key=lambda r: r.sent_at)
    new: set[uuid.UUID] = set()
    if reports:
        stored = await session.execute(
            insert(NodeReport)
            .values(
                [
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": tenant_id,
                        "node_id": node.id,
                        "report_id": r.id,
                        "sent_at": r.sent_at,
                        "received_at": now,
                        "body": _report(r),
                    }
                    for r in reports
                ]
            )
            .on_conflict_do_nothing(index_elements=["node_id", "report_id"])
            .returning(NodeReport.report_id)
        )
        new = set(stored.scalars())
    metered = 0
    for beat in reports:
        if beat.id not in new or (node.last_seen_at and beat.sent_at <= node.last_seen_at):
            continue  # that stretch of time is already accounted for
        before = Counters.model_validate((node.report or {}).get("counters", {}))
        await _record_inference(
            session, tenant_id=tenant_id, node_id=node.id, before=before, beat=beat
        )
        await _record_peer_bytes(
            session, tenant_id=tenant_id, node_id=node.id, before=before, beat=beat
        )
        report = _report(beat)
        if not beat.facts:  # a light report: the rest is as last recorded
            report = (node.report or {}) | {"counters": report["counters"]}
        else:
            node.facts = beat.facts.model_dump(mode="json")
            node.state_hash = state_hash(beat)
        node.report = report
        node.last_seen_at = beat.sent_at
        metered += 1
    await session.flush()
    return ReportsImported(
        node_id=node.id,
        received=len(reports),
        stored=len(new),
        duplicates=len(reports) - len(new),
        metered=metered,
        key_pinned=pinned,
        last_seen_at=node.last_seen_at,
    )
