"""Health-gated rollouts of a model version through the nodes that follow a tag.

A rollout moves the tag's nodes to a new version in cumulative waves (``1,10%,50%,100%``).
A moved node first fetches the new version beside the old one (it keeps serving the
old under the tag), and is switched once the new one is ready there; it is healthy
when, after the bake time, the new version is loaded and its own error counter (the
node counts per version) stayed under the threshold. A moved node that stays offline,
or does not get the version ready, past a timeout is unhealthy: no rollout waits for
ever. Past ``max_unhealthy`` unhealthy nodes every moved node goes back to the old version. When the last wave is healthy the tag itself moves.

All state is in Postgres and every step is conditional on it, so the scheduler job
(``advance_all``) can run any number of times, or stop half-way, and nothing moves twice:
a node's ``rollout_nodes`` row is what says it was moved.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import BadRequest, Conflict, NotFound
from core.settings import FleetSettings
from fleet.models import Deployment, Node, Rollout, RolloutNode
from fleet.revisions import bump_nodes, model_changed, targets
from fleet.schemas import RolloutNodeOut, RolloutOut, RolloutWave, check_labels
from registry import service as registry
from registry.models import Model, ModelVersion
from wire.contract import Counters, ModelCounters, ModelStatus, SyncState
from wire.refs import is_digest, parse_tag_ref


class RolloutState(StrEnum):
    running = "running"
    paused = "paused"
    succeeded = "succeeded"
    rolled_back = "rolled_back"
    aborted = "aborted"


# The one place that says which state may follow which.
TRANSITIONS: dict[RolloutState, set[RolloutState]] = {
    RolloutState.running: {
        RolloutState.paused,
        RolloutState.succeeded,
        RolloutState.rolled_back,
        RolloutState.aborted,
    },
    RolloutState.paused: {RolloutState.running, RolloutState.aborted},
    RolloutState.succeeded: set(),
    RolloutState.rolled_back: set(),
    RolloutState.aborted: set(),
}
FINISHED = {s for s, nxt in TRANSITIONS.items() if not nxt}


class NodeState(StrEnum):
    moving = "moving"  # fetching the new version; still serving the old under the tag
    serving = "serving"  # the tag serves the new version here; baking
    healthy = "healthy"
    unhealthy = "unhealthy"  # back on the old version
    rolled_back = "rolled_back"


# Nodes whose desired state names the new version under the tag.
ON_NEW = {NodeState.serving, NodeState.healthy}


@dataclass(frozen=True)
class Health:
    """What the rollout's health gate holds a node to (settings, fixed per job run)."""

    error_ratio: float
    # A moved node marked offline (the ``offline`` job) for this long is unhealthy:
    # a machine switched off mid-wave never holds a rollout up for ever.
    offline_after: timedelta
    # A moved node that has not got the new version ready in this long is unhealthy
    # (a download that never ends, a version that never loads).
    ready_within: timedelta

    @classmethod
    def of(cls, fleet: FleetSettings) -> Health:
        return cls(
            error_ratio=fleet.rollout_error_ratio,
            offline_after=timedelta(seconds=fleet.rollout_offline_seconds),
            ready_within=timedelta(seconds=fleet.rollout_ready_seconds),
        )


def _move(rollout: Rollout, to: RolloutState, *, reason: str | None = None) -> None:
    current = RolloutState(rollout.state)
    if to not in TRANSITIONS[current]:
        raise Conflict(f"rollout {rollout.id} is {current.value}; it cannot become {to.value}")
    rollout.state = to.value
    if reason:
        rollout.reason = reason
    if to in FINISHED:
        rollout.finished_at = utcnow()


def parse_steps(steps: list[str]) -> list[str]:
    """Cumulative wave sizes: a node count (``1``) or a share (``10%``), ending at 100%."""
    if not steps:
        raise BadRequest("give --steps, e.g. 1,10%,50%,100%")
    out = []
    for step in steps:
        text = str(step).strip()
        try:
            value = float(text[:-1]) if text.endswith("%") else int(text)
        except ValueError:
            raise BadRequest(
                f"invalid step {text!r}: use a node count (1) or a share (10%), e.g. 1,10%,50%,100%"
            ) from None
        if value <= 0 or (text.endswith("%") and value > 100):
            raise BadRequest(f"invalid step {text!r}: counts are >= 1 and shares 0% < s <= 100%")
        out.append(text)
    if not out[-1].endswith("%") or float(out[-1][:-1]) != 100:
        raise BadRequest(
            f"the last step is {out[-1]!r}: steps must end at 100% so every node gets the version"
        )
    return out


def wave_size(step: str, total: int) -> int:
    if step.endswith("%"):
        return min(total, math.ceil(total * float(step[:-1]) / 100))
    return min(total, int(step))


async def _find(session: AsyncSession, *, tenant_id: uuid.UUID, rollout_id: uuid.UUID) -> Rollout:
    rollout = await session.scalar(
        select(Rollout)
        .where(Rollout.id == rollout_id, Rollout.tenant_id == tenant_id)
        .with_for_update()
    )
    if rollout is None:
        raise NotFound(f"no rollout {rollout_id} in this tenant; `hangar rollout ls` lists them")
    return rollout


async def _targets(session: AsyncSession, rollout: Rollout) -> list[uuid.UUID]:
    """Nodes following the tag now (by id, so waves are stable), within the selector."""
    stmt = (
        select(Node.id)
        .join(
            Deployment,
            and_(
                Deployment.tenant_id == Node.tenant_id,
                Deployment.model_id == rollout.model_id,
                Deployment.ref == rollout.tag,
                targets(),
            ),
        )
        .where(Node.tenant_id == rollout.tenant_id, Node.revoked_at.is_(None))
        .distinct()
        .order_by(Node.id)
    )
    if rollout.selector:
        stmt = stmt.where(Node.labels.contains(rollout.selector))
    return list(await session.scalars(stmt))


async def start(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    model: str,
    to: str,
    selector: dict[str, str] | None,
    steps: list[str],
    bake_seconds: int,
    max_unhealthy: int,
    health: Health,
) -> RolloutOut:
    ref = parse_tag_ref(model)
    if is_digest(ref.ref):
        raise BadRequest(f"roll out to a tag (NAME:TAG), not a digest: {model!r}")
    found, current = await registry.resolve(
        session, tenant_id=tenant_id, name=ref.name, ref=ref.ref
    )
    target = registry.resolve_in(found, to)  # another tenant's version is simply not here: 404
    if target.id == current.id:
        raise BadRequest(f"{ref.name}:{ref.ref} is already at version {target.number}")
    rollout = Rollout(
        tenant_id=tenant_id,
        model_id=found.id,
        tag=ref.ref,
        from_version_id=current.id,
        to_version_id=target.id,
        selector=check_labels(selector) if selector else None,
        steps=parse_steps(steps),
        bake_seconds=bake_seconds,
        max_unhealthy=max_unhealthy,
        state=RolloutState.running.value,
        wave=0,
        created_at=utcnow(),
    )
    if not await _targets(session, rollout):
        raise BadRequest(
            f"no node follows {ref.name}:{ref.ref}"
            + (f" with labels {selector}" if selector else "")
            + f"; deploy it first (`hangar deploy {ref.name}:{ref.ref} --label k=v`)"
        )
    try:
        async with session.begin_nested():
            session.add(rollout)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"a rollout of {ref.name}:{ref.ref} is already in progress; "
            f"`hangar rollout status {ref.name}:{ref.ref}` shows it, `abort` stops it"
        ) from None
    await _advance(session, rollout, now=utcnow(), health=health)
    return await rollout_out(session, rollout)


async def set_state(
    session: AsyncSession, *, tenant_id: uuid.UUID, rollout_id: uuid.UUID, to: RolloutState
) -> RolloutOut:
    """pause, resume or abort, by hand. Abort sends every moved node back."""
    rollout = await _find(session, tenant_id=tenant_id, rollout_id=rollout_id)
    if to == RolloutState.aborted:
        await _roll_back(session, rollout, to=RolloutState.aborted, reason="aborted by hand")
    else:
        _move(rollout, to)
    await session.flush()
    return await rollout_out(session, rollout)


async def _roll_back(
    session: AsyncSession, rollout: Rollout, *, to: RolloutState, reason: str
) -> None:
    _move(rollout, to, reason=reason)
    moved = list(
        await session.scalars(
            select(RolloutNode).where(
                RolloutNode.rollout_id == rollout.id,
                RolloutNode.state != NodeState.rolled_back.value,
            )
        )
    )
    for row in moved:
        row.state = NodeState.rolled_back.value
    await session.flush()
    await bump_nodes(session, node_ids=[r.node_id for r in moved])


async def advance_all(session: AsyncSession, *, now: datetime, health: Health) -> dict:
    """The scheduler job: one step for every running rollout (others wait their turn)."""
    rollouts = list(
        await session.scalars(
            select(Rollout)
            .where(Rollout.state == RolloutState.running.value)
            .with_for_update(skip_locked=True)
        )
    )
    for rollout in rollouts:
        await _advance(session, rollout, now=now, health=health)
    return {"rollouts": {str(r.id): r.state for r in rollouts}}


def _status(node: Node, digest: str) -> ModelStatus | None:
    for m in (node.report or {}).get("models", []):
        if m.get("digest") == digest:
            return ModelStatus.model_validate(m)
    return None


def _model_counters(node: Node, digest: str) -> ModelCounters:
    """The new version's own counters: errors of other models on the node do not count."""
    counters = Counters.model_validate((node.report or {}).get("counters") or {})
    return counters.by_model.get(digest) or ModelCounters()


def _unreachable(row: RolloutNode, node: Node, *, now: datetime, health: Health) -> str | None:
    """Why a node that cannot report counts as unhealthy now, if it does."""
    if node.status == "offline" and (
        node.status_changed_at is None or now - node.status_changed_at >= health.offline_after
    ):
        return f"offline for more than {_human(health.offline_after)} during the rollout"
    if node.revoked_at is not None or node.disabled_at is not None:
        return "revoked or disabled during the rollout"
    if row.state == NodeState.moving and now - row.moved_at >= health.ready_within:
        return f"the new version was not ready within {_human(health.ready_within)}"
    return None


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 and seconds >= 60 else f"{seconds} s"


def _evaluate(
    row: RolloutNode, node: Node, *, digest: str, bake: timedelta, now: datetime, health: Health
) -> bool:
    """Move one node's row on from what its last heartbeat says; True if it changed."""
    status = _status(node, digest)
    counters = _model_counters(node, digest)
    if status is not None and status.state in (
        SyncState.failed,
        SyncState.does_not_fit,
        SyncState.untrusted,
    ):
        row.state, row.reason = NodeState.unhealthy.value, status.reason or status.state.value
        return True
    gone = _unreachable(row, node, now=now, health=health)
    if gone is not None:
        row.state, row.reason = NodeState.unhealthy.value, gone
        return True
    if row.state == NodeState.moving:
        if status is not None and status.state == SyncState.ready:
            row.state, row.switched_at = NodeState.serving.value, now
            row.errors_at_switch, row.requests_at_switch = counters.errors, counters.requests
            return True
        return False
    if row.state != NodeState.serving:
        return False
    # Counters restart with the runtime: if they went down, everything they show is new.
    restarted = counters.errors < (row.errors_at_switch or 0) or counters.requests < (
        row.requests_at_switch or 0
    )
    errors = counters.errors - (0 if restarted else row.errors_at_switch or 0)
    requests = counters.requests - (0 if restarted else row.requests_at_switch or 0)
    ratio = health.error_ratio
    if errors >= 1 and errors > ratio * requests:
        row.state = NodeState.unhealthy.value
        row.reason = f"{errors} error(s) in {requests} request(s) since the switch"
        return True
    if row.switched_at is not None and now - row.switched_at >= bake and status and status.loaded:
        row.state = NodeState.healthy.value
    return False


async def _advance(
    session: AsyncSession, rollout: Rollout, *, now: datetime, health: Health
) -> None:
    to = await session.get(ModelVersion, rollout.to_version_id)
    if to is None:  # the version was deleted under the rollout
        await _roll_back(
            session, rollout, to=RolloutState.rolled_back, reason="the new version was deleted"
        )
        return
    rows = list(
        await session.scalars(select(RolloutNode).where(RolloutNode.rollout_id == rollout.id))
    )
    nodes = {
        n.id: n
        for n in await session.scalars(select(Node).where(Node.id.in_([r.node_id for r in rows])))
    }
    bump = []
    for row in rows:
        if row.state in (NodeState.moving, NodeState.serving):
            before = row.state
            _evaluate(
                row,
                nodes[row.node_id],
                digest=to.digest,
                bake=timedelta(seconds=rollout.bake_seconds),
                now=now,
                health=health,
            )
            # The tag changes version on the node when it switches or goes back.
            if row.state != before and row.state != NodeState.healthy:
                bump.append(row.node_id)
    await session.flush()
    await bump_nodes(session, node_ids=bump)
    unhealthy = [r for r in rows if r.state == NodeState.unhealthy]
    if len(unhealthy) > rollout.max_unhealthy:
        await _roll_back(
            session,
            rollout,
            to=RolloutState.rolled_back,
            reason=f"{len(unhealthy)} unhealthy node(s), more than --max-unhealthy "
            f"{rollout.max_unhealthy}: every moved node went back to the previous version",
        )
        return
    if any(r.state in (NodeState.moving, NodeState.serving) for r in rows):
        return  # the wave in flight is still baking
    await _next_wave(session, rollout, rows, now=now, to=to)


async def _next_wave(
    session: AsyncSession,
    rollout: Rollout,
    rows: list[RolloutNode],
    *,
    now: datetime,
    to: ModelVersion,
) -> None:
    moved = {r.node_id for r in rows}
    targets_now = await _targets(session, rollout)
    while rollout.wave < len(rollout.steps):
        rollout.wave += 1
        want = wave_size(rollout.steps[rollout.wave - 1], len(targets_now))
        fresh = [n for n in targets_now if n not in moved][: max(0, want - len(moved))]
        if fresh:
            for node_id in fresh:
                session.add(
                    RolloutNode(
                        rollout_id=rollout.id,
                        node_id=node_id,
                        wave=rollout.wave,
                        state=NodeState.moving.value,
                        moved_at=now,
                    )
                )
            rollout.wave_started_at = now
            await session.flush()
            await bump_nodes(session, node_ids=fresh)
            return
    # Every wave is healthy: the tag itself moves, and the rollout is done.
    model = await session.get(Model, rollout.model_id)
    assert model is not None
    await registry.set_tag(
        session, model_id=model.id, tag=rollout.tag, version_id=to.id, on_change=model_changed
    )
    _move(rollout, RolloutState.succeeded)
    await session.flush()


async def overrides(session: AsyncSession, *, node_id: uuid.UUID) -> dict[tuple, tuple[str, str]]:
    """For desired_state: (model_id, tag) -> (node state, new version id) of the
    rollouts in flight that moved this node."""
    rows = await session.execute(
        select(Rollout.model_id, Rollout.tag, Rollout.to_version_id, RolloutNode.state)
        .join(RolloutNode, RolloutNode.rollout_id == Rollout.id)
        .where(RolloutNode.node_id == node_id, Rollout.finished_at.is_(None))
    )
    return {(r.model_id, r.tag): (r.state, r.to_version_id) for r in rows}


async def list_rollouts(
    session: AsyncSession, *, tenant_id: uuid.UUID, model: str | None = None
) -> list[RolloutOut]:
    stmt = select(Rollout).where(Rollout.tenant_id == tenant_id)
    if model:
        ref = parse_tag_ref(model)
        found = await registry.get_model(session, tenant_id=tenant_id, name=ref.name)
        stmt = stmt.where(Rollout.model_id == found.id, Rollout.tag == ref.ref)
    rows = await session.scalars(stmt.order_by(Rollout.created_at.desc()).limit(100))
    return [await rollout_out(session, r) for r in rows]


async def get_rollout(
    session: AsyncSession, *, tenant_id: uuid.UUID, rollout_id: uuid.UUID
) -> RolloutOut:
    return await rollout_out(
        session, await _find(session, tenant_id=tenant_id, rollout_id=rollout_id)
    )


async def rollout_out(session: AsyncSession, rollout: Rollout) -> RolloutOut:
    model = await session.get(Model, rollout.model_id)
    versions = {
        v.id: v.number
        for v in await session.scalars(
            select(ModelVersion).where(
                ModelVersion.id.in_([rollout.from_version_id, rollout.to_version_id])
            )
        )
    }
    rows = (
        await session.execute(
            select(RolloutNode, Node.name)
            .join(Node, Node.id == RolloutNode.node_id)
            .where(RolloutNode.rollout_id == rollout.id)
            .order_by(RolloutNode.wave, Node.name)
        )
    ).all()
    total = len(await _targets(session, rollout))
    waves = []
    for i, step in enumerate(rollout.steps, start=1):
        waves.append(
            RolloutWave(
                wave=i,
                step=step,
                nodes_total=wave_size(step, total),
                nodes=[
                    RolloutNodeOut(
                        node_id=r.node_id,
                        name=name,
                        state=r.state,
                        switched_at=r.switched_at,
                        reason=r.reason,
                    )
                    for r, name in rows
                    if r.wave == i
                ],
            )
        )
    return RolloutOut(
        id=rollout.id,
        model=f"{model.name}:{rollout.tag}" if model else rollout.tag,
        from_version=versions.get(rollout.from_version_id),
        to_version=versions.get(rollout.to_version_id),
        state=rollout.state,
        wave=rollout.wave,
        steps=rollout.steps,
        bake_seconds=rollout.bake_seconds,
        max_unhealthy=rollout.max_unhealthy,
        selector=rollout.selector,
        reason=rollout.reason,
        created_at=rollout.created_at,
        finished_at=rollout.finished_at,
        waves=waves,
    )
