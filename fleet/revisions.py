"""Desired-state revisions: every change that can alter what a node should hold
bumps that node's ``desired_revision`` in the same transaction, so a heartbeat
(one UPDATE … RETURNING) tells the node whether to fetch its desired state again."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet.models import Deployment, Node


def targets(deployment: type[Deployment] = Deployment):
    """SQL condition: ``deployment`` selects the current ``nodes`` row."""
    return or_(
        deployment.node_id == Node.id,
        and_(deployment.selector.is_not(None), Node.labels.contains(deployment.selector)),
    )


async def bump_nodes(session: AsyncSession, *, node_ids: Iterable[uuid.UUID]) -> None:
    ids = list(node_ids)
    if ids:
        await session.execute(
            update(Node).where(Node.id.in_(ids)).values(desired_revision=Node.desired_revision + 1)
        )


async def _bump_targets_of(session: AsyncSession, *deployments) -> None:
    """Bump every node that a deployment matching ``deployments`` (conditions) targets."""
    targeted = exists(
        select(Deployment.id).where(*deployments, Deployment.tenant_id == Node.tenant_id, targets())
    )
    await session.execute(
        update(Node)
        .where(targeted)
        .values(desired_revision=Node.desired_revision + 1)
        .execution_options(synchronize_session=False)
    )


async def bump_deployment_targets(session: AsyncSession, *, deployment_id: uuid.UUID) -> None:
    await _bump_targets_of(session, Deployment.id == deployment_id)


async def model_changed(session: AsyncSession, *, model_id: uuid.UUID) -> None:
    """A tag of this model moved or a version went away: re-target its followers."""
    await _bump_targets_of(session, Deployment.model_id == model_id)


async def tenant_changed(session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
    """The tenant's trusted keys or signature rule changed: every node of it re-checks."""
    await session.execute(
        update(Node)
        .where(Node.tenant_id == tenant_id)
        .values(desired_revision=Node.desired_revision + 1)
        .execution_options(synchronize_session=False)
    )
