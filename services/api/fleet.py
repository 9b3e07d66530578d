"""Fleet routes: enrollment tokens, nodes and deployments (tenant admins), and the
routes the node runtime calls with its own credential. Thin: auth, one service call."""

from __future__ import annotations

import uuid
from datetime import timedelta

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import transaction, utcnow
from core.errors import BadRequest, Forbidden
from fleet import deployments, heartbeats, nodes, rollouts, tokens
from fleet import peers as fleet_peers
from fleet.schemas import (
    DeploymentCreate,
    DeploymentOut,
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
    EnrollmentTokenOut,
    NodeLabels,
    NodeOut,
    NodeReportOut,
    RolloutCreate,
    RolloutOut,
)
from services.api.auth import Principal, bearer
from services.api.openapi import IDEMPOTENCY_KEY, doc
from services.api.paging import After, Limit, link_response, paged
from services.components import Components
from tenants.schemas import Scope
from wire.contract import (
    NODE_CREDENTIAL_PREFIX,
    DesiredState,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatReply,
    PeerList,
    ReportBatch,
    ReportBatchReply,
)
from wire.refs import check_digest

# `nodes ls` pages: the cursor of the next page, when there is one.
NEXT_HEADER = "X-Next-After"


def _offline_after(hangar: Components) -> timedelta:
    return timedelta(seconds=hangar.settings.fleet.offline_after_seconds)


class EnrollmentTokenController(Controller):
    path = "/v1/enrollment-tokens"
    tags = ["fleet"]

    @post("/", opt=doc(409, headers=(IDEMPOTENCY_KEY,)))
    async def create(
        self, db: AsyncSession, principal: Principal, data: EnrollmentTokenCreate
    ) -> EnrollmentTokenCreated:
        principal.require_admin()
        return await tokens.create_token(
            db,
            tenant_id=principal.tenant_id,
            name=data.name,
            expires_in=timedelta(seconds=data.expires_in_seconds),
            max_uses=data.max_uses,
            labels=data.labels,
        )

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[EnrollmentTokenOut]]:
        principal.require_admin()
        found = await tokens.list_tokens(db, tenant_id=principal.tenant_id)
        out = [tokens.token_out(t) for t in found]
        return paged(request, out, key=lambda t: t.id, after=after, limit=limit)

    @delete("/{token_id:uuid}", status_code=200)
    async def revoke(
        self, db: AsyncSession, principal: Principal, token_id: uuid.UUID
    ) -> EnrollmentTokenOut:
        principal.require_admin()
        return tokens.token_out(
            await tokens.revoke_token(db, tenant_id=principal.tenant_id, token_id=token_id)
        )


class NodeController(Controller):
    path = "/v1/nodes"
    tags = ["fleet"]

    @get(
        "/",
        response_headers=[
            ResponseHeader(
                name=NEXT_HEADER,
                description="present when there are more nodes: pass it as `after`",
                documentation_only=True,
            )
        ],
    )
    async def list(
        self,
        db: AsyncSession,
        hangar: Components,
        principal: Principal,
        request: Request,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[NodeOut]]:
        """Nodes by name, one page at a time (keyset: fast at any depth)."""
        principal.require(Scope.read)
        offline = _offline_after(hangar)
        page, next_after = await nodes.page_nodes(
            db, tenant_id=principal.tenant_id, after=after, limit=limit
        )
        return link_response(
            request,
            [nodes.node_out(n, offline_after=offline) for n in page],
            next_after,
            **({NEXT_HEADER: next_after} if next_after else {}),
        )

    @get("/{node_id:uuid}")
    async def show(
        self, db: AsyncSession, hangar: Components, principal: Principal, node_id: uuid.UUID
    ) -> NodeOut:
        principal.require(Scope.read)
        node = await nodes.get_node(db, tenant_id=principal.tenant_id, node_id=node_id)
        return nodes.node_out(node, offline_after=_offline_after(hangar))

    @get("/{node_id:uuid}/reports")
    async def reports(
        self,
        db: AsyncSession,
        principal: Principal,
        node_id: uuid.UUID,
        limit: int = Parameter(default=100, ge=1, le=1000),
    ) -> list[NodeReportOut]:
        """Reports the node queued on disk while it could not reach the control plane."""
        principal.require(Scope.read)
        return await nodes.list_reports(
            db, tenant_id=principal.tenant_id, node_id=node_id, limit=limit
        )

    @post("/{node_id:uuid}/labels", status_code=200)
    async def label(
        self,
        db: AsyncSession,
        hangar: Components,
        principal: Principal,
        node_id: uuid.UUID,
        data: NodeLabels,
    ) -> NodeOut:
        principal.require_admin()
        node = await nodes.set_labels(
            db, tenant_id=principal.tenant_id, node_id=node_id, set_=data.set, remove=data.remove
        )
        return nodes.node_out(node, offline_after=_offline_after(hangar))

    @post("/{node_id:uuid}/disable", status_code=200)
    async def disable(
        self, db: AsyncSession, hangar: Components, principal: Principal, node_id: uuid.UUID
    ) -> NodeOut:
        principal.require_admin()
        node = await nodes.set_disabled(
            db, tenant_id=principal.tenant_id, node_id=node_id, disabled=True
        )
        return nodes.node_out(node, offline_after=_offline_after(hangar))

    @post("/{node_id:uuid}/enable", status_code=200)
    async def enable(
        self, db: AsyncSession, hangar: Components, principal: Principal, node_id: uuid.UUID
    ) -> NodeOut:
        principal.require_admin()
        node = await nodes.set_disabled(
            db, tenant_id=principal.tenant_id, node_id=node_id, disabled=False
        )
        return nodes.node_out(node, offline_after=_offline_after(hangar))

    @post("/{node_id:uuid}/revoke", status_code=200)
    async def revoke(
        self, db: AsyncSession, hangar: Components, principal: Principal, node_id: uuid.UUID
    ) -> NodeOut:
        principal.require_admin()
        node = await nodes.revoke(db, tenant_id=principal.tenant_id, node_id=node_id)
        return nodes.node_out(node, offline_after=_offline_after(hangar))


class DeploymentController(Controller):
    path = "/v1/deployments"
    tags = ["fleet"]

    @post("/", opt=doc(404, 409, headers=(IDEMPOTENCY_KEY,)))
    async def create(
        self, db: AsyncSession, principal: Principal, data: DeploymentCreate
    ) -> DeploymentOut:
        principal.require_admin()
        return await deployments.create_deployment(
            db,
            tenant_id=principal.tenant_id,
            model=data.model,
            node_id=data.node_id,
            selector=data.selector,
        )

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[DeploymentOut]]:
        principal.require(Scope.read)
        found = await deployments.list_deployments(db, tenant_id=principal.tenant_id)
        return paged(request, found, key=lambda d: d.id, after=after, limit=limit)

    @delete("/{deployment_id:uuid}")
    async def remove(
        self, db: AsyncSession, principal: Principal, deployment_id: uuid.UUID
    ) -> None:
        principal.require_admin()
        await deployments.delete_deployment(
            db, tenant_id=principal.tenant_id, deployment_id=deployment_id
        )


class NodeAgentController(Controller):
    """Called by the node runtime (``node_runtime.control``), never by people."""

    path = "/v1/fleet"
    tags = ["node runtime"]

    @post("/enroll", status_code=201, security=[], opt=doc(401, 402, 403, 404, 409))
    async def enroll(
        self, db: AsyncSession, hangar: Components, data: EnrollRequest
    ) -> EnrollResponse:
        """Exchange an enrollment token and the machine's facts for a node credential."""
        return await tokens.enroll(
            db,
            request=data,
            heartbeat_seconds=hangar.settings.fleet.heartbeat_seconds,
            node_limit=hangar.quotas,
        )

    @post("/heartbeat", status_code=200, opt=doc(401, 403))
    async def heartbeat(
        self, request: Request, hangar: Components, data: Heartbeat
    ) -> HeartbeatReply:
        """The hot path of a whole fleet: no principal dependency and its own short
        transaction, so one beat is one round trip to Postgres (auth and write together).
        A light heartbeat (no ``facts``) that the control plane cannot match gets
        ``send_state: true``."""
        secret = bearer(request)
        if not secret.startswith(NODE_CREDENTIAL_PREFIX):
            raise Forbidden(
                "this route is for nodes: call it with the node credential from `hangar node enroll`"
            )
        async with transaction(hangar.beats) as session:
            beat = await heartbeats.heartbeat(session, credential=secret, beat=data)
        return HeartbeatReply(
            desired_revision=beat.desired_revision,
            heartbeat_seconds=hangar.pacer.beat(),
            server_time=utcnow(),
            send_state=beat.send_state,
        )

    @post("/reports", status_code=200)
    async def reports(
        self, db: AsyncSession, principal: Principal, data: ReportBatch
    ) -> ReportBatchReply:
        node_id = principal.require_node()
        return await heartbeats.store_reports(
            db, tenant_id=principal.tenant_id, node_id=node_id, batch=data
        )

    @get("/desired")
    async def desired(self, db: AsyncSession, principal: Principal) -> DesiredState:
        node = await nodes.get_node(
            db, tenant_id=principal.tenant_id, node_id=principal.require_node()
        )
        return await deployments.desired_state(db, node=node)

    @get("/peers")
    async def peers(
        self,
        db: AsyncSession,
        hangar: Components,
        principal: Principal,
        digest: str | None = None,
        pull: bool = False,
    ) -> PeerList:
        """Same-tenant nodes online now; with ``digest``, only those holding it ready.
        With ``pull=true`` (the node is about to download ``digest``), only nodes of its
        site (its ``site`` label), and, when none holds it yet, either no ``wait`` (fetch
        it from the control plane: this node does it for the site) or a ``wait`` naming
        the node that does."""
        if digest is not None:
            check_digest(digest)
        elif pull:
            raise BadRequest("pull=true needs the digest to pull: add ?digest=sha256:…")
        return await fleet_peers.peers(
            db,
            tenant_id=principal.tenant_id,
            node_id=principal.require_node(),
            offline_after=_offline_after(hangar),
            digest=digest,
            pull=pull,
        )


class RolloutController(Controller):
    path = "/v1/rollouts"
    tags = ["fleet"]

    @post("/", opt=doc(404, 409))
    async def start(
        self, db: AsyncSession, hangar: Components, principal: Principal, data: RolloutCreate
    ) -> RolloutOut:
        """Move a tag's nodes to another version in health-gated waves."""
        principal.require_admin()
        return await rollouts.start(
            db,
            tenant_id=principal.tenant_id,
            model=data.model,
            to=data.to,
            selector=data.selector,
            steps=data.steps,
            bake_seconds=data.bake_seconds,
            max_unhealthy=data.max_unhealthy,
            health=rollouts.Health.of(hangar.settings.fleet),
        )

    @get("/", opt=doc(404))
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        model: str | None = None,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[RolloutOut]]:
        """Newest first; ``model=NAME:TAG`` for one tag's rollouts."""
        principal.require(Scope.read)
        found = await rollouts.list_rollouts(db, tenant_id=principal.tenant_id, model=model)
        return paged(request, found, key=lambda r: r.id, after=after, limit=limit)

    @get("/{rollout_id:uuid}")
    async def show(
        self, db: AsyncSession, principal: Principal, rollout_id: uuid.UUID
    ) -> RolloutOut:
        principal.require(Scope.read)
        return await rollouts.get_rollout(db, tenant_id=principal.tenant_id, rollout_id=rollout_id)

    @post("/{rollout_id:uuid}/pause", status_code=200, opt=doc(409))
    async def pause(
        self, db: AsyncSession, principal: Principal, rollout_id: uuid.UUID
    ) -> RolloutOut:
        principal.require_admin()
        return await rollouts.set_state(
            db,
            tenant_id=principal.tenant_id,
            rollout_id=rollout_id,
            to=rollouts.RolloutState.paused,
        )

    @post("/{rollout_id:uuid}/resume", status_code=200, opt=doc(409))
    async def resume(
        self, db: AsyncSession, principal: Principal, rollout_id: uuid.UUID
    ) -> RolloutOut:
        principal.require_admin()
        return await rollouts.set_state(
            db,
            tenant_id=principal.tenant_id,
            rollout_id=rollout_id,
            to=rollouts.RolloutState.running,
        )

    @post("/{rollout_id:uuid}/abort", status_code=200, opt=doc(409))
    async def abort(
        self, db: AsyncSession, principal: Principal, rollout_id: uuid.UUID
    ) -> RolloutOut:
        """Stop, and send every node it moved back to the previous version."""
        principal.require_admin()
        return await rollouts.set_state(
            db,
            tenant_id=principal.tenant_id,
            rollout_id=rollout_id,
            to=rollouts.RolloutState.aborted,
        )
