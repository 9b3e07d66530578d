"""Nodes, enrollment tokens and deployments."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

from litestar import Request, get, post
from litestar.response import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from core.errors import BadRequest
from fleet import deployments, nodes, tokens
from fleet.models import Node
from fleet.schemas import NodeState
from services.components import Components
from services.console.render import back, form, page, parse_labels, required
from services.console.session import PATH, ConsoleUser
from tenants.schemas import Scope

PAGE_SIZE = 50


async def state_counts(
    session: AsyncSession, *, tenant_id: uuid.UUID, offline_after: float
) -> dict[str, int]:
    """Nodes per state, by the fleet's own rule (``nodes.node_state``), from five
    columns only: a 10,000-node fleet must not load every node's facts and report."""
    rows = await session.execute(
        select(Node.revoked_at, Node.disabled_at, Node.last_seen_at, Node.status).where(
            Node.tenant_id == tenant_id
        )
    )
    now, after = utcnow(), timedelta(seconds=offline_after)
    counted = Counter(nodes.node_state(row, now=now, offline_after=after) for row in rows)
    return {state.value: counted.get(state, 0) for state in NodeState}


def _label_filter(label: str | None) -> dict[str, str]:
    return parse_labels(label, "label filter") if label else {}


async def _node_page(
    db: AsyncSession, hangar: Components, *, tenant_id: uuid.UUID, page_no: int, label: str | None
):
    """One page of nodes in the API's order (name, id), optionally by labels."""
    where = [Node.tenant_id == tenant_id]
    selector = _label_filter(label)
    if selector:
        where.append(Node.labels.contains(selector))
    total = await db.scalar(select(func.count()).select_from(Node).where(*where)) or 0
    rows = await db.scalars(
        select(Node)
        .where(*where)
        .order_by(Node.name, Node.id)
        .offset((page_no - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    after = timedelta(seconds=hangar.settings.fleet.offline_after_seconds)
    shown = [nodes.node_out(n, offline_after=after) for n in rows]
    pages = max(1, -(-total // PAGE_SIZE))
    return shown, total, pages


@get("/nodes")
async def nodes_page(
    db: AsyncSession,
    hangar: Components,
    user: ConsoleUser,
    page_no: int = 1,
    label: str | None = None,
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.read)
    page_no = max(1, page_no)
    shown, total, pages = await _node_page(
        db, hangar, tenant_id=principal.tenant_id, page_no=page_no, label=label
    )
    context = {
        "nodes": shown,
        "total": total,
        "page_no": page_no,
        "pages": pages,
        "label": label or "",
        "states": await state_counts(
            db,
            tenant_id=principal.tenant_id,
            offline_after=hangar.settings.fleet.offline_after_seconds,
        ),
    }
    if user.admin:
        context["tokens"] = [
            tokens.token_out(t) for t in await tokens.list_tokens(db, tenant_id=principal.tenant_id)
        ]
    return page("nodes.html", user, "Nodes", nav="nodes", **context)


@get("/nodes/rows")
async def node_rows(
    db: AsyncSession,
    hangar: Components,
    user: ConsoleUser,
    page_no: int = 1,
    label: str | None = None,
) -> Response:
    """The table body alone, polled by htmx so states and downloads update live."""
    principal = user.tenant_principal()
    principal.require(Scope.read)
    shown, _, _ = await _node_page(
        db, hangar, tenant_id=principal.tenant_id, page_no=max(1, page_no), label=label
    )
    return page("node_rows.html", user, "Nodes", nodes=shown, page_no=page_no, label=label or "")


@get("/nodes/{node_id:uuid}")
async def node_page(
    db: AsyncSession, hangar: Components, user: ConsoleUser, node_id: uuid.UUID, live: bool = False
) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.read)
    node = nodes.node_out(
        await nodes.get_node(db, tenant_id=principal.tenant_id, node_id=node_id),
        offline_after=timedelta(seconds=hangar.settings.fleet.offline_after_seconds),
    )
    template = "node_models.html" if live else "node.html"
    return page(template, user, f"Node {node.name}", nav="nodes", node=node)


@post("/nodes/{node_id:uuid}/labels")
async def node_labels(
    request: Request, db: AsyncSession, user: ConsoleUser, node_id: uuid.UUID
) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data = await form(request)
    await nodes.set_labels(
        db,
        tenant_id=principal.tenant_id,
        node_id=node_id,
        set_=parse_labels(data.get("set", "")),
        remove=data.get("remove", "").replace(",", " ").split(),
    )
    return back(f"{PATH}/nodes/{node_id}")


@post("/nodes/{node_id:uuid}/{action:str}")
async def node_action(
    db: AsyncSession, user: ConsoleUser, node_id: uuid.UUID, action: str
) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    if action == "revoke":
        await nodes.revoke(db, tenant_id=principal.tenant_id, node_id=node_id)
    elif action in ("disable", "enable"):
        await nodes.set_disabled(
            db, tenant_id=principal.tenant_id, node_id=node_id, disabled=action == "disable"
        )
    else:
        raise BadRequest(f"unknown node action {action!r}: use disable, enable or revoke")
    return back(f"{PATH}/nodes/{node_id}")


@post("/enroll-tokens")
async def create_token(
    request: Request, db: AsyncSession, hangar: Components, user: ConsoleUser
) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data = await form(request)
    hours, uses = data.get("expires_hours", "24"), data.get("max_uses", "1")
    if not hours.isdigit() or not 0 < int(hours) <= 366 * 24:
        raise BadRequest("expires in (hours) must be a whole number from 1 to 8784")
    if not uses.isdigit() or not 0 < int(uses) <= 1_000_000:
        raise BadRequest("max uses must be a whole number from 1 to 1000000")
    created = await tokens.create_token(
        db,
        tenant_id=principal.tenant_id,
        name=data.get("name", "").strip() or "default",
        expires_in=timedelta(hours=int(hours)),
        max_uses=int(uses),
        labels=parse_labels(data.get("labels", "")),
    )
    # Shown once, on this response only: never stored where a reload would show it again.
    server = str(request.base_url).rstrip("/")
    return page(
        "token_created.html",
        user,
        "Enrollment token created",
        nav="nodes",
        token=created,
        server=server,
    )


@post("/enroll-tokens/{token_id:uuid}/revoke")
async def revoke_token(db: AsyncSession, user: ConsoleUser, token_id: uuid.UUID) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    await tokens.revoke_token(db, tenant_id=principal.tenant_id, token_id=token_id)
    return back(f"{PATH}/nodes")


@get("/deployments")
async def deployments_page(db: AsyncSession, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.read)
    found = await deployments.list_deployments(db, tenant_id=principal.tenant_id)
    names = await nodes.names(db, ids={d.node_id for d in found if d.node_id})
    return page(
        "deployments.html",
        user,
        "Deployments",
        nav="deployments",
        deployments=found,
        node_names=names,
    )


@post("/deployments")
async def create_deployment(request: Request, db: AsyncSession, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data = await form(request)
    model = required(data, "model", "the model (NAME:TAG)")
    selector = parse_labels(data.get("selector", ""), "label selector")
    node = data.get("node_id", "").strip()
    if bool(selector) == bool(node):
        raise BadRequest("give either a label selector (site=london) or a node id, not both")
    try:
        node_id = uuid.UUID(node) if node else None
    except ValueError:
        raise BadRequest(f"invalid node id {node!r}: copy it from the Nodes page") from None
    await deployments.create_deployment(
        db, tenant_id=principal.tenant_id, model=model, node_id=node_id, selector=selector or None
    )
    return back(f"{PATH}/deployments")


@post("/deployments/{deployment_id:uuid}/delete")
async def delete_deployment(
    db: AsyncSession, user: ConsoleUser, deployment_id: uuid.UUID
) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    await deployments.delete_deployment(
        db, tenant_id=principal.tenant_id, deployment_id=deployment_id
    )
    return back(f"{PATH}/deployments")


HANDLERS = [
    nodes_page,
    node_rows,
    node_page,
    node_labels,
    node_action,
    create_token,
    revoke_token,
    deployments_page,
    create_deployment,
    delete_deployment,
]
