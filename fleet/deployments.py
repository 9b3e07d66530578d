"""Deployments, and the desired state they add up to for one node."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from core.errors import BadRequest, NotFound
from fleet import rollouts
from fleet.models import Deployment, Node
from fleet.nodes import get_node
from fleet.revisions import bump_deployment_targets, targets
from fleet.schemas import DeploymentOut, check_labels
from registry import service as registry
from registry import signing
from registry.models import Model
from wire.contract import DesiredModel, DesiredState
from wire.refs import parse_tag_ref


async def create_deployment(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    model: str,
    node_id: uuid.UUID | None,
    selector: dict[str, str] | None,
) -> DeploymentOut:
    if (node_id is None) == (not selector):
        raise BadRequest(
            "give exactly one target: a node id (--node ID) or a label selector (--label k=v)"
        )
    target = parse_tag_ref(model)
    name, ref = target.name, target.ref
    found, _ = await registry.resolve(session, tenant_id=tenant_id, name=name, ref=ref)
    if node_id is not None:
        await get_node(session, tenant_id=tenant_id, node_id=node_id)
    deployment = Deployment(
        tenant_id=tenant_id,
        model_id=found.id,
        ref=ref,
        node_id=node_id,
        selector=check_labels(selector) if selector else None,
    )
    session.add(deployment)
    await session.flush()
    await bump_deployment_targets(session, deployment_id=deployment.id)
    return (await list_deployments(session, tenant_id=tenant_id, only=deployment.id))[0]


async def list_deployments(
    session: AsyncSession, *, tenant_id: uuid.UUID, only: uuid.UUID | None = None
) -> list[DeploymentOut]:
    stmt = (
        select(Deployment).where(Deployment.tenant_id == tenant_id).order_by(Deployment.created_at)
    )
    if only is not None:
        stmt = stmt.where(Deployment.id == only)
    deployments = list(await session.scalars(stmt))
    models = await _models(session, {d.model_id for d in deployments})
    counts = dict(
        (
            await session.execute(
                select(Deployment.id, func.count(Node.id))
                .join(
                    Node,
                    and_(
                        Node.tenant_id == Deployment.tenant_id,
                        Node.revoked_at.is_(None),
                        targets(),
                    ),
                )
                .where(Deployment.id.in_([d.id for d in deployments]))
                .group_by(Deployment.id)
            )
        ).all()
    )
    out = []
    for d in deployments:
        model = models[d.model_id]
        try:
            version = registry.resolve_in(model, d.ref)
        except NotFound:  # the tag was deleted: the deployment stays, and targets nothing
            version = None
        out.append(
            DeploymentOut(
                id=d.id,
                model=model.name,
                ref=d.ref,
                node_id=d.node_id,
                selector=d.selector,
                version=version and version.number,
                digest=version and version.digest,
                nodes=counts.get(d.id, 0),
                created_at=d.created_at,
            )
        )
    return out


async def delete_deployment(
    session: AsyncSession, *, tenant_id: uuid.UUID, deployment_id: uuid.UUID
) -> None:
    deployment = await session.scalar(
        select(Deployment).where(Deployment.id == deployment_id, Deployment.tenant_id == tenant_id)
    )
    if deployment is None:
        raise NotFound(
            f"no deployment {deployment_id} in this tenant; `hangar deployments ls` lists them"
        )
    await bump_deployment_targets(session, deployment_id=deployment.id)
    await session.delete(deployment)
    await session.flush()


async def _models(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Model]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Model)
        .where(Model.id.in_(ids))
        .options(selectinload(Model.versions), selectinload(Model.tags))
    )
    return {m.id: m for m in rows}


async def desired_state(session: AsyncSession, *, node: Node) -> DesiredState:
    """The union of every deployment that targets ``node``, resolved to digests now."""
    # Read the revision first: a change racing with this read bumps it again, so
    # the node fetches once more rather than missing the change.
    revision = await session.scalar(select(Node.desired_revision).where(Node.id == node.id))
    deployments = list(
        await session.scalars(
            select(Deployment)
            .where(
                Deployment.tenant_id == node.tenant_id,
                or_(Deployment.node_id == node.id, Deployment.selector.contained_by(node.labels)),
            )
            .order_by(Deployment.created_at)
        )
    )
    models = await _models(session, {d.model_id for d in deployments})
    in_flight = await rollouts.overrides(session, node_id=node.id)
    seen: dict[tuple[str, str], DesiredModel] = {}
    out: list[DesiredModel] = []

    def add(model: Model, ref: str, version) -> None:
        if (same := seen.get((model.name, version.digest))) is not None:
            # Two refs (e.g. :prod and :latest) on one version: one file, served under both.
            if ref != same.ref and ref not in same.aliases:
                same.aliases.append(ref)
            return
        seen[(model.name, version.digest)] = desired = DesiredModel(
            name=model.name,
            ref=ref,
            digest=version.digest,
            size=version.size,
            version=version.number,
            download_path=f"/v1/models/{model.name}/versions/{version.digest}/blob",
            estimated_memory_bytes=int(version.gguf.get("estimated_memory_bytes") or version.size),
            gguf=version.gguf,
        )
        out.append(desired)

    for d in deployments:
        model = models[d.model_id]
        try:
            version = registry.resolve_in(model, d.ref)
        except NotFound:
            continue
        staged = None
        if (flight := in_flight.get((d.model_id, d.ref))) is not None:
            # A rollout moved this node: the new version under the tag once it switched;
            # while moving, fetched beside the old one (pinned), which keeps serving.
            state, new_id = flight
            new = next((v for v in model.versions if v.id == new_id), None)
            if new is not None and state in rollouts.ON_NEW:
                version = new
            elif new is not None and state == rollouts.NodeState.moving:
                staged = new
        add(model, d.ref, version)
        if staged is not None:
            add(model, staged.digest, staged)
    state = DesiredState(revision=revision or 0, models=out)
    return await signing.add_to_desired(session, tenant_id=node.tenant_id, state=state)


async def may_download(
    session: AsyncSession, *, tenant_id: uuid.UUID, node_id: uuid.UUID, name: str, ref: str
) -> bool:
    """Whether a node may fetch NAME at REF: only what its desired state names (by
    digest, or by a tag deployed to it), so one node credential cannot pull every
    model of the tenant."""
    node = await session.scalar(select(Node).where(Node.id == node_id, Node.tenant_id == tenant_id))
    if node is None:
        return False
    desired = await desired_state(session, node=node)
    return any(
        m.name == name and ref in (m.digest, str(m.version), m.ref, *m.aliases)
        for m in desired.models
    )


async def check_node_download(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    name: str,
    ref: str,
) -> None:
    """404, saying nothing about whether the model exists, unless the node may fetch it.
    Uses its own short session: the download that follows may stream for minutes."""
    async with sessions() as session:
        allowed = await may_download(
            session, tenant_id=tenant_id, node_id=node_id, name=name, ref=ref
        )
    if not allowed:
        raise NotFound(f"model {name!r} at {ref!r} is not assigned to this node")
