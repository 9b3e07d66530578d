"""What nodes send: heartbeats and the reports they queued while offline.

Built for thousands of nodes: a heartbeat is one UPDATE … RETURNING of the node's
row (the credential lookup before it is one indexed SELECT). A beat whose counters
show tokens served since the previous one also reads that previous report and
appends one ``inference`` usage event, idempotent on the beat's id; an idle beat
appends nothing. Reports a node queued while offline are appended to
``node_reports``, once each."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    case,
    cast,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import Unauthorized
from core.secrets import hash_secret
from fleet.models import Node, NodeReadyBlob, NodeReport, SiteFetch
from fleet.nodes import authenticate
from metering.meters import INFERENCE, PEER_TRANSFER
from metering.service import record_event
from wire.contract import (
    Counters,
    Heartbeat,
    ReportBatch,
    ReportBatchReply,
    SyncState,
    state_hash,
)


def _report(beat: Heartbeat) -> dict:
    return beat.model_dump(mode="json", exclude={"facts", "state_hash"})


@dataclass(frozen=True)
class Beat:
    node_id: uuid.UUID
    desired_revision: int
    # The node sent a light heartbeat but we hold another state: ask for a full one.
    send_state: bool


# The light heartbeat, built once (it runs thousands of times a second): find the node
# by its credential, lock it, move last_seen_at, and the counters only if they moved.
LIGHT_SQL = """
update nodes set last_seen_at = now(), status = 'online',
  status_changed_at = case when nodes.status <> 'online' then now()
                      else nodes.status_changed_at end,
  report = case when nodes.report -> 'counters' = $1::jsonb then nodes.report
           else jsonb_set(nodes.report, '{counters}', $1::jsonb) end
from (select id, report -> 'counters' as counters, state_hash from nodes
      where credential_hash = $2 for update) as before
where nodes.id = before.id and nodes.revoked_at is null and nodes.disabled_at is null
returning nodes.id, nodes.tenant_id, nodes.desired_revision, before.counters, before.state_hash
"""


# The idle heartbeat (the fast lane's): the light one, on the condition that it has
# nothing to meter — no tokens or peer bytes since the previous beat. Otherwise (or for
# an unknown, revoked or disabled node) it changes nothing and returns no row, and the
# beat goes through ``heartbeat`` instead, which records the usage in the same transaction.
IDLE_SQL = LIGHT_SQL.replace(
    "where nodes.id = before.id",
    """where nodes.id = before.id
  and coalesce((before.counters ->> 'prompt_tokens')::bigint, 0) = $3
  and coalesce((before.counters ->> 'completion_tokens')::bigint, 0) = $4
  and coalesce((before.counters ->> 'peer_bytes')::bigint, 0) = $5""",
)


async def idle_heartbeat(conn: Any, *, credential: str, beat: Heartbeat) -> Beat | None:
    """A light heartbeat with nothing to meter, as one statement on a plain asyncpg
    connection (``conn``; no ORM session: this is most of a large fleet's traffic).
    None when it is not that case: the caller then goes through ``heartbeat``."""
    if beat.facts is not None:
        return None
    c = beat.counters
    rec = await conn.fetchrow(
        IDLE_SQL,
        # pydantic's own serializer: a few µs less than json.dumps(model_dump()) per
        # beat, and the same value once cast to jsonb (only whitespace differs).
        c.model_dump_json(),
        hash_secret(credential),
        c.prompt_tokens,
        c.completion_tokens,
        c.peer_bytes,
    )
    if rec is None:
        return None
    return Beat(
        node_id=rec["id"],
        desired_revision=rec["desired_revision"],
        send_state=rec["state_hash"] != beat.state_hash,
    )


async def heartbeat(session: AsyncSession, *, credential: str, beat: Heartbeat) -> Beat:
    """Authenticate and record in one UPDATE … RETURNING. A light heartbeat (no facts)
    writes last_seen_at, and the counters only when they moved; a full one rewrites
    facts and report as well. No index covers these columns, so the update is HOT."""
    full = beat.facts is not None
    counters = beat.counters.model_dump(mode="json")
    if full:
        new_hash = state_hash(beat)
        row = await _full(session, credential=credential, beat=beat, new_hash=new_hash)
    else:
        new_hash = None
        row = await _light(session, counters=counters, credential=credential)
    if row is None:  # unknown, revoked or disabled: say which
        await authenticate(session, secret=credential)
        raise Unauthorized("this node was revoked or disabled; it may not report any more")
    if full and row.state_hash != new_hash:
        await _replace_ready(session, tenant_id=row.tenant_id, node_id=row.id, beat=beat)
    if (beat.counters.prompt_tokens or beat.counters.completion_tokens) and (
        row.counters != counters
    ):
        await _record_inference(
            session,
            tenant_id=row.tenant_id,
            node_id=row.id,
            before=Counters.model_validate(row.counters or {}),
            beat=beat,
        )
    if beat.counters.peer_bytes and row.counters != counters:
        await _record_peer_bytes(
            session,
            tenant_id=row.tenant_id,
            node_id=row.id,
            before=Counters.model_validate(row.counters or {}),
            beat=beat,
        )
    return Beat(
        node_id=row.id,
        desired_revision=row.desired_revision,
        send_state=not full and row.state_hash != beat.state_hash,
    )


class _Row(NamedTuple):
    id: uuid.UUID
    tenant_id: uuid.UUID
    desired_revision: int
    counters: dict | None
    state_hash: str | None


async def _light(session: AsyncSession, *, counters: dict, credential: str) -> _Row | None:
    """Straight on the driver (a prepared statement, no statement or result objects of
    the ORM): this is most of what the control plane does for a large fleet. One
    statement, so it needs no transaction of its own."""
    conn = await session.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    rec = await driver.fetchrow(LIGHT_SQL, json.dumps(counters), hash_secret(credential))
    if rec is None:
        return None
    before = rec["counters"]
    return _Row(
        rec["id"],
        rec["tenant_id"],
        rec["desired_revision"],
        json.loads(before) if isinstance(before, str) else before,
        rec["state_hash"],
    )


async def _full(session: AsyncSession, *, credential: str, beat: Heartbeat, new_hash: str):
    assert beat.facts is not None
    before = (
        select(
            Node.id,
            Node.report["counters"].label("counters"),
            Node.state_hash.label("state_hash"),
        )
        .where(Node.credential_hash == hash_secret(credential))
        .with_for_update()
        .subquery("before")
    )
    values = {
        "last_seen_at": func.now(),
        "status": "online",
        "status_changed_at": case(
            (Node.status != "online", func.now()), else_=Node.status_changed_at
        ),
        # Facts are refreshed, except api_url: where peers send this tenant's prompts
        # is recorded at enrollment, not re-announced by every heartbeat.
        "facts": cast(beat.facts.model_dump(mode="json", exclude={"api_url"}), JSONB).op("||")(
            func.jsonb_build_object("api_url", Node.facts["api_url"])
        ),
        "report": _report(beat),
        "state_hash": new_hash,
    }
    return (
        await session.execute(
            update(Node)
            .where(Node.id == before.c.id, Node.revoked_at.is_(None), Node.disabled_at.is_(None))
            .values(values)
            .returning(
                Node.id,
                Node.tenant_id,
                Node.desired_revision,
                before.c.counters,
                before.c.state_hash,
            )
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()


async def _replace_ready(
    session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID, beat: Heartbeat
) -> None:
    """Only when the node's state changed: the digests it holds ready, for peers."""
    await session.execute(delete(NodeReadyBlob).where(NodeReadyBlob.node_id == node_id))
    ready = {m.digest for m in beat.models if m.state == SyncState.ready}
    if ready:
        # Its site now fetches these from it (fleet.peers): the lease has done its work.
        await session.execute(
            delete(SiteFetch).where(SiteFetch.node_id == node_id, SiteFetch.digest.in_(ready))
        )
        await session.execute(
            insert(NodeReadyBlob)
            .values([{"tenant_id": tenant_id, "digest": d, "node_id": node_id} for d in ready])
            .on_conflict_do_nothing()
        )


async def _record_inference(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    before: Counters,
    beat: Heartbeat,
) -> None:
    """Tokens served since the previous heartbeat, as an informational ``inference``
    usage event (never billed). Counters restart with the runtime: a counter that
    went down means a restart, and then everything it shows is new."""
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
        tenant_id=tenant_id,
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


async def _record_peer_bytes(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    before: Counters,
    beat: Heartbeat,
) -> None:
    """Model bytes a node fetched from its peers: informational (``peer_transfer``),
    never billed — the control plane did not send them."""
    now = beat.counters.peer_bytes
    delta = now if now < before.peer_bytes else now - before.peer_bytes
    if delta <= 0:
        return
    await record_event(
        session,
        tenant_id=tenant_id,
        event_id=f"peer:{node_id}:{beat.id}",
        meter=PEER_TRANSFER,
        quantity=delta,
        occurred_at=beat.sent_at,
        node_id=node_id,
        attrs={},
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
